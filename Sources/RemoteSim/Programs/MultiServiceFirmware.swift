import RPMsg

/// Native firmware that announces several services, each behaving differently:
/// `rpmsg-echo` echoes, `rpmsg-upper` replies in upper case, `rpmsg-count` replies with how many
/// messages it has received (4 bytes, little-endian), `rpmsg-sink` replies nothing — and on the
/// text `destroy` it destroys itself, which announces the destroy to the host.
public struct MultiServiceFirmware: FirmwareProgram {
    public static let services = ["rpmsg-echo", "rpmsg-upper", "rpmsg-count", "rpmsg-sink"]
    public init() {}

    public func run(on core: RemoteCore) throws {
        let rpmsg = try core.rpmsg()
        let device = rpmsg.device
        @Sendable func reply(_ message: RPMsgMessage, _ bytes: [UInt8]) { try? rpmsg.reply(to: message, with: bytes) }
        _ = try device.createEndpoint(name: "rpmsg-echo") { reply($0, $0.payload) }
        _ = try device.createEndpoint(name: "rpmsg-upper") { message in
            reply(message, message.payload.map { (0x61...0x7A).contains($0) ? $0 - 0x20 : $0 })
        }
        let counter = MessageCounter()
        _ = try device.createEndpoint(name: "rpmsg-count") { message in
            counter.increment()
            let n = UInt32(truncatingIfNeeded: counter.value)
            reply(message, n.littleEndianBytes)
        }
        _ = try device.createEndpoint(name: "rpmsg-sink") { message in
            if message.payload == Array("destroy".utf8) { device.endpoint(at: message.destination)?.destroy() }
        }
        core.print("multi-service: \(Self.services.joined(separator: ", "))")
        try rpmsg.serve()
    }
}
