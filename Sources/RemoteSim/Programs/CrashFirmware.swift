import RPMsg
import Synchronization

/// Native firmware that echoes like ``EchoFirmware`` and, after `afterMessages` messages, loads
/// from an address no memory covers: a fault.
public struct CrashFirmware: FirmwareProgram {
    public let afterMessages: Int
    public let faultAddress: UInt64
    public init(afterMessages: Int = 10, faultAddress: UInt64 = 0xDEAD_BEEF) {
        self.afterMessages = afterMessages
        self.faultAddress = faultAddress
    }

    public func run(on core: RemoteCore) throws {
        let rpmsg = try core.rpmsg()
        let device = rpmsg.device
        let counter = MessageCounter()
        _ = try device.createEndpoint(name: "rpmsg-echo") { message in
            counter.increment()
            try? rpmsg.reply(to: message, with: message.payload)
        }
        while true {
            try rpmsg.waitAndProcess()
            if counter.value >= afterMessages { _ = try core.load32(faultAddress) }
        }
    }
}

final class MessageCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
