import RemoteSim

/// The byte stream a GDB client sends: framed packets, acks, Ctrl-C and noise, fed to the
/// server's packet reader in the chunk sizes the input's first byte picks, then every packet it
/// yields framed back and read again (what the server answers must read back the same).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let chunk = Int(bytes[0] % 16) + 1
    var reader = GDBPacketReader(maximumPacketSize: 4096)
    var inputs: [GDBInput] = []
    var at = 1
    while at < bytes.count {
        inputs += reader.feed(bytes[at..<min(at + chunk, bytes.count)])
        at += chunk
    }
    for case let .packet(payload) in inputs {
        var echo = GDBPacketReader(maximumPacketSize: 1 << 20)
        let read = echo.feed(GDBPacketReader.frame(payload))
        guard read == [.packet(payload)] else { fatalError("a framed packet does not read back: \(read)") }
    }
    return 0
}
