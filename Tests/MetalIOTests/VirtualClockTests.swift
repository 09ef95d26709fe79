import MetalIO
import Synchronization
import Testing

/// A log the participants append to (one runs at a time, but the test thread reads it after).
private final class Log: Sendable {
    private let entries = MetalMutex<[String]>([])
    func add(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}

@Suite("VirtualClock: lockstep participants, time that jumps to deadlines")
struct VirtualClockTests {
    /// Runs `bodies` as participants of a fresh clock, started in order by this thread taking
    /// part meanwhile (so none runs before all are admitted), and waits (in real time, bounded)
    /// for all of them to end.
    private func run(_ bodies: [@Sendable (VirtualClock) -> Void], on clock: VirtualClock = VirtualClock()) throws {
        let done = WakeSignal()
        clock.join()
        for (i, body) in bodies.enumerated() {
            try clock.startThread(name: "participant \(i)") {
                body(clock)
                done.signal()
            }.detach()
        }
        clock.leave()
        for _ in bodies { #expect(done.wait(timeout: .seconds(20))) }
    }

    @Test("ten seconds of virtual sleep take no wall time, and the clock reads exactly the deadline", .timeLimit(.minutes(1)))
    func sleepJumps() throws {
        let clock = VirtualClock()
        let wall = RealTimeClock.shared.now
        let seen = MetalMutex<[Duration]>([])
        try run([{ c in
            for _ in 0..<100 {
                c.sleep(for: .milliseconds(100))
                seen.withLock { $0.append(c.now.sinceOrigin) }
            }
        }], on: clock)
        #expect(seen.withLock { $0 } == (1...100).map { .milliseconds(100 * $0) })
        #expect(clock.now.sinceOrigin == .seconds(10))
        #expect(RealTimeClock.shared.now - wall < .seconds(5))
    }

    @Test("participants take turns in a fixed order: the same log, timestamps included, on every run", .timeLimit(.minutes(1)))
    func deterministicInterleaving() throws {
        func once() throws -> [String] {
            let log = Log()
            let ping = WakeSignal(), pong = WakeSignal()
            try run([
                { c in
                    for i in 0..<200 {
                        c.advance(by: .microseconds(3))
                        log.add("ping \(i) at \(c.now)")
                        ping.signal()
                        guard c.wait(for: pong, timeout: .milliseconds(1)) else { log.add("pong \(i) late at \(c.now)"); continue }
                    }
                },
                { c in
                    for i in 0..<200 {
                        guard c.wait(for: ping, timeout: .seconds(1)) else { log.add("no ping \(i)"); return }
                        // Every fifth answer takes longer than the pinger waits.
                        c.advance(by: i % 5 == 4 ? .milliseconds(2) : .microseconds(5))
                        log.add("pong \(i) at \(c.now)")
                        pong.signal()
                    }
                },
                { c in
                    // A third that only sleeps: it wakes at its deadlines among the others.
                    for i in 0..<50 {
                        c.sleep(for: .microseconds(777))
                        log.add("tick \(i) at \(c.now)")
                    }
                },
            ])
            return log.all
        }
        let first = try once()
        // What the rules give: the fifth answer takes 2 ms, so the pinger's 1 ms wait ends first
        // (at 35 µs + 1 ms) and it goes on; the sleeper's ticks fall between at their deadlines.
        #expect(first.count == 483)
        #expect(Array(first[8...11]) == ["ping 4 at 3.5e-05 seconds", "tick 0 at 0.000777 seconds",
                                         "pong 4 late at 0.001035 seconds", "ping 5 at 0.001038 seconds"])
        #expect(first.contains("pong 4 at 0.002035 seconds"))
        for _ in 0..<5 { #expect(try once() == first) }
    }

    @Test("only one participant runs at a time", .timeLimit(.minutes(1)))
    func oneAtATime() throws {
        let inside = Atomic<Int>(0), overlaps = Atomic<Int>(0)
        let body: @Sendable (VirtualClock) -> Void = { c in
            for _ in 0..<300 {
                if inside.add(1, ordering: .sequentiallyConsistent).newValue > 1 { overlaps.add(1, ordering: .relaxed) }
                for _ in 0..<200 { _ = inside.load(ordering: .relaxed) }   // some work while "inside"
                inside.subtract(1, ordering: .sequentiallyConsistent)
                c.yield()
            }
        }
        try run([body, body, body])
        #expect(overlaps.load(ordering: .relaxed) == 0)
    }

    @Test("yield goes round robin in the order the threads were admitted", .timeLimit(.minutes(1)))
    func roundRobin() throws {
        let log = Log()
        try run((0..<3).map { n -> @Sendable (VirtualClock) -> Void in { c in
            for _ in 0..<4 {
                log.add("\(n)")
                c.yield()
            }
        } })
        #expect(log.all.joined() == "012012012012")
    }

    @Test("a stalled clock (every participant waits without a deadline) runs again on a signal from outside", .timeLimit(.minutes(1)))
    func stallAndOutsideSignal() throws {
        let clock = VirtualClock()
        let outside = WakeSignal(), woke = WakeSignal()
        try clock.startThread(name: "waiter") {
            _ = clock.wait(for: outside, until: nil)
            woke.signal()
        }.detach()
        // Nothing can happen inside the schedule: the waiter stays blocked.
        #expect(!woke.wait(timeout: .milliseconds(50)))
        outside.signal()
        #expect(woke.wait(timeout: .seconds(10)))
        #expect(clock.now.sinceOrigin == .zero)
    }

    @Test("a thread outside the schedule waits in virtual time: with nothing else to run, its deadline comes at once", .timeLimit(.minutes(1)))
    func outsideWaiterTimesOut() throws {
        let clock = VirtualClock()
        let release = WakeSignal()
        try clock.startThread(name: "advancer") {
            _ = clock.wait(for: release, until: nil)
            for _ in 0..<10 {
                clock.advance(by: .milliseconds(1))
                clock.yield()
            }
        }.detach()
        let never = WakeSignal()
        let result = MetalMutex<(Bool, Duration)?>(nil)
        let waited = WakeSignal()
        try PlatformThread(name: "outside") {
            let ok = clock.wait(for: never, timeout: .microseconds(4500))
            result.withLock { $0 = (ok, clock.now.sinceOrigin) }
            waited.signal()
        }.detach()
        // Let the outside waiter block first, then let time pass.
        RealTimeClock.shared.sleep(for: .milliseconds(20))
        release.signal()
        #expect(waited.wait(timeout: .seconds(10)))
        let (ok, at) = try #require(result.withLock { $0 })
        #expect(!ok)
        // The advancer waited for a signal that had not come: time jumped to the outside deadline.
        #expect(at == .microseconds(4500))
    }

    @Test("joining a participant thread waits through the clock (the joined thread needs the turn to finish)", .timeLimit(.minutes(1)))
    func joinThroughTheClock() throws {
        let clock = VirtualClock()
        let log = Log()
        let done = WakeSignal()
        let owner = try clock.startThread(name: "owner") {
            let child = try? clock.startThread(name: "child") {
                clock.sleep(for: .seconds(3))
                log.add("child ends at \(clock.now)")
            }
            child?.join()
            log.add("joined at \(clock.now)")
            done.signal()
        }
        #expect(done.wait(timeout: .seconds(10)))
        owner.join()   // from outside the schedule: the owner has left once its thread ended
        #expect(log.all == ["child ends at 3.0 seconds", "joined at 3.0 seconds"])
        #expect(clock.participantCount == 0)
    }
}
