import Foundation   // Thread
import MetalIO
import Synchronization
import Testing
import Virtio

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the driver and device threads share besides the queues.
final class StreamLog: Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let problems = MetalMutex<[String]>([])
    /// Buffers the device thread received in order.
    let delivered = Atomic<Int>(0)
    /// Times the driver thread found the ring full.
    let ringFullRetries = Atomic<Int>(0)

    var shouldStop: Bool { stopFlag.load(ordering: .relaxed) }
    func stop() { stopFlag.store(true, ordering: .relaxed) }
    /// Records a problem and stops both threads.
    func fail(_ problem: String) {
        problems.withLock { $0.append(problem) }
        stop()
    }
    var failures: [String] { problems.withLock { $0 } }
}

@Suite("Two threads", .serialized)
struct TwoThreadTests {
    @Test("20 000 sequence-numbered buffers go from a driver thread to a device thread in order",
          .timeLimit(.minutes(2)), arguments: [false, true])
    func driverAndDeviceThreads(usesEventIndex: Bool) throws {
        let f = try VirtioFixture(usesEventIndex: usesEventIndex)
        let total = 20_000
        let slotCount = 24   // more buffer slots than descriptors, so the ring does fill up
        let driver = f.driver, device = f.device, region = f.region
        let slots = (0..<slotCount).map { f.buffer($0, length: 4) }
        let slotOffsets = (0..<slotCount).map { f.offset(ofSlot: $0) }
        let deadline = ContinuousClock.now + .seconds(30)
        let log = StreamLog()
        let done = DispatchGroup()

        // The driver: writes the sequence number into a free slot, adds it (the token is the slot),
        // and reclaims slots from the used ring; yields when it has no slot or the ring is full.
        done.enter()
        Thread {
            defer { done.leave() }
            var free = Array(0..<slotCount)
            var sequence = 0
            while sequence < total {
                if log.shouldStop { return }
                if ContinuousClock.now > deadline { log.fail("driver: gave up after 30 s, \(sequence) sent"); return }
                while let used = driver.takeUsed() { free.append(used.token) }
                guard let slot = free.popLast() else {
                    _ = sched_yield()
                    continue
                }
                do {
                    try region.write(UInt32(sequence), at: slotOffsets[slot])
                } catch {
                    log.fail("driver: \(error)")
                    return
                }
                do throws(VirtioError) {
                    try driver.add(readable: [slots[slot]], writable: [], token: slot)
                } catch {
                    free.append(slot)
                    guard case .ringFull = error.kind else {
                        log.fail("driver: \(error)")
                        return
                    }
                    log.ringFullRetries.add(1, ordering: .relaxed)
                    _ = sched_yield()
                    continue
                }
                sequence += 1
                do {
                    try driver.kickIfNeeded()
                } catch {
                    log.fail("driver: kick: \(error)")
                    return
                }
            }
        }.start()

        // The device: takes each chain, checks it carries the next sequence number, returns it.
        done.enter()
        Thread {
            defer { done.leave() }
            var expected = 0
            while expected < total {
                if log.shouldStop { return }
                if ContinuousClock.now > deadline { log.fail("device: gave up after 30 s, \(expected) received"); return }
                guard let chain = device.takeAvailable() else {
                    _ = sched_yield()
                    continue
                }
                guard chain.segments.count == 1, let segment = chain.segments.first, !segment.isWritable, segment.length == 4 else {
                    log.fail("device: unexpected chain \(chain)")
                    return
                }
                do {
                    let value = try region.read(UInt32.self, at: segment.offset)
                    guard value == UInt32(expected) else {
                        log.fail("device: sequence number \(value) where \(expected) was expected")
                        return
                    }
                    try device.returnUsed(chain.head, length: 0)
                    try device.notifyIfNeeded()
                } catch {
                    log.fail("device: \(error)")
                    return
                }
                expected += 1
                log.delivered.store(expected, ordering: .relaxed)
            }
        }.start()

        let finished = done.wait(timeout: .now() + 45) == .success
        log.stop()   // should a thread still be running
        #expect(finished, "the threads did not finish")
        #expect(log.failures == [])
        #expect(log.delivered.load(ordering: .relaxed) == total)
        guard finished else { return }

        while driver.takeUsed() != nil {}
        #expect(driver.freeCount == VirtioFixture.ringCount)
        #expect(try f.availIndex() == UInt16(truncatingIfNeeded: total))
        #expect(try f.usedIndex() == UInt16(truncatingIfNeeded: total))
        #expect(driver.errorCounts.total == 0)
        #expect(device.errorCounts.total == 0)
    }
}
