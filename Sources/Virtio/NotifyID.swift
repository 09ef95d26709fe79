/// A notify id: the number a kick carries between host and remote (OpenAMP's `notifyid`) — from
/// the resource table through the vrings, the platform's notify op and the mailbox to the
/// handler, in this one form.
public struct NotifyID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt32) { rawValue = value }
    /// `RSC_NOTIFY_ID_ANY`: the host chooses the id.
    public static let any = NotifyID(0xFFFF_FFFF)
    public var isAny: Bool { self == .any }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { isAny ? "ANY" : String(rawValue) }
}
