import Synchronization
import Testing
import Virtio
import MetalIO

@Suite("Interrupt lines")
struct InterruptLineTests {
    @Test("poll mode: nothing runs until poll; a burst for one number coalesces; none is lost")
    func pollMode() throws {
        let line = try InterruptLine<Int>(thread: false)
        let handled = MetalMutex<[Int]>([])
        line.setHandler { n in handled.withLock { $0.append(n) } }
        for _ in 0..<5 { line.raise(3) }
        line.raise(1)
        #expect(handled.withLock { $0 }.isEmpty)
        #expect(line.poll() == 2)
        #expect(handled.withLock { $0 } == [1, 3])
        #expect(line.raiseCount == 6)
        #expect(line.poll() == 0)
        line.raise(3)
        line.poll()
        #expect(handled.withLock { $0 } == [1, 3, 3])
    }

    @Test("numbers past the 64 kept as bits, and notify ids up to UInt32.max, are handled too, all in ascending order")
    func wideNumbers() throws {
        let line = try InterruptLine<NotifyID>(thread: false)
        let handled = MetalMutex<[NotifyID]>([])
        line.setHandler { n in handled.withLock { $0.append(n) } }
        for id: NotifyID in [70, 3, 64, 63, 0xFFFF_FFFF, 1000, 0, 64, 3] { line.raise(id) }
        #expect(line.poll() == 7)
        #expect(handled.withLock { $0 } == [0, 3, 63, 64, 70, 1000, .any])
    }

    @Test("thread mode: the handler runs on the line's thread for every raise, and stops at shutdown")
    func threadMode() throws {
        let line = try InterruptLine<Int>()
        let count = Atomic<Int>(0)
        let done = WakeSignal()
        line.setHandler { _ in
            if count.add(1, ordering: .relaxed).newValue == 1 { done.signal() }
        }
        line.raise(0)
        #expect(done.wait(timeout: .seconds(5)))
        line.shutdown()
        let before = count.load(ordering: .relaxed)
        line.raise(0)
        #expect(!done.wait(timeout: .milliseconds(50)))
        #expect(count.load(ordering: .relaxed) == before)
    }

    @Test("a raise that arrives while the handler runs is handled afterwards, never lost")
    func raiseDuringHandler() throws {
        let line = try InterruptLine<Int>()
        let count = Atomic<Int>(0)
        let second = WakeSignal()
        line.setHandler { _ in
            let n = count.add(1, ordering: .relaxed).newValue
            if n == 1 { line.raise(7) }          // re-raised from inside the handler
            if n == 2 { second.signal() }
        }
        line.raise(7)
        #expect(second.wait(timeout: .seconds(5)))
        line.shutdown()
    }

    @Test("shutdown lets go of the handler, which may capture the line: nothing stays alive, and later raises are not handled",
          arguments: [true, false])
    func shutdownReleasesHandler(thread: Bool) throws {
        final class Witness: Sendable {}
        weak var weakLine: InterruptLine<Int>?
        weak var witness: Witness?
        let handled = Atomic<Int>(0)
        do {
            let line = try InterruptLine<Int>(thread: thread)
            let held = Witness()
            weakLine = line
            witness = held
            line.setHandler { _ in _ = (line, held); handled.add(1, ordering: .relaxed) }   // a cycle until shutdown
            line.shutdown()
            line.raise(1)
            #expect(line.poll() == 0)
        }
        #expect(witness == nil, "the handler was released")
        // A handler thread holds its line until the thread has returned, a moment after shutdown.
        if !thread { #expect(weakLine == nil) }
        #expect(handled.load(ordering: .relaxed) == 0)
    }

    @Test("a wake signal times out when nobody signals")
    func wakeSignalTimeout() {
        let signal = WakeSignal()
        let clock = ContinuousClock()
        let start = clock.now
        #expect(!signal.wait(timeout: .milliseconds(30)))
        #expect(clock.now - start >= .milliseconds(25))
        signal.signal()
        #expect(signal.wait(timeout: .seconds(1)))
    }
}

@Suite("Interrupt lines over a long run")
struct InterruptLineLongRunTests {
    @Test("a quarter of a million deliveries reach the handler", .timeLimit(.minutes(1)))
    func manyDeliveries() throws {
        let line = try InterruptLine<Int>(thread: false)
        let handled = Atomic<Int>(0)
        line.setHandler { _ in handled.add(1, ordering: .relaxed) }
        for _ in 0..<250_000 {
            line.raise(3)
            line.poll()
        }
        #expect(handled.load(ordering: .relaxed) == 250_000)
    }

    @Test("inline mode: the handler runs on the raising thread before raise returns, in the line's interrupt context; a raise from inside folds into the running handler; two raising threads never run it at once")
    func inlineMode() throws {
        let line = try InterruptLine<Int>(delivery: .inline)
        #expect(!line.usesThread)
        let handled = MetalMutex<[Int]>([])
        let contexts = MetalMutex<[Bool]>([])
        let depth = Atomic<Int>(0), deepest = Atomic<Int>(0)
        line.setHandler { n in
            let now = depth.add(1, ordering: .relaxed).newValue
            if now > deepest.load(ordering: .relaxed) { deepest.store(now, ordering: .relaxed) }
            contexts.withLock { $0.append(line.isHandlingOnCurrentThread && InterruptContext.isActive) }
            handled.withLock { $0.append(n) }
            if n == 1 { line.raise(2) }    // folded: handled after this returns, by this same call
            depth.subtract(1, ordering: .relaxed)
        }
        #expect(!line.isHandlingOnCurrentThread)
        line.raise(1)
        #expect(handled.withLock { $0 } == [1, 2])     // both done before raise returned
        #expect(contexts.withLock { $0 } == [true, true])
        #expect(!InterruptContext.isActive)
        #expect(line.poll() == 0)                        // nothing left for poll: inline took it

        // Two threads raising concurrently: every raise handled, one handler at a time.
        let count = Atomic<Int>(0)
        line.setHandler { _ in
            let now = depth.add(1, ordering: .relaxed).newValue
            if now > deepest.load(ordering: .relaxed) { deepest.store(now, ordering: .relaxed) }
            count.add(1, ordering: .relaxed)
            depth.subtract(1, ordering: .relaxed)
        }
        let other = try PlatformThread(name: "raiser") { for _ in 0..<20_000 { line.raise(5) } }
        for _ in 0..<20_000 { line.raise(6) }
        other.join()
        #expect(deepest.load(ordering: .relaxed) == 1)
        // Coalescing may merge raises of one number, but the last raise of each is always handled.
        #expect(count.load(ordering: .relaxed) >= 2)
        line.shutdown()
        let before = count.load(ordering: .relaxed)
        line.raise(5)
        #expect(count.load(ordering: .relaxed) == before)
    }

    @Test("inline mode: shutdown from another thread waits for a running handler; shutdown from inside the handler returns at once")
    func inlineShutdown() throws {
        let line = try InterruptLine<Int>(delivery: .inline)
        let entered = WakeSignal(), release = WakeSignal(), finished = Atomic<Bool>(false)
        line.setHandler { n in
            if n == 0 {
                entered.signal()
                release.wait(timeout: .seconds(5))
                finished.store(true, ordering: .releasing)
            } else {
                line.shutdown()     // its own line, from inside: must not wait for itself
            }
        }
        let raiser = try PlatformThread(name: "raiser") { line.raise(0) }
        #expect(entered.wait(timeout: .seconds(5)))
        let releaser = try PlatformThread(name: "releaser") {
            RealTimeClock.shared.sleep(for: .milliseconds(20))
            release.signal()
        }
        line.shutdown()
        let finishedFirst = finished.load(ordering: .acquiring)
        #expect(finishedFirst)     // shutdown returned only after the handler
        raiser.join(); releaser.join()

        let own = try InterruptLine<Int>(delivery: .inline)
        let done = Atomic<Bool>(false)
        own.setHandler { _ in
            own.shutdown()
            done.store(true, ordering: .releasing)
        }
        own.raise(1)
        let doneInside = done.load(ordering: .acquiring)
        #expect(doneInside)
    }
}
