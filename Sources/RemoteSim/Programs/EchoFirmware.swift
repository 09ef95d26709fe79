import RPMsg

/// Native firmware: announces `rpmsg-echo` and sends every message back to its sender.
public struct EchoFirmware: NativeFirmware {
    public let serviceName: String
    public init(serviceName: String = "rpmsg-echo") { self.serviceName = serviceName }

    public func run(on core: RemoteCore) throws {
        let rpmsg = try core.rpmsg()
        let device = rpmsg.device
        _ = try device.createEndpoint(name: serviceName) { message in
            do { try device.send(message.payload, from: message.destination, to: message.source, timeout: .seconds(5)) } catch {
                core.print("echo: reply to \(message.source) failed: \(error)")
            }
        }
        core.print("echo: ready")
        core.trace("echo: serving \(serviceName)")
        while true { try rpmsg.waitAndProcess() }
    }
}
