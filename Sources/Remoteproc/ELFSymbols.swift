/// A symbol of an ELF image's symbol table (`.symtab`).
public struct ELFSymbol: Hashable, Sendable {
    public var name: String
    public var value: UInt64
    public var size: UInt64
    /// STT_FUNC.
    public var isFunction: Bool

    /// Whether `address` lies inside the symbol (the Thumb bit of a function is ignored).
    public func contains(_ address: UInt64) -> Bool {
        let start = isFunction ? value & ~1 : value
        return address >= start && address < start + max(size, 1)
    }
}

extension ELFImage {
    /// The symbols of `.symtab`, read through `store` (open on this image). Bounds-checked: a
    /// malformed table gives an error, never a trap.
    public func symbols(from store: ImageStore) throws(ImageError) -> [ELFSymbol] {
        guard let table = sections.first(where: { $0.type == 2 }) else { return [] }   // SHT_SYMTAB
        func fail(_ what: String) -> ImageError { ImageError(.invalidField(field: ".symtab", value: table.size, reason: what), path: path) }
        let strings = sections.first { $0.name == ".strtab" }
        for section in [table] + (strings.map { [$0] } ?? []) {
            let (end, overflow) = section.offset.addingReportingOverflow(section.size)
            guard !overflow, end <= UInt64(fileSize), section.size <= 64 << 20 else {
                throw ImageError(.truncated(what: "section \(section.name)", needed: Int(clamping: end), fileSize: fileSize), path: path)
            }
        }
        let entrySize = header.fileClass == .elf64 ? 24 : 16
        guard table.size % UInt64(entrySize) == 0 else { throw fail("size is not a multiple of \(entrySize)") }
        let bytes = ByteReader(bytes: try store.bytes(at: Int(table.offset), count: Int(table.size)))
        let names = ByteReader(bytes: try strings.map { (s) throws(ImageError) in try store.bytes(at: Int(s.offset), count: Int(s.size)) } ?? [])
        var result: [ELFSymbol] = []
        for index in 0..<(Int(table.size) / entrySize) {
            let at = index * entrySize
            let fields: (name: UInt32?, info: UInt8?, value: UInt64?, size: UInt64?) = entrySize == 24
                ? (bytes.integer(at: at), bytes.integer(at: at + 4), bytes.integer(at: at + 8), bytes.integer(at: at + 16))
                : (bytes.integer(at: at), bytes.integer(at: at + 12), bytes.integer(at: at + 4, as: UInt32.self).map(UInt64.init),
                   bytes.integer(at: at + 8, as: UInt32.self).map(UInt64.init))
            guard let nameField = fields.name, let info = fields.info, let value = fields.value, let size = fields.size else {
                throw fail("symbol \(index) runs past the end of the table")
            }
            let nameOffset = Int(nameField)
            guard nameOffset < names.bytes.count, let name = names.string(at: nameOffset, length: names.bytes.count - nameOffset), !name.isEmpty else { continue }
            result.append(ELFSymbol(name: name, value: value, size: size, isFunction: info & 0xF == 2))
        }
        return result
    }
}
