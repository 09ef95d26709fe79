/// Why an I/O region or shared-memory operation failed.
///
/// Every access to a region is bounds-checked; an access outside it fails with this error
/// instead of trapping (libmetal returns `-ERANGE` or clamps).
public struct MetalIOError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// `[offset, offset + count)` is not inside the region.
        case outOfBounds(offset: Int, count: Int, regionSize: Int)
        /// An atomic access at an offset that is not a multiple of its size.
        case misaligned(offset: Int, alignment: Int)
        /// The region's parameters are inconsistent (physical map too short, window outside its memory, …).
        case invalidRegion(String)
        /// `mmap` failed.
        case mapFailed(size: Int, errno: Int32)
    }

    public var kind: Kind
    /// The operation that failed, e.g. `"read32"`.
    public var operation: String
    /// The region's name, when it has one.
    public var region: String

    public init(_ kind: Kind, operation: String, region: String = "") {
        self.kind = kind
        self.operation = operation
        self.region = region
    }

    public var description: String {
        let place = region.isEmpty ? "" : " in region '\(region)'"
        switch kind {
        case let .outOfBounds(offset, count, size):
            return "\(operation)\(place): \(count) byte(s) at offset \(hex(UInt64(bitPattern: Int64(offset)))) lie outside the region (size \(hex(UInt64(size))))"
        case let .misaligned(offset, alignment):
            return "\(operation)\(place): offset \(hex(UInt64(bitPattern: Int64(offset)))) is not \(alignment)-byte aligned"
        case let .invalidRegion(why):
            return "\(operation)\(place): invalid region: \(why)"
        case let .mapFailed(size, errno):
            return "\(operation)\(place): mmap of \(size) bytes failed (errno \(errno))"
        }
    }
}
