import MetalIO
import Synchronization

/// What an emulated core does with a fault (a memory fault, an undefined instruction, a bad
/// exception return): a board option (docs/remotesim.md, "Faults").
public enum FaultHandling: String, Sendable, Hashable, CaseIterable {
    /// The core halts and the host sees a crash with the fault (the default).
    case crash
    /// The fault enters the firmware's own handler — HardFault, MemManage, BusFault or UsageFault
    /// with CFSR, HFSR, MMFAR and BFAR set on the Cortex-M4; the trap handler with `mcause` and
    /// `mtval` on RV32. A handler that PANICs, resets through AIRCR or does not return within
    /// ``FaultWatch/handlerLimit`` is a crash that names the original fault; a fault inside the
    /// handler (a lockup) is a crash.
    case vectored
}

/// The fault whose handler runs, if any: for a crash report that names it, and for a handler
/// that never returns. Shared by the core thread (between runs) and the timer's deadline thread.
final class FaultWatch: Sendable {
    /// How long (core time) a fault handler may run before the board calls the core hung.
    static let handlerLimit: Duration = .seconds(1)

    struct Handling: Sendable {
        var fault: String
        var since: Duration
        /// RV32: whether `mstatus.MIE` was set when the trap was taken (what `mret` brings back).
        var interruptsWereEnabled: Bool
    }
    private let state = MetalMutex<(handling: Handling?, expiryTold: Bool)>((nil, false))
    private let mailbox: Mailbox
    private let stopper: EmulationStopper
    let mode: FaultHandling

    init(_ mode: FaultHandling, mailbox: Mailbox, stopper: EmulationStopper) {
        self.mode = mode
        self.mailbox = mailbox
        self.stopper = stopper
    }

    var handling: Handling? { state.withLock { $0.handling } }

    /// A fault handler was entered for `fault` (a fault escalated from inside one keeps the first:
    /// the one a report names).
    func began(_ fault: String, interruptsWereEnabled: Bool = false) {
        let now = mailbox.coreTime
        let first = state.withLock { s in
            guard s.handling == nil else { return false }
            s = (Handling(fault: fault, since: now, interruptsWereEnabled: interruptsWereEnabled), false)
            return true
        }
        guard first else { return }
        mailbox.setFaultBeingHandled(fault)
        mailbox.timerWake.signal()
    }

    /// The handler returned.
    func ended() {
        state.withLock { $0 = (nil, false) }
        mailbox.setFaultBeingHandled(nil)
    }

    /// How long until the running handler has taken too long (`nil`: none runs).
    var timeLeft: Duration? {
        guard let handling else { return nil }
        return max(.zero, handling.since + Self.handlerLimit - mailbox.coreTime)
    }

    /// For the deadline thread: how long until the handler's time is up (`nil`: no handler, or
    /// the core was already told). When it is up, the run is stopped once, so the core thread
    /// looks (``checkHung(at:controller:engine:)``).
    func deadlineWait() -> Duration? {
        guard let left = timeLeft else { return nil }
        guard left == .zero else { return left }
        let tell = state.withLock { s in
            defer { s.expiryTold = true }
            return s.handling != nil && !s.expiryTold
        }
        if tell { stopper.stopOnce() }
        return nil
    }

    /// The crash when the handler has run out of time (the core thread, between runs).
    func checkHung(at pc: UInt64, controller: some CoreInterruptController, engine: UnicornEngine) throws(FirmwareHalt) {
        guard let handling, let left = timeLeft, left == .zero else { return }
        throw controller.halt(HandlerHung(fault: handling.fault), at: pc, engine: engine)
    }

    struct HandlerHung: Error, CustomStringConvertible {
        var fault: String
        var description: String { "the firmware's fault handler did not return within \(FaultWatch.handlerLimit) of core time after: \(fault)" }
    }

    /// A fault raised while the handler of another runs.
    struct Lockup: Error, CustomStringConvertible {
        var fault: String
        var during: String
        var description: String { "lockup: \(fault), inside the handler of: \(during)" }
    }
}

// MARK: RV32

extension MachineInterrupts {
    /// The synchronous exception a fault is, with `mtval`; `nil` for what the trap handler does not get.
    func exception(for fault: CPUFault, engine: UnicornEngine) -> (MachineException, UInt32)? {
        let address = UInt32(truncatingIfNeeded: fault.address ?? 0)
        switch fault.kind {
        case .unmappedRead, .protectedRead: return (.loadAccessFault, address)
        case .unmappedWrite, .protectedWrite: return (.storeAccessFault, address)
        case .unmappedFetch, .protectedFetch: return (.instructionAccessFault, address)
        case .illegalInstruction:
            // mtval: the instruction's bits (16 of them for a compressed one), 0 when unreadable.
            guard let bytes = engine.readMemory(fault.programCounter, count: 4) else { return (.illegalInstruction, 0) }
            let word = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
            return (.illegalInstruction, word & 3 == 3 ? word : word & 0xFFFF)
        default: return nil
        }
    }

    /// Whether the trap handler of the watched fault has returned: `mret` sets MPIE and
    /// restores MIE, so it returned once MIE is back (it was set at the trap) or MPIE is set (it
    /// was clear). A handler that changes `mstatus` itself can fool this (docs/remotesim.md).
    func faultHandlerReturned(engine: UnicornEngine) -> Bool {
        guard let handling = faults.handling else { return true }
        let status = engine.read(.mstatus)
        return handling.interruptsWereEnabled ? status & MachineStatus.mie != 0 : status & MachineStatus.mpie != 0
    }
}

// MARK: Cortex-M4

/// CFSR and HFSR bits the board sets (ARMv7-M B3.2.15, B3.2.16).
enum FaultStatus {
    static let iaccviol: UInt32 = 1 << 0, ibuserr: UInt32 = 1 << 8, preciserr: UInt32 = 1 << 9, bfarValid: UInt32 = 1 << 15
    static let undefinstr: UInt32 = 1 << 16, invstate: UInt32 = 1 << 17, invpc: UInt32 = 1 << 18
    static let forced: UInt32 = 1 << 30, debugEvent: UInt32 = 1 << 31
}

extension SystemControlSpace {
    /// The configurable fault (or HardFault) a CPU fault is, and the status bits it sets.
    func armFault(for fault: CPUFault) -> (ArmException, cfsr: UInt32, hfsr: UInt32, bfar: UInt32?)? {
        switch fault.kind {
        case .unmappedRead, .unmappedWrite, .protectedRead, .protectedWrite:
            return (.busFault, FaultStatus.preciserr | FaultStatus.bfarValid, 0, UInt32(truncatingIfNeeded: fault.address ?? 0))
        case .unmappedFetch, .protectedFetch:
            return (.busFault, FaultStatus.ibuserr, 0, nil)
        case .illegalInstruction, .exception(1):
            return (.usageFault, FaultStatus.undefinstr, 0, nil)
        case .exception(7):
            return (.hardFault, 0, FaultStatus.debugEvent, nil)     // BKPT with no debugger
        default:
            return nil
        }
    }

    /// The fault an exception entry or return the board refused is, when it is one the firmware handles.
    func armFault(for error: ArmExceptionError) -> (ArmException, cfsr: UInt32, hfsr: UInt32)? {
        switch error.reason {
        case .invalidReturn: (.usageFault, FaultStatus.invpc, 0)
        case .returnNotThumb: (.usageFault, FaultStatus.invstate, 0)
        case .escalation: (.hardFault, 0, FaultStatus.forced)
        default: nil
        }
    }

    /// Enters the handler of `fault`, raised by the instruction at `pc`: the configurable fault
    /// when SHCSR enables it and its priority preempts, else HardFault (HFSR.FORCED); a fault that
    /// not even HardFault can preempt (in HardFault or NMI, or under FAULTMASK) is a lockup.
    func enterFault(_ fault: ArmException, cfsr: UInt32, hfsr: UInt32, bfar: UInt32?, described: String, at pc: UInt64,
                    engine: UnicornEngine) throws(FirmwareHalt) -> UInt64 {
        let s = snapshot
        let execution = min(s.activePriority, ArmExceptionEntry.masks(of: engine).priority(groupMask: s.groupMask))
        let configurable = fault != .hardFault && s.faultEnables & SHCSR.enable(fault) != 0 && s.groupPriority(of: fault) < execution
        let target: ArmException = configurable ? fault : .hardFault
        guard target.fixedPriority.map({ $0 < execution }) ?? true else {
            throw halt(FaultWatch.Lockup(fault: described, during: faults.handling?.fault ?? ArmException(number: s.current)?.description ?? "?"),
                       at: pc, engine: engine)
        }
        withState { s in
            s.cfsr |= cfsr
            s.hfsr |= hfsr | (configurable || fault == .hardFault ? 0 : FaultStatus.forced)
            if let bfar { s.bfar = bfar }
        }
        let handler: UInt32
        do {
            handler = try ArmExceptionEntry.enter(target, returnAddress: UInt32(truncatingIfNeeded: pc), cpu: engine, scs: self)
        } catch {
            throw halt(FaultWatch.Lockup(fault: "\(error)", during: described), at: pc, engine: engine)
        }
        faults.began(described)
        mailbox.tookTrap(TrapEntry(cause: "\(target)", programCounter: DeviceAddress(pc), handler: DeviceAddress(UInt64(handler)), detail: described))
        return UInt64(handler)
    }

    /// Whether the watched fault's handler has returned: no fault exception is active any more.
    func faultHandlerReturned() -> Bool {
        let s = snapshot
        return ![ArmException.hardFault, .memManage, .busFault, .usageFault].contains { s.isActive($0) }
    }
}
