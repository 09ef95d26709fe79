import Synchronization
import Virtio
import MetalIO

/// Why the debugged core stopped, as the server reports it to GDB.
struct DebugStop: Sendable, Equatable {
    enum Reason: Sendable, Equatable {
        /// A plain stop: a single step, Ctrl-C, the halt at reset, a fault.
        case signal
        /// A breakpoint set with `Z0` (software) or `Z1` (hardware).
        case breakpoint(hardware: Bool)
        /// A data watchpoint: the core stands before the instruction that accessed `address`.
        case watchpoint(UnicornEngine.Watchpoint.Kind, address: UInt64)
        /// The firmware wrote PANIC with this code.
        case panic(UInt32)
        /// The core's run ended (host stop, crash): the program is gone for this debugger.
        case exited
    }
    /// The POSIX signal number GDB shows (5 SIGTRAP, 2 SIGINT, 4 SIGILL, 6 SIGABRT, 11 SIGSEGV).
    var signal: Int
    var reason: Reason = .signal

    static let trap = DebugStop(signal: 5)
    static let interrupt = DebugStop(signal: 2)
}

/// The link between a GDB server (its own thread) and the emulated core (the core's thread): the
/// server queues commands; the core runs them while it is halted. All Unicorn calls stay on the
/// core's thread.
final class DebugSession: @unchecked Sendable {
    // `hooks` is only touched on the core's thread; everything shared is in Mutexes and atomics.
    enum Command {
        case readRegisters
        case writeRegister(Int, UInt64)
        case readMemory(UInt64, Int)
        case writeMemory(UInt64, [UInt8])
        case breakpoint(UInt64, hardware: Bool, set: Bool)
        case watchpoint(UnicornEngine.Watchpoint, set: Bool)
        case resume(step: Bool)
        case detach
    }
    enum Reply {
        case registers([UInt64])
        case memory([UInt8]?)
        case done(Bool)
    }

    /// At most this many watchpoints at once (as a debug unit would have); GDB falls back to
    /// software watchpoints beyond.
    static let watchpointLimit = 8
    /// At most this many breakpoints (each is a hook in the engine): a client cannot grow them without bound.
    static let breakpointLimit = 4096

    let hooks = UnicornEngine.DebugHooks()
    private let queue = MetalMutex<[(Command, Mailbox)]>([])
    private let coreWake = WakeSignal()
    /// The stops the core reported and the server has not taken yet.
    private let stops = MetalMutex<[DebugStop]>([])
    private let stopSignal = WakeSignal()
    let haltRequested = Atomic<Bool>(false)
    let attached = Atomic<Bool>(false)
    /// Set when a debugger's connection ended; the core, halted or at its next stop, lets go.
    private let left = Atomic<Bool>(false)
    let halted = Atomic<Bool>(false)
    /// Whether the core's run has ended (and no new run has begun): nothing will answer commands.
    let ended = Atomic<Bool>(false)
    let startHalted: Bool
    /// Whether the next run waits at reset: the first one when `startHalted`; later runs (a
    /// restart, a recovery) only when a debugger is attached then — a run nobody is debugging
    /// must not wait for one forever.
    private let haltFirstRun: Atomic<Bool>

    /// A reply slot for one command.
    final class Mailbox: @unchecked Sendable {
        // Written once by the core's thread before `ready` is signalled; read after.
        var reply: Reply?
        let ready = WakeSignal()
    }

    init(startHalted: Bool) {
        self.startHalted = startHalted
        haltFirstRun = Atomic(startHalted)
    }

    // MARK: Server side

    /// Runs `command` on the core's thread; `nil` when the core's run has ended or it does not answer in time.
    func perform(_ command: Command, timeout: Duration = .seconds(5)) -> Reply? {
        guard !ended.load(ordering: .acquiring) else { return nil }
        let box = Mailbox()
        queue.withLock { $0.append((command, box)) }
        coreWake.signal()
        guard box.ready.wait(timeout: timeout) else { return nil }
        return box.reply
    }

    /// Asks the core to halt; a debugger that left earlier no longer releases it (this halt is newer).
    func requestHalt() {
        left.store(false, ordering: .releasing)
        haltRequested.store(true, ordering: .releasing)
    }

    /// A debugger connected (the server refuses a second one before calling this).
    func clientArrived() {
        left.store(false, ordering: .releasing)
        connected.store(true, ordering: .releasing)
        haltedObserver.withLock { $0.call }?()
    }

    /// Whether a debugger is connected now.
    let connected = Atomic<Bool>(false)

    /// The debugger's connection ended, however it ended: the core runs on without it.
    func clientLeft() {
        connected.store(false, ordering: .releasing)
        left.store(true, ordering: .releasing)
        attached.store(false, ordering: .releasing)
        coreWake.signal()
        haltedObserver.withLock { $0.call }?()
    }

    /// Wakes the core's thread while it serves the debugger halted, to look at what changed (the
    /// host's stop calls it).
    func wakeCore() { coreWake.signal() }

    /// Sets what runs whenever the core becomes halted for the debugger or is released, and
    /// whenever a debugger connects or leaves.
    func setHaltedObserver(_ observer: (@Sendable () -> Void)?) { haltedObserver.withLock { $0.call = observer } }
    private struct Observer { var call: (@Sendable () -> Void)? }
    private let haltedObserver = MetalMutex(Observer())

    /// Records whether the core is halted for the debugger, telling the observer.
    private func setHalted(_ value: Bool) {
        halted.store(value, ordering: .releasing)
        haltedObserver.withLock { $0.call }?()
    }

    /// Waits for the next stop the core reports.
    func waitForStop(timeout: Duration) -> DebugStop? {
        if let stop = takeStop() { return stop }
        guard stopSignal.wait(timeout: timeout) else { return nil }
        return takeStop()
    }

    /// After the run ended: the stop that says so (and nothing older).
    func takeExit() -> DebugStop? {
        stops.withLock { pending in
            defer { pending.removeAll() }
            return pending.last { $0.reason == .exited }
        }
    }

    private func takeStop() -> DebugStop? { stops.withLock { $0.isEmpty ? nil : $0.removeFirst() } }

    // MARK: Core side

    /// A run of the core begins: nothing of an earlier run is pending. Returns whether it waits
    /// halted at reset for the debugger.
    func beginRun() -> Bool {
        defer { ended.store(false, ordering: .releasing) }
        stops.withLock { $0.removeAll() }
        setHalted(false)
        hooks.stepping = false
        hooks.skip = nil
        hooks.stoppedAt = nil
        return haltFirstRun.exchange(false, ordering: .acquiringAndReleasing) || attached.load(ordering: .acquiring)
    }

    /// The core's run ended: commands still queued are answered as failed, and an attached
    /// debugger hears that the program is gone.
    func endRun(signal: Int) {
        ended.store(true, ordering: .releasing)
        setHalted(false)
        for (_, box) in queue.withLock({ q in defer { q.removeAll() }; return q }) {
            box.reply = .done(false)
            box.ready.signal()
        }
        stops.withLock { $0.append(DebugStop(signal: signal, reason: .exited)) }
        stopSignal.signal()
    }

    func reportStop(_ stop: DebugStop) {
        haltRequested.store(false, ordering: .releasing)   // any stop answers a halt request
        setHalted(true)
        stops.withLock { $0.append(stop) }
        stopSignal.signal()
    }

    /// Serves commands until a resume or detach; returns whether to step, or `nil` when
    /// `abandon` says the halt is over (the host stopped the core).
    func serve(engine: UnicornEngine, pc: inout UInt64, abandon: () -> Bool) -> Bool? {
        while true {
            if abandon() { return nil }
            if left.exchange(false, ordering: .acquiringAndReleasing) && !attached.load(ordering: .acquiring) {
                // The debugger left while the core was halted (or about to be): as a detach.
                hooks.breakpoints.removeAll()
                hooks.watchpoints.removeAll()
                setHalted(false)
                return false
            }
            guard let (command, box) = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else {
                // A command, a debugger leaving or the host's stop (``wakeCore()``) wakes it.
                coreWake.wait()
                continue
            }
            var reply: Reply = .done(true)
            switch command {
            case .readRegisters:
                var values = engine.debugRegisterIDs.map { engine.readDebugRegister($0) }
                // pc: where the core stands (the engine's PC register is stale while halted).
                if let index = engine.debugRegisterIDs.firstIndex(of: engine.pcRegisterID) { values[index] = pc }
                reply = .registers(values)
            case let .writeRegister(index, value):
                let ids = engine.debugRegisterIDs
                if ids.indices.contains(index) {
                    if ids[index] == engine.pcRegisterID { pc = value & ~(engine.architecture == .cortexM4 ? 1 : 0) }
                    reply = .done((try? engine.writeRegister(ids[index], value)) != nil)
                } else { reply = .done(false) }
            case let .readMemory(address, count): reply = .memory(engine.readMemory(address, count: count))
            case let .writeMemory(address, bytes): reply = .done(engine.writeMemory(address, bytes))
            case let .breakpoint(address, hardware, set):
                if !set {
                    hooks.breakpoints[address] = nil
                } else if hooks.breakpoints[address] != nil || hooks.breakpoints.count < Self.breakpointLimit {
                    hooks.breakpoints[address] = hardware
                } else {
                    reply = .done(false)
                }
            case let .watchpoint(watchpoint, set):
                if set {
                    if !hooks.watchpoints.contains(watchpoint) {
                        if hooks.watchpoints.count < Self.watchpointLimit { hooks.watchpoints.append(watchpoint) } else { reply = .done(false) }
                    }
                } else {
                    hooks.watchpoints.removeAll { $0 == watchpoint }
                }
            case let .resume(step):
                box.reply = .done(true)
                box.ready.signal()
                setHalted(false)
                return step
            case .detach:
                hooks.breakpoints.removeAll()
                hooks.watchpoints.removeAll()
                attached.store(false, ordering: .releasing)
                box.reply = .done(true)
                box.ready.signal()
                setHalted(false)
                return false
            }
            box.reply = reply
            box.ready.signal()
        }
    }
}
