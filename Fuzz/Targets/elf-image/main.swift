import Remoteproc

/// An ELF image from an in-memory store: headers, segments, the resource table section and the
/// symbols, read as a load would.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let store = MemoryImageStore(["fuzz.elf": Array(UnsafeBufferPointer(start: data, count: size))])
    guard let image = try? ELFImage.read("fuzz.elf", from: store) else { return 0 }
    _ = image.loadableSegments.count
    _ = try? image.resourceTableBytes(from: store)
    _ = try? image.symbols(from: store)
    return 0
}
