#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Synchronization

/// What this process used (`getrusage(RUSAGE_SELF)`): CPU time, user and system, and context
/// switches. Differences over a measured stretch give the cost per message or round trip — a
/// figure that load on the machine hardly distorts, unlike rates.
struct ProcessUsage {
    var cpu: Duration
    var voluntarySwitches: Int

    static var now: ProcessUsage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return ProcessUsage(cpu: Duration(timeval: usage.ru_utime) + Duration(timeval: usage.ru_stime),
                            voluntarySwitches: Int(usage.ru_nvcsw))
    }

    /// The CPU time of the process so far (`CLOCK_PROCESS_CPUTIME_ID`, finer than getrusage).
    static var cpuTime: Duration {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Duration(timespec: time)
    }
}

/// Cost of one operation (a message, a round trip) over a measured run.
struct OperationCost: Codable {
    /// Process CPU time, user + system, per operation.
    var cpuMicroseconds: Double
    /// Voluntary context switches (a thread that blocked) per operation.
    var voluntarySwitches: Double

    /// What `body` returns, and what it cost per operation when it did `count` of them.
    static func measure<T>(_ count: Int, _ body: () throws -> T) rethrows -> (result: T, cost: OperationCost) {
        let before = ProcessUsage.now
        let result = try body()
        let after = ProcessUsage.now
        return (result, OperationCost(cpuMicroseconds: (after.cpu - before.cpu).inMicroseconds / Double(count),
                                      voluntarySwitches: Double(after.voluntarySwitches - before.voluntarySwitches) / Double(count)))
    }
}

/// The floors every speed of the bench is compared with, measured in the same run.
enum BenchReferences {
    struct PingPong: Codable {
        var roundTripsPerSecond: Double
        var cost: OperationCost
    }

    /// Two threads waking each other through two semaphores that park at once (futex sleep and
    /// wake-up every time): the floor for a cross-thread round trip that sleeps.
    static func futexPingPong(count: Int) throws -> PingPong {
        let ping = WakeSignal(spins: false), pong = WakeSignal(spins: false)
        let thread = try PlatformThread(name: "ping-pong") {
            for _ in 0..<count {
                ping.wait()
                pong.signal()
            }
        }
        let (rate, cost) = try OperationCost.measure(count) {
            try BenchHarness.rate(count) {
                for _ in 0..<count {
                    ping.signal()
                    guard pong.wait(timeout: .seconds(10)) else { throw BenchError("futex ping-pong stalled") }
                }
            }
        }
        thread.join()
        return PingPong(roundTripsPerSecond: rate, cost: cost)
    }

    /// Two threads passing a turn through one atomic word, both spinning: the floor for a round
    /// trip between two running cores (it needs both; on a loaded machine it measures the
    /// scheduler, and it gives up after 5 s, counting the trips done).
    static func spinPingPong(count: Int) throws -> PingPong {
        let turn = Atomic<Int>(0)
        let abandoned = Atomic<Bool>(false)
        let thread = try PlatformThread(name: "spin-pong") {
            for i in 0..<count {
                var looks = 0
                while turn.load(ordering: .acquiring) != 2 * i + 1 {
                    looks &+= 1
                    if looks & 1023 == 0, abandoned.load(ordering: .relaxed) { return }
                }
                turn.store(2 * i + 2, ordering: .releasing)
            }
        }
        let deadline = BenchHarness.clock.now + .seconds(5)
        var done = 0
        let start = BenchHarness.clock.now
        let (_, cost) = OperationCost.measure(count) {
            for i in 0..<count {
                turn.store(2 * i + 1, ordering: .releasing)
                var looks = 0
                while turn.load(ordering: .acquiring) != 2 * i + 2 {
                    looks &+= 1
                    if looks & 1023 == 0, BenchHarness.clock.now > deadline {
                        abandoned.store(true, ordering: .relaxed)
                        return
                    }
                }
                done = i + 1
            }
        }
        let seconds = (BenchHarness.clock.now - start).inSeconds
        thread.join()
        guard done > 0 else { throw BenchError("spin ping-pong: no round trip within 5 s") }
        return PingPong(roundTripsPerSecond: Double(done) / seconds,
                        cost: OperationCost(cpuMicroseconds: cost.cpuMicroseconds * Double(count) / Double(done),
                                            voluntarySwitches: cost.voluntarySwitches * Double(count) / Double(done)))
    }

    /// Host CPU over `seconds` of wall time while nothing is asked of the process (%, of one core).
    static func idleCPUPercent(seconds: Double, clock: any WaitClock) -> Double {
        let (cpu, wall) = (ProcessUsage.cpuTime, BenchHarness.clock.now)
        clock.sleep(for: .milliseconds(Int64(seconds * 1000)))
        return (ProcessUsage.cpuTime - cpu).inSeconds / (BenchHarness.clock.now - wall).inSeconds * 100
    }
}
