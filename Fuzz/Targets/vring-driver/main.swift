import FuzzSupport

/// What the driver (host) side reads from the device: the used rings of both vrings (flags, idx,
/// elements, avail_event), overwritten by the input, then both sides run.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let fixture = try? RingFixture() else { fatalError("the fixture does not start") }
    defer { fixture.shutdown() }
    fixture.overwrite(UnsafeBufferPointer(start: data, count: size)) { $0.usedFlags..<$0.byteSize }
    return 0
}
