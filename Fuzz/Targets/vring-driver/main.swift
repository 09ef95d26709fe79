import FuzzSupport

/// What the driver (host) side reads from the device: the used rings of both vrings (flags, idx,
/// elements, avail_event), overwritten by the input, then both sides run.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let fixture = try? RingFixture() else { fatalError("the fixture does not start") }
    defer { fixture.shutdown() }
    let input = UnsafeBufferPointer(start: data, count: size)
    let rings = (0..<2).compactMap { try? fixture.vring($0) }
    for (position, bytes) in writes(in: input, span: 1 << 16) {
        let (offset, layout) = rings[position & 1]
        let usedPart = layout.byteSize - layout.usedFlags
        fixture.poke(bytes, at: offset + layout.usedFlags + (position >> 1) % usedPart)
    }
    fixture.pumpAndProbe()
    return 0
}
