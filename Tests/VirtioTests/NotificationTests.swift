import Testing
import Virtio

@Suite("Notification suppression (openamp-facts §4.5)")
struct NotificationTests {
    // MARK: Flags (no EVENT_IDX)

    @Test("NO_NOTIFY in used.flags stops the driver's kicks; clearing it brings them back")
    func noNotify() throws {
        let f = try VirtioFixture(usesEventIndex: false)
        #expect(try f.driver.kickIfNeeded() == false, "nothing added, nothing to kick for")

        f.device.disableNotifications()
        #expect(try f.usedFlags() == VringLayout.noNotify)
        try f.driver.add(readable: [f.buffer(0, length: 8)], writable: [], token: 1)
        #expect(try f.driver.kickIfNeeded() == false)
        #expect(f.driverKicks.value == 0)
        #expect(f.driver.kickCount == 0)

        #expect(f.device.enableNotifications(), "a buffer is already waiting")
        #expect(try f.usedFlags() == 0)
        try f.driver.add(readable: [f.buffer(1, length: 8)], writable: [], token: 2)
        #expect(try f.driver.kickIfNeeded())
        #expect(f.driverKicks.value == 1)
        #expect(f.driver.kickCount == 1)
        #expect(try f.driver.kickIfNeeded() == false, "no buffer added since the last kick")
        #expect(f.driverKicks.value == 1)
        #expect(try f.availFlags() == 0, "the device's choice is in used.flags only")
    }

    @Test("NO_INTERRUPT in avail.flags stops the device's notifications; clearing it brings them back")
    func noInterrupt() throws {
        let f = try VirtioFixture(usesEventIndex: false)
        f.driver.disableInterrupts()
        #expect(try f.availFlags() == VringLayout.noInterrupt)
        try f.addRequest(token: 1)
        var chain = try #require(f.device.takeAvailable())
        try f.device.returnUsed(chain.head, length: 1)
        #expect(try f.device.notifyIfNeeded() == false)
        #expect(f.deviceKicks.value == 0)
        #expect(f.device.kickCount == 0)

        #expect(f.driver.enableInterrupts(), "a used buffer is already waiting")
        #expect(try f.availFlags() == 0)
        #expect(f.driver.takeUsed()?.token == 1)
        #expect(f.driver.enableInterrupts() == false, "nothing is waiting any more")

        try f.addRequest(token: 2)
        chain = try #require(f.device.takeAvailable())
        try f.device.returnUsed(chain.head, length: 1)
        #expect(try f.device.notifyIfNeeded())
        #expect(f.deviceKicks.value == 1)
        #expect(try f.device.notifyIfNeeded() == false, "nothing used since the last notification")
        #expect(try f.usedFlags() == 0, "the driver's choice is in avail.flags only")
    }

    // MARK: Event index

    @Test("EVENT_IDX: the driver kicks when avail_event says so")
    func availEvent() throws {
        let f = try VirtioFixture(usesEventIndex: true)
        // Armed right after init: kick at the first new buffer.
        #expect(f.device.enableNotifications() == false, "nothing is waiting yet")
        #expect(try f.read16(f.layout.availEvent) == 0)
        try f.addRequest(token: 0, slot: 0)
        #expect(try f.driver.kickIfNeeded())
        #expect(f.driverKicks.value == 1)
        // The device has not caught up: avail_event is behind, no more kicks.
        try f.addRequest(token: 1, slot: 2)
        #expect(try f.driver.kickIfNeeded() == false)
        #expect(f.driverKicks.value == 1)

        // The device drains and re-arms at its position.
        while let chain = f.device.takeAvailable() { try f.device.returnUsed(chain.head, length: 0) }
        #expect(f.device.enableNotifications() == false)
        #expect(try f.read16(f.layout.availEvent) == 2)
        try f.addRequest(token: 2, slot: 4)
        #expect(try f.driver.kickIfNeeded())
        #expect(f.driverKicks.value == 2)

        // Disabled: avail_event = last seen − num − 1.
        _ = try #require(f.device.takeAvailable())
        f.device.disableNotifications()
        #expect(try f.read16(f.layout.availEvent) == UInt16(3) &- 17)
        try f.addRequest(token: 3, slot: 6)
        #expect(try f.driver.kickIfNeeded() == false)
        #expect(f.driverKicks.value == 2)
        #expect(try f.usedFlags() == 0, "with EVENT_IDX, used.flags is not used")

        // Re-enabled with a buffer waiting: the device is told to look (no kick comes for it).
        #expect(f.device.enableNotifications())
        #expect(try f.read16(f.layout.availEvent) == 3)
    }

    @Test("EVENT_IDX: the device notifies when used_event says so")
    func usedEvent() throws {
        let f = try VirtioFixture(usesEventIndex: true)
        #expect(f.driver.enableInterrupts() == false)
        #expect(try f.read16(f.layout.usedEvent) == 0)
        for token in 0..<4 { try f.addRequest(token: token, slot: 2 * token) }
        var chains: [AvailableChain] = []
        while let chain = f.device.takeAvailable() { chains.append(chain) }
        try #require(chains.count == 4)

        try f.device.returnUsed(chains[0].head, length: 0)
        #expect(try f.device.notifyIfNeeded(), "used_event 0 is crossed")
        try f.device.returnUsed(chains[1].head, length: 0)
        #expect(try f.device.notifyIfNeeded() == false, "the driver has not caught up")
        #expect(f.deviceKicks.value == 1)

        // The driver collects both and re-arms at its position.
        #expect(f.driver.takeUsed()?.token == 0)
        #expect(f.driver.takeUsed()?.token == 1)
        #expect(f.driver.enableInterrupts() == false)
        #expect(try f.read16(f.layout.usedEvent) == 2)
        try f.device.returnUsed(chains[2].head, length: 0)
        #expect(try f.device.notifyIfNeeded())
        #expect(f.deviceKicks.value == 2)

        // Disabled: used_event = last seen − num − 1.
        f.driver.disableInterrupts()
        #expect(try f.read16(f.layout.usedEvent) == UInt16(2) &- 17)
        try f.device.returnUsed(chains[3].head, length: 0)
        #expect(try f.device.notifyIfNeeded() == false)
        #expect(f.deviceKicks.value == 2)
        #expect(try f.availFlags() == 0, "with EVENT_IDX, avail.flags is not used")
        #expect(f.driver.enableInterrupts(), "two used buffers are waiting")
    }

    @Test("A busy stream of 1000 buffers needs one kick per batch with EVENT_IDX, one per buffer without",
          arguments: [true, false])
    func busyStream(usesEventIndex: Bool) throws {
        let f = try VirtioFixture(usesEventIndex: usesEventIndex)
        let total = 1000, batch = 8
        f.device.enableNotifications()
        f.driver.enableInterrupts()
        var sent = 0, received: [Int] = []
        while sent < total {
            // The driver adds a batch, asking after each buffer whether to kick.
            for _ in 0..<batch where sent < total {
                try f.driver.add(readable: [f.buffer(sent % 16, length: 32)], writable: [], token: sent)
                sent += 1
                try f.driver.kickIfNeeded()
            }
            // The device, woken: no kicks wanted while it drains; re-armed once the ring is empty.
            f.device.disableNotifications()
            repeat {
                while let chain = f.device.takeAvailable() {
                    try f.device.returnUsed(chain.head, length: 0)
                    try f.device.notifyIfNeeded()
                }
            } while f.device.enableNotifications()
            // The driver, interrupted: collects everything and re-arms.
            repeat {
                while let used = f.driver.takeUsed() { received.append(used.token) }
            } while f.driver.enableInterrupts()
        }
        #expect(received == Array(0..<total))
        let batches = (total + batch - 1) / batch   // 125
        if usesEventIndex {
            #expect(f.driverKicks.value == batches, "one kick per batch")
            #expect(f.driverKicks.value < total / 4)
            #expect(f.deviceKicks.value == batches, "one notification per drained batch")
        } else {
            // The flags only say "kicks wanted" or not: while the device is armed, every buffer kicks.
            #expect(f.driverKicks.value == total)
            #expect(f.deviceKicks.value == total)
        }
        #expect(f.driver.kickCount == f.driverKicks.value)
        #expect(f.device.kickCount == f.deviceKicks.value)
        #expect(f.driver.errorCounts.total == 0)
        #expect(f.device.errorCounts.total == 0)
    }
}
