import MetalIO
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("PlatformThread, WakeSignal, WaitClock, ConditionWaiters")
struct ThreadAndClockTests {
    @Test("join returns after the body has returned, and sees everything it wrote", .timeLimit(.minutes(1)))
    func joinAfterBody() throws {
        let steps = Atomic<Int>(0)
        let thread = try PlatformThread(name: "test") {
            RealTimeClock.shared.sleep(for: .milliseconds(20))
            steps.add(1, ordering: .relaxed)
        }
        thread.join()
        #expect(steps.load(ordering: .relaxed) == 1)
    }

    @Test("a detached or dropped thread runs its body to the end", .timeLimit(.minutes(1)))
    func detachedRuns() throws {
        let done = WakeSignal()
        try PlatformThread(name: "detached") { done.signal() }.detach()
        do { _ = try PlatformThread(name: "dropped") { done.signal() } }
        #expect(done.wait(timeout: .seconds(10)))
        #expect(done.wait(timeout: .seconds(10)))
    }

    @Test("a thread whose body drops the last reference to its owner does not wait for itself", .timeLimit(.minutes(1)))
    func joinFromItself() throws {
        final class Owner: @unchecked Sendable {
            // Set once in init; only the owner's deinit takes it.
            var thread: PlatformThread?
            let gone: WakeSignal
            init(gone: WakeSignal) { self.gone = gone }
            deinit {
                thread.take()?.join()
                gone.signal()
            }
        }
        let gone = WakeSignal(), go = WakeSignal()
        var owner: Owner? = Owner(gone: gone)
        let box = MetalMutex<Owner?>(owner)
        owner!.thread = try PlatformThread(name: "self") {
            go.wait()
            box.withLock { $0 = nil }   // the last reference goes on this thread
        }
        owner = nil
        go.signal()
        #expect(gone.wait(timeout: .seconds(10)))
    }

    @Test("a wait with a timeout returns false no earlier than its timeout; a signal given first is kept", .timeLimit(.minutes(1)))
    func timeoutsHonoured() {
        let clock = RealTimeClock.shared
        let signal = WakeSignal()
        for timeout in [Duration.milliseconds(1), .milliseconds(15), .milliseconds(40)] {
            let start = clock.now
            #expect(!signal.wait(timeout: timeout))
            #expect(clock.now - start >= timeout)
        }
        #expect(!signal.wait(timeout: .zero))
        signal.signal()
        signal.signal()
        #expect(signal.wait(timeout: .zero))
        #expect(signal.tryTake())
        #expect(!signal.tryTake())
        let start = clock.now
        clock.sleep(for: .milliseconds(10))
        #expect(clock.now - start >= .milliseconds(10))
    }

    @Test("no wake-up is lost: 2 × 10⁶ signals, each met by one wait", .timeLimit(.minutes(2)))
    func noLostWakeUps() throws {
        let count = 2_000_000
        let signal = WakeSignal()
        let producer = try PlatformThread(name: "producer") {
            for _ in 0..<count { signal.signal() }
        }
        var received = 0
        while received < count, signal.wait(timeout: .seconds(10)) { received += 1 }
        producer.join()
        #expect(received == count)
        #expect(!signal.tryTake(), "no extra signal")
    }

    @Test("ping-pong between two threads: 10⁵ round trips, none lost", .timeLimit(.minutes(2)))
    func pingPong() throws {
        let trips = 100_000
        let ping = WakeSignal(), pong = WakeSignal()
        let echo = try PlatformThread(name: "pong") {
            for _ in 0..<trips {
                guard ping.wait(timeout: .seconds(10)) else { return }
                pong.signal()
            }
        }
        var done = 0
        for _ in 0..<trips {
            ping.signal()
            guard pong.wait(timeout: .seconds(10)) else { break }
            done += 1
        }
        echo.join()
        #expect(done == trips)
    }

    @Test("ConditionWaiters: a waiter sees every change it waits for; without one it meets its deadline", .timeLimit(.minutes(2)))
    func conditionWaiters() throws {
        let clock = RealTimeClock.shared
        let waiters = ConditionWaiters()
        let value = Atomic<Int>(0)
        let target = 200_000
        let changer = try PlatformThread(name: "changer") {
            for _ in 0..<target {
                value.add(1, ordering: .releasing)
                waiters.changed()
            }
        }
        // Several waiters at once, each for a different point of the count.
        var met = 0
        for point in stride(from: target / 4, through: target, by: target / 4) {
            if waiters.wait(clock: clock, until: clock.now + .seconds(30), { value.load(ordering: .acquiring) >= point }) { met += 1 }
        }
        changer.join()
        #expect(met == 4)
        let start = clock.now
        #expect(!waiters.wait(clock: clock, until: start + .milliseconds(20)) { false })
        #expect(clock.now - start >= .milliseconds(20))
    }

    @Test("a moving deadline: time taken out while a wait runs extends it", .timeLimit(.minutes(1)))
    func movingDeadline() throws {
        let clock = RealTimeClock.shared
        let waiters = ConditionWaiters()
        let start = clock.now
        let extended = Atomic<Bool>(false)
        let mover = try PlatformThread(name: "mover") {
            clock.sleep(for: .milliseconds(10))
            extended.store(true, ordering: .releasing)
            waiters.changed()
        }
        let met = waiters.wait(clock: clock, deadline: {
            start + (extended.load(ordering: .acquiring) ? .milliseconds(60) : .milliseconds(20))
        }, until: { false })
        mover.join()
        #expect(!met)
        #expect(clock.now - start >= .milliseconds(60))
    }

    @Test("Duration conversions: whole units truncate, saturate at Int64's ends, timespec is normalised")
    func durationConversions() {
        #expect(Duration.milliseconds(1500).totalNanoseconds == 1_500_000_000)
        #expect(Duration.nanoseconds(1999).totalMicroseconds == 1)
        #expect(Duration.microseconds(2500).totalMilliseconds == 2)
        #expect(Duration.seconds(Int64.max).totalNanoseconds == .max)
        #expect(Duration.seconds(Int64.min / 2).totalNanoseconds == .min)
        #expect(Duration.milliseconds(250).inSeconds == 0.25)
        #expect(Duration.nanoseconds(1500).inMicroseconds == 1.5)
        let time = timespec(Duration.seconds(3) + .nanoseconds(999_999_999))
        #expect(time.tv_sec == 3 && time.tv_nsec == 999_999_999)
        #expect(Duration(timespec: time) == Duration.seconds(3) + .nanoseconds(999_999_999))
        let negative = timespec(Duration.seconds(-2))
        #expect(negative.tv_sec == 0 && negative.tv_nsec == 0)
        let a = ClockInstant(sinceOrigin: .seconds(5))
        #expect((a + .seconds(2)) - a == .seconds(2))
        #expect(a - .seconds(1) < a)
    }
}
