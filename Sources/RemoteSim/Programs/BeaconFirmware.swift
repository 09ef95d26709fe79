import MetalIO
import RPMsg

/// Native firmware: announces `rpmsg-beacon`; once the host has sent it a message it sends
/// "beacon 1", "beacon 2", … to that sender, one every `interval` of the board's time (SLEEP
/// between them, serving the vrings when a kick wakes it), `count` of them, then serves on.
/// Under a virtual clock the intervals pass without wall-clock waiting (docs/virtual-time.md).
public struct BeaconFirmware: FirmwareProgram {
    public let interval: Duration
    public let count: Int
    public init(interval: Duration = .seconds(10), count: Int = 3) {
        self.interval = interval
        self.count = count
    }

    public func run(on core: RemoteCore) throws {
        let rpmsg = try core.rpmsg()
        let listener = MetalMutex<(local: RPMsgAddress, host: RPMsgAddress)?>(nil)
        let endpoint = try rpmsg.device.createEndpoint(name: "rpmsg-beacon") { message in
            listener.withLock { $0 = $0 ?? (message.destination, message.source) }
        }
        _ = endpoint
        core.print("beacon: ready")
        while listener.withLock({ $0 }) == nil { try rpmsg.waitAndProcess() }
        guard let (local, host) = listener.withLock({ $0 }) else { return }
        let clock = core.mailbox.clock
        for n in 1...max(count, 1) {
            let due = clock.now + interval
            while clock.now < due {
                if try core.sleep(for: due - clock.now) != 0 { rpmsg.processor.handleNotification(.any) }
            }
            try rpmsg.device.send(Array("beacon \(n)".utf8), from: local, to: host, timeout: .seconds(5))
            core.print("beacon: \(n) sent")
        }
        try rpmsg.serve()
    }
}
