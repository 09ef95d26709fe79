import Testing
import Virtio

/// Ways a peer can corrupt the two-descriptor chain (head → second) the driver just published.
enum ChainCorruption: String, CaseIterable, Sendable {
    case nextOutOfRange, nextFarOutOfRange
    case twoDescriptorLoop, selfLoop
    case addressBelowWindow, addressBeyondWindow, lengthBeyondWindow, hugeLength
    case indirect, indirectOnLast

    /// The error count the device should bump.
    var counter: KeyPath<VirtqueueErrorCounts, Int> {
        switch self {
        case .nextOutOfRange, .nextFarOutOfRange: \.descriptorIndexOutOfRange
        case .twoDescriptorLoop, .selfLoop: \.chainTooLong
        case .addressBelowWindow, .addressBeyondWindow, .lengthBeyondWindow, .hugeLength: \.bufferOutsideWindow
        case .indirect, .indirectOnLast: \.unsupportedFlags
        }
    }

    func apply(to f: VirtioFixture, head: Int, second: Int) throws {
        let end = VirtioFixture.deviceBase + UInt64(f.region.size)
        var first = try f.descriptor(head), last = try f.descriptor(second)
        switch self {
        case .nextOutOfRange: first.next = 16
        case .nextFarOutOfRange: first.next = 0xFFFF
        case .twoDescriptorLoop:
            // head → second → head → …, every descriptor readable with NEXT (so only the loop is wrong).
            last.flags = VringLayout.next
            last.next = UInt16(head)
        case .selfLoop: first.next = UInt16(head)
        case .addressBelowWindow: first.address = 0x1000
        case .addressBeyondWindow: last.address = end
        case .lengthBeyondWindow:
            last.address = end - 16
            last.length = 32
        case .hugeLength: first.length = .max
        case .indirect: first.flags |= VringLayout.indirect
        case .indirectOnLast: last.flags |= VringLayout.indirect
        }
        try f.setDescriptor(head, first)
        try f.setDescriptor(second, last)
    }
}

@Suite("Untrusted ring memory, device side")
struct DeviceSideValidationTests {
    @Test("A malformed chain is counted, given back used with length 0, and traffic goes on",
          arguments: ChainCorruption.allCases, [false, true])
    func malformedChain(_ corruption: ChainCorruption, usesEventIndex: Bool) throws {
        let f = try VirtioFixture(usesEventIndex: usesEventIndex)
        let head = try f.addRequest(token: 7)
        let second = try Int(f.descriptor(head).next)
        try corruption.apply(to: f, head: head, second: second)

        #expect(f.device.takeAvailable() == nil, "a malformed chain was delivered")
        #expect(f.device.errorCounts[keyPath: corruption.counter] == 1)
        #expect(f.device.errorCounts.total == 1)

        // Its head is valid, so the chain goes back to the driver with nothing written.
        #expect(try f.usedIndex() == 1)
        #expect(try f.usedElement(0) == UsedElement(id: UInt32(head), length: 0))
        let used = try #require(f.driver.takeUsed())
        #expect(used.token == 7)
        #expect(used.length == 0)
        #expect(f.driver.freeCount == VirtioFixture.ringCount, "the driver lost descriptors")
        #expect(f.driver.errorCounts.total == 0)

        try f.expectTrafficFlows(token: 8)
        #expect(f.device.errorCounts.total == 1)
    }

    @Test("A head index beyond the ring is counted and skipped", arguments: [UInt16(16), 0x8000, 0xFFFF])
    func headOutOfRange(head: UInt16) throws {
        let f = try VirtioFixture()
        try f.addRequest(token: 1)
        try f.write16(head, at: f.layout.availRing(0))

        #expect(f.device.takeAvailable() == nil)
        #expect(f.device.errorCounts.descriptorIndexOutOfRange == 1)
        #expect(f.device.errorCounts.total == 1)
        // No valid head, so nothing can go back to the driver: that chain stays in flight.
        #expect(try f.usedIndex() == 0)
        #expect(f.driver.takeUsed() == nil)

        try f.expectTrafficFlows(token: 2)
        #expect(f.device.errorCounts.total == 1)
    }

    @Test("A head the device already holds is counted and skipped")
    func headAlreadyTaken() throws {
        let f = try VirtioFixture()
        let first = try f.addRequest(token: 1, slot: 0)
        try f.addRequest(token: 2, slot: 2)
        // The second avail entry names the first chain again.
        try f.write16(UInt16(first), at: f.layout.availRing(1))

        let chain = try #require(f.device.takeAvailable())
        #expect(chain.head == first)
        #expect(f.device.takeAvailable() == nil)
        #expect(f.device.errorCounts.descriptorIndexOutOfRange == 1)
        #expect(f.device.errorCounts.total == 1)

        try f.device.returnUsed(chain.head, length: 0)
        #expect(f.driver.takeUsed()?.token == 1)
        #expect(f.driver.takeUsed() == nil)
        try f.expectTrafficFlows(token: 3)
    }

    @Test("An avail index that jumps by more than the ring size is refused until it is sane again",
          arguments: [UInt16(17), 0x8000, 0xFFFF])
    func availIndexJump(published: UInt16) throws {
        let f = try VirtioFixture()
        try f.addRequest(token: 1)   // avail.idx = 1
        try f.write16(published, at: f.layout.availIndex)

        #expect(f.device.takeAvailable() == nil)
        #expect(f.device.errorCounts.indexJump == 1)
        #expect(f.device.takeAvailable() == nil, "still refused")
        #expect(f.device.errorCounts.indexJump == 2)
        #expect(f.device.errorCounts.total == 2)
        #expect(try f.usedIndex() == 0)

        // Restored: the chain that was there all along is delivered, and traffic goes on.
        try f.write16(1, at: f.layout.availIndex)
        let chain = try #require(f.device.takeAvailable())
        try f.device.returnUsed(chain.head, length: 3)
        let used = try #require(f.driver.takeUsed())
        #expect(used.token == 1)
        #expect(used.length == 3)
        try f.expectTrafficFlows(token: 2)
        #expect(f.device.errorCounts.total == 2)
    }
}

@Suite("Untrusted ring memory, driver side")
struct DriverSideValidationTests {
    /// The driver adds a request (16 readable + 32 writable bytes), the device takes it and
    /// returns it used with `length`. Returns its head.
    @discardableResult
    func complete(_ f: VirtioFixture, token: Int, length: Int, slot: Int = 0) throws -> Int {
        let head = try f.addRequest(token: token, slot: slot)
        let chain = try #require(f.device.takeAvailable())
        #expect(chain.head == head)
        try f.device.returnUsed(chain.head, length: length)
        return head
    }

    @Test("A used id beyond the ring is counted and skipped", arguments: [UInt32(16), 0x1_0000, UInt32.max])
    func usedIDOutOfRange(id: UInt32) throws {
        let f = try VirtioFixture()
        try complete(f, token: 1, length: 4)
        try f.write32(id, at: f.layout.usedRing(0))

        #expect(f.driver.takeUsed() == nil)
        #expect(f.driver.errorCounts.descriptorIndexOutOfRange == 1)
        #expect(f.driver.errorCounts.total == 1)
        #expect(f.driver.freeCount == 14, "the chain never really came back, so it stays in flight")

        try f.expectTrafficFlows(token: 2)
        #expect(f.driver.errorCounts.total == 1)
    }

    @Test("A used id that names no chain in flight is counted and skipped")
    func unknownUsedID() throws {
        let f = try VirtioFixture()
        let head = try complete(f, token: 1, length: 4, slot: 0)
        let second = try Int(f.descriptor(head).next)
        // The chain's second descriptor: in flight, but not a head.
        try f.write32(UInt32(second), at: f.layout.usedRing(0))
        #expect(f.driver.takeUsed() == nil)
        #expect(f.driver.errorCounts.unknownUsedID == 1)

        // A descriptor that is free.
        let head2 = try complete(f, token: 2, length: 4, slot: 2)
        let second2 = try Int(f.descriptor(head2).next)
        let freeDescriptors = (0..<16).filter { ![head, second, head2, second2].contains($0) }
        let free = try #require(freeDescriptors.first)
        try f.write32(UInt32(free), at: f.layout.usedRing(1))
        #expect(f.driver.takeUsed() == nil)
        #expect(f.driver.errorCounts.unknownUsedID == 2)
        #expect(f.driver.errorCounts.total == 2)

        try f.expectTrafficFlows(token: 3)
        #expect(f.driver.errorCounts.total == 2)
    }

    @Test("A chain the device returns twice comes back once")
    func returnedTwice() throws {
        let f = try VirtioFixture()
        let head = try complete(f, token: 1, length: 4)
        #expect(f.driver.takeUsed()?.token == 1)
        // A forged second element for the same head.
        try f.write32(UInt32(head), at: f.layout.usedRing(1))
        try f.write32(4, at: f.layout.usedRing(1) + 4)
        try f.write16(2, at: f.layout.usedIndex)
        #expect(f.driver.takeUsed() == nil)
        #expect(f.driver.errorCounts.unknownUsedID == 1)
        #expect(f.driver.freeCount == 16)
    }

    @Test("A used length beyond the writable part gives the token back without a length")
    func lengthBeyondBuffer() throws {
        let f = try VirtioFixture()
        // 16 readable + 32 writable bytes: the device may report at most 32.
        try complete(f, token: 1, length: 32)
        var used = try #require(f.driver.takeUsed())
        #expect(used.token == 1)
        #expect(used.length == 32)

        try complete(f, token: 2, length: 33)
        used = try #require(f.driver.takeUsed())
        #expect(used.token == 2)
        #expect(used.length == nil)
        #expect(f.driver.errorCounts.lengthBeyondBuffer == 1)
        #expect(f.driver.freeCount == 16, "the chain is freed all the same")

        // Forged in memory.
        try complete(f, token: 3, length: 0)
        try f.write32(.max, at: f.layout.usedRing(2) + 4)
        used = try #require(f.driver.takeUsed())
        #expect(used.token == 3)
        #expect(used.length == nil)
        #expect(f.driver.errorCounts.lengthBeyondBuffer == 2)
        #expect(f.driver.errorCounts.total == 2)

        try f.expectTrafficFlows(token: 4)
        #expect(f.driver.errorCounts.total == 2)
    }

    @Test("A chain with nothing writable reports length 0 whatever the device says")
    func readableOnlyChain() throws {
        let f = try VirtioFixture()
        // OpenAMP remotes report the buffer's size for a buffer they only read.
        try f.driver.add(readable: [f.buffer(0, length: 512)], writable: [], token: 1)
        let chain = try #require(f.device.takeAvailable())
        try f.device.returnUsed(chain.head, length: 512)
        let used = try #require(f.driver.takeUsed())
        #expect(used.token == 1)
        #expect(used.length == 0)
        #expect(f.driver.errorCounts.total == 0)
    }

    @Test("A used index that jumps by more than the ring size is refused until it is sane again",
          arguments: [UInt16(17), 0x8000, 0xFFFF])
    func usedIndexJump(published: UInt16) throws {
        let f = try VirtioFixture()
        try complete(f, token: 1, length: 4)   // used.idx = 1
        try f.write16(published, at: f.layout.usedIndex)

        #expect(f.driver.takeUsed() == nil)
        #expect(f.driver.errorCounts.indexJump == 1)
        #expect(f.driver.errorCounts.total == 1)
        #expect(f.driver.freeCount == 14)

        try f.write16(1, at: f.layout.usedIndex)
        let used = try #require(f.driver.takeUsed())
        #expect(used.token == 1)
        #expect(used.length == 4)
        try f.expectTrafficFlows(token: 2)
        #expect(f.driver.errorCounts.total == 1)
    }
}

@Suite("Chain direction and ring placement")
struct ChainDirectionTests {
    @Test("a readable part after a writable one is counted as wrong direction and given back")
    func readableAfterWritable() throws {
        let f = try VirtioFixture()
        let head = try f.addRequest(token: 7)
        var first = try f.descriptor(head)
        var second = try f.descriptor(Int(first.next))
        first.flags = VringLayout.next | VringLayout.write
        second.flags = 0
        try f.setDescriptor(head, first)
        try f.setDescriptor(Int(first.next), second)
        #expect(f.device.takeAvailable() == nil)
        #expect(f.device.errorCounts.wrongDirection == 1)
        let used = try #require(f.driver.takeUsed())
        #expect(used.token == 7 && used.length == 0)
        try f.expectTrafficFlows(token: 8)
    }

    @Test("a vring that is not 4-byte aligned in its region is refused")
    func misalignedRing() throws {
        let f = try VirtioFixture()
        var location = f.location
        location.offset += 2
        #expect(thrownKind { _ = try DriverQueue(location: location, window: f.window, usesEventIndex: false, kick: {}) }?.isInvalidRing == true)
    }

    @Test("a negative used length is refused")
    func negativeLength() throws {
        let f = try VirtioFixture()
        try f.addRequest(token: 1)
        let chain = try #require(f.device.takeAvailable())
        #expect(thrownKind { try f.device.returnUsed(chain.head, length: -1) } == .invalidArgument("used length -1 is negative"))
        try f.device.returnUsed(chain.head, length: 0)
    }
}
