/// Native firmware that reports a fatal error through the PANIC register after a delay.
public struct PanicFirmware: FirmwareProgram {
    public let code: UInt32
    public let afterMicroseconds: UInt32
    public init(code: UInt32 = 0xDEAD_BEEF, afterMicroseconds: UInt32 = 1000) {
        self.code = code
        self.afterMicroseconds = afterMicroseconds
    }

    public func run(on core: RemoteCore) throws {
        core.print("panic: giving up in \(afterMicroseconds) µs")
        core.print("panic: last words")
        core.mailbox.sleep(microseconds: afterMicroseconds)
        try core.checkStop()
        try core.panic(code)
    }
}
