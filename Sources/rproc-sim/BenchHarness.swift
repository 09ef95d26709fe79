import MetalIO
import RPMsg

/// What every bench suite measures with: one clock, warm-up, timed repetitions, and the figures
/// reported from them (median, p99, min, max, rates). The suites only say what one repetition is.
enum BenchHarness {
    static let clock = ContinuousClock()

    /// Sorted samples in microseconds.
    struct Samples: Codable, Sendable {
        private(set) var microseconds: [Double]
        init(_ microseconds: [Double]) { self.microseconds = microseconds.sorted() }
        var median: Double { microseconds[microseconds.count / 2] }
        var p99: Double { microseconds[Swift.min(microseconds.count - 1, microseconds.count * 99 / 100)] }
        var min: Double { microseconds[0] }
        var max: Double { microseconds[microseconds.count - 1] }
        var count: Int { microseconds.count }
    }

    /// `body` run `warmUp` times untimed (caches, page tables, lazily built state), then `count`
    /// times, each timed. `count` is at least 1.
    static func time(_ count: Int, warmUp: Int = 0, _ body: () throws -> Void) rethrows -> Samples {
        precondition(count >= 1, "a bench needs at least one timed repetition")
        for _ in 0..<warmUp { try body() }
        var samples: [Double] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let start = clock.now
            try body()
            samples.append((clock.now - start).inMicroseconds)
        }
        return Samples(samples)
    }

    /// Each of `bodies` run `warmUp` times untimed, then `rounds` rounds in which every body runs
    /// once, timed, in an order that rotates from round to round. Figures compared with each
    /// other (a load against the `memcpy` of the same bytes) are then taken side by side in
    /// time, so a machine that speeds up or slows down during the run moves them together.
    static func timeInterleaved(_ rounds: Int, warmUp: Int = 0, _ bodies: [() throws -> Void]) throws -> [Samples] {
        precondition(rounds >= 1 && !bodies.isEmpty, "an interleaved bench needs a round and a body")
        for body in bodies { for _ in 0..<warmUp { try body() } }
        var samples = [[Double]](repeating: [], count: bodies.count)
        for i in samples.indices { samples[i].reserveCapacity(rounds) }
        for round in 0..<rounds {
            for k in bodies.indices {
                let index = (k + round) % bodies.count
                let start = clock.now
                try bodies[index]()
                samples[index].append((clock.now - start).inMicroseconds)
            }
        }
        return samples.map(Samples.init)
    }

    /// How long `body` took, in seconds.
    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = clock.now
        try body()
        return (clock.now - start).inSeconds
    }

    /// The rate of `count` operations done by `body` (all of them, timed as one).
    static func rate(_ count: Int, _ body: () throws -> Void) rethrows -> Double {
        Double(count) / (try seconds(body))
    }

    /// Echo round trips: each sends with `send`, then waits for `reply` (signalled by whoever
    /// receives the answer).
    struct RoundTrips: Sendable {
        var perSecond: Double
        var latency: Samples
    }

    /// - Parameter clock: the board's (a virtual clock's participant waits for the reply through it).
    static func roundTrips(_ count: Int, reply: WakeSignal, clock: any WaitClock = RealTimeClock.shared,
                           _ send: () throws -> Void) throws -> RoundTrips {
        var latency = Samples([])
        let perSecond = try rate(count) {
            latency = try time(count) {
                try send()
                guard clock.wait(for: reply, timeout: .seconds(10)) else { throw BenchError("echo: no reply within 10 s") }
            }
        }
        return RoundTrips(perSecond: perSecond, latency: latency)
    }

    /// Round trips through an RPMsg endpoint whose peer echoes: `payload` out, one message back.
    static func echo(_ endpoint: RPMsgEndpoint, payload: [UInt8], reply: WakeSignal, count: Int) throws -> RoundTrips {
        try roundTrips(count, reply: reply) { try endpoint.send(payload, timeout: .seconds(10)) }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
