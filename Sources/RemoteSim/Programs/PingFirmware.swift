import RPMsg
import Synchronization
import Virtio
import MetalIO

/// Native firmware that waits for the host to announce `service`, sends it `count` messages one
/// at a time and checks each reply equals what it sent. It prints `ping: N/N replies ok` when
/// done, and panics with code 0x0B0B_0000 | i on the first wrong or missing reply.
public struct PingFirmware: FirmwareProgram {
    public let service: String
    public let count: Int
    public init(service: String = "rpmsg-ping", count: Int = 100) {
        self.service = service
        self.count = count
    }

    public func run(on core: RemoteCore) throws {
        let rpmsg = try core.rpmsg()
        let device = rpmsg.device
        let host = MetalMutex<RPMsgAddress?>(nil)
        let lastReply = MetalMutex<[UInt8]?>(nil)
        device.onNameServiceAnnouncement { name, address in if name == service { host.withLock { $0 = address } } }
        let endpoint = try device.createEndpoint { message in lastReply.withLock { $0 = message.payload } }
        while host.withLock({ $0 }) == nil { try rpmsg.waitAndProcess() }
        let target = host.withLock { $0 }!
        for i in 0..<count {
            let payload = Array("ping \(i)".utf8)
            lastReply.withLock { $0 = nil }
            try endpoint.send(payload, to: target, timeout: .seconds(5))
            var waited = 0
            while lastReply.withLock({ $0 }) == nil {
                guard waited < 5000 else { try core.panic(0x0B0B_0000 | UInt32(i & 0xFFFF)) }
                try rpmsg.waitAndProcess()
                waited += 1
            }
            guard lastReply.withLock({ $0 }) == payload else { try core.panic(0x0B0B_0000 | UInt32(i & 0xFFFF)) }
        }
        core.print("ping: \(count)/\(count) replies ok")
        try rpmsg.serve()
    }
}
