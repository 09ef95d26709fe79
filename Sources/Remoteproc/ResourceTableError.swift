/// Why a resource table was refused. Every malformed table gets one of these, never a trap or
/// an out-of-bounds read; ``code`` gives the matching OpenAMP error number where one exists.
public struct ResourceTableError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// Fewer than 16 bytes, or the offset array runs past the end (`RPROC_ERR_RSC_TAB_TRUNC`).
        case truncatedHeader(size: Int, needed: Int)
        /// `ver` is not 1 (`RPROC_ERR_RSC_TAB_VER`).
        case unsupportedVersion(UInt32)
        /// A reserved field is not zero (`RPROC_ERR_RSC_TAB_RSVD`).
        case reservedNotZero(field: String, value: UInt64)
        /// `offset[i]` points into the header or past the end of the table.
        case entryOutsideTable(offset: UInt32, tableSize: Int)
        /// The entry (or its vrings, or its config space) runs past the end of the table.
        case entryTruncated(needed: Int, available: Int)
        /// A field has a value no table can mean (a zero or overflowing length, a vring count
        /// that is not a power of two, …).
        case invalidField(field: String, value: UInt64, reason: String)
        /// The table could not be built (a value does not fit its 32-bit field, …).
        case unrepresentable(String)
    }

    public var kind: Kind
    /// The index of the entry at fault, when there is one.
    public var entryIndex: Int?
    /// The byte offset in the table where the fault is.
    public var offset: Int?

    public init(_ kind: Kind, entry: Int? = nil, offset: Int? = nil) {
        self.kind = kind
        self.entryIndex = entry
        self.offset = offset
    }

    /// The OpenAMP error number (negative) this corresponds to.
    public var code: Int32 {
        switch kind {
        case .truncatedHeader, .entryOutsideTable, .entryTruncated: -5
        case .unsupportedVersion: -6
        case .reservedNotZero: -7
        case .invalidField, .unrepresentable: -2
        }
    }

    public var description: String {
        var place = "resource table"
        if let entryIndex { place += " entry \(entryIndex)" }
        if let offset { place += " (byte \(offset))" }
        let why: String
        switch kind {
        case let .truncatedHeader(size, needed):
            why = "truncated header: \(size) byte(s), at least \(needed) needed"
        case let .unsupportedVersion(v):
            why = "unsupported version \(v) (only version 1 exists)"
        case let .reservedNotZero(field, value):
            why = "reserved field \(field) is \(value), must be 0"
        case let .entryOutsideTable(entryOffset, size):
            why = "entry offset \(entryOffset) lies outside the table (header ends before it, table is \(size) bytes)"
        case let .entryTruncated(needed, available):
            why = "entry needs \(needed) byte(s) but only \(available) remain in the table"
        case let .invalidField(field, value, reason):
            why = "\(field) = \(value): \(reason)"
        case let .unrepresentable(what):
            why = what
        }
        return "\(place): \(why)"
    }
}
