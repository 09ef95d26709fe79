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
}
