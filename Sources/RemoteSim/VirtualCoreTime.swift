import MetalIO

/// An emulated core's time under a virtual clock: each executed instruction is one cycle of the
/// core clock (as QEMU's `-icount` charges a fixed time per instruction). The block hook counts
/// the instructions of each translated block as the block starts (``EngineStopGate/countInstructions()``);
/// the core thread charges them to the clock after every run and before every access to a
/// device (the mailbox, the interrupt controller), so what the device sees — TICKS, SysTick,
/// `mtime`, the trace's timestamps — includes the instructions of every block started before
/// it (a block is charged whole as it starts, so the rest of the accessing block is counted
/// too). After a device write the core yields, so a deadline the write set is in the next budget.
///
/// Each run's budget ends it at the earliest deadline another thread waits for (the host's
/// timeout, a timer, the watchdog), or after ``quantum`` instructions: a core that never waits
/// cannot hold time back from the others.
final class VirtualCoreTime {
    /// The most instructions a run executes before the core lets the others look at the time.
    static let quantum: UInt64 = 100_000

    private let gate: EngineStopGate
    private let clock: any WaitClock
    private let rate: CoreClockRate
    /// Cycles charged since the core started, and the time they came to (charged from the total,
    /// so rounding at a clock that does not divide a second does not add up).
    private var cycles: UInt64 = 0
    private var charged: Duration = .zero

    init(gate: EngineStopGate, clock: any WaitClock, rate: CoreClockRate) {
        self.gate = gate
        self.clock = clock
        self.rate = rate
        gate.countInstructions()
        _ = gate.takeExecuted(budget: budget())
    }

    /// Charges what ran since the last charge, then sets the budget of what follows.
    func charge() {
        let executed = gate.takeExecuted(budget: 0)
        if executed > 0 {
            cycles &+= executed
            let total = rate.duration(of: cycles)
            clock.advance(by: total - charged)
            charged = total
        }
        _ = gate.takeExecuted(budget: budget())
    }

    /// After a device write: what it set off (a timer armed, a kick the host takes) runs now, so
    /// the next run's budget ends at a deadline that write made.
    func settle() {
        clock.yield()
        _ = gate.takeExecuted(budget: budget())
    }

    /// Instructions until the earliest deadline of the others, at most a quantum.
    private func budget() -> UInt64 {
        guard let deadline = clock.earliestDeadlineOfOthers else { return Self.quantum }
        let left = deadline - clock.now
        return left > .zero ? min(Self.quantum, max(1, rate.cycles(in: left))) : 1
    }
}
