/// An address in the host's physical address space, as libmetal's `metal_phys_addr_t`.
///
/// Physical and device addresses are distinct types so that code cannot put one where the
/// other belongs: the remote core sees device addresses, the host maps physical ones.
public struct PhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// All ones: libmetal's `METAL_BAD_PHYS`, OpenAMP's "any address" for 64-bit fields.
    public static let any = PhysicalAddress(UInt64.max)

    /// The address `offset` bytes further, or `nil` when that overflows.
    public func advanced(by offset: UInt64) -> PhysicalAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : PhysicalAddress(sum)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { hex(rawValue) }
}

/// An address in the remote processor's own address space (OpenAMP's `da`).
///
/// Every address that crosses shared memory — vring and carveout addresses in the resource
/// table, vring descriptors — is a device address.
public struct DeviceAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// All ones: "no address" / "the host chooses".
    public static let any = DeviceAddress(UInt64.max)

    /// The address `offset` bytes further, or `nil` when that overflows.
    public func advanced(by offset: UInt64) -> DeviceAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : DeviceAddress(sum)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { hex(rawValue) }
}

/// An address in the host process's own (virtual) address space.
///
/// It is a number, not a pointer: it identifies a byte of a region but cannot be dereferenced
/// outside the region's accessors, so no pointer escapes.
public struct VirtualAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    public init(_ rawValue: UInt) { self.rawValue = rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { hex(UInt64(rawValue)) }
}

/// Formats an address as `0x0000_1000`-style hexadecimal (8 digits, or 16 when it needs them).
public func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    let width = value > UInt64(UInt32.max) ? 16 : 8
    let padded = String(repeating: "0", count: max(0, width - digits.count)) + digits
    var out = "0x"
    for (i, c) in padded.enumerated() {
        if i > 0 && (padded.count - i) % 4 == 0 { out.append("_") }
        out.append(c)
    }
    return out
}
