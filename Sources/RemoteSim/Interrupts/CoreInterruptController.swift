import MetalIO

/// An emulated core's interrupt hardware, as the run loop (``EmulatedCPU``) uses it between
/// runs: RV32's machine-mode interrupts and CLINT (``MachineInterrupts``), the Cortex-M4's System
/// Control Space (``SystemControlSpace``). Everything here runs on the core's thread while the
/// CPU is stopped, except ``runDeadlines()`` (its own thread) and the MMIO callbacks (the core's
/// thread, inside a run).
protocol CoreInterruptController: AnyObject, Sendable {
    var mailbox: Mailbox { get }
    /// Where its registers are, and what they are called in errors.
    var window: (base: UInt64, size: Int, name: String) { get }
    func read(_ offset: Int, size: Int) -> UInt64
    func write(_ offset: Int, size: Int, _ value: UInt64)
    /// A run ended because a trap handler returned to `address` (RV32 `mret`, seen by the block hook).
    func returned(to address: UInt64, engine: UnicornEngine)
    /// The input the mailbox's PENDING & IRQ_ENABLE ≠ 0 drives.
    var externalLine: any InterruptLevelSink { get }
    /// The timer's deadline thread (``runTimerDeadlines(mailbox:next:)``), until ``end()``.
    func runDeadlines()
    func end()
    /// Takes the interrupt due now, the CPU stopped at `pc` (a block boundary: the instruction
    /// to return to). Returns the handler's address, or `nil` when none is due.
    func takeInterrupt(at pc: UInt64, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64?
    /// A CPU exception the firmware handles itself: where the CPU goes on, or `nil` for a fault
    /// that halts the core.
    func handle(_ fault: CPUFault, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64?
    /// Before a `wfi` idles: `nil` when an interrupt is already there to wake it, else the
    /// timer's deadline that would (`.some(nil)`: none; a host kick or a stop still wakes it).
    func idleDeadline(engine: UnicornEngine) -> ClockInstant??
    /// The core woke from `wfi`: timers that came due while it slept raise their interrupt now
    /// (not when the deadline thread next looks).
    func woke()
    /// `monitor irq`: what is enabled, pending and active, priorities, the timer (any thread).
    var report: String { get }
    /// The fault whose handler runs, and whether faults are vectored at all.
    var faults: FaultWatch { get }
    /// With ``FaultHandling/vectored``: enters the firmware's handler of `fault` (the CPU
    /// stopped at the faulting instruction). `nil` for a fault it has no handler for (it crashes).
    func deliver(_ fault: CPUFault, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64?
}

extension CoreInterruptController {
    /// The earlier of a deadline and a time from now (`nil` when neither is set).
    func earliest(_ deadline: ClockInstant?, _ left: Duration?) -> ClockInstant? {
        let other = left.map { mailbox.clock.now + $0 }
        guard let deadline else { return other }
        guard let other else { return deadline }
        return min(deadline, other)
    }

    /// The crash a trap the board cannot take makes, with the CPU's registers at `pc`.
    func halt(_ error: some Error, at pc: UInt64, engine: UnicornEngine) -> FirmwareHalt {
        var registers = engine.registers
        registers["pc"] = pc
        return FirmwareHalt(.fault(address: pc, message: "\(error)"), programCounter: pc, registers: registers)
    }
}

extension MachineInterrupts: CoreInterruptController {
    var window: (base: UInt64, size: Int, name: String) { (Self.clintBase, Self.clintSize, "the CLINT") }

    func woke() { _ = timerDeadline(timerEnabled: true) }

    /// The trap `mcause` names returned (`mret`) to `address`.
    func returned(to address: UInt64, engine: UnicornEngine) { returning(to: address, engine: engine) }

    func takeInterrupt(at pc: UInt64, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64? {
        if faults.handling != nil {
            if faultHandlerReturned(engine: engine) { faults.ended() } else { try faults.checkHung(at: pc, controller: self, engine: engine) }
        }
        guard let interrupt = interruptToTake(on: engine) else { return nil }
        return try enter(.interrupt(interrupt), at: pc, engine: engine)
    }

    /// A memory fault or an illegal instruction into the trap handler, with `mcause` and `mtval`;
    /// one raised before the handler of the last returned is a lockup.
    func deliver(_ fault: CPUFault, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64? {
        guard faults.mode == .vectored, let (exception, value) = exception(for: fault, engine: engine) else { return nil }
        let described = "\(exception) at \(hex(fault.programCounter))" + (fault.address.map { " (address \(hex($0)))" } ?? "")
        if let handling = faults.handling, !faultHandlerReturned(engine: engine) {
            throw halt(FaultWatch.Lockup(fault: described, during: handling.fault), at: fault.programCounter, engine: engine)
        }
        let interruptsWereEnabled = engine.read(.mstatus) & MachineStatus.mie != 0
        let handler = try enter(.exception(exception, value: value), at: fault.programCounter, engine: engine)
        faults.began(described, interruptsWereEnabled: interruptsWereEnabled)
        return handler
    }

    /// `ecall` and `ebreak` trap into `mtvec`.
    func handle(_ fault: CPUFault, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64? {
        switch fault.kind {
        case .environmentCall: try enter(.exception(.environmentCall, value: 0), at: fault.programCounter, engine: engine)
        case .breakpoint: try enter(.exception(.breakpoint, value: 0), at: fault.programCounter, engine: engine)
        default: nil
        }
    }

    /// `wfi` wakes on `mip & mie`, whatever `mstatus.MIE` says, and on the timer when MTIE is set.
    func idleDeadline(engine: UnicornEngine) -> ClockInstant?? {
        let enabled = engine.read(.mie)
        guard pendingBits & enabled == 0 else { return nil }
        return .some(earliest(timerDeadline(timerEnabled: enabled & MachineInterrupt.timer.bit != 0), faults.timeLeft))
    }

    private func enter(_ cause: MachineTrap.Cause, at pc: UInt64, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64 {
        do {
            let handler = UInt64(try MachineTrap.enter(cause, at: UInt32(truncatingIfNeeded: pc), on: engine))
            engine.trapEntered()
            mailbox.tookTrap(TrapEntry(cause: "\(cause)", programCounter: DeviceAddress(pc), handler: DeviceAddress(handler)))
            return handler
        } catch {
            throw halt(error, at: pc, engine: engine)
        }
    }
}

extension MachineInterrupts {
    var report: String {
        let pending = pendingBits
        let raised = MachineInterrupt.byPriority.filter { pending & $0.bit != 0 }.map { "\($0) (mcause 0x8000000\(String($0.rawValue, radix: 16)))" }
        let compare = mtimecmp
        return "RV32 machine-mode interrupts (mstatus, mie, mip, mtvec: `info registers` in gdb)\n"
            + "raised: " + (raised.isEmpty ? "none" : raised.joined(separator: ", ")) + "\n"
            + "mtime \(mtime), mtimecmp " + (compare == .max ? "not armed" : "\(compare)") + ", core clock \(rate)\n"
    }
}

extension SystemControlSpace {
    var report: String {
        let s = snapshot
        let line = inputs.pendingBits & 1 != 0
        var out = "Cortex-M4 exceptions: PRIGROUP \(s.priorityGrouping) (group mask 0x\(String(s.groupMask & Self.implementedPriorityMask, radix: 16))), "
            + "IPSR \(s.current)" + (s.current == 0 ? " (Thread mode)" : " (\(ArmException(number: s.current).map(\.description) ?? "?"))") + ", "
            + "execution priority from active exceptions: " + (s.activePriority == Self.threadPriority ? "none" : "\(s.activePriority)") + "\n"
        out += "exception          enabled        pending active priority\n"
        var rows: [ArmException] = [.nmi, .hardFault, .memManage, .busFault, .usageFault, .svCall, .debugMonitor, .pendSV, .sysTick]
        for irq in 0..<Self.irqCount {
            let e = ArmException.irq(irq)
            let mask = UInt32(1) << UInt32(irq)
            if irq == 0 || (s.enabled | s.pendingIRQ | s.activeIRQ) & mask != 0 || s.irqPriority[irq] != 0 { rows.append(e) }
        }
        for e in rows {
            let enabled: String
            if let irq = e.irq { enabled = s.enabled & (1 << UInt32(irq)) != 0 ? "yes" : "no" } else {
                let bit = SHCSR.enable(e)
                enabled = bit == 0 ? "always" : (s.faultEnables & bit != 0 ? "yes" : "no (HardFault)")
            }
            let priority = e.fixedPriority.map { "\($0) (fixed)" } ?? "0x" + String(s.priority(of: e), radix: 16)
            func column(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(1, width - text.count)) }
            out += column(e.description, 19) + column(enabled, 15) + column(s.isPending(e, line: line) ? "yes" : "no", 8)
                + column(s.isActive(e) ? "yes" : "no", 7) + priority + "\n"
        }
        let tick = s.sysTick
        out += "SysTick: " + (tick.enabled ? "counting" : "off") + (tick.interrupts ? ", TICKINT" : "")
            + ", RVR \(tick.reload), CVR \(tick.value(at: rate.cycles(in: mailbox.coreTime))), core clock \(rate)\n"
        out += "VTOR 0x\(String(s.vtor, radix: 16)), CFSR 0x\(String(s.cfsr, radix: 16)), HFSR 0x\(String(s.hfsr, radix: 16))\n"
        return out
    }
}

extension SystemControlSpace: CoreInterruptController {
    var window: (base: UInt64, size: Int, name: String) { (Self.base, Self.size, "the System Control Space") }

    func returned(to address: UInt64, engine: UnicornEngine) {}
    func woke() { _ = timerDeadline() }

    func takeInterrupt(at pc: UInt64, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64? {
        if resetRequested {
            throw halt(ResetRequest(), at: pc, engine: engine)
        }
        if faults.handling != nil {
            if faultHandlerReturned() { faults.ended() } else { try faults.checkHung(at: pc, controller: self, engine: engine) }
        }
        guard let exception = exceptionToTake(masks: ArmExceptionEntry.masks(of: engine)) else { return nil }
        return try enter(exception, at: pc, engine: engine) { () throws(ArmExceptionError) in
            try ArmExceptionEntry.enter(exception, returnAddress: UInt32(truncatingIfNeeded: pc), cpu: engine, scs: self)
        }
    }

    /// SVC enters SVCall; a branch to EXC_RETURN returns from the exception (or tail-chains).
    func handle(_ fault: CPUFault, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64? {
        let pc = fault.programCounter
        switch fault.kind {
        case .supervisorCall:
            return try enter(.svCall, at: pc, engine: engine) { () throws(ArmExceptionError) in
                try ArmExceptionEntry.enterSynchronous(.svCall, returnAddress: UInt32(truncatingIfNeeded: pc), cpu: engine, scs: self)
            }
        case .exceptionReturn:
            let value = UInt32(truncatingIfNeeded: fault.address ?? pc | 1)
            let returning = ArmException(number: Int(engine.read(.xpsr) & 0x1FF))?.description ?? "Thread mode"
            do {
                let outcome = try ArmExceptionEntry.returnFrom(value, cpu: engine, scs: self)
                switch outcome {
                case let .returned(to: address):
                    mailbox.returnedFromTrap(TrapReturn(cause: returning, returnAddress: DeviceAddress(UInt64(address))))
                    return UInt64(address)
                case let .tailChained(next, handler):
                    mailbox.returnedFromTrap(TrapReturn(cause: returning, returnAddress: DeviceAddress(UInt64(handler))))
                    mailbox.tookTrap(TrapEntry(cause: "\(next)", programCounter: DeviceAddress(pc), handler: DeviceAddress(UInt64(handler)), detail: "tail-chained"))
                    return UInt64(handler)
                }
            } catch {
                return try recover(error, at: pc, engine: engine)
            }
        default:
            return nil
        }
    }

    /// WFI wakes on an exception that would preempt were PRIMASK clear, and on SysTick's deadline.
    func idleDeadline(engine: UnicornEngine) -> ClockInstant?? {
        guard exceptionToTake(masks: ArmExceptionEntry.masks(of: engine), ignoringPrimask: true) == nil else { return nil }
        return .some(earliest(timerDeadline(), faults.timeLeft))
    }

    /// A memory fault, an undefined instruction or a BKPT into the firmware's fault handler.
    func deliver(_ fault: CPUFault, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64? {
        guard faults.mode == .vectored, let (exception, cfsr, hfsr, bfar) = armFault(for: fault) else { return nil }
        let described = "\(fault.summary) at \(hex(fault.programCounter))" + (fault.address.map { " (address \(hex($0)))" } ?? "")
        return try enterFault(exception, cfsr: cfsr, hfsr: hfsr, bfar: bfar, described: described, at: fault.programCounter, engine: engine)
    }

    /// What a refused entry or return becomes: with vectored faults, the fault it is (a bad
    /// EXC_RETURN is a UsageFault, an SVC that cannot be taken a HardFault), entered at `pc` —
    /// the handler's address is returned; else (or for a stacking or vector error) the crash.
    private func recover(_ error: ArmExceptionError, at pc: UInt64, engine: UnicornEngine) throws(FirmwareHalt) -> UInt64 {
        guard faults.mode == .vectored, let (exception, cfsr, hfsr) = armFault(for: error) else { throw halt(error, at: pc, engine: engine) }
        return try enterFault(exception, cfsr: cfsr, hfsr: hfsr, bfar: nil, described: "\(error)", at: pc, engine: engine)
    }

    private func enter(_ exception: ArmException, at pc: UInt64, engine: UnicornEngine,
                       _ body: () throws(ArmExceptionError) -> UInt32) throws(FirmwareHalt) -> UInt64 {
        do {
            let handler = UInt64(try body())
            mailbox.tookTrap(TrapEntry(cause: "\(exception)", programCounter: DeviceAddress(pc), handler: DeviceAddress(handler)))
            return handler
        } catch {
            return try recover(error, at: pc, engine: engine)
        }
    }

    /// AIRCR.SYSRESETREQ, reported as a crash: the host's remoteproc recovers a remote that reset itself.
    struct ResetRequest: Error, CustomStringConvertible {
        var description: String { "the firmware requested a system reset (AIRCR.SYSRESETREQ)" }
    }
}
