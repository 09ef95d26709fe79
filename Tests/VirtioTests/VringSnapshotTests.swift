import MetalIO
import Testing
import Virtio

@Suite("VringSnapshot")
struct VringSnapshotTests {
    /// Reads the fixture's region by device address.
    func reader(_ f: VirtioFixture) -> (UInt64, Int) -> [UInt8]? {
        { address, count in
            guard address >= VirtioFixture.deviceBase else { return nil }
            return try? f.region.readBytes(at: Int(address - VirtioFixture.deviceBase), count: count)
        }
    }

    func snapshot(_ f: VirtioFixture) throws -> VringSnapshot {
        try VringSnapshot(layout: f.layout, at: VirtioFixture.deviceBase + UInt64(f.location.offset), read: reader(f))
    }

    @Test("in flight: what the driver added and the device has not returned, oldest first, with their chains")
    func inFlight() throws {
        let f = try VirtioFixture()
        let first = try f.addRequest(token: 1, slot: 0)
        let second = try f.addRequest(token: 2, slot: 2)
        var ring = try snapshot(f)
        #expect(ring.availIndex == 2 && ring.usedIndex == 0)
        #expect(ring.inFlightCount == 2)
        #expect(ring.inFlightHeads.map(\.head) == [UInt16(first), UInt16(second)])
        let chain = ring.chain(from: first)
        #expect(chain.count == 2, "readable then writable part")
        #expect(chain[0].descriptor.address == f.address(ofSlot: 0) && chain[0].descriptor.length == 16 && chain[0].descriptor.isChained)
        #expect(chain[1].descriptor.isDeviceWritable && chain[1].descriptor.length == 32)
        // The device takes and returns the first: one left in flight, one used.
        let taken = try #require(f.device.takeAvailable())
        try f.device.returnUsed(taken.head, length: 7)
        ring = try snapshot(f)
        #expect(ring.inFlightCount == 1)
        #expect(ring.inFlightHeads.map(\.head) == [UInt16(second)])
        let used = ring.recentlyUsed(4)
        #expect(used.count == 1)
        #expect(used.first?.position == 0 && used.first?.element.id == UInt32(first) && used.first?.element.length == 7)
    }

    @Test("indices that cannot both be right give no in-flight list; used positions wrap at 2^16")
    func inconsistent() throws {
        let f = try VirtioFixture()
        try f.write16(40, at: f.layout.availIndex)
        try f.write16(3, at: f.layout.usedIndex)
        var ring = try snapshot(f)
        #expect(ring.inFlightCount == nil, "37 in flight on a 16-entry ring is impossible")
        #expect(ring.inFlightHeads.isEmpty)
        try f.write16(2, at: f.layout.availIndex)
        try f.write16(0xFFFF, at: f.layout.usedIndex)
        ring = try snapshot(f)
        #expect(ring.inFlightCount == 3, "across the wrap")
        #expect(ring.inFlightHeads.map(\.position) == [0xFFFF, 0, 1])
        #expect(ring.recentlyUsed(2).map(\.position) == [0xFFFD, 0xFFFE])
    }

    @Test("a chain that loops or leaves the table stops; an out-of-range head has no chain")
    func hostileChains() throws {
        let f = try VirtioFixture()
        try f.setDescriptor(0, RawDescriptor(address: f.address(ofSlot: 0), length: 16, flags: VringLayout.next, next: 1))
        try f.setDescriptor(1, RawDescriptor(address: f.address(ofSlot: 1), length: 16, flags: VringLayout.next, next: 0))
        try f.setDescriptor(2, RawDescriptor(address: 0, length: 0, flags: VringLayout.next, next: 999))
        let ring = try snapshot(f)
        #expect(ring.chain(from: 0).count == VirtioFixture.ringCount, "a loop is cut at the ring size")
        #expect(ring.chain(from: 2).count == 1, "next beyond the table ends the chain")
        #expect(ring.chain(from: 16).isEmpty)
        #expect(ring.chain(from: -1).isEmpty)
    }

    @Test("a ring whose memory cannot be read is an error naming where")
    func unreadable() throws {
        let f = try VirtioFixture()
        #expect(throws: VirtioError(.unreadable(address: 0x1000, length: f.layout.byteSize))) {
            try VringSnapshot(layout: f.layout, at: 0x1000, read: reader(f))
        }
        let short: (UInt64, Int) -> [UInt8]? = { _, count in [UInt8](repeating: 0, count: count - 1) }
        #expect(throws: VirtioError.self) { try VringSnapshot(layout: f.layout, at: VirtioFixture.deviceBase, read: short) }
    }
}
