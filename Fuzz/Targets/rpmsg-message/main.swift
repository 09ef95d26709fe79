import FuzzSupport
import Virtio

/// The RPMsg header and payload (name-service messages included: destination 53) of a message in
/// flight each way, overwritten by the input before the receiver reads it. The first input byte
/// splits the rest between the host → remote buffer and the remote → host one.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    guard let fixture = try? RingFixture() else { fatalError("the fixture does not start") }
    defer { fixture.shutdown() }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let split = min(Int(input[0]) * 2, input.count - 1)
    let (toRemote, toHost) = (input[1..<(1 + split)], input[(1 + split)...])
    // Host → remote: the newest chain the host published on vring 1.
    if let (offset, layout) = try? fixture.vring(1),
       let index = try? fixture.region.read(UInt16.self, at: offset + layout.availIndex),
       let head = try? fixture.region.read(UInt16.self, at: offset + layout.availRing((Int(index) &- 1) & (layout.count - 1))),
       let address = try? fixture.region.read(UInt64.self, at: offset + layout.descriptor(Int(head) & (layout.count - 1))) {
        fixture.poke(toRemote.prefix(512), at: Int(truncatingIfNeeded: address &- RingFixture.sharedBase.rawValue))
    }
    // Remote → host: the newest element the remote put in vring 0's used ring.
    if let (offset, layout) = try? fixture.vring(0),
       let index = try? fixture.region.read(UInt16.self, at: offset + layout.usedIndex),
       let id = try? fixture.region.read(UInt32.self, at: offset + layout.usedRing((Int(index) &- 1) & (layout.count - 1))),
       let address = try? fixture.region.read(UInt64.self, at: offset + layout.descriptor(Int(id) & (layout.count - 1))) {
        fixture.poke(toHost.prefix(512), at: Int(truncatingIfNeeded: address &- RingFixture.sharedBase.rawValue))
    }
    fixture.pumpAndProbe()
    return 0
}
