import Testing
import Virtio

/// One `need_event` case: whether moving an index from `old` to `new` crosses `event`.
struct EventCase: Sendable, CustomTestStringConvertible {
    var event: UInt16
    var new: UInt16
    var old: UInt16
    var expected: Bool
    var why: String
    var testDescription: String { "event \(event), new \(new), old \(old) → \(expected) (\(why))" }
}

@Suite("Vring layout (openamp-facts §4.4–4.5)")
struct VringLayoutTests {
    @Test("256 descriptors aligned to 4096: avail at 4096, used at 0x2000, 10246 bytes")
    func openAMPReferenceRing() throws {
        let layout = try VringLayout(count: 256, alignment: 4096)
        #expect(layout.count == 256)
        #expect(layout.alignment == 4096)
        #expect(layout.descriptor(0) == 0)
        #expect(layout.descriptor(1) == 16)
        #expect(layout.descriptor(255) == 4080)
        #expect(layout.availFlags == 4096)
        #expect(layout.availIndex == 4098)
        #expect(layout.availRing(0) == 4100)
        #expect(layout.availRing(255) == 4610)
        #expect(layout.usedEvent == 4612)
        #expect(layout.usedFlags == 0x2000)
        #expect(layout.usedIndex == 0x2002)
        #expect(layout.usedRing(0) == 0x2004)
        #expect(layout.usedRing(255) == 0x2004 + 8 * 255)
        #expect(layout.availEvent == 0x2000 + 4 + 8 * 256)
        #expect(layout.byteSize == 10246)
        #expect(layout.byteSize == 0x2806)
    }

    @Test("16 descriptors aligned to 4: used ring at 296, 430 bytes")
    func smallRing() throws {
        let layout = try VringLayout(count: 16, alignment: 4)
        #expect(layout.availFlags == 256)
        #expect(layout.availIndex == 258)
        #expect(layout.availRing(0) == 260)
        #expect(layout.availRing(15) == 290)
        #expect(layout.usedEvent == 292)
        #expect(layout.usedFlags == 296)
        #expect(layout.usedIndex == 298)
        #expect(layout.usedRing(0) == 300)
        #expect(layout.usedRing(15) == 420)
        #expect(layout.availEvent == 428)
        #expect(layout.byteSize == 430)
    }

    @Test("The fixture's ring: 16 descriptors aligned to 4096")
    func fixtureRing() throws {
        let layout = try VringLayout(count: 16, alignment: 4096)
        #expect(layout.usedFlags == 4096)
        #expect(layout.availEvent == 4096 + 4 + 8 * 16)
        #expect(layout.byteSize == 4096 + 8 * 16 + 6)
    }

    @Test("Smallest and largest rings are accepted", arguments: [(1, 1), (1, 4096), (32768, 4096), (2, 65536)])
    func extremes(count: Int, alignment: Int) throws {
        let layout = try VringLayout(count: count, alignment: alignment)
        // align_up(18·num + 6, align) + 8·num + 6
        let usedStart = (18 * count + 6 + alignment - 1) / alignment * alignment
        #expect(layout.usedFlags == usedStart)
        #expect(layout.byteSize == usedStart + 8 * count + 6)
    }

    @Test("A count that is not a power of two from 1 to 32768 is refused", arguments: [0, 3, 6, 65536, -16, 32769])
    func invalidCount(count: Int) {
        let kind = thrownKind { _ = try VringLayout(count: count, alignment: 4096) }
        #expect(kind?.isInvalidRing == true, "\(String(describing: kind))")
    }

    @Test("An alignment that is not a power of two is refused", arguments: [0, 3, 6, -4, 4097])
    func invalidAlignment(alignment: Int) {
        let kind = thrownKind { _ = try VringLayout(count: 16, alignment: alignment) }
        #expect(kind?.isInvalidRing == true, "\(String(describing: kind))")
    }

    @Test("Flag values")
    func flags() {
        #expect(VringLayout.next == 1)
        #expect(VringLayout.write == 2)
        #expect(VringLayout.indirect == 4)
        #expect(VringLayout.noInterrupt == 1)
        #expect(VringLayout.noNotify == 1)
    }

    static let eventCases: [EventCase] = [
        EventCase(event: 4, new: 5, old: 4, expected: true, why: "the one new index is the event"),
        EventCase(event: 5, new: 5, old: 4, expected: false, why: "the event is not reached yet"),
        EventCase(event: 3, new: 5, old: 4, expected: false, why: "the event was passed before old"),
        EventCase(event: 0, new: 8, old: 0, expected: true, why: "event at the start of the batch"),
        EventCase(event: 7, new: 8, old: 0, expected: true, why: "event at the end of the batch"),
        EventCase(event: 8, new: 8, old: 0, expected: false, why: "event just beyond the batch"),
        EventCase(event: 7, new: 7, old: 7, expected: false, why: "nothing queued"),
        EventCase(event: 0xFFFF, new: 1, old: 0xFFFE, expected: true, why: "event inside a batch that wraps"),
        EventCase(event: 0xFFFE, new: 2, old: 0xFFFE, expected: true, why: "event = old, batch wraps"),
        EventCase(event: 1, new: 2, old: 0xFFFE, expected: true, why: "event after the wrap"),
        EventCase(event: 2, new: 2, old: 0xFFFE, expected: false, why: "event = new after a wrap"),
        EventCase(event: 0xFFFD, new: 2, old: 0xFFFE, expected: false, why: "event before old, across the wrap"),
        EventCase(event: 100 - 16 - 1, new: 116, old: 100, expected: false, why: "disabled: event = last seen − num − 1"),
    ]

    @Test("need_event: (new − event − 1) mod 2¹⁶ < (new − old) mod 2¹⁶", arguments: VringLayoutTests.eventCases)
    func needsEvent(_ c: EventCase) {
        #expect(VringLayout.needsEvent(event: c.event, new: c.new, old: c.old) == c.expected)
    }
}
