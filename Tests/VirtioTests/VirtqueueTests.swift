import MetalIO
import Testing
import Virtio

@Suite("Virtqueue: driver and device over one ring")
struct VirtqueueTests {
    // MARK: Round trip

    @Test("A readable + writable chain reaches the device and comes back used", arguments: [false, true])
    func roundTrip(usesEventIndex: Bool) throws {
        let f = try VirtioFixture(usesEventIndex: usesEventIndex)
        let request = Array("ping".utf8), reply = Array("pong!".utf8)
        try f.region.write(request, at: f.offset(ofSlot: 0))
        try f.driver.add(readable: [f.buffer(0, length: request.count)], writable: [f.buffer(1, length: 64)], token: 42)
        #expect(f.driver.freeCount == 14)

        // On the wire: the head in avail.ring[0], avail.idx 1, a NEXT descriptor holding the
        // readable buffer's device address, then a WRITE one ending the chain.
        #expect(try f.availIndex() == 1)
        let head = try f.availEntry(0)
        #expect(head < 16)
        let first = try f.descriptor(head)
        #expect(first.address == 0x3001_0000)   // 0x3000_0000 + 64 KiB
        #expect(first.length == 4)
        #expect(first.flags == VringLayout.next)
        #expect(Int(first.next) != head)
        let second = try f.descriptor(Int(first.next))
        #expect(second == RawDescriptor(address: 0x3001_0100, length: 64, flags: VringLayout.write, next: 0))
        #expect(try f.driver.kickIfNeeded(), "a fresh ring wants the first kick")
        #expect(f.driverKicks.value == 1)
        #expect(f.driver.kickCount == 1)

        // The device sees the chain as region offsets.
        let chain = try #require(f.device.takeAvailable())
        #expect(chain.head == head)
        try #require(chain.segments.count == 2)
        #expect(chain.segments == [
            ChainSegment(offset: 0x1_0000, length: 4, isWritable: false),
            ChainSegment(offset: 0x1_0100, length: 64, isWritable: true),
        ])
        #expect(try f.region.readBytes(at: chain.segments[0].offset, count: request.count) == request)
        #expect(f.device.takeAvailable() == nil, "one chain was added")

        try f.region.write(reply, at: chain.segments[1].offset)
        try f.device.returnUsed(chain.head, length: reply.count)
        #expect(try f.usedIndex() == 1)
        #expect(try f.usedElement(0) == UsedElement(id: UInt32(head), length: 5))
        #expect(try f.device.notifyIfNeeded())
        #expect(f.deviceKicks.value == 1)
        #expect(f.device.kickCount == 1)

        // The driver gets its token and the length back, and the descriptors are free again.
        let used = try #require(f.driver.takeUsed())
        #expect(used.token == 42)
        #expect(used.length == reply.count)
        #expect(try f.region.readBytes(at: f.offset(ofSlot: 1), count: reply.count) == reply)
        #expect(f.driver.takeUsed() == nil)
        #expect(f.driver.freeCount == 16)
        #expect(f.driver.errorCounts.total == 0)
        #expect(f.device.errorCounts.total == 0)
    }

    @Test("Chains returned out of order give back the right tokens")
    func outOfOrder() throws {
        let f = try VirtioFixture()
        for token in 1...3 {
            try f.driver.add(readable: [], writable: [f.buffer(token, length: 100)], token: token)
        }
        var chains: [AvailableChain] = []
        while let chain = f.device.takeAvailable() { chains.append(chain) }
        let expected = (1...3).map { [ChainSegment(offset: f.offset(ofSlot: $0), length: 100, isWritable: true)] }
        #expect(chains.map(\.segments) == expected)
        try #require(chains.count == 3)
        // Return the third, then the first, then the second, each with a different length.
        for (index, length) in [(2, 30), (0, 10), (1, 20)] {
            try f.device.returnUsed(chains[index].head, length: length)
        }
        var returned: [UsedBuffer] = []
        while let used = f.driver.takeUsed() { returned.append(used) }
        #expect(returned.map(\.token) == [3, 1, 2])
        #expect(returned.map(\.length) == [30, 10, 20])
        #expect(f.driver.freeCount == 16)
    }

    @Test("Unreturned chains: published and not yet used by the device, whether the driver has taken the used ones or not; a corrupt used index counts as none")
    func unreturned() throws {
        let f = try VirtioFixture()
        #expect(f.driver.unreturnedCount == 0)
        for token in 1...5 { try f.driver.add(readable: [f.buffer(token, length: 8)], writable: [], token: token) }
        #expect(f.driver.unreturnedCount == 5)
        var chains: [AvailableChain] = []
        while let chain = f.device.takeAvailable() { chains.append(chain) }
        #expect(f.driver.unreturnedCount == 5, "taken by the device but not used yet is still outstanding")
        for chain in chains.prefix(3) { try f.device.returnUsed(chain.head, length: 0) }
        #expect(f.driver.unreturnedCount == 2, "used but not yet taken back by the driver is no longer outstanding")
        #expect(f.driver.takeUsed() != nil)
        #expect(f.driver.unreturnedCount == 2)
        // The device writes a used index beyond what was published: not work.
        try f.write16(try f.usedIndex() &+ 40, at: f.layout.usedIndex)
        #expect(f.driver.unreturnedCount == 0)
    }

    @Test("A chain needs at least one buffer")
    func emptyChain() throws {
        let f = try VirtioFixture()
        let kind = thrownKind { try f.driver.add(readable: [], writable: [], token: 1) }
        #expect(kind == .invalidArgument("a chain needs at least one buffer"))
        #expect(try f.availIndex() == 0)
    }

    // MARK: Full ring, buffers outside the window

    @Test("A full ring refuses another chain; a returned chain makes room", arguments: [false, true])
    func ringFull(usesEventIndex: Bool) throws {
        let f = try VirtioFixture(usesEventIndex: usesEventIndex)
        for token in 0..<16 {
            try f.driver.add(readable: [f.buffer(token, length: 8)], writable: [], token: token)
        }
        #expect(f.driver.freeCount == 0)
        let kind = thrownKind { try f.driver.add(readable: [f.buffer(16, length: 8)], writable: [], token: 16) }
        #expect(kind == .ringFull(needed: 1, free: 0))
        #expect(try f.availIndex() == 16, "the refused chain was published")

        // The device takes all 16 (and no 17th) and returns one: the driver can add again.
        var heads: [Int] = []
        while let chain = f.device.takeAvailable() { heads.append(chain.head) }
        #expect(Set(heads) == Set(0..<16))
        let first = try #require(heads.first)
        try f.device.returnUsed(first, length: 0)
        #expect(f.driver.takeUsed()?.token == 0)
        try f.driver.add(readable: [f.buffer(16, length: 8)], writable: [], token: 16)
        #expect(try f.availIndex() == 17)
    }

    @Test("A 3-buffer chain does not fit in 2 free descriptors")
    func chainTooLongForFreeDescriptors() throws {
        let f = try VirtioFixture()
        for token in 0..<14 {
            try f.driver.add(readable: [f.buffer(token, length: 8)], writable: [], token: token)
        }
        #expect(f.driver.freeCount == 2)
        let kind = thrownKind {
            try f.driver.add(readable: [f.buffer(20, length: 8)], writable: [f.buffer(21, length: 8), f.buffer(22, length: 8)], token: 99)
        }
        #expect(kind == .ringFull(needed: 3, free: 2))
        #expect(f.driver.freeCount == 2, "descriptors were taken by a refused chain")
        #expect(try f.availIndex() == 14)
        // Two buffers still fit.
        try f.driver.add(readable: [f.buffer(20, length: 8)], writable: [f.buffer(21, length: 8)], token: 99)
        #expect(f.driver.freeCount == 0)
        #expect(try f.availIndex() == 15)
    }

    @Test("A buffer outside the window is refused and nothing is published")
    func bufferOutsideWindow() throws {
        let f = try VirtioFixture()
        let base = VirtioFixture.deviceBase, end = VirtioFixture.deviceBase + UInt64(f.region.size)
        let outside: [(String, VirtqueueBuffer)] = [
            ("below the base", VirtqueueBuffer(address: DeviceAddress(base - 0x100), length: 16)),
            ("straddling the base", VirtqueueBuffer(address: DeviceAddress(base - 8), length: 16)),
            ("at the end", VirtqueueBuffer(address: DeviceAddress(end), length: 1)),
            ("straddling the end", VirtqueueBuffer(address: DeviceAddress(end - 8), length: 16)),
            ("far beyond", VirtqueueBuffer(address: DeviceAddress(UInt64.max - 4), length: 16)),
            ("negative length", VirtqueueBuffer(address: DeviceAddress(base), length: -1)),
        ]
        for (what, bad) in outside {
            // Alone, as the readable part, and after a valid buffer as the writable part.
            let alone = thrownKind { try f.driver.add(readable: [bad], writable: [], token: 1) }
            #expect(alone == .bufferOutsideWindow(address: bad.address, length: bad.length), "\(what)")
            let mixed = thrownKind { try f.driver.add(readable: [f.buffer(0, length: 16)], writable: [bad], token: 2) }
            #expect(mixed == .bufferOutsideWindow(address: bad.address, length: bad.length), "\(what)")
        }
        #expect(try f.availIndex() == 0, "a refused chain was published")
        #expect(f.driver.freeCount == 16)
        #expect(f.device.takeAvailable() == nil)

        // The window's last bytes are inside.
        try f.driver.add(readable: [VirtqueueBuffer(address: DeviceAddress(end - 16), length: 16)], writable: [], token: 3)
        let chain = try #require(f.device.takeAvailable())
        #expect(chain.segments == [ChainSegment(offset: f.region.size - 16, length: 16, isWritable: false)])
    }

    // MARK: Index wrap-around

    @Test("70 000 buffers: the u16 indices wrap and every token comes back in order", arguments: [false, true])
    func indexWrapAround(usesEventIndex: Bool) throws {
        let f = try VirtioFixture(usesEventIndex: usesEventIndex)
        let total = 70_000, batch = 5
        var returned: [Int] = [], wrongLengths = 0, sent = 0, completed = 0
        returned.reserveCapacity(total)
        while sent < total {
            let end = min(sent + batch, total)
            for token in sent..<end {
                try f.driver.add(readable: [], writable: [f.buffer(token % 8, length: 64)], token: token)
            }
            sent = end
            try f.driver.kickIfNeeded()
            while let chain = f.device.takeAvailable() {
                try f.device.returnUsed(chain.head, length: completed % 65)
                completed += 1
            }
            try f.device.notifyIfNeeded()
            while let used = f.driver.takeUsed() {
                if used.length != returned.count % 65 { wrongLengths += 1 }
                returned.append(used.token)
            }
        }
        #expect(returned.count == total)
        #expect(returned == Array(0..<total), "tokens came back out of order")
        #expect(wrongLengths == 0)
        #expect(try f.availIndex() == UInt16(truncatingIfNeeded: total))   // 70 000 − 65 536 = 4464
        #expect(try f.usedIndex() == 4464)
        #expect(f.driver.freeCount == 16)
        #expect(f.driver.errorCounts.total == 0)
        #expect(f.device.errorCounts.total == 0)
    }

    // MARK: Returning and late devices

    @Test("Returning a head the device did not take is refused")
    func returnUnknownHead() throws {
        let f = try VirtioFixture()
        for head in [3, 16, -1] {
            let kind = thrownKind { try f.device.returnUsed(head, length: 0) }
            #expect(kind == .unknownHead(head))
        }

        // A chain can be returned once, after it was taken.
        let head = try f.addRequest(token: 1)
        let early = thrownKind { try f.device.returnUsed(head, length: 0) }
        #expect(early == .unknownHead(head), "returned before it was taken")
        let chain = try #require(f.device.takeAvailable())
        try f.device.returnUsed(chain.head, length: 0)
        let twice = thrownKind { try f.device.returnUsed(chain.head, length: 0) }
        #expect(twice == .unknownHead(chain.head), "returned twice")
        #expect(try f.usedIndex() == 1, "a refused return was published")
        #expect(f.driver.takeUsed()?.token == 1)
        #expect(f.driver.takeUsed() == nil)
    }

    @Test("A device queue created after the driver posted buffers takes them first, in order")
    func lateDevice() throws {
        let f = try VirtioFixture()
        // The host posts buffers before the remote's queue exists (receive buffers before DRIVER_OK).
        var heads: [Int] = []
        for token in 1...3 { try heads.append(f.addRequest(token: token, slot: 2 * token)) }
        let late = try f.makeDevice()
        var taken: [AvailableChain] = []
        while let chain = late.takeAvailable() { taken.append(chain) }
        #expect(taken.map(\.head) == heads)
        let offsets = taken.compactMap { $0.segments.first?.offset }
        let posted = [2, 4, 6].map { f.offset(ofSlot: $0) }
        #expect(offsets == posted)
        for chain in taken { try late.returnUsed(chain.head, length: 1) }
        var tokens: [Int] = []
        while let used = f.driver.takeUsed() { tokens.append(used.token) }
        #expect(tokens == [1, 2, 3])
        #expect(try f.usedIndex() == 3)
    }
}
