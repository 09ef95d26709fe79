#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Virtio
import MetalIO

/// Something the mailbox saw, for the board's trace.
public enum MailboxEvent: Hashable, Sendable {
    /// The remote kicked the host with this notify id.
    case kick(NotifyID)
    /// The remote wrote a KICK value above 31 (ignored; a firmware error).
    case invalidKick(UInt32)
    /// The host notified the remote with this id.
    case notify(NotifyID)
    /// A complete console line.
    case consoleLine(String)
    /// The remote wrote PANIC.
    case panic(UInt32)
    /// The remote armed (ms > 0) or disarmed (0) its watchdog.
    case watchdog(milliseconds: UInt32)
    /// Suspend and resume: requests, answers, the clock gate, misuse of the registers.
    case power(PowerEvent)
    /// The emulated core took an interrupt or a trap (``TrapEntry``).
    case trap(TrapEntry)
    /// The emulated core returned from an interrupt or trap handler (``TrapReturn``).
    case trapReturn(TrapReturn)
}

/// An interrupt or trap an emulated core took: what, where it left off, where its handler is.
public struct TrapEntry: Hashable, Sendable, CustomStringConvertible {
    /// "machine timer interrupt", "environment call from M-mode", "SysTick", … — the name its
    /// ``TrapReturn`` carries, so entries and returns of one kind compare equal.
    public var cause: String
    /// The instruction the handler returns to (an interrupt) or that trapped (an exception).
    public var programCounter: DeviceAddress
    public var handler: DeviceAddress
    /// How it was taken, where that is more than its cause: "tail-chained" (Cortex-M4: entered
    /// straight from another handler's return), the fault a vectored fault handler was given.
    public var detail: String?

    public init(cause: String, programCounter: DeviceAddress, handler: DeviceAddress, detail: String? = nil) {
        self.cause = cause
        self.programCounter = programCounter
        self.handler = handler
        self.detail = detail
    }

    /// The cause with its detail: "SysTick (tail-chained)".
    public var name: String { detail.map { "\(cause) (\($0))" } ?? cause }
    public var description: String { "\(name) at \(programCounter), handler \(handler)" }
}

/// A return from an interrupt or trap handler: which one (as its ``TrapEntry`` named it) and
/// where the core went on — Cortex-M4 an exception return, RV32 an `mret`.
public struct TrapReturn: Hashable, Sendable, CustomStringConvertible {
    /// "SysTick", "IRQ 0 (mailbox)"; RV32: "mret" (the trap it ends is the one `mcause` names).
    public var cause: String
    public var returnAddress: DeviceAddress
    public var description: String { "\(cause) returned to \(returnAddress)" }
}

/// The board's mailbox (design.md, "Mailbox registers", version 1): 32-bit little-endian
/// registers at offsets 0x00–0x2C, interrupts both ways.
///
/// Host → remote: ``notify(_:)`` sets a PENDING bit and wakes the core (WAIT, SLEEP, `wfi`).
/// Remote → host: KICK raises the host's ``InterruptLine``, handled inline on the core's thread
/// (the default), on a host interrupt thread or, in poll mode, by ``poll()``; kicks of one id
/// coalesce until handled and are never lost.
/// Firmware reaches the registers through ``read(_:)`` / ``write(_:_:)`` (MMIO) or the typed
/// methods below (native firmware); both are the same code.
public final class Mailbox: Sendable {
    /// Register offsets.
    public enum Register: Int, CaseIterable, Sendable {
        case magic = 0x00, version = 0x04, kick = 0x08, pending = 0x0C, ack = 0x10, wait = 0x14
        case console = 0x18, panic = 0x1C, ticksLow = 0x20, ticksHigh = 0x24, watchdog = 0x28, sleep = 0x2C
        /// Version 2: power management (see ``PowerRegisters``).
        case pmControl = 0x30, pmRequest = 0x34, pmReply = 0x38, pmStatus = 0x3C
        /// Version 3: the core clock in Hz (0: the core has no timers — native firmware); which
        /// PENDING bits raise the core's interrupt (none after reset).
        case coreClock = 0x40, irqEnable = 0x44
    }
    /// "RSIM".
    public static let magic: UInt32 = 0x5253_494D
    /// 2: the power-management registers (0x30–0x3C) exist; 3: CORE_CLOCK (0x40) and IRQ_ENABLE
    /// (0x44): PENDING bits it enables are an interrupt into an emulated core that has an
    /// interrupt controller (RV32: MEIP).
    /// Everything of the earlier versions is unchanged.
    public static let version: UInt32 = 3
    /// Notify ids 0–31 fit the PENDING word.
    public static let notifyIDCount = 32
    /// Console lines wrap at this many bytes.
    public static let consoleLineLimit = 256

    struct State {
        var pending: UInt32 = 0
        var stop = false
        /// Whether the host (or the watchdog) asked for the stop, rather than a PANIC.
        var hostStop = false
        /// One WAIT/SLEEP release requested by a debugger (not a stop).
        var breakWait = false
        var ticksHighLatch: UInt32 = 0
        var consoleLine: [UInt8] = []
        var panicCode: UInt32?
        /// Time the core spent blocked (WAIT, SLEEP, wfi), which the watchdog does not count.
        var blocked: Duration = .zero
        var blockedSince: ClockInstant?
        /// Since when a debugger holds the core halted (frozen for the watchdog, as a debug unit would).
        var debugHaltedSince: ClockInstant?
        var watchdogTimeout: Duration?
        var watchdogKickedAtActive: Duration = .zero
        /// The active time at which the watchdog's monitor looks next (`nil`: it waits for an arm).
        var watchdogLookAt: Duration?
        var started: ClockInstant
        /// Counts resets: a monitor of an earlier start ends.
        var generation = 0
        /// The clock gate and the suspend handshake (Mailbox+Power.swift).
        var power = PowerState()
        /// Where PENDING & IRQ_ENABLE ≠ 0 is raised as an interrupt into the core (an emulated core
        /// with an interrupt controller); set for a run of the core, dropped at a reset.
        var externalLine: (any InterruptLevelSink)?
        /// CORE_CLOCK: what the core's timers count at, set for a run of an emulated core.
        var coreClockHertz: UInt32 = 0
        /// The fault whose handler the firmware runs (vectored faults), for a crash report.
        var faultBeingHandled: String?
        /// IRQ_ENABLE: the PENDING bits that raise the interrupt line (like a real mailbox's
        /// interrupt-enable register; 0 after reset, so polling firmware never pays for it).
        var irqEnable: UInt32 = 0

        /// PENDING or IRQ_ENABLE changed: the interrupt line follows them (under the lock, so
        /// levels never cross).
        mutating func pendingChanged() { externalLine?.setLevel(pending & irqEnable != 0) }
    }
    let state: MetalMutex<State>
    /// Wakes the core: a kick, a stop, a suspend request, a resume.
    let wake = WakeSignal()
    /// Wakes the watchdog's monitor: a stop, a reset, an arm that brings the expiry forward, a resume.
    let watchdogWake = WakeSignal()
    /// Wakes the core's timer (the CLINT's or SysTick's deadline thread): a stop, a reset, a
    /// resume (core time runs again), a write of its compare register.
    let timerWake = WakeSignal()
    /// Wakes a host waiting in ``suspendCore(_:timeout:parkLimit:)``: the firmware answered, the
    /// core parked, or it ended.
    let powerWake = WakeSignal()
    /// Whether the host wants the core's clock gated (read at every instruction-boundary check
    /// without the lock; written under it).
    let gateRequested = Atomic<Bool>(false)
    /// The board's clock: WAIT/SLEEP timeouts, TICKS and the watchdog's time.
    public let clock: any WaitClock
    private let idleWaiters: ConditionWaiters?
    /// Woken when the host writes into a vdev entry (the board tells it) and on a stop: a remote
    /// waiting for DRIVER_OK looks again then.
    public let hostWrites = ConditionWaiters()
    /// The callbacks, in a struct: a `Mutex` whose value *is* a closure re-wraps it in thunks on
    /// every access (each event would call through a longer chain than the last, until the stack
    /// overflowed).
    struct Callbacks {
        var events: (@Sendable (MailboxEvent) -> Void)?
        var stopListener: (@Sendable () -> Void)?
        var gateListener: (@Sendable () -> Void)?
        /// Run by the core's thread as it parks: its registers (``Mailbox/parkedCPU``).
        var parkCapture: (@Sendable () -> CPUSnapshot)?
        var interruptReport: (@Sendable () -> String)?
    }
    let callbacks = MetalMutex(Callbacks())

    /// Sets what describes the core's interrupt controller for this start (`monitor irq`), or none.
    func setInterruptReport(_ report: (@Sendable () -> String)?) { callbacks.withLock { $0.interruptReport = report } }
    /// The core's interrupts now: enabled, pending and active, with priorities and timers.
    public var interruptReport: String? { callbacks.withLock { $0.interruptReport }?() }

    /// Sets what runs (on the requesting thread) when a stop is requested or the firmware
    /// panics — an emulated core uses it to end its run.
    public func setStopListener(_ listener: (@Sendable () -> Void)?) { callbacks.withLock { $0.stopListener = listener } }
    /// Remote → host interrupts (numbered by notify id).
    public let hostInterrupts: InterruptLine<NotifyID>

    /// - Parameters:
    ///   - hostInterrupts: where the host's kick handler runs — on the core's thread inside KICK
    ///     (``Virtio/InterruptDelivery/inline``), on a host interrupt thread, or only in ``poll()``.
    ///   - clock: the time WAIT/SLEEP timeouts, TICKS and the watchdog count in.
    ///   - idleWaiters: woken whenever the core goes idle (WAIT, SLEEP, `wfi`): what it wrote
    ///     into memory before is there to be seen (a board looks at its trace buffer then).
    /// - Throws: ``MetalIO/ThreadError`` when the interrupt thread cannot be started.
    public init(hostInterrupts delivery: InterruptDelivery = .inline, clock: any WaitClock = RealTimeClock.shared,
                idleWaiters: ConditionWaiters? = nil) throws(ThreadError) {
        self.clock = clock
        self.idleWaiters = idleWaiters
        state = MetalMutex(State(started: clock.now))
        hostInterrupts = try InterruptLine(delivery: delivery)
    }

    /// Sets what receives the mailbox's events (console lines, kicks, panics, …).
    public func setEventHandler(_ handler: (@Sendable (MailboxEvent) -> Void)?) { callbacks.withLock { $0.events = handler } }

    /// Sets what handles a remote → host kick (the board forwards it to the core's notification entry).
    public func setKickHandler(_ handler: (@Sendable (NotifyID) -> Void)?) { hostInterrupts.setHandler(handler) }

    func emit(_ event: MailboxEvent) { callbacks.withLock { $0.events }?(event) }

    /// The core took an interrupt or a trap (for the trace).
    func tookTrap(_ entry: TrapEntry) { emit(.trap(entry)) }
    func returnedFromTrap(_ exit: TrapReturn) { emit(.trapReturn(exit)) }

    // MARK: Host side

    /// Interrupts the remote with notify id `id` (0–31): sets its PENDING bit and wakes the core.
    public func notify(_ id: NotifyID) {
        guard id.rawValue < UInt32(Self.notifyIDCount) else { return }
        let wasClear = state.withLock { s in
            let wasClear = s.pending == 0
            s.pending |= 1 << id.rawValue
            s.pendingChanged()
            return wasClear
        }
        emit(.notify(id))
        // WAIT blocks only while PENDING is 0, so only the kick that sets it from 0 wakes the
        // core. A kick onto bits still pending finds the core awake or already woken: signalled
        // again, a core still waking up would cost the sender another futex wake-up per kick.
        if wasClear { wake.signal() }
    }

    /// Handles the kicks raised so far on the calling thread (poll mode). Returns how many ids.
    @discardableResult
    public func poll() -> Int { hostInterrupts.poll() }

    /// Asks the core to stop: WAIT and SLEEP return at once (and keep returning) until ``reset()``.
    public func requestStop() {
        state.withLock { s in
            s.stop = true
            s.hostStop = true
        }
        wake.signal()
        watchdogWake.signal()
        timerWake.signal()
        powerWake.signal()
        hostWrites.changed()
        callbacks.withLock { $0.stopListener }?()
    }

    /// Releases a core blocked in WAIT or SLEEP once (returning 0), without stopping it — a
    /// debugger uses it to halt an idle core.
    public func breakWait() {
        state.withLock { $0.breakWait = true }
        wake.signal()
    }

    /// Whether the core is blocked in WAIT, SLEEP or `wfi` now.
    public var isCoreWaiting: Bool { state.withLock { $0.blockedSince != nil } }

    /// Whether a stop was requested since the last reset.
    public var isStopRequested: Bool { state.withLock { $0.stop } }

    /// Whether the host (or the watchdog monitor) requested a stop since the last reset — a
    /// PANIC alone does not count.
    public var isHostStopRequested: Bool { state.withLock { $0.hostStop } }

    /// Clears everything for a fresh start of the core: PENDING, stop, console, panic, watchdog, time.
    public func reset() {
        let now = clock.now
        state.withLock { s in s = State(started: now, generation: s.generation + 1) }
        gateRequested.store(false, ordering: .sequentiallyConsistent)
        watchdogWake.signal()
        timerWake.signal()
    }

    /// Raises PENDING & IRQ_ENABLE ≠ 0 as an interrupt on `line` from now on (its level is set at
    /// once), or stops raising it (`nil`).
    func setExternalInterruptLine(_ line: (any InterruptLevelSink)?) {
        state.withLock { s in
            s.externalLine = line
            s.pendingChanged()
        }
    }

    /// What CORE_CLOCK reads for the rest of this start (`nil`: 0, no core timers).
    func setCoreClock(_ rate: CoreClockRate?) {
        state.withLock { $0.coreClockHertz = rate.map { UInt32(clamping: $0.hertz) } ?? 0 }
    }

    /// Records the fault whose handler runs now (`nil`: none), for a crash report to name it.
    func setFaultBeingHandled(_ fault: String?) { state.withLock { $0.faultBeingHandled = fault } }
    /// The fault whose handler the firmware runs, if any (vectored faults).
    public var faultBeingHandled: String? { state.withLock { $0.faultBeingHandled } }

    /// Which start the mailbox serves (it counts ``reset()``s).
    public var generation: Int { state.withLock { $0.generation } }

    /// The PANIC code the firmware wrote since the last reset.
    public var panicCode: UInt32? { state.withLock { $0.panicCode } }

    /// Whether the armed watchdog has gone unkicked for longer than its timeout of active
    /// (not blocked) core time.
    public var watchdogExpired: Bool {
        state.withLock { s in
            guard let timeout = s.watchdogTimeout else { return false }
            return activeTime(s) - s.watchdogKickedAtActive > timeout
        }
    }

    /// Blocks until the armed watchdog expires (true), or until a stop or a reset after start
    /// `generation` (false). It wakes at the earliest moment the watchdog could expire — active
    /// time runs no faster than the clock — and when an arm brings that moment forward: the core's
    /// WAITs and watchdog kicks do not wake it.
    public func waitForWatchdogExpiry(generation: Int) -> Bool {
        while true {
            let now = clock.now
            let (over, left): (Bool, Duration?) = state.withLock { s in
                guard !s.stop, s.generation == generation else { return (true, nil) }
                // No timeout armed, or the clock gated (frozen; a resume wakes this): nothing to look at.
                guard let timeout = s.watchdogTimeout, s.power.gatedSince == nil else {
                    s.watchdogLookAt = nil
                    return (false, nil)
                }
                let active = activeTime(s, at: now)
                let left = timeout - (active - s.watchdogKickedAtActive)
                s.watchdogLookAt = active + max(.zero, left)
                return (false, left)
            }
            if over { return false }
            if let left, left < .zero { return true }
            _ = clock.wait(for: watchdogWake, until: left.map { now + $0 + .microseconds(1) })
        }
    }

    private func activeTime(_ s: State) -> Duration { activeTime(s, at: clock.now) }

    private func activeTime(_ s: State, at now: ClockInstant) -> Duration {
        let blockedNow = (s.blockedSince.map { now - $0 } ?? .zero) + (s.debugHaltedSince.map { now - $0 } ?? .zero)
        return (now - s.started) - s.blocked - blockedNow - s.power.gatedTime(at: now)
    }

    /// A debugger halted (`true`) or released (`false`) the core. Like a hardware debug unit
    /// freezing the watchdog on halt, time halted does not count as active time: sitting at a
    /// breakpoint does not make the watchdog fire.
    public func setHaltedByDebugger(_ halted: Bool) {
        state.withLock { s in
            if halted {
                if s.debugHaltedSince == nil { s.debugHaltedSince = clock.now }
            } else if let since = s.debugHaltedSince {
                s.blocked += clock.now - since
                s.debugHaltedSince = nil
            }
        }
    }

    // MARK: Remote side (registers)

    /// A 32-bit register read. WAIT blocks (see ``waitForInterrupt(timeout:)``). Unknown offsets read 0.
    public func read(_ offset: Int) -> UInt32 {
        switch Register(rawValue: offset) {
        case .magic: Self.magic
        case .version: Self.version
        case .pending: pendingBits
        case .wait: waitForInterrupt(releasingForDebugger: true)
        case .ticksLow:
            latchTicks()
        case .ticksHigh: state.withLock { $0.ticksHighLatch }
        case .pmControl, .pmRequest, .pmReply, .pmStatus: readPowerRegister(offset)
        case .coreClock: state.withLock { $0.coreClockHertz }
        case .irqEnable: state.withLock { $0.irqEnable }
        default: 0
        }
    }

    /// A 32-bit register write. Unknown offsets and read-only registers ignore it.
    public func write(_ offset: Int, _ value: UInt32) {
        switch Register(rawValue: offset) {
        case .kick: kick(NotifyID(value))
        case .ack: acknowledge(value)
        case .console: console(UInt8(truncatingIfNeeded: value))
        case .panic: panic(value)
        case .watchdog: armWatchdog(milliseconds: value)
        case .sleep: sleep(microseconds: value, releasingForDebugger: true)
        case .pmControl, .pmRequest, .pmReply, .pmStatus: writePowerRegister(offset, value)
        case .irqEnable:
            state.withLock { s in
                s.irqEnable = value
                s.pendingChanged()
            }
        default: break
        }
    }

    /// KICK: notifies the host with id `id`; above 31 it is ignored and reported (the register's
    /// value is the firmware's, unchecked until here).
    public func kick(_ id: NotifyID) {
        guard id.rawValue < UInt32(Self.notifyIDCount) else {
            emit(.invalidKick(id.rawValue))
            return
        }
        emit(.kick(id))
        hostInterrupts.raise(id)
    }

    /// PENDING: the ids the host kicked and the firmware has not acknowledged.
    public var pendingBits: UInt32 { state.withLock { $0.pending } }

    /// ACK (write 1 to clear).
    public func acknowledge(_ bits: UInt32) {
        state.withLock { s in
            s.pending &= ~bits
            s.pendingChanged()
        }
    }

    /// WAIT: blocks until PENDING ≠ 0, a suspend request or a resume the firmware has not been
    /// woken for yet, a stop, or `timeout`; returns PENDING without clearing it (0 when released
    /// by a stop or the timeout). The time blocked does not count for the watchdog.
    ///
    /// When the host gates the clock meanwhile, the core parks right here, inside the WAIT (an
    /// emulated core inside its MMIO read, so its run is not stopped: a stop inside a run makes
    /// Unicorn re-execute the block, see docs/remotesim.md), and the timeout does not run while parked.
    /// - Parameter releasingForDebugger: an emulated core's MMIO read: a debugger's halt request
    ///   ends the park too (WAIT then returns 0 and the core halts between runs, still gated).
    public func waitForInterrupt(timeout: Duration? = nil, releasingForDebugger: Bool = false) -> UInt32 {
        var deadline = timeout.map { clock.now + $0 }
        return whileIdle {
            while true {
                let (pending, stop, breakWait, gated, powerEvent) = state.withLock { s in
                    defer { s.breakWait = false }
                    return (s.pending, s.stop, s.breakWait, s.power.gate != .open, s.power.takeWakeEvent())
                }
                if stop || breakWait { return 0 }
                if gated {
                    let parked = parkIfGated(releaseOnBreak: releasingForDebugger, consumingBreak: false)
                    deadline = deadline.map { $0 + parked }
                    continue
                }
                if pending != 0 || powerEvent { return pending }
                if let deadline, clock.now >= deadline { return 0 }
                _ = clock.wait(for: wake, until: deadline)
            }
        }
    }

    /// Runs `body` (a wait of native firmware's own) as time the core spends idle: the watchdog
    /// does not count it, and the board's waiters look at memory as when the core WAITs.
    public func whileIdle<T>(_ body: () throws -> T) rethrows -> T {
        state.withLock { $0.blockedSince = clock.now }
        idleWaiters?.changed()
        defer {
            state.withLock { s in
                if let since = s.blockedSince { s.blocked += clock.now - since }
                s.blockedSince = nil
            }
        }
        return try body()
    }

    /// SLEEP: the core sleeps `microseconds` of its own time, or until PENDING ≠ 0 or a stop.
    public func sleep(microseconds: UInt32, releasingForDebugger: Bool = false) {
        _ = waitForInterrupt(timeout: .microseconds(Int64(microseconds)), releasingForDebugger: releasingForDebugger)
    }

    /// CONSOLE: appends a byte; `\n` ends the line, `\r` is dropped, lines wrap at 256 bytes.
    public func console(_ byte: UInt8) {
        let line: [UInt8]? = state.withLock { s in
            switch byte {
            case UInt8(ascii: "\r"): return nil
            case UInt8(ascii: "\n"):
                defer { s.consoleLine = [] }
                return s.consoleLine
            default:
                s.consoleLine.append(byte)
                guard s.consoleLine.count >= Self.consoleLineLimit else { return nil }
                defer { s.consoleLine = [] }
                return s.consoleLine
            }
        }
        if let line { emit(.consoleLine(String(decoding: line, as: UTF8.self))) }
    }

    /// PANIC: records the code and asks the core to stop; the board reports a crash.
    public func panic(_ code: UInt32) {
        state.withLock { s in
            if s.panicCode == nil { s.panicCode = code }
            s.stop = true
        }
        emit(.panic(code))
        wake.signal()
        watchdogWake.signal()
        timerWake.signal()
        hostWrites.changed()
        callbacks.withLock { $0.stopListener }?()
    }

    /// WATCHDOG: arms (or kicks) with a timeout in ms of active core time; 0 disarms.
    public func armWatchdog(milliseconds: UInt32) {
        let sooner = state.withLock { s in
            s.watchdogTimeout = milliseconds == 0 ? nil : .milliseconds(Int64(milliseconds))
            s.watchdogKickedAtActive = activeTime(s)
            // A kick only moves the expiry later; the monitor is woken only when it must look sooner.
            guard let timeout = s.watchdogTimeout else { return false }
            return s.watchdogLookAt.map { s.watchdogKickedAtActive + timeout < $0 } ?? true
        }
        if sooner { watchdogWake.signal() }
        emit(.watchdog(milliseconds: milliseconds))
    }

    /// TICKS_LO: the low word of the microsecond count; latches the high word for TICKS_HI.
    private func latchTicks() -> UInt32 {
        let now = ticks
        state.withLock { $0.ticksHighLatch = UInt32(truncatingIfNeeded: now >> 32) }
        return UInt32(truncatingIfNeeded: now)
    }

    /// Microseconds of the core's time since the last reset (what TICKS_LO/HI read): time with
    /// the clock gated (suspended) does not count — the core's timer stops with its clock.
    public var ticks: UInt64 { UInt64(clamping: coreTime.totalMicroseconds) }

    /// The core's own time since the last reset: what TICKS, the CLINT's `mtime` and SysTick
    /// count. Time with the clock gated (suspended) does not count.
    public var coreTime: Duration {
        let now = clock.now
        return state.withLock { s in (now - s.started) - s.power.gatedTime(at: now) }
    }

    /// Whether the core's clock is gated now (suspended: core time stands still).
    public var isClockGated: Bool { state.withLock { $0.power.gatedSince != nil } }
}

/// An interrupt input of the core that a device drives with a level (the mailbox's PENDING ≠ 0).
/// Called under the device's lock: it must only record the level (an atomic), never block.
public protocol InterruptLevelSink: Sendable {
    func setLevel(_ raised: Bool)
}
