/// Native firmware that arms its watchdog, kicks it for a while, then spins without kicking.
public struct HangFirmware: FirmwareProgram {
    public let watchdogMilliseconds: UInt32
    public let healthyIterations: Int
    public init(watchdogMilliseconds: UInt32 = 20, healthyIterations: Int = 5) {
        self.watchdogMilliseconds = watchdogMilliseconds
        self.healthyIterations = healthyIterations
    }

    public func run(on core: RemoteCore) throws {
        core.mailbox.armWatchdog(milliseconds: watchdogMilliseconds)
        for _ in 0..<healthyIterations {
            core.mailbox.armWatchdog(milliseconds: watchdogMilliseconds)
            try core.checkStop()
        }
        core.print("hang: spinning without kicking the watchdog")
        while true { try core.checkStop() }
    }
}
