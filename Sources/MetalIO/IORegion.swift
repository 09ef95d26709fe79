import Synchronization

/// A libmetal I/O region (`struct metal_io_region`): a window of memory with a virtual base, a
/// physical address map, a size and a page shift.
///
/// Offsets, physical and virtual addresses translate into each other and give `nil` outside
/// the region (libmetal's `METAL_BAD_OFFSET` / `METAL_BAD_PHYS` / `NULL`). Every read and write
/// is bounds-checked and throws ``MetalIOError`` instead of trapping; multi-byte values are
/// little-endian on the wire whatever the host's byte order. Safe to use from several threads:
/// plain accesses are unordered (like `metal_io_read32`), the `Acquiring`/`Releasing` variants
/// order a ring index against the data it publishes.
public struct IORegion: Sendable, CustomStringConvertible {
    /// The memory the region is a window of.
    public let memory: SharedMemory
    /// Where the window starts inside ``memory``.
    public let memoryOffset: Int
    /// The region's size in bytes.
    public let size: Int
    /// Physical address of each page (`physmap`); one entry for a physically contiguous region.
    public let physicalMap: [PhysicalAddress]
    /// log2 of the page size the physical map is indexed by (`page_shift`).
    public let pageShift: Int
    /// A name for error messages and lookups.
    public let name: String

    /// A region over `size` bytes of `memory` from `memoryOffset`, with a page-by-page physical map.
    /// Mirrors `metal_io_init`.
    /// - Throws: ``MetalIOError`` when the window leaves `memory`, or the map does not cover `size`.
    public init(
        name: String = "", memory: SharedMemory, memoryOffset: Int = 0, size: Int? = nil,
        physicalMap: [PhysicalAddress], pageShift: Int
    ) throws(MetalIOError) {
        guard memoryOffset >= 0, memoryOffset <= memory.size else {
            throw MetalIOError(.invalidRegion("window offset \(memoryOffset) is not inside the \(memory.size)-byte memory"),
                               operation: "IORegion.init", region: name)
        }
        let size = size ?? (memory.size - memoryOffset)
        guard size > 0, size <= memory.size - memoryOffset else {
            throw MetalIOError(
                .invalidRegion("window [\(memoryOffset), +\(size)) is not inside the \(memory.size)-byte memory"),
                operation: "IORegion.init", region: name)
        }
        // A page shift of 63 or more means one physically contiguous page.
        guard pageShift >= 0, pageShift <= 64, !physicalMap.isEmpty, pageShift >= 63 || physicalMap.count <= Int.max >> pageShift else {
            throw MetalIOError(.invalidRegion("empty physical map or page shift \(pageShift)"), operation: "IORegion.init", region: name)
        }
        if pageShift < 63 {
            let pages = (size - 1) >> pageShift + 1
            guard physicalMap.count >= pages else {
                throw MetalIOError(
                    .invalidRegion("physical map has \(physicalMap.count) page(s), the region needs \(pages)"),
                    operation: "IORegion.init", region: name)
            }
        }
        for (page, base) in physicalMap.enumerated() {
            let pageBytes: UInt64 = pageShift >= 63 ? UInt64(size) : UInt64(1) << UInt64(pageShift)
            let start = pageShift >= 63 ? 0 : page << pageShift   // no overflow: count ≤ Int.max >> pageShift
            let span = start >= size ? 0 : min(pageBytes, UInt64(size - start))
            guard span == 0 || base.advanced(by: span - 1) != nil else {
                throw MetalIOError(.invalidRegion("page \(page) at \(base) overflows the physical address space"),
                                   operation: "IORegion.init", region: name)
            }
        }
        self.memory = memory
        self.memoryOffset = memoryOffset
        self.size = size
        self.physicalMap = physicalMap
        self.pageShift = pageShift
        self.name = name
    }

    /// A physically contiguous region: offset `o` is at physical address `physicalBase + o`.
    public init(
        name: String = "", memory: SharedMemory, memoryOffset: Int = 0, size: Int? = nil,
        physicalBase: PhysicalAddress
    ) throws(MetalIOError) {
        try self.init(name: name, memory: memory, memoryOffset: memoryOffset, size: size,
                      physicalMap: [physicalBase], pageShift: 64)
    }

    public var description: String {
        "IORegion '\(name)' (\(size) bytes at physical \(physicalMap.first ?? .any))"
    }

    // MARK: Translation (metal_io_virt, metal_io_phys, metal_io_phys_to_offset, …)

    /// The host virtual address of the region's first byte.
    public var virtualBase: VirtualAddress {
        VirtualAddress(memory.baseAddress.rawValue + UInt(memoryOffset))
    }

    /// The physical address of `offset`, or `nil` outside the region. Mirrors `metal_io_phys`.
    public func physicalAddress(ofOffset offset: Int) -> PhysicalAddress? {
        guard offset >= 0, offset < size else { return nil }
        if pageShift >= 63 { return physicalMap[0].advanced(by: UInt64(offset)) }
        let page = offset >> pageShift
        let within = offset & ((1 << pageShift) - 1)
        return physicalMap[page].advanced(by: UInt64(within))
    }

    /// The offset of physical address `address`, or `nil` when no byte of the region has it.
    /// Mirrors `metal_io_phys_to_offset`.
    public func offset(ofPhysical address: PhysicalAddress) -> Int? {
        if pageShift >= 63 {
            guard address >= physicalMap[0] else { return nil }
            let delta = address.rawValue - physicalMap[0].rawValue
            return delta < UInt64(size) ? Int(delta) : nil
        }
        let pageBytes = UInt64(1) << UInt64(pageShift)
        for (page, base) in physicalMap.enumerated() where address >= base {
            let delta = address.rawValue - base.rawValue
            guard delta < pageBytes else { continue }
            let start = page << pageShift   // no overflow: checked by init
            guard start < size else { break }
            let offset = start + Int(delta)
            if offset < size { return offset }
        }
        return nil
    }

    /// The host virtual address of `offset`, or `nil` outside the region. Mirrors `metal_io_virt`.
    public func virtualAddress(ofOffset offset: Int) -> VirtualAddress? {
        guard offset >= 0, offset < size else { return nil }
        return VirtualAddress(virtualBase.rawValue + UInt(offset))
    }

    /// The offset of host virtual address `address`, or `nil` outside the region.
    /// Mirrors `metal_io_virt_to_offset`.
    public func offset(ofVirtual address: VirtualAddress) -> Int? {
        guard address >= virtualBase else { return nil }
        let delta = address.rawValue - virtualBase.rawValue
        return delta < UInt(size) ? Int(delta) : nil
    }

    /// Physical → virtual, or `nil` outside the region. Mirrors `metal_io_phys_to_virt`.
    public func virtualAddress(ofPhysical address: PhysicalAddress) -> VirtualAddress? {
        offset(ofPhysical: address).flatMap(virtualAddress(ofOffset:))
    }

    /// Virtual → physical, or `nil` outside the region. Mirrors `metal_io_virt_to_phys`.
    public func physicalAddress(ofVirtual address: VirtualAddress) -> PhysicalAddress? {
        offset(ofVirtual: address).flatMap(physicalAddress(ofOffset:))
    }

    /// Whether `[offset, offset + count)` lies inside the region.
    @inlinable
    public func contains(offset: Int, count: Int) -> Bool {
        offset >= 0 && count >= 0 && offset <= size && count <= size - offset
    }

    // MARK: Access

    /// The bounds check of every access; the operation's name is made only for the error.
    @inlinable @inline(__always)
    func check(_ offset: Int, _ count: Int, _ operation: @autoclosure () -> String) throws(MetalIOError) {
        guard contains(offset: offset, count: count) else { throw outOfBounds(offset, count, operation()) }
    }

    @usableFromInline
    func outOfBounds(_ offset: Int, _ count: Int, _ operation: String) -> MetalIOError {
        MetalIOError(.outOfBounds(offset: offset, count: count, regionSize: size), operation: operation, region: name)
    }

    /// Calls `body` with the bytes `[offset, offset + count)`. The pointer must not escape `body`.
    /// - Throws: ``MetalIOError`` when the range is outside the region, or what `body` throws.
    public func withUnsafeMutableBytes<R>(
        at offset: Int, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R
    ) throws -> R {
        try check(offset, count, "withUnsafeMutableBytes")
        let start = memoryOffset + offset
        return try memory.withUnsafeMutableBytes { all in
            try body(UnsafeMutableRawBufferPointer(rebasing: all[start..<(start + count)]))
        }
    }

    /// Reads a little-endian integer at `offset`. Mirrors `metal_io_read8/16/32/64`.
    @inlinable
    public func read<T: FixedWidthInteger & UnsignedInteger>(_: T.Type = T.self, at offset: Int) throws(MetalIOError) -> T {
        try check(offset, MemoryLayout<T>.size, "read\(T.bitWidth)")
        let start = memoryOffset + offset
        return memory.withUnsafeMutableBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: start, as: T.self)) }
    }

    /// Writes a little-endian integer at `offset`. Mirrors `metal_io_write8/16/32/64`.
    @inlinable
    public func write<T: FixedWidthInteger & UnsignedInteger>(_ value: T, at offset: Int) throws(MetalIOError) {
        try check(offset, MemoryLayout<T>.size, "write\(T.bitWidth)")
        let start = memoryOffset + offset
        memory.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: start, as: T.self) }
    }

    @inlinable @inline(__always)
    func atomicCheck<T>(_: T.Type, _ offset: Int, _ operation: @autoclosure () -> String) throws(MetalIOError) -> Int {
        try check(offset, MemoryLayout<T>.size, operation())
        let start = memoryOffset + offset
        guard (Int(bitPattern: memory.base) + start) % MemoryLayout<T>.size == 0 else {
            throw MetalIOError(.misaligned(offset: offset, alignment: MemoryLayout<T>.size), operation: operation(), region: name)
        }
        return start
    }

    /// Reads a 16-bit ring index with acquire ordering: data the other side wrote before
    /// publishing the index is visible after this read. The offset must be 2-byte aligned.
    @inlinable
    public func readAcquiring(_: UInt16.Type = UInt16.self, at offset: Int) throws(MetalIOError) -> UInt16 {
        let start = try atomicCheck(UInt16.self, offset, "read16 acquiring")
        return memory.withUnsafeMutableBytes { bytes in
            let atomic = UnsafePointer<Atomic<UInt16>>((bytes.baseAddress! + start).assumingMemoryBound(to: Atomic<UInt16>.self))
            return UInt16(littleEndian: atomic.pointee.load(ordering: .acquiring))
        }
    }

    /// Writes a 16-bit ring index with release ordering: everything written before it is
    /// visible to a reader that acquires the index. The offset must be 2-byte aligned.
    @inlinable
    public func writeReleasing(_ value: UInt16, at offset: Int) throws(MetalIOError) {
        let start = try atomicCheck(UInt16.self, offset, "write16 releasing")
        memory.withUnsafeMutableBytes { bytes in
            let atomic = UnsafePointer<Atomic<UInt16>>((bytes.baseAddress! + start).assumingMemoryBound(to: Atomic<UInt16>.self))
            atomic.pointee.store(value.littleEndian, ordering: .releasing)
        }
    }

    /// Reads a 32-bit value with acquire ordering. The offset must be 4-byte aligned.
    @inlinable
    public func readAcquiring(_: UInt32.Type, at offset: Int) throws(MetalIOError) -> UInt32 {
        let start = try atomicCheck(UInt32.self, offset, "read32 acquiring")
        return memory.withUnsafeMutableBytes { bytes in
            let atomic = UnsafePointer<Atomic<UInt32>>((bytes.baseAddress! + start).assumingMemoryBound(to: Atomic<UInt32>.self))
            return UInt32(littleEndian: atomic.pointee.load(ordering: .acquiring))
        }
    }

    /// Writes a 32-bit value with release ordering. The offset must be 4-byte aligned.
    @inlinable
    public func writeReleasing(_ value: UInt32, at offset: Int) throws(MetalIOError) {
        let start = try atomicCheck(UInt32.self, offset, "write32 releasing")
        memory.withUnsafeMutableBytes { bytes in
            let atomic = UnsafePointer<Atomic<UInt32>>((bytes.baseAddress! + start).assumingMemoryBound(to: Atomic<UInt32>.self))
            atomic.pointee.store(value.littleEndian, ordering: .releasing)
        }
    }

    /// Copies `count` bytes from `offset` out of the region. Mirrors `metal_io_block_read`,
    /// except that a range reaching past the end is an error, not silently clamped.
    public func readBytes(at offset: Int, count: Int) throws(MetalIOError) -> [UInt8] {
        try check(offset, count, "block read")
        let start = memoryOffset + offset
        atomicThreadFenceAcquire()
        return memory.withUnsafeMutableBytes { Array(UnsafeRawBufferPointer(rebasing: $0[start..<(start + count)])) }
    }

    /// Copies `bytes` into the region at `offset`. Mirrors `metal_io_block_write` (no clamping).
    @inlinable
    public func write(bytes: UnsafeRawBufferPointer, at offset: Int) throws(MetalIOError) {
        try check(offset, bytes.count, "block write")
        guard bytes.count > 0 else { return }
        let start = memoryOffset + offset
        memory.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[start..<(start + bytes.count)]).copyMemory(from: bytes) }
        atomicThreadFenceRelease()
    }

    /// Copies `bytes` into the region at `offset`. Mirrors `metal_io_block_write` (no clamping).
    @inlinable
    public func write(_ bytes: [UInt8], at offset: Int) throws(MetalIOError) {
        try check(offset, bytes.count, "block write")
        guard !bytes.isEmpty else { return }
        let start = memoryOffset + offset
        bytes.withUnsafeBytes { raw in
            memory.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[start..<(start + raw.count)]).copyMemory(from: raw) }
        }
        atomicThreadFenceRelease()
    }

    /// Sets `count` bytes from `offset` to `value`. Mirrors `metal_io_block_set` (no clamping).
    public func fill(_ value: UInt8, at offset: Int, count: Int) throws(MetalIOError) {
        try check(offset, count, "block set")
        guard count > 0 else { return }
        let start = memoryOffset + offset
        memory.withUnsafeMutableBytes { all in
            _ = UnsafeMutableRawBufferPointer(rebasing: all[start..<(start + count)]).initializeMemory(as: UInt8.self, repeating: value)
        }
        atomicThreadFenceRelease()
    }
}

@usableFromInline @inline(__always) func atomicThreadFenceAcquire() { atomicMemoryFence(ordering: .acquiring) }
@usableFromInline @inline(__always) func atomicThreadFenceRelease() { atomicMemoryFence(ordering: .releasing) }
