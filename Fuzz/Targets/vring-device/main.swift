import FuzzSupport

/// What the device (remote) side reads from the driver: descriptor tables, avail flags, index,
/// ring and used_event of both vrings, overwritten by the input, then both sides run.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let fixture = try? RingFixture() else { fatalError("the fixture does not start") }
    defer { fixture.shutdown() }
    fixture.overwrite(UnsafeBufferPointer(start: data, count: size)) { 0..<($0.usedEvent + 2) }
    return 0
}
