import MetalIO

/// The emulated core's clock: what its timers count at — the CLINT's `mtime` on RV32, SysTick
/// on Cortex-M4 — from the core's own time (``Mailbox/coreTime``: the board's clock, with time
/// suspended left out). A board option (docs/remotesim.md, "Interrupts and timers").
public struct CoreClockRate: Sendable, Hashable, CustomStringConvertible {
    public let hertz: UInt64

    /// 100 MHz.
    public static let `default` = CoreClockRate(uncheckedHertz: 100_000_000)
    /// The rates a board accepts: 1 kHz to 1 GHz.
    public static let supported: ClosedRange<UInt64> = 1_000...1_000_000_000

    /// `nil` outside ``supported``.
    public init?(hertz: UInt64) {
        guard Self.supported.contains(hertz) else { return nil }
        self.hertz = hertz
    }

    private init(uncheckedHertz: UInt64) { hertz = uncheckedHertz }

    /// Cycles counted in `time`.
    public func cycles(in time: Duration) -> UInt64 { time.cycles(atHertz: hertz) }

    /// How long `cycles` cycles take (rounded up).
    public func duration(of cycles: UInt64) -> Duration { Duration(cycles: cycles, atHertz: hertz) }

    public var description: String {
        hertz % 1_000_000 == 0 ? "\(hertz / 1_000_000) MHz" : hertz % 1_000 == 0 ? "\(hertz / 1_000) kHz" : "\(hertz) Hz"
    }
}
