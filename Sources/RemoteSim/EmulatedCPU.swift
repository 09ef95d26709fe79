#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Remoteproc
import Synchronization

/// Firmware that is the loaded ELF itself, executed on an emulated CPU (Unicorn) in the core's
/// thread: the board's memories are mapped at their device addresses over the same host memory
/// the host side reads, and the mailbox is MMIO. `wfi` and WAIT idle the thread until a host
/// kick, a timer interrupt or a stop. Interrupts (``CoreInterruptController``): RV32 has
/// machine-mode interrupts and a CLINT (``MachineInterrupts``), `ecall` and `ebreak` trap into
/// `mtvec`; the Cortex-M4 has the ARMv7-M exception model with NVIC, SCB and SysTick
/// (``SystemControlSpace``), SVC and PendSV. The mailbox is an interrupt on both. A fault, an
/// illegal instruction or a CPU exception halts the core and is reported with the PC and the
/// registers.
public struct EmulatedCPU: FirmwareProgram {
    public let architecture: CPUArchitecture
    /// When set, every executed instruction is counted into it (slow; for measurements).
    public let instructionCounter: InstructionCounter?
    /// A GDB server that debugs this core while it runs.
    public let debugger: GDBServer?
    /// What the core's timers count at (RV32: the CLINT's `mtime`; Cortex-M4: SysTick).
    public let coreClock: CoreClockRate
    /// Whether a fault crashes the core or enters the firmware's own handler.
    public let faults: FaultHandling
    /// Whether the PC is kept exact inside a run (a hook call per instruction: several times
    /// slower on tight loops), so a memory fault — and a core dump of it — names the faulting
    /// instruction rather than the start of its translated block. Always on with vectored faults
    /// and with a debugger.
    public let exactPCs: Bool
    /// The engine opened when the board was powered (``prepare(memories:)``), for the next run.
    let reserve = EngineReserve()

    public init(_ architecture: CPUArchitecture, coreClock: CoreClockRate = .default, faults: FaultHandling = .crash,
                exactPCs: Bool = false, countingInto counter: InstructionCounter? = nil, debugger: GDBServer? = nil) {
        self.architecture = architecture
        self.coreClock = coreClock
        self.faults = faults
        self.exactPCs = exactPCs
        self.instructionCounter = counter
        self.debugger = debugger
    }

    /// Opens the engine for the next run and maps `memories`, so a start does not wait for it.
    public func prepare(memories: [RemoteprocMemory]) {
        reserve.prepare(architecture, memories: memories)
    }

    public func run(on core: RemoteCore) throws {
        let engine: UnicornEngine
        do {
            engine = try reserve.take(architecture, memories: core.memories) ?? EngineReserve.open(architecture, memories: core.memories)
            if let instructionCounter { try engine.countInstructions(into: instructionCounter) }
            // A vectored fault's handler must see where the fault was, and return past it; a
            // debugger must stop at the faulting instruction, not at the start of its block.
            if faults == .vectored || debugger != nil || exactPCs { try engine.makeFaultPCsExact() }
            if let debugger { try engine.installDebugHooks(debugger.session.hooks) }
        } catch {
            throw FirmwareHalt(.fault(address: 0, message: "cannot set up the emulated CPU: \(error)"))
        }
        let mailbox = core.mailbox, clock = core.mailbox.clock
        let session = debugger?.session
        let callbackStopper = engine.stopper
        // Virtual time: the core's instructions are its time (charged before every device access).
        let time = clock.isVirtual ? VirtualCoreTime(gate: engine.stopper.gate, clock: clock, rate: coreClock) : nil
        let mmio = UnicornEngine.MMIO(read: { [weak mailbox] offset, _ in
            time?.charge()
            guard let mailbox else { return 0 }
            let value = UInt64(mailbox.read(Int(offset)))
            // A stop, or a debugger's halt, while the core waited in WAIT: end the run here. (The
            // clock gate does not: WAIT parks inside, and the run goes on after the resume.)
            if mailbox.isStopRequested || session?.haltRequested.load(ordering: .acquiring) == true { callbackStopper.stopOnce() }
            return value
        }, write: { [weak mailbox] offset, _, value in
            time?.charge()
            mailbox?.write(Int(offset), UInt32(truncatingIfNeeded: value))
            time?.settle()
        })
        do { try engine.mapMMIO(at: core.layout.mailboxAddress.rawValue, size: 4096, mmio) } catch {
            throw FirmwareHalt(.fault(address: core.layout.mailboxAddress.rawValue, message: "cannot map the mailbox: \(error)"))
        }
        let interrupts: any CoreInterruptController = switch architecture {
        case .rv32: MachineInterrupts(rate: coreClock, mailbox: mailbox, inputs: engine.interruptInputs, faults: faults)
        case .cortexM4:
            SystemControlSpace(rate: coreClock, mailbox: mailbox, inputs: engine.interruptInputs,
                               vectorTable: UInt32(truncatingIfNeeded: core.layout.code.deviceAddress.rawValue), faults: faults)
        }
        let window = interrupts.window
        let registers = UnicornEngine.MMIO(read: { offset, size in
            time?.charge()
            return interrupts.read(Int(offset), size: size)
        }, write: { offset, size, value in
            time?.charge()
            interrupts.write(Int(offset), size: size, value)
            time?.settle()
        })
        do { try engine.mapMMIO(at: window.base, size: window.size, registers) } catch {
            throw FirmwareHalt(.fault(address: window.base, message: "cannot map \(window.name): \(error)"))
        }
        mailbox.setExternalInterruptLine(interrupts.externalLine)
        mailbox.setCoreClock(coreClock)
        // Held strongly: the cycle (mailbox → report → controller → mailbox) lasts only while the
        // core runs — the defer below clears it.
        mailbox.setInterruptReport { interrupts.report }
        defer {
            mailbox.setExternalInterruptLine(nil)
            mailbox.setInterruptReport(nil)
        }

        // Boot: Cortex-M from the vector table at 0; RV32 at the entry point, sp at the top of sram.
        var pc: UInt64
        do {
            switch architecture {
            case .cortexM4:
                let vectorBase = core.layout.code.deviceAddress.rawValue
                try engine.setStackPointer(UInt64(try core.load32(vectorBase)))
                pc = UInt64(try core.load32(vectorBase + 4)) & ~1
            case .rv32:
                try engine.setStackPointer(core.layout.sram.deviceAddress.rawValue + UInt64(core.layout.sram.size))
                pc = core.bootAddress.rawValue
            }
        } catch let halt as FirmwareHalt { throw halt } catch {
            throw FirmwareHalt(.fault(address: 0, message: "cannot set the boot registers: \(error)"))
        }

        // A stop (or PANIC) ends the run: from an MMIO callback on this thread, or from the
        // requesting thread, repeated until this thread has returned from the run.
        let running = RunFlag()
        let stopper = engine.stopper
        mailbox.setStopListener { [running] in
            if running.isEmulationThread {
                stopper.stopOnce()          // from an MMIO callback (PANIC): reliable, and must not wait for itself
            } else {
                stopper.stop(while: running, clock: clock)
            }
            session?.wakeCore()
        }
        // Gating the clock ends the run the same way; the core then parks between two instructions.
        // Not waited for: a core parked inside WAIT stays in its run until the resume.
        mailbox.setGateListener { stopper.stopOnce() }
        defer {
            mailbox.setStopListener(nil)
            mailbox.setGateListener(nil)
        }
        // Every halt carries the registers where the core stopped (for crash reports and core dumps).
        func withRegisters(_ halt: FirmwareHalt) -> FirmwareHalt {
            var halt = halt
            // A fault's pc comes from inside a run; the loop's own is between runs.
            halt.cpu = engine.snapshot(pc: halt.programCounter ?? pc, insideRun: halt.programCounter != nil)
            return halt
        }
        // A gated core leaves its registers where the board can take them (a snapshot of a running core).
        let parked = ParkedCore(engine: engine)
        mailbox.setParkCapture { parked.snapshot() }
        defer { mailbox.setParkCapture(nil) }
        guard let session, let debugger else {
            do {
                try withDeadlines(of: interrupts, clock: clock) {
                    try runFreely(engine: engine, core: core, interrupts: interrupts, running: running, parked: parked, time: time, pc: &pc)
                }
            } catch let halt as FirmwareHalt {
                throw withRegisters(halt)
            }
        }
        // The server halts the core: a busy one by ending its run (repeated until it has returned),
        // an idle one by breaking it out of its wait.
        debugger.onHaltRequest = { [weak mailbox, running] in
            mailbox?.breakWait()
            stopper.stop(while: running, clock: clock)
        }
        debugger.onMonitor = { command in core.monitor(command) }
        if session.beginRun() { session.reportStop(.trap) }
        var pendingFault: CPUFault?
        do {
            try withDeadlines(of: interrupts, clock: clock) {
                try runDebugged(engine: engine, core: core, interrupts: interrupts, session: session, running: running, parked: parked, time: time, pc: &pc,
                                pendingFault: &pendingFault)
            }
        } catch let halt as FirmwareHalt {
            let halt = withRegisters(halt)
            let signal = switch halt.reason {
            case .stopped: 9
            case .panic: 6
            case .fault: pendingFault?.kind == .illegalInstruction ? 4 : 11
            }
            session.endRun(signal: signal)
            throw halt
        }
    }

    /// Runs `body` with the thread that raises the timer interrupt at its deadline; ends and
    /// joins it afterwards.
    private func withDeadlines(of interrupts: any CoreInterruptController, clock: any WaitClock, _ body: () throws -> Never) throws -> Never {
        let thread: ClockThread
        do { thread = try clock.startThread(name: "rproc-core-timer") { interrupts.runDeadlines() } } catch {
            throw FirmwareHalt(.fault(address: 0, message: "cannot start the core's timer: \(error)"))
        }
        let outcome = Result { try body() }
        interrupts.end()
        thread.join()
        try outcome.get()
    }

    /// Takes the interrupt the core should take now, if any (between runs: the PC is at a block
    /// boundary, the instruction to return to).
    private func takeInterrupt(_ interrupts: any CoreInterruptController, engine: UnicornEngine, pc: inout UInt64) throws(FirmwareHalt) {
        if let handler = try interrupts.takeInterrupt(at: pc, engine: engine) { pc = handler }
    }

    /// `wfi`: idles until the host kicks (PENDING ≠ 0, as in version 1 of the contract), an
    /// interrupt is there that wakes the core (whatever the global mask says), the timer's
    /// deadline when its interrupt is enabled, or a stop.
    private func idle(_ mailbox: Mailbox, _ interrupts: any CoreInterruptController, engine: UnicornEngine) {
        guard let deadline = interrupts.idleDeadline(engine: engine) else { return }
        _ = mailbox.waitForInterrupt(timeout: deadline.map { $0 - mailbox.clock.now })
        interrupts.woke()
    }

    /// The run loop without a debugger.
    private func runFreely(engine: UnicornEngine, core: RemoteCore, interrupts: any CoreInterruptController, running: RunFlag,
                           parked: ParkedCore, time: VirtualCoreTime?, pc: inout UInt64) throws -> Never {
        let mailbox = core.mailbox
        while true {
            parked.park(at: pc) { mailbox.parkIfGated() }
            guard try running.enter(core, clearing: engine.stopper) else { continue }
            // After the request flag was cleared: an interrupt raised from here on stops the run again.
            do { try takeInterrupt(interrupts, engine: engine, pc: &pc) } catch {
                running.leave()
                throw error
            }
            let outcome = engine.run(from: pc)
            time?.charge()
            running.leave()
            switch outcome {
            case let .fault(fault):
                try core.throwIfStopped()   // a PANIC or a stop that interrupted the run wins
                if let handler = try interrupts.handle(fault, engine: engine) ?? interrupts.deliver(fault, engine: engine) {
                    pc = handler
                    continue
                }
                throw FirmwareHalt(.fault(address: fault.address ?? 0, message: fault.summary), programCounter: fault.programCounter,
                                   registers: fault.registers)
            case let .returned(next):
                pc = next
                try core.throwIfStopped()
                if let address = engine.takeTrapReturn() { interrupts.returned(to: address, engine: engine) }
                // Ended on request (the clock gate, an interrupt, a stale request): not a wfi — look again at the top.
                if engine.stoppedOnRequest || mailbox.isGateRequested { continue }
                idle(mailbox, interrupts, engine: engine)
            }
        }
    }

    /// The run loop with a GDB server: while a debugger is attached, breakpoints, steps,
    /// watchpoints, faults and a PANIC halt the core and are reported; commands run while halted.
    private func runDebugged(engine: UnicornEngine, core: RemoteCore, interrupts: any CoreInterruptController, session: DebugSession,
                             running: RunFlag, parked: ParkedCore, time: VirtualCoreTime?, pc: inout UInt64, pendingFault: inout CPUFault?) throws -> Never {
        let mailbox = core.mailbox
        let hooks = session.hooks
        var panicShown = false
        /// A PANIC the debugger has not been shown yet (a host stop overrides it).
        func unshownPanic() -> UInt32? {
            guard !panicShown, let code = mailbox.panicCode, !mailbox.isHostStopRequested else { return nil }
            return code
        }
        while true {
            if session.attached.load(ordering: .acquiring) || session.halted.load(ordering: .acquiring)
                || session.haltRequested.load(ordering: .acquiring) {
                if !session.halted.load(ordering: .acquiring) {
                    if let code = unshownPanic() {
                        panicShown = true
                        session.reportStop(DebugStop(signal: 6, reason: .panic(code)))
                    } else if session.haltRequested.exchange(false, ordering: .acquiringAndReleasing) {
                        session.reportStop(.interrupt)
                    }
                }
                if session.halted.load(ordering: .acquiring) {
                    mailbox.setHaltedByDebugger(true)
                    let served = session.serve(engine: engine, pc: &pc, abandon: { mailbox.isHostStopRequested })
                    mailbox.setHaltedByDebugger(false)
                    guard let step = served else {
                        try core.throwIfStopped()
                        continue
                    }
                    // Continuing after a PANIC or a fault sends the core down the crash path.
                    if panicShown || mailbox.isHostStopRequested { try core.throwIfStopped() }
                    if let fault = pendingFault {
                        // Vectored faults: the debugger saw the fault; continuing enters the firmware's handler.
                        guard let handler = try interrupts.deliver(fault, engine: engine) else {
                            throw FirmwareHalt(.fault(address: fault.address ?? 0, message: fault.summary), programCounter: fault.programCounter,
                                               registers: fault.registers)
                        }
                        pendingFault = nil
                        pc = handler
                    }
                    hooks.stepping = step
                    hooks.skip = pc
                }
            }
            if unshownPanic() != nil && session.attached.load(ordering: .acquiring) { continue }   // show it first
            try core.throwIfStopped()
            // Gated: park here; a debugger's halt request releases the park (the debugger is served
            // at the top while the clock stays gated).
            if mailbox.isGateRequested {
                parked.park(at: pc) { mailbox.parkIfGated(releaseOnBreak: true) }
                continue
            }
            do { try engine.syncDebugHooks() } catch {
                throw FirmwareHalt(.fault(address: pc, message: "the debugger's hooks cannot be set: \(error)"), programCounter: pc)
            }
            guard try running.enter(core, clearing: engine.stopper) else { continue }
            do { try takeInterrupt(interrupts, engine: engine, pc: &pc) } catch {
                running.leave()
                throw error
            }
            let outcome = engine.run(from: pc)
            time?.charge()
            running.leave()
            if let address = engine.takeTrapReturn() { interrupts.returned(to: address, engine: engine) }
            if case let .fault(fault) = outcome, !mailbox.isStopRequested, let handler = try interrupts.handle(fault, engine: engine) {
                pc = handler
                continue
            }
            guard session.attached.load(ordering: .acquiring) else {
                // The debugger left during this run: a stop its hooks made is not a wfi, just resume.
                let hookStopped = hooks.stoppedAt != nil || hooks.watchHit != nil
                hooks.watchHit = nil
                hooks.stoppedAt = nil
                hooks.stepping = false
                hooks.breakpoints.removeAll()
                hooks.watchpoints.removeAll()
                if case let .returned(next) = outcome, hookStopped {
                    pc = next
                    continue
                }
                switch outcome {
                case let .fault(fault):
                    try core.throwIfStopped()
                    if let handler = try interrupts.deliver(fault, engine: engine) {
                        pc = handler
                        continue
                    }
                    throw FirmwareHalt(.fault(address: fault.address ?? 0, message: fault.summary), programCounter: fault.programCounter,
                                       registers: fault.registers)
                case let .returned(next):
                    pc = next
                    try core.throwIfStopped()
                    if session.haltRequested.load(ordering: .acquiring) || mailbox.isGateRequested || engine.stoppedOnRequest { continue }
                    idle(mailbox, interrupts, engine: engine)
                    continue
                }
            }
            switch outcome {
            case let .returned(next):
                pc = next
                let stoppedAt = hooks.stoppedAt
                let wasStepping = hooks.stepping
                let watchHit = hooks.watchHit
                hooks.stoppedAt = nil
                hooks.stepping = false
                hooks.watchHit = nil
                if unshownPanic() != nil { continue }          // shown at the top of the loop
                if let watchHit {
                    if let start = engine.rewindWatchedInstruction() { pc = start }
                    session.reportStop(DebugStop(signal: 5, reason: .watchpoint(watchHit.kind, address: watchHit.address)))
                    continue
                }
                if let stoppedAt {
                    let reason: DebugStop.Reason = wasStepping ? .signal : hooks.breakpoints[stoppedAt].map { .breakpoint(hardware: $0) } ?? .signal
                    session.reportStop(DebugStop(signal: 5, reason: reason))
                    continue
                }
                if session.haltRequested.exchange(false, ordering: .acquiringAndReleasing) {
                    session.reportStop(.interrupt)
                    continue
                }
                try core.throwIfStopped()
                if mailbox.isGateRequested || engine.stoppedOnRequest {
                    if wasStepping { hooks.stepping = true }   // the step is still to be made
                    continue
                }
                idle(mailbox, interrupts, engine: engine)
                // A step onto `wfi` completes when the core wakes (a kick, or Ctrl-C).
                if wasStepping {
                    try core.throwIfStopped()
                    session.reportStop(session.haltRequested.exchange(false, ordering: .acquiringAndReleasing) ? .interrupt : .trap)
                }
            case let .fault(fault):
                hooks.watchHit = nil
                hooks.stoppedAt = nil
                hooks.stepping = false
                if mailbox.isStopRequested && unshownPanic() == nil { try core.throwIfStopped() }
                pendingFault = fault
                pc = fault.programCounter
                session.reportStop(DebugStop(signal: fault.kind == .illegalInstruction ? 4 : 11))
            }
        }
    }
}

/// The core as the board's park capture sees it (``Mailbox/setParkCapture(_:)``): the engine, and
/// where the run loop stands while it parks between runs.
final class ParkedCore: @unchecked Sendable {
    // Only the core's thread touches it: the run loop sets `pc` around its parks, and the capture
    // runs inside a park — the loop's, or WAIT's inside a run (then `pc` is nil and the engine's
    // own PC register says where the core is).
    private let engine: UnicornEngine
    private var pc: UInt64?
    init(engine: UnicornEngine) { self.engine = engine }

    func park(at pc: UInt64, _ body: () -> Void) {
        self.pc = pc
        defer { self.pc = nil }
        body()
    }

    func snapshot() -> CPUSnapshot { engine.snapshot(pc: pc ?? engine.programCounter, insideRun: pc == nil) }
}

/// Executed instructions of an emulated core (see ``EmulatedCPU/init(_:countingInto:)``).
public final class InstructionCounter: Sendable {
    let count = Atomic<UInt64>(0)
    public init() {}
    public var value: UInt64 { count.load(ordering: .relaxed) }
}

/// Whether the emulation thread is inside a run (for the cross-thread stopper).
final class RunFlag: Sendable {
    let value = Atomic<Bool>(false)
    /// Signalled when a run returns while a stopper waits for it.
    let returned = WakeSignal()
    /// How many threads wait in ``EmulationStopper/stop(while:clock:limit:)``.
    let stoppers = Atomic<Int>(0)

    /// Marks the run as returned and wakes a stopper waiting for that.
    func leave() {
        value.store(false, ordering: .sequentiallyConsistent)
        if stoppers.load(ordering: .sequentiallyConsistent) > 0 { returned.signal() }
    }

    /// Marks the run as started, then checks for a stop and the clock gate: one requested before
    /// this is seen here, one requested after finds the flag set and is repeated until the run has
    /// returned — none is lost in between. (Sequentially consistent: a store then a load on each
    /// side.) `false`: the gate was requested, no run may start (park first).
    func enter(_ core: RemoteCore, clearing stopper: EmulationStopper) throws(FirmwareHalt) -> Bool {
        stopper.clear()
        value.store(true, ordering: .sequentiallyConsistent)
        let gated = core.mailbox.isGateRequested
        if gated { value.store(false, ordering: .sequentiallyConsistent) }
        guard !core.mailbox.isStopRequested else {
            value.store(false, ordering: .sequentiallyConsistent)
            try core.throwIfStopped()
            return false
        }
        return !gated
    }

    private let thread = Atomic<UInt>(UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))))
    /// Whether the caller is the thread that made this flag (the emulation thread).
    var isEmulationThread: Bool { thread.load(ordering: .relaxed) == UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))) }
}
