import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import MetalIO

/// A remote described in a few lines of Swift, run on the board's core thread through the real
/// virtio device role and RPMsg, so the host code under test sees exactly what firmware produces.
///
/// ```swift
/// let remote = ScriptedRemote()
///     .service("rpmsg-echo") { .reply($0) }
///     .service("rpmsg-upper") { .reply(Array(String(decoding: $0, as: UTF8.self).uppercased().utf8)) }
///     .crash(afterMessages: 5)
/// ```
public struct ScriptedRemote: FirmwareProgram {
    /// What the remote does with one message.
    public enum Response: Sendable {
        case reply([UInt8])
        case none
        /// Halt with a fault at this address (an invalid access).
        case fault(address: UInt64)
        /// Write PANIC with this code.
        case panic(UInt32)
    }

    public typealias Handler = @Sendable ([UInt8]) -> Response

    var services: [(name: String, handler: Handler)] = []
    var crashAfter: Int?
    var consoleLines: [String] = []
    var suspendAnswer: (@Sendable (SuspendKind) -> SuspendAnswer)?

    public init() {}

    /// Takes part in the suspend handshake, answering each request with what `decide` returns
    /// (``SuspendAnswer/ack`` to let the host suspend it, ``SuspendAnswer/cancel`` to refuse).
    /// Without it the remote is suspended by gating its clock, unasked.
    public func answeringSuspend(_ decide: @escaping @Sendable (SuspendKind) -> SuspendAnswer) -> ScriptedRemote {
        var copy = self
        copy.suspendAnswer = decide
        return copy
    }

    /// Announces `name` and answers each message to it with `handler`.
    public func service(_ name: String, _ handler: @escaping Handler) -> ScriptedRemote {
        var copy = self
        copy.services.append((name, handler))
        return copy
    }

    /// Faults (an access at 0xDEAD_BEEF) after `count` messages in total.
    public func crash(afterMessages count: Int) -> ScriptedRemote {
        var copy = self
        copy.crashAfter = count
        return copy
    }

    /// Prints `line` on the console at start.
    public func printing(_ line: String) -> ScriptedRemote {
        var copy = self
        copy.consoleLines.append(line)
        return copy
    }

    public func run(on core: RemoteCore) throws {
        if let suspendAnswer { core.answerSuspendRequests(suspendAnswer) }
        let rpmsg = try core.rpmsg()
        let device = rpmsg.device
        let received = Atomic<Int>(0)
        let halt = MetalMutex<Response?>(nil)
        for line in consoleLines { core.print(line) }
        for (name, handler) in services {
            _ = try device.createEndpoint(name: name) { message in
                received.add(1, ordering: .relaxed)
                switch handler(message.payload) {
                case let .reply(bytes):
                    try? device.send(bytes, from: message.destination, to: message.source, timeout: .seconds(5))
                case .none: break
                case let response: halt.withLock { $0 = response }
                }
            }
        }
        while true {
            try rpmsg.waitAndProcess()
            if let crashAfter, received.load(ordering: .relaxed) >= crashAfter { _ = try core.load32(0xDEAD_BEEF) }
            switch halt.withLock({ $0 }) {
            case let .fault(address): _ = try core.load32(address)
            case let .panic(code): try core.panic(code)
            default: break
            }
        }
    }
}
