import MetalIO

/// An RPMsg endpoint address.
public struct RPMsgAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    /// `RPMSG_ADDR_ANY`: "choose one" (local) or "not bound yet" (destination).
    public static let any = RPMsgAddress(0xFFFF_FFFF)
    /// `RPMSG_NS_EPT_ADDR`: the name service.
    public static let nameService = RPMsgAddress(53)
    /// `RPMSG_RESERVED_ADDRESSES`: dynamic addresses start here.
    public static let firstDynamic = RPMsgAddress(1024)
    public var isAny: Bool { self == .any }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { isAny ? "ANY" : "\(rawValue)" }
}

/// The 16-byte RPMsg header (`struct rpmsg_hdr`), little-endian; the payload follows.
public struct RPMsgHeader: Hashable, Sendable {
    public static let size = 16
    public var source: RPMsgAddress
    public var destination: RPMsgAddress
    /// 0 on the wire (OpenAMP keeps bookkeeping here; this project keeps it local).
    public var reserved: UInt32
    public var length: UInt16
    public var flags: UInt16

    public init(source: RPMsgAddress, destination: RPMsgAddress, length: UInt16, reserved: UInt32 = 0, flags: UInt16 = 0) {
        self.source = source
        self.destination = destination
        self.reserved = reserved
        self.length = length
        self.flags = flags
    }

    /// Reads a header at `offset` of `region`.
    public init(from region: IORegion, at offset: Int) throws(MetalIOError) {
        source = RPMsgAddress(try region.read(UInt32.self, at: offset))
        destination = RPMsgAddress(try region.read(UInt32.self, at: offset + 4))
        reserved = try region.read(UInt32.self, at: offset + 8)
        length = try region.read(UInt16.self, at: offset + 12)
        flags = try region.read(UInt16.self, at: offset + 14)
    }

    /// Writes the header at `offset` of `region`.
    public func write(to region: IORegion, at offset: Int) throws(MetalIOError) {
        try region.write(source.rawValue, at: offset)
        try region.write(destination.rawValue, at: offset + 4)
        try region.write(reserved, at: offset + 8)
        try region.write(length, at: offset + 12)
        try region.write(flags, at: offset + 14)
    }
}

/// The 40-byte name-service message (`struct rpmsg_ns_msg`), sent to address 53.
public struct NameServiceMessage: Hashable, Sendable {
    public static let size = 40
    /// `RPMSG_NAME_SIZE`.
    public static let nameSize = 32
    public enum Action: UInt32, Sendable { case create = 0, destroy = 1 }

    public var name: String
    public var address: RPMsgAddress
    public var action: Action

    public init(name: String, address: RPMsgAddress, action: Action) {
        self.name = name
        self.address = address
        self.action = action
    }

    /// Decodes the payload of a message to 53, or `nil` when it is not exactly 40 bytes with a
    /// known action.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.size else { return nil }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        guard let action = Action(rawValue: u32(36)) else { return nil }
        name = String(decoding: bytes[0..<32].prefix { $0 != 0 }, as: UTF8.self)
        address = RPMsgAddress(u32(32))
        self.action = action
    }

    /// The 40 wire bytes.
    public var bytes: [UInt8] {
        var out = Array(name.utf8.prefix(Self.nameSize))
        out += [UInt8](repeating: 0, count: Self.nameSize - out.count)
        for value in [address.rawValue, action.rawValue] { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) } }
        return out
    }
}
