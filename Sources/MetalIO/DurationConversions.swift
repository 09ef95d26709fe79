#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every conversion between `Duration` and plain numbers or C time values, in one place (as
/// swift-nio keeps `TimeAmount`'s): nothing else in the package takes a `Duration` apart.
extension Duration {
    /// Whole nanoseconds, saturating at the ends of `Int64` (a `Duration` can hold more).
    public var totalNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        let (sum, carry) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        guard !carry else { return seconds < 0 ? .min : .max }
        return sum
    }

    /// Whole microseconds (saturating).
    public var totalMicroseconds: Int64 { totalNanoseconds / 1_000 }

    /// Whole milliseconds (saturating).
    public var totalMilliseconds: Int64 { totalNanoseconds / 1_000_000 }

    /// Seconds as a floating-point number (rates and reports).
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// Microseconds as a floating-point number (latencies and reports).
    public var inMicroseconds: Double { Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12 }

    /// How many whole cycles of a `hertz` clock fit in this duration (0 for a negative one;
    /// saturating): a core timer's count.
    public func cycles(atHertz hertz: UInt64) -> UInt64 {
        precondition(hertz > 0, "a clock of 0 Hz")
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: hertz)
        guard !overflow else { return .max }
        let part = hertz.multipliedFullWidth(by: UInt64(attoseconds))
        let (fraction, _) = UInt64(1_000_000_000_000_000_000).dividingFullWidth(part)
        let (sum, carry) = whole.addingReportingOverflow(fraction)
        return carry ? .max : sum
    }

    /// The time `cycles` cycles of a `hertz` clock take, rounded up to the nanosecond (so that
    /// at the end of it, at least that many cycles have passed).
    public init(cycles: UInt64, atHertz hertz: UInt64) {
        precondition(hertz > 0 && hertz < 18_000_000_000, "a clock of \(hertz) Hz")
        let seconds = cycles / hertz
        let rest = cycles % hertz                          // < hertz: times 10⁹ fits below 2⁶⁴ for any clock under 18 GHz
        let (nanos, remainder) = (rest * 1_000_000_000).quotientAndRemainder(dividingBy: hertz)
        self = .seconds(Int64(clamping: seconds)) + .nanoseconds(Int64(nanos) + (remainder > 0 ? 1 : 0))
    }

    /// The duration a C `timeval` holds (`getrusage`'s times).
    public init(timeval time: timeval) {
        self = .seconds(Int64(time.tv_sec)) + .microseconds(Int64(time.tv_usec))
    }

    /// The duration a C `timespec` holds.
    public init(timespec time: timespec) {
        self = .seconds(Int64(time.tv_sec)) + .nanoseconds(Int64(time.tv_nsec))
    }
}

extension timespec {
    /// `duration` as a normalised `timespec` (0 ≤ `tv_nsec` < 10⁹); negative durations give zero.
    public init(_ duration: Duration) {
        let nanos = max(0, duration.totalNanoseconds)
        self.init(tv_sec: .init(nanos / 1_000_000_000), tv_nsec: .init(nanos % 1_000_000_000))
    }

    /// Whole nanoseconds (a clock reading; no overflow for 292 years of uptime).
    public var totalNanoseconds: Int64 { Int64(tv_sec) &* 1_000_000_000 &+ Int64(tv_nsec) }
}
