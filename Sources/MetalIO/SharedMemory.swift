#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Page-aligned, zero-filled memory from an anonymous `mmap`, which two threads (the host and
/// a remote core) may share.
///
/// The mapping is owned by this object and released by `deinit`. Its bytes are reached only
/// through ``IORegion``'s bounds-checked accessors or ``withUnsafeMutableBytes(_:)``; no pointer
/// escapes.
// The base pointer and size never change after init; the bytes are shared between threads on
// purpose and every accessor either uses atomics or documents its ordering.
public final class SharedMemory: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    /// The size in bytes, a multiple of the page size.
    public let size: Int

    /// The host's page size.
    public static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// Maps `size` bytes (rounded up to whole pages) of zeroed, readable and writable memory.
    /// - Throws: ``MetalIOError`` when `size` is not positive or `mmap` fails.
    public init(size: Int) throws(MetalIOError) {
        guard size > 0 else {
            throw MetalIOError(.invalidRegion("size \(size) is not positive"), operation: "SharedMemory.init")
        }
        let page = Self.pageSize
        let (padded, overflow) = size.addingReportingOverflow(page - 1)
        guard !overflow else {
            throw MetalIOError(.invalidRegion("size \(size) is too large"), operation: "SharedMemory.init")
        }
        let rounded = padded / page * page
        let pointer = mmap(nil, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let pointer, pointer != MAP_FAILED else {
            throw MetalIOError(.mapFailed(size: rounded, errno: errno), operation: "SharedMemory.init")
        }
        self.base = pointer
        self.size = rounded
    }

    deinit { munmap(base, size) }

    /// The host virtual address of the first byte.
    public var baseAddress: VirtualAddress { VirtualAddress(UInt(bitPattern: base)) }

    /// Calls `body` with the whole mapping. The pointer must not escape `body`.
    @inlinable
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: base, count: size))
    }
}
