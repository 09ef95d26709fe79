import Virtio

/// A resource table (`struct resource_table` and its entries), parsed from or built into the
/// exact bytes OpenAMP and Linux use.
///
/// ``bytes`` is the table as it lies in the image; ``entries`` and ``entryOffsets`` are decoded
/// from it. ``update(entry:to:)`` rewrites one entry in place (how the host writes back the
/// notify ids and addresses it allocated), so a parsed table serialises back to the same bytes.
public struct ResourceTable: Hashable, Sendable {
    /// The only format version (`RSC_TAB_SUPPORTED_VERSION`).
    public static let supportedVersion: UInt32 = 1
    /// Size of the fixed header before the offset array.
    public static let headerSize = 16
    /// Upper bound on `num`, far above any real table, so a corrupt count cannot make us allocate.
    public static let maximumEntryCount = 4096

    public private(set) var bytes: [UInt8]
    public private(set) var entries: [ResourceEntry]
    /// `offset[i]`: where entry `i` starts, from the start of the table.
    public private(set) var entryOffsets: [Int]

    public var version: UInt32 { ByteReader(bytes: bytes).integer(at: 0) ?? 0 }

    /// Parses and validates a table. Mirrors `handle_rsc_table`'s checks, plus every bound
    /// OpenAMP leaves unchecked (each entry, its vrings and its config space must lie inside
    /// `bytes`). What one host accepts and another refuses (notify ids used twice, ANY vring
    /// addresses, …) is not decided here but by the host personality
    /// (``Virtio/HostPersonality/violations(in:notifyIDCapacity:)``).
    /// - Throws: ``ResourceTableError`` naming the entry, the byte offset and what is wrong.
    public init(bytes: [UInt8]) throws(ResourceTableError) {
        let reader = ByteReader(bytes: bytes)
        guard bytes.count >= Self.headerSize, let version = reader.integer(at: 0, as: UInt32.self),
              let count = reader.integer(at: 4, as: UInt32.self) else {
            throw ResourceTableError(.truncatedHeader(size: bytes.count, needed: Self.headerSize))
        }
        guard version == Self.supportedVersion else { throw ResourceTableError(.unsupportedVersion(version), offset: 0) }
        for i in 0..<2 {
            let value = reader.integer(at: 8 + 4 * i, as: UInt32.self) ?? 0
            guard value == 0 else {
                throw ResourceTableError(.reservedNotZero(field: "reserved[\(i)]", value: UInt64(value)), offset: 8 + 4 * i)
            }
        }
        guard count <= Self.maximumEntryCount else {
            throw ResourceTableError(.invalidField(field: "num", value: UInt64(count), reason: "more than \(Self.maximumEntryCount) entries"), offset: 4)
        }
        let needed = UInt64(Self.headerSize) + 4 * UInt64(count)
        guard needed <= UInt64(bytes.count) else {
            throw ResourceTableError(.truncatedHeader(size: bytes.count, needed: Int(clamping: needed)))
        }
        let headerEnd = Int(needed)
        var offsets: [Int] = []
        for index in 0..<Int(count) {
            let raw = reader.integer(at: Self.headerSize + 4 * index, as: UInt32.self)!
            guard raw >= UInt32(headerEnd), UInt64(raw) + 4 <= UInt64(bytes.count) else {
                throw ResourceTableError(.entryOutsideTable(offset: raw, tableSize: bytes.count),
                                         entry: index, offset: Self.headerSize + 4 * index)
            }
            offsets.append(Int(raw))
        }
        var entries: [ResourceEntry] = []
        for (index, offset) in offsets.enumerated() {
            entries.append(try Self.decodeEntry(reader, at: offset, index: index, end: Self.extent(of: offset, offsets: offsets, size: bytes.count)))
        }
        self.bytes = bytes
        self.entries = entries
        self.entryOffsets = offsets
    }

    /// Builds a table holding `entries` in order: the header, the offset array, then each entry,
    /// each starting on a 4-byte boundary.
    /// - Throws: ``ResourceTableError`` when an entry cannot be represented (a value too large for
    ///   its field) or the result would not parse.
    public init(entries: [ResourceEntry]) throws(ResourceTableError) {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(Self.supportedVersion)
        bytes.appendLittleEndian(UInt32(entries.count))
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt32(0))
        let offsetArray = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: 4 * entries.count))
        for (index, entry) in entries.enumerated() {
            while bytes.count % 4 != 0 { bytes.append(0) }
            bytes.storeLittleEndian(UInt32(bytes.count), at: offsetArray + 4 * index)
            bytes.append(contentsOf: try Self.encode(entry, index: index))
        }
        try self.init(bytes: bytes)
    }

    /// Replaces entry `index` with `entry`, rewriting its bytes in place. The new entry must have
    /// the same type and encoded size (same vring count and config length).
    /// - Throws: ``ResourceTableError`` when the shapes differ or `index` is out of range.
    public mutating func update(entry index: Int, to entry: ResourceEntry) throws(ResourceTableError) {
        guard entries.indices.contains(index) else {
            throw ResourceTableError(.unrepresentable("no entry \(index) (the table has \(entries.count))"))
        }
        let size = try Self.encodedSize(of: entry, index: index)
        guard entry.type == entries[index].type, (try? Self.encodedSize(of: entries[index], index: index)) == size else {
            throw ResourceTableError(.unrepresentable("entry \(index) cannot change its type or size in place"), entry: index)
        }
        let offset = entryOffsets[index]
        guard size <= bytes.count - offset else {
            throw ResourceTableError(.entryTruncated(needed: size, available: bytes.count - offset), entry: index, offset: offset)
        }
        // Written over the old bytes (no copy of the table), decoded back, and put back as it
        // was when the new bytes do not decode.
        let old = Array(bytes[offset..<(offset + size)])
        Self.write(entry, size: size, into: &bytes, at: offset)
        do {
            entries[index] = try Self.decodeEntry(ByteReader(bytes: bytes), at: offset, index: index,
                                                  end: Self.extent(of: offset, offsets: entryOffsets, size: bytes.count))
        } catch {
            bytes.replaceSubrange(offset..<(offset + size), with: old)
            throw error
        }
    }

    /// The entries of one kind with their indices, e.g. every vdev.
    public var virtioDevices: [(index: Int, device: VirtioDeviceResource)] {
        entries.enumerated().compactMap { i, e in if case let .vdev(v) = e { (i, v) } else { nil } }
    }

    // MARK: Decoding

    /// Where the entry at `offset` can extend to at most: the next entry's start, or the table's end.
    private static func extent(of offset: Int, offsets: [Int], size: Int) -> Int {
        var end = size
        for other in offsets where other > offset && other < end { end = other }
        return end
    }

    /// - Parameter end: where the entry can extend to at most (an unknown entry's payload ends there).
    private static func decodeEntry(_ r: ByteReader, at offset: Int, index: Int, end: Int) throws(ResourceTableError) -> ResourceEntry {
        let available = r.bytes.count - offset
        func need(_ n: Int) throws(ResourceTableError) {
            guard n <= available else { throw ResourceTableError(.entryTruncated(needed: n, available: available), entry: index, offset: offset) }
        }
        func u32(_ field: Int) -> UInt32 { r.integer(at: offset + field, as: UInt32.self)! }
        // Field names are built only for an error.
        func reservedZero(_ name: @autoclosure () -> String, _ value: UInt64, _ field: Int) throws(ResourceTableError) {
            guard value == 0 else { throw ResourceTableError(.reservedNotZero(field: name(), value: value), entry: index, offset: offset + field) }
        }
        func invalid(_ field: String, _ value: UInt64, _ why: String, _ at: Int) -> ResourceTableError {
            ResourceTableError(.invalidField(field: field, value: value, reason: why), entry: index, offset: offset + at)
        }
        let type = u32(0)
        switch type {
        case 0, 1:
            try need(56)
            let memory = MemoryResource(
                deviceAddress: ResourceAddress(u32(4)), physicalAddress: ResourceAddress(u32(8)), length: u32(12),
                flags: u32(16), reserved: u32(20), name: r.string(at: offset + 24, length: 32)!)
            let what = type == 0 ? "carveout" : "devmem"
            try reservedZero("\(what).reserved", UInt64(memory.reserved), 20)
            guard memory.length > 0 else { throw invalid("\(what).len", 0, "a memory resource cannot be empty", 12) }
            if let da = memory.deviceAddress.device, da.rawValue + UInt64(memory.length) > 1 << 32 {
                throw invalid("\(what).da + len", da.rawValue + UInt64(memory.length), "runs past the 32-bit device address space", 4)
            }
            return type == 0 ? .carveout(memory) : .devmem(memory)
        case 2:
            try need(48)
            let trace = TraceResource(deviceAddress: ResourceAddress(u32(4)), length: u32(8), reserved: u32(12),
                                      name: r.string(at: offset + 16, length: 32)!)
            try reservedZero("trace.reserved", UInt64(trace.reserved), 12)
            if let da = trace.deviceAddress.device, da.rawValue + UInt64(trace.length) > 1 << 32 {
                throw invalid("trace.da + len", da.rawValue + UInt64(trace.length), "runs past the 32-bit device address space", 4)
            }
            return .trace(trace)
        case 3:
            try need(28)
            let configLength = u32(20)
            let vringCount = Int(r.bytes[offset + 25])
            let reserved = r.integer(at: offset + 26, as: UInt16.self)!
            try reservedZero("vdev.reserved", UInt64(reserved), 26)
            let total = UInt64(28) + 20 * UInt64(vringCount) + UInt64(configLength)
            guard total <= UInt64(available) else {
                throw ResourceTableError(.entryTruncated(needed: Int(clamping: total), available: available), entry: index, offset: offset)
            }
            var vrings: [VringResource] = []
            vrings.reserveCapacity(vringCount)
            for k in 0..<vringCount {
                let base = VirtioDeviceResource.vringOffset(k)
                let vring = VringResource(deviceAddress: ResourceAddress(u32(base)), alignment: u32(base + 4),
                                          count: u32(base + 8), notifyID: NotifyID(u32(base + 12)), reserved: u32(base + 16))
                try reservedZero("vring[\(k)].reserved", UInt64(vring.reserved), base + 16)
                guard vring.count > 0, vring.count <= 32768, vring.count & (vring.count - 1) == 0 else {
                    throw invalid("vring[\(k)].num", UInt64(vring.count), "must be a power of two from 1 to 32768", base + 8)
                }
                guard vring.alignment >= 4, vring.alignment <= 1 << 16, vring.alignment & (vring.alignment - 1) == 0 else {
                    throw invalid("vring[\(k)].align", UInt64(vring.alignment), "must be a power of two from 4 to 65536", base + 4)
                }
                if let da = vring.deviceAddress.device, da.rawValue + UInt64(vring.byteSize!) > 1 << 32 {
                    throw invalid("vring[\(k)].da", da.rawValue, "the vring runs past the 32-bit device address space", base)
                }
                vrings.append(vring)
            }
            let configStart = offset + VirtioDeviceResource.configOffset(vringCount: vringCount)
            return .vdev(VirtioDeviceResource(
                deviceID: u32(4), notifyID: NotifyID(u32(8)), deviceFeatures: VirtioFeatures(rawValue: u32(12)),
                driverFeatures: VirtioFeatures(rawValue: u32(16)), status: VirtioStatus(rawValue: r.bytes[offset + 24]),
                reserved: reserved, vrings: vrings, config: Array(r.bytes[configStart..<(configStart + Int(configLength))])))
        case 128...512:
            try need(8)
            let length = u32(4)
            guard length >= 8 else { throw invalid("vendor.len", UInt64(length), "counts the whole entry, so it is at least 8", 4) }
            try need(Int(length))
            return .vendor(VendorResource(type: type, payload: Array(r.bytes[(offset + 8)..<(offset + Int(length))])))
        default:
            return .unknown(type: type, payload: Array(r.bytes[(offset + 4)..<max(offset + 4, end)]))
        }
    }

    // MARK: Encoding

    /// `entry`'s bytes on their own.
    private static func encode(_ entry: ResourceEntry, index: Int) throws(ResourceTableError) -> [UInt8] {
        let size = try encodedSize(of: entry, index: index)
        var out = [UInt8](repeating: 0, count: size)
        write(entry, size: size, into: &out, at: 0)
        return out
    }

    /// How many bytes `entry` takes in a table.
    /// - Throws: ``ResourceTableError`` when the entry cannot be represented (checked here, so
    ///   ``write(_:into:at:)`` cannot fail halfway).
    private static func encodedSize(of entry: ResourceEntry, index: Int) throws(ResourceTableError) -> Int {
        switch entry {
        case .carveout, .devmem: return 56
        case .trace: return 48
        case let .vdev(v):
            guard v.vrings.count <= 255 else {
                throw ResourceTableError(.unrepresentable("a vdev holds at most 255 vrings, not \(v.vrings.count)"), entry: index)
            }
            return VirtioDeviceResource.configOffset(vringCount: v.vrings.count) + v.config.count
        case let .vendor(v):
            guard (128...512).contains(v.type) else {
                throw ResourceTableError(.unrepresentable("vendor type \(v.type) is outside 128…512"), entry: index)
            }
            guard v.payload.count <= Int(UInt32.max) - 8 else {
                throw ResourceTableError(.unrepresentable("vendor payload too large"), entry: index)
            }
            return 8 + v.payload.count
        case let .unknown(type, payload):
            guard type > 3, !(128...512).contains(type) else {
                throw ResourceTableError(.unrepresentable("type \(type) has a layout; build it as that entry, not .unknown"), entry: index)
            }
            return 4 + payload.count
        }
    }

    /// Writes `entry` at `offset`, over exactly `size` bytes — its ``encodedSize(of:index:)`` —
    /// which the caller has checked lie inside `bytes`. Every field is stored little-endian at
    /// its offset. The stores are unchecked, so the two functions' agreement is checked here.
    private static func write(_ entry: ResourceEntry, size: Int, into bytes: inout [UInt8], at offset: Int) {
        precondition(offset >= 0 && size <= bytes.count - offset, "a table entry written outside the table")
        bytes.withUnsafeMutableBytes { out in
            var at = offset
            defer { precondition(at == offset + size, "a table entry's fields and its encoded size disagree") }
            func put<T: FixedWidthInteger>(_ value: T) {
                out.storeBytes(of: value.littleEndian, toByteOffset: at, as: T.self)
                at += MemoryLayout<T>.size
            }
            func put(_ payload: [UInt8]) {
                payload.withUnsafeBytes { out.baseAddress!.advanced(by: at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                at += payload.count
            }
            // A NUL-padded name field of 32 bytes, truncated to 32.
            func put(name: String) {
                let field = UnsafeMutableRawBufferPointer(rebasing: out[at..<(at + 32)])
                field.initializeMemory(as: UInt8.self, repeating: 0)
                _ = field.initializeMemory(as: UInt8.self, from: name.utf8.prefix(32))
                at += 32
            }
            put(entry.type)
            switch entry {
            case let .carveout(m), let .devmem(m):
                put(m.deviceAddress.rawValue)
                put(m.physicalAddress.rawValue)
                put(m.length)
                put(m.flags)
                put(m.reserved)
                put(name: m.name)
            case let .trace(t):
                put(t.deviceAddress.rawValue)
                put(t.length)
                put(t.reserved)
                put(name: t.name)
            case let .vdev(v):
                put(v.deviceID)
                put(v.notifyID.rawValue)
                put(v.deviceFeatures.rawValue)
                put(v.driverFeatures.rawValue)
                put(UInt32(v.config.count))
                put(v.status.rawValue)
                put(UInt8(v.vrings.count))
                put(v.reserved)
                for vring in v.vrings {
                    put(vring.deviceAddress.rawValue)
                    put(vring.alignment)
                    put(vring.count)
                    put(vring.notifyID.rawValue)
                    put(vring.reserved)
                }
                if !v.config.isEmpty { put(v.config) }
            case let .vendor(v):
                put(UInt32(8 + v.payload.count))
                if !v.payload.isEmpty { put(v.payload) }
            case let .unknown(_, payload):
                if !payload.isEmpty { put(payload) }
            }
        }
    }
}
