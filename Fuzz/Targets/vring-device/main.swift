import FuzzSupport

/// What the device (remote) side reads from the driver: descriptor tables and avail rings of
/// both vrings, overwritten by the input, then both sides run.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let fixture = try? RingFixture() else { fatalError("the fixture does not start") }
    defer { fixture.shutdown() }
    let input = UnsafeBufferPointer(start: data, count: size)
    let rings = (0..<2).compactMap { try? fixture.vring($0) }
    // Each write lands in ring (position's low bit) at an offset within its driver-written part.
    for (position, bytes) in writes(in: input, span: 1 << 16) {
        let (offset, layout) = rings[position & 1]
        let driverPart = layout.availRing(layout.count) + 2    // descriptors, flags, idx, ring, used_event
        fixture.poke(bytes, at: offset + (position >> 1) % driverPart)
    }
    fixture.pumpAndProbe()
    return 0
}
