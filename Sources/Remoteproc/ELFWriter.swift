/// Writes minimal ELF32/ELF64 little-endian executables (`ET_EXEC`): program headers, the
/// segments' bytes, and a `.resource_table` section when one is given. Tests use it to build
/// images of exactly the shape a case needs; benchmarks to make images of any size.
public enum ELFWriter {
    /// One `PT_LOAD` segment.
    public struct Segment: Sendable {
        /// p_paddr: where the loader places it.
        public var address: UInt64
        /// p_vaddr, when it differs from the load address.
        public var virtualAddress: UInt64?
        /// The file bytes (p_filesz = their count).
        public var bytes: [UInt8]
        /// p_memsz (at least `bytes.count`).
        public var memorySize: Int
        /// p_flags (R = 4, W = 2, X = 1).
        public var flags: UInt32 = 7
        public init(address: UInt64, virtualAddress: UInt64? = nil, bytes: [UInt8], memorySize: Int? = nil, flags: UInt32 = 7) {
            self.address = address
            self.virtualAddress = virtualAddress
            self.bytes = bytes
            self.memorySize = memorySize ?? bytes.count
            self.flags = flags
        }
    }

    /// Where the parts of a written image are (for tests that corrupt one field).
    public struct Layout: Sendable {
        public var programHeaders: Int
        public var sectionHeaders: Int
        public var segmentData: [Int]
        public var is64: Bool
        public var programHeaderSize: Int { is64 ? 56 : 32 }
        /// File offset of program header `i`.
        public func programHeader(_ i: Int) -> Int { programHeaders + i * programHeaderSize }
    }

    /// The bytes of an image with `segments` (and the resource table as a last segment and a
    /// `.resource_table` section), entry point `entry`, for `machine` (40 = ARM).
    ///
    /// With a `pageSize` (a power of two), each segment's file offset is congruent to its
    /// address modulo the page size and p_align says so, as a linker lays out an executable
    /// (the gABI asks it of loadable segments); without one, segments are packed 4-byte aligned.
    public static func image(segments: [Segment], entry: UInt64, resourceTable: (address: UInt64, bytes: [UInt8])? = nil,
                      is64: Bool = false, machine: UInt16 = 40, pageSize: Int? = nil) -> [UInt8] {
        build(segments: segments, entry: entry, resourceTable: resourceTable, is64: is64, machine: machine, pageSize: pageSize).bytes
    }

    /// Like ``image(segments:entry:resourceTable:is64:machine:pageSize:)``, also returning the layout.
    public static func build(segments: [Segment], entry: UInt64, resourceTable: (address: UInt64, bytes: [UInt8])? = nil,
                      is64: Bool = false, machine: UInt16 = 40, pageSize: Int? = nil) -> (bytes: [UInt8], layout: Layout) {
        precondition(pageSize.map { $0 > 0 && $0 & ($0 - 1) == 0 } ?? true, "pageSize must be a power of two")
        let alignment = pageSize ?? 4
        var all = segments
        if let table = resourceTable { all.append(Segment(address: table.address, bytes: table.bytes, flags: 6)) }
        let ehsize = is64 ? 64 : 52, phsize = is64 ? 56 : 32, shsize = is64 ? 64 : 40
        let phoff = ehsize
        var cursor = phoff + phsize * all.count
        var dataOffsets: [Int] = []
        for segment in all {
            if let pageSize {
                // The next offset at or after the cursor that is congruent to the address.
                let want = Int(truncatingIfNeeded: segment.address) & (pageSize - 1)
                cursor += (want - (cursor & (pageSize - 1)) + pageSize) & (pageSize - 1)
            } else {
                cursor = (cursor + 3) & ~3
            }
            dataOffsets.append(cursor)
            cursor += segment.bytes.count
        }
        let names: [UInt8] = Array("\0.resource_table\0.shstrtab\0".utf8)
        let namesOffset = cursor
        cursor += names.count
        let shoff = (cursor + 7) & ~7
        let sectionCount = resourceTable == nil ? 2 : 3
        var out = [UInt8](repeating: 0, count: shoff + shsize * sectionCount)

        func put<T: FixedWidthInteger>(_ value: T, _ at: Int) {
            var v = value
            for i in 0..<MemoryLayout<T>.size { out[at + i] = UInt8(truncatingIfNeeded: v); v >>= 8 }
        }
        func word(_ value: UInt64, _ at: Int) { if is64 { put(value, at) } else { put(UInt32(truncatingIfNeeded: value), at) } }

        out[0...3] = [0x7F, 0x45, 0x4C, 0x46]
        out[4] = is64 ? 2 : 1
        out[5] = 1
        out[6] = 1
        put(UInt16(2), 16)            // ET_EXEC
        put(machine, 18)
        put(UInt32(1), 20)
        word(entry, 24)
        word(UInt64(phoff), is64 ? 32 : 28)
        word(UInt64(shoff), is64 ? 40 : 32)
        let base = is64 ? 52 : 40
        put(UInt16(ehsize), base)
        put(UInt16(phsize), base + 2)
        put(UInt16(all.count), base + 4)
        put(UInt16(shsize), base + 6)
        put(UInt16(sectionCount), base + 8)
        put(UInt16(sectionCount - 1), base + 10)   // .shstrtab is last

        for (i, segment) in all.enumerated() {
            let p = phoff + i * phsize
            put(UInt32(1), p)
            if is64 {
                put(segment.flags, p + 4)
                put(UInt64(dataOffsets[i]), p + 8)
                put(segment.virtualAddress ?? segment.address, p + 16)
                put(segment.address, p + 24)
                put(UInt64(segment.bytes.count), p + 32)
                put(UInt64(segment.memorySize), p + 40)
                put(UInt64(alignment), p + 48)
            } else {
                put(UInt32(dataOffsets[i]), p + 4)
                put(UInt32(truncatingIfNeeded: segment.virtualAddress ?? segment.address), p + 8)
                put(UInt32(truncatingIfNeeded: segment.address), p + 12)
                put(UInt32(segment.bytes.count), p + 16)
                put(UInt32(segment.memorySize), p + 20)
                put(segment.flags, p + 24)
                put(UInt32(alignment), p + 28)
            }
            out.replaceSubrange(dataOffsets[i]..<(dataOffsets[i] + segment.bytes.count), with: segment.bytes)
        }
        out.replaceSubrange(namesOffset..<(namesOffset + names.count), with: names)

        func section(_ index: Int, name: UInt32, type: UInt32, address: UInt64, offset: Int, size: Int) {
            let s = shoff + index * shsize
            put(name, s)
            put(type, s + 4)
            if is64 {
                put(address, s + 16)
                put(UInt64(offset), s + 24)
                put(UInt64(size), s + 32)
            } else {
                put(UInt32(truncatingIfNeeded: address), s + 12)
                put(UInt32(offset), s + 16)
                put(UInt32(size), s + 20)
            }
        }
        if let table = resourceTable {
            section(1, name: 1, type: 1, address: table.address, offset: dataOffsets.last!, size: table.bytes.count)
        }
        section(sectionCount - 1, name: 17, type: 3, address: 0, offset: namesOffset, size: names.count)
        return (out, Layout(programHeaders: phoff, sectionHeaders: shoff, segmentData: dataOffsets, is64: is64))
    }
}
