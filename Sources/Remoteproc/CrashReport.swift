import MetalIO

/// Why a running remote stopped unexpectedly, as the platform reports it.
public struct CrashReport: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable {
        /// An invalid memory access, an illegal instruction, a CPU exception.
        case fault
        /// The firmware reported a fatal error itself (the mailbox PANIC register).
        case panic
        /// The firmware stopped kicking its watchdog.
        case watchdog
        /// Anything else the platform detects.
        case other
    }

    public var kind: Kind
    /// A platform-specific code (the PANIC value, a fault number).
    public var code: UInt64?
    /// The faulting address, for faults.
    public var address: DeviceAddress?
    /// The program counter when it happened.
    public var programCounter: DeviceAddress?
    /// A one-line explanation.
    public var message: String
    /// The last console lines before it, oldest first.
    public var console: [String]
    /// The CPU registers at the fault (name → value), for an emulated core.
    public var registers: [String: UInt64]

    public init(kind: Kind, code: UInt64? = nil, address: DeviceAddress? = nil, programCounter: DeviceAddress? = nil, message: String,
                console: [String] = [], registers: [String: UInt64] = [:]) {
        self.kind = kind
        self.code = code
        self.address = address
        self.programCounter = programCounter
        self.message = message
        self.console = console
        self.registers = registers
    }

    public var description: String {
        var parts = ["\(kind.rawValue): \(message)"]
        if let code { parts.append("code \(hex(code))") }
        if let address { parts.append("at \(address)") }
        if let programCounter { parts.append("pc \(programCounter)") }
        return parts.joined(separator: ", ")
    }
}
