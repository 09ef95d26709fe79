/// What identifies a loaded firmware image without its file: a 64-bit FNV-1a hash of the bytes of
/// its read-only loadable segments (code and constants — what a running firmware does not change),
/// with the resource table's bytes counted as zeros (the host completes the table when it loads
/// it). Taken from target memory when a core dump is written, and from the ELF file when the dump
/// is opened with it, so a dump opened with another build of the firmware is detected.
///
/// FNV-1a is not a cryptographic hash: it tells builds apart, it does not authenticate them.
public struct ImageFingerprint: Codable, Hashable, Sendable, CustomStringConvertible {
    /// A hashed range: a segment's load address (p_paddr) and its file size.
    public struct Range: Codable, Hashable, Sendable {
        public var address: UInt64
        public var size: UInt64
    }
    public var ranges: [Range]
    public var hash: UInt64

    public var description: String {
        "fnv1a64 " + String(hash, radix: 16) + " over " + ranges.map { "0x\(String($0.address, radix: 16))+\($0.size)" }.joined(separator: ", ")
    }

    /// The segments the fingerprint covers: loadable, with file bytes, not writable.
    static func hashedSegments(of image: ELFImage) -> [ELFProgramHeader] {
        image.loadableSegments.filter { $0.fileSize > 0 && !$0.flags.contains(.write) }
    }

    /// The fingerprint of `image` as `read` returns its segments' bytes (`nil` when one cannot
    /// be read: then there is no fingerprint).
    /// - Parameter read: the bytes of one hashed segment — from target memory at its load address,
    ///   or from the file at its offset.
    public static func of(_ image: ELFImage, read: (ELFProgramHeader) -> [UInt8]?) -> ImageFingerprint? {
        let table = image.resourceTableSection.map { (start: $0.address, end: $0.address &+ $0.size) }
        var hash = FNV1a64()
        var ranges: [Range] = []
        for segment in hashedSegments(of: image) {
            guard let bytes = read(segment), bytes.count == Int(clamping: segment.fileSize) else { return nil }
            for (i, byte) in bytes.enumerated() {
                let address = segment.physicalAddress &+ UInt64(i)
                let inTable = table.map { address >= $0.start && address < $0.end } ?? false
                hash.add(inTable ? 0 : byte)
            }
            ranges.append(Range(address: segment.physicalAddress, size: segment.fileSize))
        }
        return ImageFingerprint(ranges: ranges, hash: hash.value)
    }

    /// The fingerprint of the ELF file `image` was read from.
    public static func ofFile(_ image: ELFImage, store: ImageStore) -> ImageFingerprint? {
        guard (try? store.open(image.path)) != nil else { return nil }
        defer { store.close() }
        return of(image) { segment in try? store.bytes(at: Int(clamping: segment.offset), count: Int(clamping: segment.fileSize)) }
    }
}

/// The 64-bit Fowler–Noll–Vo 1a hash (its published offset basis and prime).
struct FNV1a64 {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func add(_ byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x0000_0100_0000_01B3
    }
}
