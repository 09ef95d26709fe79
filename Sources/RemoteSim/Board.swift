#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Remoteproc
import Synchronization
import Virtio

/// The simulated board: memories, a mailbox and a remote core that runs firmware on its own
/// thread. It is a `RemoteprocOps` platform — the remoteproc core drives it exactly as it would
/// drive a hardware driver — and forwards the remote's kicks to the core's notification entry.
public final class Board: RemoteprocOps, @unchecked Sendable {
    // Mutable state is in `core` (a Mutex); the other properties never change after init.
    public let layout: BoardLayout
    public let mailbox: Mailbox
    /// The memories, as registered with the processor (host physical + device addresses).
    public let memories: [RemoteprocMemory]
    /// What happened on the board: state changes, kicks, console lines, crashes.
    public let trace: Trace
    /// The board's time: every wait on the board goes through it.
    public let clock: any WaitClock
    private let firmware: any FirmwareProgram
    /// How many bytes of the resource table's trace buffer were turned into lines already.
    let traceBufferRead = MetalMutex<(consumed: Int, partial: [UInt8])>((0, []))

    struct Core {
        var powered = false
        /// The core's thread runs (from start until stop has seen it end).
        var running = false
        var finished: WakeSignal?
        /// Signalled when the core's thread has done everything but report a crash (which may wait
        /// for the processor's lock; a host stopping the core under that lock waits for this instead).
        var ended: WakeSignal?
        /// Signalled when the last started core's thread has returned, crash report and all.
        var exited: WakeSignal?
        /// Which start the running core belongs to: a crash report of an earlier run is dropped.
        var generation = 0
        /// Weak: the processor owns the board (its ops); a strong reference back would leak both.
        weak var processor: RemoteProcessor?
        var lastHalt: FirmwareHalt?
        /// The firmware of the current start has stopped (the thread is ending or waits to be stopped).
        var halted = false
        /// Set by the watchdog monitor when it halted the core.
        var watchdogFired = false
        /// A crash injected by the host (fault injection), reported when the core has halted.
        var injected: CrashReport?
    }

    /// Kicks to lose or hold back in one direction (see ``BoardFaults``).
    struct KickFault {
        var drop = 0
        var delay: Duration = .zero
        var isArmed: Bool { drop > 0 || delay > .zero }
    }
    /// Per direction. `kickFaultsArmed` lets every kick skip the lock while no fault is set
    /// (the kick path is hot); it is only ever set under the lock.
    let kickFaults = MetalMutex<[KickDirection: KickFault]>([:])
    let kickFaultsArmed = Atomic<Bool>(false)

    /// Fault injection: kicks lost or held back, crashes, vring and resource-table corruption.
    public var faults: BoardFaults { BoardFaults(board: self) }

    /// Whether a kick may pass, after its delay; counts down a drop.
    private func passKick(_ direction: KickDirection, id: NotifyID) -> Bool {
        guard kickFaultsArmed.load(ordering: .acquiring) else { return true }
        let (drop, delay): (Bool, Duration) = kickFaults.withLock { faults in
            var fault = faults[direction, default: KickFault()]
            defer { faults[direction] = fault }
            if fault.drop > 0 { fault.drop -= 1; return (true, .zero) }
            return (false, fault.delay)
        }
        if drop {
            trace.record(.warning("fault injection: dropped kick \(direction) id \(id)"))
            return false
        }
        if delay > .zero { clock.sleep(for: delay) }
        return true
    }

    /// Halts the running core and reports `report` as its crash; `false` when it is not running.
    func injectCrash(_ report: CrashReport) -> Bool {
        guard core.withLock({ c in
            guard c.running, !mailbox.isGateRequested else { return false }
            c.injected = report
            return true
        }) else { return false }
        mailbox.requestStop()
        return true
    }

    /// The processor driving the board, once it has made one.
    var processor: RemoteProcessor? { core.withLock { $0.processor } }
    let core = MetalMutex(Core())

    /// A board running `firmware`.
    /// - Parameters:
    ///   - pollMode: kicks reach the processor only when ``poll()`` is called (deterministic tests);
    ///     it overrides `hostInterrupts`.
    ///   - hostInterrupts: where the remote's kicks are handled: inline on the core's thread (the
    ///     default: one thread hop fewer per notification) or on a host interrupt thread.
    ///   - clock: the time the board keeps (TICKS, SLEEP, the watchdog, its waits and fault delays).
    public init(firmware: any FirmwareProgram, layout: BoardLayout = BoardLayout(), pollMode: Bool = false,
                hostInterrupts: InterruptDelivery = .inline, clock: any WaitClock = RealTimeClock.shared) throws {
        // A host interrupt thread would run beside the lockstep schedule (its handlers are the host's).
        if clock.isVirtual && hostInterrupts == .thread && !pollMode {
            throw BoardError("make the board", .realTimeOnly("a host interrupt thread (host-interrupts: thread)"))
        }
        self.layout = layout
        self.firmware = firmware
        self.clock = clock
        let trace = Trace(clock: clock)
        self.trace = trace
        self.mailbox = try Mailbox(hostInterrupts: pollMode ? .poll : hostInterrupts, clock: clock, idleWaiters: trace.waiters)
        mailbox.setEventHandler { event in
            switch event {
            case let .kick(id): trace.record(.kickToHost(id))
            case let .notify(id): trace.record(.kickToRemote(id))
            case let .invalidKick(value): trace.record(.invalidKick(value))
            case let .consoleLine(line): trace.record(.console(line, fromTraceBuffer: false))
            case .panic: break
            case let .watchdog(ms): trace.record(.watchdog(ms))
            case let .power(event): trace.record(.power(event))
            case let .trap(entry): trace.record(.trap(entry))
            case let .trapReturn(exit): trace.record(.trapReturn(exit))
            }
        }
        memories = try layout.makeMemories()
        // The debugger halting or releasing the core changes what the board's waits count.
        debugger?.session.setHaltedObserver { trace.waiters.changed() }
    }

    deinit {
        mailbox.hostInterrupts.shutdown()
        debugger?.shutdown()
    }

    /// A remote processor driving this board, with the board's memories registered and the
    /// remote's kicks routed to its notification entry.
    /// - Parameter host: the host stack the processor behaves as (start-up, notify ids, buffers).
    public func makeProcessor(host: HostPersonality = .default) throws -> RemoteProcessor {
        let processor = try RemoteProcessor(ops: self, notifyIDCapacity: Mailbox.notifyIDCount, host: host)
        for memory in memories { processor.addMemory(memory) }
        core.withLock { $0.processor = processor }
        mailbox.setKickHandler { [weak processor, weak self] id in
            guard self?.passKick(.toHost, id: id) ?? true else { return }
            processor?.handleNotification(id)
        }
        // gdb's `kill` stops the processor as the host would.
        debugger?.onKill = { [weak processor] in try? processor?.stop() }
        let trace = self.trace, mailbox = self.mailbox
        processor.addObserver { event in
            switch event {
            case let .stateChanged(change):
                trace.record(.stateChanged(from: change.from, to: change.to, call: change.call))
            case let .warning(text): trace.record(.warning(text))
            case let .vdevWrite(write):
                trace.record(.vdevWrite(write))
                mailbox.hostWrites.changed()
            }
        }
        return processor
    }

    /// What the board shows a debugger (`monitor`) and a failed scenario step: state, vrings, trace, console.
    public var inspector: BoardInspector {
        BoardInspector(memories: memories, mailbox: mailbox, trace: trace, table: { [weak self] in
            guard let installed = self?.core.withLock({ $0.processor })?.installedResourceTable else { return nil }
            return (installed.location.device, installed.table.bytes.count)
        }, describeState: { [weak self] in self?.stateDescription ?? "the board is gone\n" },
        collectTraceBuffer: { [weak self] in self?.collectTraceBuffer() },
        writeCoreDump: { [weak self] path in
            guard let self else { throw BoardError("core dump", .noProcessor) }
            return try self.writeCoreDump(to: path)
        })
    }

    /// The processor's life-cycle state, the core's and the last crash, one fact per line.
    private var stateDescription: String {
        let (processor, running, lastHalt, halted) = core.withLock { ($0.processor, $0.running, $0.lastHalt, $0.halted) }
        var out = "life cycle: \(processor.map { "\($0.state)" } ?? "no processor")\n"
        let core = !running ? "not running" : halted ? "halted (the firmware stopped)" : mailbox.isGated ? "suspended (clock gated)"
            : mailbox.isGateRequested ? "suspending" : isHaltedInDebugger ? "halted in the debugger" : "running"
        out += "core: \(core)\n"
        if let lastHalt { out += "last halt: \(lastHalt)\n" }
        if let report = processor?.crashReport { out += "crash: \(report)\n" }
        return out
    }

    /// The GDB server of an emulated core's firmware, if it has one.
    public var debugger: GDBServer? { (firmware as? EmulatedCPU)?.debugger }

    /// Whether a debugger holds the core halted: waits on the board should not count this time.
    public var isHaltedInDebugger: Bool { debugger?.isHalted ?? false }

    /// The processor driving this board, while it exists.
    var currentProcessor: RemoteProcessor? { core.withLock { $0.processor } }

    /// Delivers the remote's kicks so far (poll mode).
    @discardableResult
    public func poll() -> Int { mailbox.poll() }

    /// Whether the core's thread is running firmware.
    public var isRunning: Bool { core.withLock { $0.running } }

    /// Why the firmware last stopped.
    public var lastHalt: FirmwareHalt? { core.withLock { $0.lastHalt } }

    // MARK: RemoteprocOps

    public func configure(data: (any Sendable)?) throws {
        mailbox.reset()
        core.withLock { $0.powered = true }
        // Powering the board is when the core's machinery is set up (an emulated CPU's engine),
        // not its start.
        firmware.prepare(memories: memories)
    }

    public func start(bootAddress: DeviceAddress) throws {
        try core.withLock { (c) throws in
            guard c.powered else { throw BoardError("start", .notPowered) }
            guard !c.running else { throw BoardError("start", .alreadyRunning) }
            mailbox.reset()
            traceBufferRead.withLock { $0 = (0, []) }
            let processor = c.processor
            let table = processor?.installedResourceTable.map { (address: $0.location.device, size: $0.table.bytes.count) }
            let context = CoreThreadContext(board: self, core: RemoteCore(layout: layout, mailbox: mailbox, memories: memories,
                                                                          resourceTable: table, bootAddress: bootAddress, inspector: inspector))
            let finished = WakeSignal(), ended = WakeSignal(), exited = WakeSignal()
            c.generation += 1
            c.exited = exited
            context.exited = exited
            c.halted = false
            context.finished = finished
            context.ended = ended
            context.generation = c.generation
            // Never joined: a stop waits for `ended`, not for a crash report that needs the processor's lock.
            do throws(ThreadError) { try clock.startThread(name: "rproc-core") { context.run() }.detach() } catch {
                throw BoardError("start", .thread(error))
            }
            c.running = true
            c.finished = finished
            c.ended = ended
            c.watchdogFired = false
            try startWatchdogMonitor()
        }
    }

    /// Watches the firmware's watchdog while the core runs (it sleeps until the watchdog could
    /// expire, see ``Mailbox/waitForWatchdogExpiry(generation:)``); on expiry it halts the core,
    /// which is then reported as a watchdog crash. It ends with the core's run.
    private func startWatchdogMonitor() throws {
        let mailbox = self.mailbox, generation = mailbox.generation
        do {
            try clock.startThread(name: "rproc-watchdog") { [weak self] in
                guard mailbox.waitForWatchdogExpiry(generation: generation) else { return }
                self?.core.withLock { $0.watchdogFired = true }
                mailbox.requestStop()
            }.detach()
        } catch {
            mailbox.requestStop()
            throw BoardError("start", .thread(error))
        }
    }

    /// Runs on the core's thread when the firmware halted, after the thread signalled that it
    /// finished. It signals `ended` before reporting a crash to the processor, so a host waiting in
    /// `stop` under the processor's lock is never blocked by the report; the report then applies
    /// only if the processor has not been restarted meanwhile (`generation`).
    fileprivate func firmwareEnded(_ halt: FirmwareHalt, generation: Int, ended: WakeSignal?) {
        let (processor, watchdog, injected) = core.withLock { c in
            c.lastHalt = halt
            c.halted = true
            defer { c.injected = nil }
            return (c.processor, c.watchdogFired, c.injected)
        }
        collectTraceBuffer()
        var report: CrashReport?
        // A crash inside the firmware's handler of a (vectored) fault names that fault.
        let inHandler = mailbox.faultBeingHandled.map { ", in the firmware's handler of: \($0)" } ?? ""
        switch halt.reason {
        case .stopped:
            report = injected ?? (watchdog ? CrashReport(kind: .watchdog, message: "the firmware stopped kicking its watchdog" + inHandler) : nil)
        case let .panic(code): report = CrashReport(kind: .panic, code: UInt64(code), message: "firmware panic" + inHandler)
        case let .fault(address, message):
            let named = mailbox.faultBeingHandled.map { message.contains($0) } ?? true
            report = CrashReport(kind: .fault, address: DeviceAddress(address), programCounter: halt.programCounter.map { DeviceAddress($0) },
                                 message: named ? message : message + inHandler, registers: halt.registers)
        }
        if report != nil {
            report!.console = Array(trace.consoleLines.suffix(10))
            trace.record(.crash(report!))
        }
        ended?.signal()
        if let report {
            try? processor?.reportCrash(report, ifCurrent: { [weak self] in self?.core.withLock { $0.generation } == generation })
        }
    }

    public func stop() throws {
        let (running, finished, ended) = core.withLock { ($0.running, $0.finished, $0.ended) }
        guard running, let finished else { return }
        guard !isRemoteHeldByCurrentThread else { throw BoardError("stop", .insideCoreInterrupt) }
        mailbox.requestStop()
        guard clock.wait(for: finished, timeout: Self.stopLimit) else { throw BoardError("stop", .didNotStop(within: Self.stopLimit)) }
        // What the thread does after the firmware has stopped takes microseconds (no lock it waits on).
        guard ended.map({ clock.wait(for: $0, timeout: Self.stopLimit) }) ?? true else { throw BoardError("stop", .threadDidNotFinish(within: Self.stopLimit)) }
        collectTraceBuffer()
        core.withLock { c in
            c.running = false
            c.finished = nil
            c.ended = nil
        }
    }

    /// How long a stop waits for the core's thread.
    static let stopLimit: Duration = .seconds(5)

    /// Waits until the thread of the core's last run has returned — after ``stop()``, which does
    /// not wait for the crash report the thread may still be delivering (it needs the processor's
    /// lock, which a stop may hold). For an owner about to let the board go, or the process end.
    /// `false` when `timeout` passed first; `true` at once when the core never ran.
    @discardableResult
    public func waitForCoreThread(timeout: Duration = .seconds(5)) -> Bool {
        guard let exited = core.withLock({ $0.exited }) else { return true }
        guard clock.wait(for: exited, timeout: timeout) else { return false }
        exited.signal()   // for the next caller
        return true
    }

    public func shutdown() throws {
        try stop()
        core.withLock { $0.powered = false }
        mailbox.reset()
    }

    /// Gates the core's clock (``SuspendKind/forced``), or asks the firmware first and gates it
    /// on its ACK; see ``PowerRegisters`` for the handshake. The core parks at an instruction
    /// boundary with its registers, memory and PENDING bits kept.
    public func suspend(_ kind: SuspendKind, timeout: Duration) throws {
        let (running, halted) = core.withLock { ($0.running, $0.halted) }
        guard running, !halted else { throw BoardError("suspend", .notRunning) }
        guard !isRemoteHeldByCurrentThread else { throw BoardError("suspend", .insideCoreInterrupt) }
        try mailbox.suspendCore(kind, timeout: timeout, parkLimit: Self.stopLimit)
    }

    /// Lets the gated core run on where it parked.
    public func resume() throws {
        guard mailbox.isGateRequested else { throw BoardError("resume", .notRunning) }
        mailbox.resumeCore()
    }

    public var isRemoteHeldByCurrentThread: Bool { mailbox.hostInterrupts.isHandlingOnCurrentThread }

    /// Whether the core's clock is gated (suspended).
    public var isSuspended: Bool { mailbox.isGated }

    public func notify(_ id: NotifyID) throws {
        guard passKick(.toRemote, id: id) else { return }
        mailbox.notify(id)
    }
}

/// What the core's thread runs.
final class CoreThreadContext: @unchecked Sendable {
    // Set before the thread starts and only read by it.
    let board: Board
    let core: RemoteCore
    var finished: WakeSignal?
    var ended: WakeSignal?
    var exited: WakeSignal?
    var generation = 0
    init(board: Board, core: RemoteCore) {
        self.board = board
        self.core = core
    }
    func run() {
        var halt: FirmwareHalt?
        do {
            try board.firmwareProgram.run(on: core)
            // Firmware that returns idles until the host stops the core.
            while !core.mailbox.isStopRequested { _ = core.mailbox.waitForInterrupt() }
            if let code = core.mailbox.panicCode { halt = FirmwareHalt(.panic(code)) } else { halt = FirmwareHalt(.stopped) }
        } catch let error as FirmwareHalt {
            halt = error
        } catch {
            if core.mailbox.isStopRequested { halt = FirmwareHalt(.stopped) } else {
                halt = FirmwareHalt(.fault(address: 0, message: "firmware error: \(error)"))
            }
        }
        core.firmwareEnded()
        core.mailbox.coreEnded()
        finished?.signal()
        if let halt { board.firmwareEnded(halt, generation: generation, ended: ended) } else { ended?.signal() }
        exited?.signal()
    }
}

extension Board {
    var firmwareProgram: any FirmwareProgram { firmware }
}
