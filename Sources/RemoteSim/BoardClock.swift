import MetalIO

/// How a board keeps time (`board: { clock: … }` in a scenario, `SimulatedRemote(…, clock:)`).
public enum BoardClock: String, Sendable, CaseIterable {
    /// The host's monotonic clock: host and core run concurrently, as on hardware; timings and
    /// interleavings vary with the machine's load.
    case realTime = "real-time"
    /// A ``MetalIO/VirtualClock``: the core's threads and the host's run in lockstep, time moves
    /// by the instructions an emulated core executes and jumps over idle waits — the same run
    /// gives the same trace, timestamps included, on every machine (docs/virtual-time.md).
    case virtual

    /// A clock of this kind: the shared real-time clock, or a fresh virtual one at zero.
    public func make() -> any WaitClock {
        switch self {
        case .realTime: RealTimeClock.shared
        case .virtual: VirtualClock()
        }
    }
}
