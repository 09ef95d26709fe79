import RPMsg

/// Native firmware: announces `rpmsg-echo` and sends every message back to its sender.
public struct EchoFirmware: FirmwareProgram {
    public let serviceName: String
    public init(serviceName: String = "rpmsg-echo") { self.serviceName = serviceName }

    public func run(on core: RemoteCore) throws {
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
