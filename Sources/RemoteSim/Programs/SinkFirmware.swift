import RPMsg
import Synchronization

/// Native firmware that announces `rpmsg-sink` and consumes every message; a message whose
/// payload is the text `count?` is answered with the number of messages received before it
/// (4 bytes, little-endian), so a host can tell when a stream has fully arrived.
public struct SinkFirmware: FirmwareProgram {
    public let serviceName: String
    public init(serviceName: String = "rpmsg-sink") { self.serviceName = serviceName }

    public func run(on core: RemoteCore) throws {
        let rpmsg = try core.rpmsg()
        let device = rpmsg.device
        let received = MessageCounter()
        let query = Array("count?".utf8)
        _ = try device.createEndpoint(name: serviceName) { message in
            if message.length == query.count && message.payload == query {
                let n = UInt32(truncatingIfNeeded: received.value)
                try? rpmsg.reply(to: message, with: n.littleEndianBytes)
            } else {
                received.increment()
            }
        }
        try rpmsg.serve()
    }
}
