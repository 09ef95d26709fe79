import MetalIO
import Synchronization

/// The RV32 core's machine-mode interrupts (docs/remotesim.md, "Interrupts and timers"): a CLINT
/// at 0x0200_0000 (`msip`, `mtimecmp`, `mtime`, the layout RISC-V RTOS ports expect) and the
/// mailbox on the machine external interrupt. Unicorn 2.0.1 neither raises MSIP/MTIP/MEIP nor
/// takes such a trap (`mip`'s machine bits cannot even be written through it), so the board keeps
/// the pending levels itself and takes the trap at a block boundary: the engine's block hook ends
/// the run once `mstatus.MIE` and `mie` let a raised level in, and the core thread enters the
/// trap (``MachineTrap/enter(_:at:on:)``) before the next run. `mret` is the CPU's own.
final class MachineInterrupts: Sendable {
    /// The CLINT's window.
    static let clintBase: UInt64 = 0x0200_0000
    static let clintSize = 0x1_0000

    /// CLINT register offsets (32-bit halves of the 64-bit `mtimecmp` and `mtime`, low word first).
    enum Register: Int {
        case msip = 0x0, mtimecmpLow = 0x4000, mtimecmpHigh = 0x4004, mtimeLow = 0xBFF8, mtimeHigh = 0xBFFC
    }

    struct State {
        var msip = false
        /// All ones until the firmware writes it: no timer interrupt.
        var mtimecmp = UInt64.max
        /// What a write of `mtime` added to the count of core cycles (wrapping).
        var mtimeOffset: UInt64 = 0
        /// The run ended: the deadline thread returns.
        var ended = false
    }
    private let state = MetalMutex(State())
    let rate: CoreClockRate
    let mailbox: Mailbox
    private let inputs: InterruptInputs
    let faults: FaultWatch

    init(rate: CoreClockRate, mailbox: Mailbox, inputs: InterruptInputs, faults: FaultHandling = .crash) {
        self.rate = rate
        self.mailbox = mailbox
        self.inputs = inputs
        self.faults = FaultWatch(faults, mailbox: mailbox, stopper: EmulationStopper(gate: inputs.gate))
    }

    /// The mailbox's PENDING & IRQ_ENABLE ≠ 0, as MEIP.
    var externalLine: any InterruptLevelSink { inputs.line(MachineInterrupt.external.bit) }

    private func mtime(_ s: State) -> UInt64 { rate.cycles(in: mailbox.coreTime) &+ s.mtimeOffset }

    /// `mtime` now.
    var mtime: UInt64 { state.withLock { mtime($0) } }

    /// `mtimecmp` (all ones: not armed).
    var mtimecmp: UInt64 { state.withLock { $0.mtimecmp } }

    /// MTIP follows `mtime ≥ mtimecmp` (called under the lock whenever either may have moved).
    private func updateTimerLevel(_ s: State) {
        inputs.set(MachineInterrupt.timer.bit, mtime(s) >= s.mtimecmp)
    }

    // MARK: MMIO

    /// A guest read of `size` bytes at `offset` in the CLINT window (unknown offsets read 0).
    func read(_ offset: Int, size: Int) -> UInt64 {
        let word = offset & ~3
        let value: UInt32 = state.withLock { s in
            // MTIP is pending whenever mtime ≥ mtimecmp: firmware that reads mtime past the
            // compare value finds it raised, whether or not the deadline thread has looked yet.
            updateTimerLevel(s)
            return switch Register(rawValue: word) {
            case .msip: s.msip ? 1 : 0
            case .mtimecmpLow: UInt32(truncatingIfNeeded: s.mtimecmp)
            case .mtimecmpHigh: UInt32(truncatingIfNeeded: s.mtimecmp >> 32)
            case .mtimeLow: UInt32(truncatingIfNeeded: mtime(s))
            case .mtimeHigh: UInt32(truncatingIfNeeded: mtime(s) >> 32)
            case nil: 0
            }
        }
        return UInt64(value >> (UInt32(offset & 3) * 8)) & Self.mask(size)
    }

    /// A guest write (sub-word writes merge into their word; unknown offsets ignore it).
    func write(_ offset: Int, size: Int, _ value: UInt64) {
        let word = offset & ~3
        guard let register = Register(rawValue: word) else { return }
        let shift = UInt32(offset & 3) * 8
        let mask = UInt32(truncatingIfNeeded: Self.mask(size)) << shift
        let bits = UInt32(truncatingIfNeeded: value) << shift
        func merged(_ old: UInt32) -> UInt32 { (old & ~mask) | (bits & mask) }
        state.withLock { s in
            switch register {
            case .msip:
                s.msip = merged(s.msip ? 1 : 0) & 1 != 0
                inputs.set(MachineInterrupt.software.bit, s.msip)
            case .mtimecmpLow, .mtimecmpHigh:
                s.mtimecmp = Self.replacing(half: register == .mtimecmpHigh, of: s.mtimecmp, with: merged)
                updateTimerLevel(s)
            case .mtimeLow, .mtimeHigh:
                let now = mtime(s)
                let wanted = Self.replacing(half: register == .mtimeHigh, of: now, with: merged)
                s.mtimeOffset = s.mtimeOffset &+ (wanted &- now)
                updateTimerLevel(s)
            }
        }
        if register != .msip { mailbox.timerWake.signal() }
    }

    private static func mask(_ size: Int) -> UInt64 { size >= 8 ? .max : (1 << (UInt64(size) * 8)) - 1 }

    private static func replacing(half high: Bool, of value: UInt64, with merged: (UInt32) -> UInt32) -> UInt64 {
        high ? (value & 0xFFFF_FFFF) | UInt64(merged(UInt32(truncatingIfNeeded: value >> 32))) << 32
             : (value & ~0xFFFF_FFFF) | UInt64(merged(UInt32(truncatingIfNeeded: value)))
    }

    // MARK: The timer's deadline

    /// The deadline thread's body: raises MTIP when `mtime` reaches `mtimecmp` (a busy core sees
    /// it at its next block boundary). It sleeps until that moment — or without a limit while no
    /// compare value is pending or the clock is gated — and looks again when woken (a compare or
    /// `mtime` write, a resume, a stop). Returns after ``end()``.
    func runDeadlines() {
        runTimerDeadlines(mailbox: mailbox, faults: faults) { [self] in
            state.withLock { s in
                guard !s.ended else { return nil }
                let time = mtime(s)
                updateTimerLevel(s)
                guard time < s.mtimecmp, s.mtimecmp != .max, !mailbox.isClockGated else { return .some(nil) }
                return .some(rate.duration(of: s.mtimecmp - time))
            }
        }
    }

    /// Ends ``runDeadlines()``.
    func end() {
        state.withLock { $0.ended = true }
        mailbox.timerWake.signal()
    }

    /// When the timer interrupt comes, for a core about to idle in `wfi` (`nil`: not armed, or
    /// `mie.MTIE` clear — it would not wake the core).
    func timerDeadline(timerEnabled: Bool) -> ClockInstant? {
        guard timerEnabled else { return nil }
        let now = mailbox.clock.now
        return state.withLock { s in
            let time = mtime(s)
            updateTimerLevel(s)            // due already: raised now, not when the deadline thread looks
            guard s.mtimecmp != .max else { return nil }
            return time >= s.mtimecmp ? now : now + rate.duration(of: s.mtimecmp - time)
        }
    }

    /// A trap handler returned (`mret`) to `address`: the trap `mcause` still names.
    func returning(to address: UInt64, engine: some MachineTrapCPU) {
        let cause = engine.read(.mcause)
        let name = cause & 0x8000_0000 != 0 ? MachineInterrupt(rawValue: cause & 0x7FF).map { "\($0)" }
                                            : MachineException(rawValue: cause).map { "\($0)" }
        mailbox.returnedFromTrap(TrapReturn(cause: name ?? "trap (mcause \(hex(UInt64(cause))))", returnAddress: DeviceAddress(address)))
    }

    /// The raised levels, as `mip`'s machine bits.
    var pendingBits: UInt32 { inputs.pendingBits }

    /// The interrupt to take now: the highest-priority raised level that `mie` enables, when
    /// `mstatus.MIE` is set.
    func interruptToTake(on cpu: some MachineTrapCPU) -> MachineInterrupt? {
        let pending = pendingBits
        guard pending != 0, cpu.read(.mstatus) & MachineStatus.mie != 0 else { return nil }
        let enabled = cpu.read(.mie) & pending
        return MachineInterrupt.byPriority.first { enabled & $0.bit != 0 }
    }
}

/// The machine-mode interrupts of RV32, by their `mip`/`mie` bit and `mcause` code.
public enum MachineInterrupt: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case software = 3, timer = 7, external = 11
    var bit: UInt32 { 1 << rawValue }
    /// The order the privileged specification takes simultaneous ones in: MEI, MSI, MTI.
    static let byPriority: [MachineInterrupt] = [.external, .software, .timer]
    public var description: String {
        switch self {
        case .software: "machine software interrupt"
        case .timer: "machine timer interrupt"
        case .external: "machine external interrupt"
        }
    }
}

/// Synchronous RV32 exceptions the board delivers into the firmware, by `mcause` code.
public enum MachineException: UInt32, Sendable, CustomStringConvertible {
    case instructionAccessFault = 1, illegalInstruction = 2, breakpoint = 3, loadAccessFault = 5, storeAccessFault = 7
    case environmentCall = 11
    public var description: String {
        switch self {
        case .instructionAccessFault: "instruction access fault"
        case .illegalInstruction: "illegal instruction"
        case .breakpoint: "breakpoint"
        case .loadAccessFault: "load access fault"
        case .storeAccessFault: "store access fault"
        case .environmentCall: "environment call from M-mode"
        }
    }
}

/// `mstatus` fields the trap entry changes.
enum MachineStatus {
    static let mie: UInt32 = 1 << 3
    static let mpie: UInt32 = 1 << 7
    static let mpp: UInt32 = 3 << 11
}

/// The machine CSRs trap entry reads and writes.
enum MachineCSR: Sendable { case mstatus, mie, mtvec, mepc, mcause, mtval }

/// A stopped RV32 CPU as trap entry sees it (the Unicorn engine; a plain model in tests).
protocol MachineTrapCPU: AnyObject {
    func read(_ csr: MachineCSR) -> UInt32
    func write(_ csr: MachineCSR, _ value: UInt32) throws(UnicornError)
}

/// A trap the board cannot take.
struct MachineTrapError: Error, Sendable, CustomStringConvertible {
    var trap: MachineTrap.Cause
    var reason: String
    var description: String { "\(trap) with \(reason)" }
}

/// Machine-mode trap entry, as the privileged architecture defines it.
enum MachineTrap {
    enum Cause: Hashable, Sendable, CustomStringConvertible {
        case interrupt(MachineInterrupt)
        case exception(MachineException, value: UInt32)

        /// `mcause`: the interrupt bit and the code.
        var mcause: UInt32 {
            switch self {
            case let .interrupt(interrupt): 0x8000_0000 | interrupt.rawValue
            case let .exception(exception, _): exception.rawValue
            }
        }

        var description: String {
            switch self {
            case let .interrupt(interrupt): "\(interrupt)"
            case let .exception(exception, _): "\(exception)"
            }
        }
    }

    /// Enters the trap for `cause` taken at `pc` (the instruction to return to for an interrupt;
    /// the one that trapped for an exception): `mepc`, `mcause`, `mtval`; `mstatus.MPIE` takes
    /// MIE, MIE is cleared, MPP is M. Returns the handler's address: `mtvec`'s base, or for an
    /// interrupt in vectored mode base + 4 × cause.
    /// - Throws: ``MachineTrapError`` when `mtvec` names no handler (0, or the reserved modes 2
    ///   and 3) — firmware that enables an interrupt without a trap vector; or a register write failed.
    static func enter(_ cause: Cause, at pc: UInt32, on cpu: some MachineTrapCPU) throws -> UInt32 {
        let mtvec = cpu.read(.mtvec)
        let base = mtvec & ~3
        let mode = mtvec & 3
        guard base != 0 else { throw MachineTrapError(trap: cause, reason: "no trap handler (mtvec = 0)") }
        guard mode < 2 else { throw MachineTrapError(trap: cause, reason: "mtvec mode \(mode), which is reserved (mtvec = \(hex(UInt64(mtvec))))") }
        let status = cpu.read(.mstatus)
        let mpie = status & MachineStatus.mie != 0 ? MachineStatus.mpie : 0
        try cpu.write(.mepc, pc)
        try cpu.write(.mcause, cause.mcause)
        if case let .exception(_, value) = cause { try cpu.write(.mtval, value) } else { try cpu.write(.mtval, 0) }
        try cpu.write(.mstatus, (status & ~(MachineStatus.mie | MachineStatus.mpie | MachineStatus.mpp)) | mpie | MachineStatus.mpp)
        if case let .interrupt(interrupt) = cause, mode == 1 { return base &+ 4 &* interrupt.rawValue }
        return base
    }
}

/// The interrupt inputs of an engine's block hook (``EngineStopGate/setPending(_:_:)``).
struct InterruptInputs: Sendable {
    let gate: EngineStopGate

    func set(_ bits: UInt32, _ raised: Bool) { gate.setPending(bits, raised) }
    var pendingBits: UInt32 { gate.pendingBits }
    func setPriorities(pending: Int32, line: Int32, active: Int32, groupMask: UInt8) {
        gate.setPriorities(pending: pending, line: line, active: active, groupMask: groupMask)
    }

    /// One input driven by a device's level.
    func line(_ bits: UInt32) -> any InterruptLevelSink { Line(gate: gate, bits: bits) }

    private struct Line: InterruptLevelSink {
        let gate: EngineStopGate
        let bits: UInt32
        func setLevel(_ raised: Bool) { gate.setPending(bits, raised) }
    }
}
