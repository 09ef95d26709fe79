import Synchronization
import Virtio

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
        case breakpoint(UInt64, set: Bool)
        case resume(step: Bool)
        case detach
    }
    enum Reply {
        case registers([UInt64])
        case memory([UInt8]?)
        case done(Bool)
    }

    let hooks = UnicornEngine.DebugHooks()
    private let queue = Mutex<[(Command, Mailbox)]>([])
    private let coreWake = WakeSignal()
    /// Signalled with each stop the core reports.
    let stops = Mutex<[Int]>([])
    let stopSignal = WakeSignal()
    let haltRequested = Atomic<Bool>(false)
    let attached = Atomic<Bool>(false)
    let halted = Atomic<Bool>(false)
    let startHalted: Bool

    /// A reply slot for one command.
    final class Mailbox: @unchecked Sendable {
        // Written once by the core's thread before `ready` is signalled; read after.
        var reply: Reply?
        let ready = WakeSignal()
    }

    init(startHalted: Bool) { self.startHalted = startHalted }

    // MARK: Server side

    /// Runs `command` on the core's thread; `nil` when the core does not answer in time.
    func perform(_ command: Command, timeout: Duration = .seconds(5)) -> Reply? {
        let box = Mailbox()
        queue.withLock { $0.append((command, box)) }
        coreWake.signal()
        guard box.ready.wait(timeout: timeout) else { return nil }
        return box.reply
    }

    /// Waits for the next stop the core reports (a signal number).
    func waitForStop(timeout: Duration) -> Int? {
        guard stopSignal.wait(timeout: timeout) else { return nil }
        return stops.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    }

    // MARK: Core side

    func reportStop(_ signal: Int) {
        halted.store(true, ordering: .releasing)
        stops.withLock { $0.append(signal) }
        stopSignal.signal()
    }

    /// Serves commands until a resume or detach; returns whether to step.
    func serve(engine: UnicornEngine, mailbox stopMailbox: RemoteSim.Mailbox, pc: inout UInt64) -> Bool? {
        while true {
            if stopMailbox.isStopRequested { return nil }
            guard let (command, box) = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else {
                coreWake.wait(timeout: .milliseconds(50))
                continue
            }
            var reply: Reply = .done(true)
            switch command {
            case .readRegisters:
                var values = engine.debugRegisterIDs.map { engine.readRegister($0) }
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
            case let .breakpoint(address, set):
                if set { hooks.breakpoints.insert(address) } else { hooks.breakpoints.remove(address) }
            case let .resume(step):
                box.reply = .done(true)
                box.ready.signal()
                halted.store(false, ordering: .releasing)
                return step
            case .detach:
                hooks.breakpoints.removeAll()
                attached.store(false, ordering: .releasing)
                box.reply = .done(true)
                box.ready.signal()
                halted.store(false, ordering: .releasing)
                return false
            }
            box.reply = reply
            box.ready.signal()
        }
    }
}
