/// An ARMv7-M exception, by its number: what IPSR holds while its handler runs and the index of
/// its vector in the table VTOR points at (1 reset … 15 SysTick, 16 + n external interrupt n).
public struct ArmException: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let number: Int

    /// `nil` outside 1 … 16 + ``SystemControlSpace/irqCount`` − 1.
    public init?(number: Int) {
        guard (1..<(16 + SystemControlSpace.irqCount)).contains(number) else { return nil }
        self.number = number
    }

    private init(unchecked number: Int) { self.number = number }

    public static let reset = ArmException(unchecked: 1)
    public static let nmi = ArmException(unchecked: 2)
    public static let hardFault = ArmException(unchecked: 3)
    public static let memManage = ArmException(unchecked: 4)
    public static let busFault = ArmException(unchecked: 5)
    public static let usageFault = ArmException(unchecked: 6)
    public static let svCall = ArmException(unchecked: 11)
    public static let debugMonitor = ArmException(unchecked: 12)
    public static let pendSV = ArmException(unchecked: 14)
    public static let sysTick = ArmException(unchecked: 15)

    /// External interrupt `line` (0: the mailbox).
    public static func irq(_ line: Int) -> ArmException {
        precondition((0..<SystemControlSpace.irqCount).contains(line), "IRQ \(line) does not exist")
        return ArmException(unchecked: 16 + line)
    }

    /// The external interrupt line, for numbers from 16.
    public var irq: Int? { number >= 16 ? number - 16 : nil }

    /// Reset, NMI and HardFault have fixed priorities (−3, −2, −1), more urgent than any other.
    var fixedPriority: Int32? {
        switch number {
        case 1: -3
        case 2: -2
        case 3: -1
        default: nil
        }
    }

    /// Whether the architecture defines an exception with this number (7–10 and 13 are reserved).
    var isDefined: Bool { !(7...10).contains(number) && number != 13 }

    public static func < (a: ArmException, b: ArmException) -> Bool { a.number < b.number }

    public var description: String {
        switch number {
        case 1: "Reset"
        case 2: "NMI"
        case 3: "HardFault"
        case 4: "MemManage"
        case 5: "BusFault"
        case 6: "UsageFault"
        case 11: "SVCall"
        case 12: "DebugMonitor"
        case 14: "PendSV"
        case 15: "SysTick"
        case 16: "IRQ 0 (mailbox)"
        default: number >= 16 ? "IRQ \(number - 16)" : "exception \(number) (reserved)"
        }
    }
}

/// The EXC_RETURN values an ARMv7-M core without a floating-point context puts in LR on
/// exception entry; a branch to one in Handler mode returns from the exception.
public enum ArmExceptionReturn: UInt32, Sendable, CustomStringConvertible {
    /// Back to Handler mode, the frame on the main stack.
    case handler = 0xFFFF_FFF1
    /// Back to Thread mode, the frame on the main stack.
    case threadMain = 0xFFFF_FFF9
    /// Back to Thread mode, the frame on the process stack.
    case threadProcess = 0xFFFF_FFFD

    /// The addresses a branch can reach that are EXC_RETURN values (the fetch the board catches).
    static let range: ClosedRange<UInt64> = 0xFFFF_FF00...0xFFFF_FFFF

    var usesProcessStack: Bool { self == .threadProcess }
    var returnsToThread: Bool { self != .handler }

    public var description: String {
        switch self {
        case .handler: "0xFFFFFFF1 (to Handler mode, main stack)"
        case .threadMain: "0xFFFFFFF9 (to Thread mode, main stack)"
        case .threadProcess: "0xFFFFFFFD (to Thread mode, process stack)"
        }
    }
}
