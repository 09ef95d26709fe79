import RemoteSim

/// A core file from anywhere: decoded with every offset checked; what decodes is encoded again
/// and must decode to the same dump (the writer and the reader agree), and reads from it stay
/// inside its segments.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let dump = try? CoreDumpFile.decode(bytes) else { return 0 }
    let again: CoreDump
    do { again = try CoreDumpFile.decode(CoreDumpFile.encode(dump)) } catch { fatalError("a decoded core does not read back: \(error)") }
    guard again.cpu == dump.cpu, again.info == dump.info, again.segments.map(\.bytes) == dump.segments.map(\.bytes) else {
        fatalError("a core read back differs")
    }
    for segment in dump.segments {
        let base = segment.deviceAddress.rawValue
        _ = dump.read(base, segment.bytes.count)
        if dump.read(base &+ UInt64(segment.bytes.count), 1) != nil, !dump.segments.contains(where: { $0.deviceAddress.rawValue == base &+ UInt64(segment.bytes.count) }) {
            fatalError("a read past a segment's end returned bytes")
        }
    }
    _ = dump.answer(monitor: "vrings")
    return 0
}
