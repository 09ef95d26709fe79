import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Testing
import Virtio

/// A fake shared memory at 0x3000_0000 with an RPMsg vdev's two 8-entry rings at its start and
/// buffers from 0x3000_2000; bytes are written the way either side would, or as a hostile peer would.
struct ReportFixture {
    static let base: UInt64 = 0x3000_0000
    static let size = 0x8000
    var memory = [UInt8](repeating: 0, count: ReportFixture.size)
    let layout = try! VringLayout(count: 8, alignment: 16)
    var rings: [UInt64] { [Self.base, Self.base + 0x1000] }

    var table: ResourceTable {
        try! ResourceTable(entries: [.vdev(VirtioDeviceResource(notifyID: NotifyID(0), status: [.acknowledge, .driver, .driverOK], vrings: [
            VringResource(deviceAddress: ResourceAddress(UInt32(rings[0])), alignment: 16, count: 8, notifyID: NotifyID(1)),
            VringResource(deviceAddress: ResourceAddress(UInt32(rings[1])), alignment: 16, count: 8, notifyID: NotifyID(2)),
        ]))])
    }

    func read(_ address: UInt64, _ count: Int) -> [UInt8]? {
        guard address >= Self.base, count >= 0, address - Self.base + UInt64(count) <= UInt64(Self.size) else { return nil }
        let start = Int(address - Self.base)
        return Array(memory[start..<(start + count)])
    }

    mutating func put(_ value: UInt64, bytes: Int, at address: UInt64) {
        for i in 0..<bytes { memory[Int(address - Self.base) + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
    mutating func put(_ data: [UInt8], at address: UInt64) { for (i, b) in data.enumerated() { memory[Int(address - Self.base) + i] = b } }

    mutating func descriptor(ring: Int, _ index: Int, address: UInt64, length: UInt32, flags: UInt16 = 0, next: UInt16 = 0) {
        let at = rings[ring] + UInt64(layout.descriptor(index))
        put(address, bytes: 8, at: at)
        put(UInt64(length), bytes: 4, at: at + 8)
        put(UInt64(flags), bytes: 2, at: at + 12)
        put(UInt64(next), bytes: 2, at: at + 14)
    }
    mutating func avail(ring: Int, entries: [UInt16]) {
        for (slot, head) in entries.enumerated() { put(UInt64(head), bytes: 2, at: rings[ring] + UInt64(layout.availRing(slot))) }
        put(UInt64(entries.count), bytes: 2, at: rings[ring] + UInt64(layout.availIndex))
    }
    mutating func used(ring: Int, elements: [(UInt32, UInt32)]) {
        for (slot, e) in elements.enumerated() {
            put(UInt64(e.0), bytes: 4, at: rings[ring] + UInt64(layout.usedRing(slot)))
            put(UInt64(e.1), bytes: 4, at: rings[ring] + UInt64(layout.usedRing(slot)) + 4)
        }
        put(UInt64(elements.count), bytes: 2, at: rings[ring] + UInt64(layout.usedIndex))
    }
    /// An RPMsg message at `address`.
    mutating func message(at address: UInt64, from source: UInt32, to destination: UInt32, _ payload: [UInt8], length: UInt16? = nil) {
        put(UInt64(source), bytes: 4, at: address)
        put(UInt64(destination), bytes: 4, at: address + 4)
        put(UInt64(length ?? UInt16(payload.count)), bytes: 2, at: address + 12)
        put(payload, at: address + 16)
    }

    func render() -> String { VringReport.render(table, read: read) }
}

@Suite("Vring report")
struct VringReportTests {
    @Test("messages in flight and used are decoded: text, binary, name service; empty receive buffers are named")
    func decodes() {
        var f = ReportFixture()
        // vring1 (host → remote): two messages in flight.
        f.descriptor(ring: 1, 0, address: 0x3000_2000, length: 21)
        f.message(at: 0x3000_2000, from: 1024, to: 1025, Array("hello".utf8))
        f.descriptor(ring: 1, 1, address: 0x3000_2200, length: 20)
        f.message(at: 0x3000_2200, from: 1024, to: 1025, [0x00, 0xFF, 0x10, 0x80])
        f.avail(ring: 1, entries: [0, 1])
        // vring0 (remote → host): two empty receive buffers, one used for a name-service message.
        for i in 0..<3 { f.descriptor(ring: 0, i, address: 0x3000_4000 + UInt64(i) * 0x200, length: 512, flags: VringLayout.write) }
        f.avail(ring: 0, entries: [0, 1, 2])
        f.message(at: 0x3000_4000, from: 1030, to: 53, NameServiceMessage(name: "rpmsg-echo", address: RPMsgAddress(1030), action: .create).bytes)
        f.used(ring: 0, elements: [(0, 56)])
        let text = f.render()
        #expect(text.contains("vdev entry 0 (rpmsg): status 0x7 (ACKNOWLEDGE|DRIVER|DRIVER_OK)"), "\(text)")
        #expect(text.contains("vring1 @ 0x3000_1000 num 8 align 16 notify 2 (host → remote)"), "\(text)")
        #expect(text.contains("2 in flight"), "\(text)")
        #expect(text.contains(#"avail[0] desc 0 @ 0x3000_2000 len 21: rpmsg 1024 → 1025 len 5 flags 0x0: "hello""#), "\(text)")
        #expect(text.contains("rpmsg 1024 → 1025 len 4 flags 0x0: 00 ff 10 80"), "binary payloads in hex: \(text)")
        #expect(text.contains("desc 1 @ 0x3000_4200 len 512: empty receive buffer"), "\(text)")
        #expect(text.contains(#"used[0] desc 0 @ 0x3000_4000 len 512, used len 56: rpmsg 1030 → 53 len 40 flags 0x0: name service create "rpmsg-echo" at 1030"#), "\(text)")
        #expect(text.contains("0–2: 0x3000_4000 … 0x3000_4400 (step 0x200), len 512 WRITE"), "descriptor runs on one line: \(text)")
    }

    @Test("what a hostile peer writes is reported, not trusted", arguments: [
        "length beyond", "too short", "not readable", "out of range", "inconsistent", "payload quoted",
    ])
    func hostile(_ kind: String) {
        var f = ReportFixture()
        var expected = ""
        switch kind {
        case "length beyond":   // the header claims more payload than the buffer holds
            f.descriptor(ring: 1, 0, address: 0x3000_2000, length: 24)
            f.message(at: 0x3000_2000, from: 1, to: 2, Array("12345678".utf8), length: 60000)
            expected = "len 60000 flags 0x0 (length beyond the 8 bytes of the buffer)"
        case "too short":
            f.descriptor(ring: 1, 0, address: 0x3000_2000, length: 8)
            expected = "8 bytes, too short for an RPMsg header"
        case "not readable":    // a buffer address outside the memory
            f.descriptor(ring: 1, 0, address: 0xDEAD_0000, length: 64)
            expected = "desc 0 @ 0xdead_0000 len 64: buffer not readable"
        case "out of range":    // the avail ring names a descriptor beyond the table
            f.avail(ring: 1, entries: [9])
            expected = "avail[0] desc 9: out of range (num 8)"
        case "inconsistent":
            f.put(40, bytes: 2, at: f.rings[1] + UInt64(f.layout.availIndex))
            expected = "indices inconsistent (avail − used = 40 > num 8)"
        default:                // control bytes and quotes are escaped
            f.descriptor(ring: 1, 0, address: 0x3000_2000, length: 22)
            f.message(at: 0x3000_2000, from: 1, to: 2, Array("a\"b\\\n\u{1}".utf8))
            expected = #": "a\"b\\\n\x01""#
        }
        if kind != "out of range" && kind != "inconsistent" { f.avail(ring: 1, entries: [0]) }
        let text = f.render()
        #expect(text.contains(expected), "\(text)")
    }

    @Test("a table that is unreadable, malformed, or has unplaced vrings is said so")
    func tables() {
        let f = ReportFixture()
        #expect(VringReport.render(tableAt: (DeviceAddress(0x1000), 64), read: f.read).contains("not readable"))
        var garbage = ReportFixture()
        garbage.put([9, 9, 9, 9], at: ReportFixture.base)
        #expect(VringReport.render(tableAt: (DeviceAddress(ReportFixture.base), 64), read: garbage.read).contains("resource table at 0x3000_0000:"))
        let unplaced = try! ResourceTable(entries: [.vdev(VirtioDeviceResource(vrings: [VringResource(count: 8)]))])
        #expect(VringReport.render(unplaced, read: f.read).contains("vring0: not placed yet"))
        #expect(VringReport.render(try! ResourceTable(entries: []), read: f.read) == "no vdev in the resource table\n")
    }

    @Test("random bytes over the rings and buffers never trap and always render")
    func randomMemory() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var f = ReportFixture()
            for i in 0..<(ReportFixture.size / 2) { f.memory[i] = UInt8.random(in: 0...255, using: &generator) }
            // Point some descriptors into the buffer area so decoding runs too.
            for d in 0..<8 where Bool.random() {
                f.descriptor(ring: 1, d, address: 0x3000_2000 + UInt64.random(in: 0..<0x6000), length: UInt32.random(in: 0...600),
                             flags: UInt16.random(in: 0...7), next: UInt16.random(in: 0...10))
            }
            #expect(f.render().contains("vring1 @ 0x3000_1000"))
        }
    }
}
