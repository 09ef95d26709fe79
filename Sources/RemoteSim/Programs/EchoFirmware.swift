import Remoteproc
import RPMsg

/// Native firmware: announces `rpmsg-echo` and sends every message back to its sender.
/// With `answersSuspend` it takes part in the suspend handshake (``PowerRegisters``), answering
/// each request with what the closure decides once its vrings are processed.
public struct EchoFirmware: FirmwareProgram {
    public let serviceName: String
    public let answersSuspend: (@Sendable (SuspendKind) -> SuspendAnswer)?
    public init(serviceName: String = "rpmsg-echo", answersSuspend: (@Sendable (SuspendKind) -> SuspendAnswer)? = nil) {
        self.serviceName = serviceName
        self.answersSuspend = answersSuspend
    }

    public func run(on core: RemoteCore) throws {
        if let answersSuspend { core.answerSuspendRequests(answersSuspend) }
        let rpmsg = try core.rpmsg()
        let device = rpmsg.device
        _ = try device.createEndpoint(name: serviceName) { message in
            do { try rpmsg.reply(to: message, with: message.payload) } catch {
                core.print("echo: reply to \(message.source) failed: \(error)")
            }
        }
        core.print("echo: ready")
        core.trace("echo: serving \(serviceName)")
        try rpmsg.serve()
    }
}
