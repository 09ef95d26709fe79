/// The parts of an ELF firmware image the loader needs: header, program headers, section
/// headers with names, and where the resource table is. Read through an ``ImageStore`` and
/// validated: class, byte order, type, every table and segment inside the file, sizes sane,
/// loadable segments not overlapping.
public struct ELFImage: Hashable, Sendable {
    public var path: String
    public var fileSize: Int
    public var header: ELFHeader
    public var programHeaders: [ELFProgramHeader]
    public var sections: [ELFSectionHeader]

    /// The name of the section that holds the resource table.
    public static let resourceTableSection = ".resource_table"
    /// More program or section headers than this is taken as a corrupt count.
    public static let maximumHeaderCount = 65_535

    /// The `PT_LOAD` segments, in file order.
    public var loadableSegments: [ELFProgramHeader] { programHeaders.filter(\.isLoadable) }
    /// The `.resource_table` section, when the image has one.
    public var resourceTableSection: ELFSectionHeader? { sections.first { $0.name == Self.resourceTableSection } }
    /// The boot address (e_entry).
    public var entry: UInt64 { header.entry }

    /// Reads and validates the headers of the image open in `store` (`fileSize` bytes).
    /// - Throws: ``ImageError`` naming the first problem found.
    public init(store: ImageStore, fileSize: Int, path: String) throws(ImageError) {
        self.path = path
        self.fileSize = fileSize
        func fail(_ kind: ImageError.Kind) -> ImageError { ImageError(kind, path: path) }

        // Identification, read by hand so that each refusal has its own clear reason.
        guard fileSize >= 16 else { throw fail(fileSize >= 4 ? .truncated(what: "ELF identification", needed: 16, fileSize: fileSize) : .notELF) }
        let ident = try store.bytes(at: 0, count: 16)
        guard ident[0..<4].elementsEqual([0x7F, 0x45, 0x4C, 0x46]) else { throw fail(.notELF) }
        guard let fileClass = ELFClass(rawValue: ident[4]) else { throw fail(.unsupportedClass(ident[4])) }
        guard ident[5] == 1 else { throw fail(.unsupportedByteOrder(ident[5])) }
        let headerSize = fileClass == .elf32 ? 52 : 64
        guard fileSize >= headerSize else { throw fail(.truncated(what: "\(fileClass) file header", needed: headerSize, fileSize: fileSize)) }
        let ehdr = ByteReader(bytes: try store.bytes(at: 0, count: headerSize))

        // Where the two header tables are, to read just enough of the file for libelf.
        func field<T: FixedWidthInteger & UnsignedInteger>(_ name: String, at offset: Int, as: T.Type = T.self) throws(ImageError) -> T {
            guard let value = ehdr.integer(at: offset, as: T.self) else {
                throw fail(.truncated(what: "\(fileClass) file header field \(name)", needed: offset + MemoryLayout<T>.size, fileSize: ehdr.bytes.count))
            }
            return value
        }
        let is64 = fileClass == .elf64
        let phoff: UInt64 = is64 ? try field("e_phoff", at: 32) : UInt64(try field("e_phoff", at: 28, as: UInt32.self))
        let shoff: UInt64 = is64 ? try field("e_shoff", at: 40) : UInt64(try field("e_shoff", at: 32, as: UInt32.self))
        let base = is64 ? 54 : 42
        let phentsize = UInt64(try field("e_phentsize", at: base, as: UInt16.self))
        let phnum = UInt64(try field("e_phnum", at: base + 2, as: UInt16.self))
        let shentsize = UInt64(try field("e_shentsize", at: base + 4, as: UInt16.self))
        let shnum = UInt64(try field("e_shnum", at: base + 6, as: UInt16.self))
        let type: UInt16 = try field("e_type", at: 16)
        guard type == 2 else { throw fail(.unsupportedType(type)) }
        let expectedPh: UInt64 = is64 ? 56 : 32, expectedSh: UInt64 = is64 ? 64 : 40
        if phnum > 0 && phentsize != expectedPh {
            throw fail(.invalidField(field: "e_phentsize", value: phentsize, reason: "must be \(expectedPh) for \(fileClass)"))
        }
        if shnum > 0 && shentsize != expectedSh {
            throw fail(.invalidField(field: "e_shentsize", value: shentsize, reason: "must be \(expectedSh) for \(fileClass)"))
        }
        // Offsets come from the file: add with overflow checks (an ELF64 offset can be anything).
        let (phEnd, phOverflow) = phoff.addingReportingOverflow(phnum * phentsize)
        guard phnum == 0 || (!phOverflow && phoff <= UInt64(fileSize) && phEnd <= UInt64(fileSize)) else {
            throw fail(.truncated(what: "program header table", needed: Int(clamping: phEnd), fileSize: fileSize))
        }
        // e_shnum = 0 with e_shoff set is extended numbering: the count is in section 0.
        let shCount = shoff != 0 && shnum == 0 ? 1 : shnum
        let (shEnd, shOverflow) = shoff.addingReportingOverflow(shCount * expectedSh)
        guard shoff == 0 || (!shOverflow && shoff <= UInt64(fileSize) && shEnd <= UInt64(fileSize)) else {
            throw fail(.truncated(what: "section header table", needed: Int(clamping: shEnd), fileSize: fileSize))
        }
        // What libelf is given: the header and the tables that exist, packed one after the other
        // (each 8-byte aligned) with e_phoff and e_shoff pointing at them in the copy — libelf
        // decodes only headers here (section contents are read from the store), so the bytes in
        // between, a whole image's segments, are neither read nor allocated. (An unused e_phoff,
        // with e_phnum = 0, may say anything and is not checked above: it is not copied.)
        func aligned(_ n: Int) -> Int { (n + 7) & ~7 }
        var headerCopy = ehdr.bytes      // the header read above, not read again
        var pieces: [(offset: Int, bytes: [UInt8])] = []
        var next = aligned(headerSize)
        func place(_ offset: UInt64, _ end: UInt64, field: Int) throws(ImageError) {
            let table = try store.bytes(at: Int(offset), count: Int(end - offset))
            pieces.append((next, table))
            let at = UInt64(next)
            for i in 0..<(is64 ? 8 : 4) { headerCopy[field + i] = UInt8(truncatingIfNeeded: at >> (8 * UInt64(i))) }
            next = aligned(next + table.count)
        }
        for i in 0..<(is64 ? 8 : 4) { headerCopy[(is64 ? 32 : 28) + i] = 0 }
        if phnum > 0 { try place(phoff, phEnd, field: is64 ? 32 : 28) }
        if shoff != 0 { try place(shoff, shEnd, field: is64 ? 40 : 32) }
        pieces.insert((0, headerCopy), at: 0)
        let span = next
        let file = try ELFFile(size: span, pieces: pieces, path: path)
        header = try file.header()
        let phdrs = try file.programHeaders()
        guard phdrs.count <= Self.maximumHeaderCount else {
            throw fail(.invalidField(field: "e_phnum", value: UInt64(phdrs.count), reason: "more program headers than any image has"))
        }
        var (sections, nameTable) = try file.sectionHeaders()
        guard sections.count <= Self.maximumHeaderCount, sections.isEmpty || nameTable < sections.count else {
            throw fail(.invalidField(field: "e_shstrndx", value: UInt64(nameTable), reason: "no such section"))
        }

        // Segments: inside the file, memsz ≥ filesz, no address overflow.
        for ph in phdrs where ph.isLoadable {
            guard ph.memorySize >= ph.fileSize else {
                throw fail(.memorySizeBelowFileSize(index: ph.index, fileSize: ph.fileSize, memorySize: ph.memorySize))
            }
            let (end, overflow) = ph.offset.addingReportingOverflow(ph.fileSize)
            guard !overflow, end <= UInt64(fileSize) else {
                throw fail(.segmentBeyondFile(index: ph.index, offset: ph.offset, size: ph.fileSize, fileSize: fileSize))
            }
            guard ph.memorySize <= UInt64(Int32.max), ph.physicalAddress.addingReportingOverflow(ph.memorySize).overflow == false else {
                throw fail(.invalidField(field: "segment \(ph.index) p_memsz", value: ph.memorySize, reason: "larger than any remote memory"))
            }
        }
        let loadable = phdrs.filter { $0.isLoadable && $0.memorySize > 0 }
        for (i, a) in loadable.enumerated() {
            for b in loadable[(i + 1)...] where a.physicalAddress < b.physicalAddress + b.memorySize && b.physicalAddress < a.physicalAddress + a.memorySize {
                throw fail(.overlappingSegments(first: a.index, second: b.index))
            }
        }

        // Section names, from the string table read separately (it may lie anywhere in the file).
        if !sections.isEmpty {
            let names = sections[nameTable]
            let (end, overflow) = names.offset.addingReportingOverflow(names.size)
            guard !overflow, end <= UInt64(fileSize), names.size <= 16 << 20 else {
                throw fail(.truncated(what: "section name table", needed: Int(clamping: end), fileSize: fileSize))
            }
            let table = ByteReader(bytes: try store.bytes(at: Int(names.offset), count: Int(names.size)))
            for i in sections.indices {
                let offset = Int(sections[i].nameOffset)
                guard offset < table.bytes.count else {
                    throw fail(.invalidField(field: "section \(i) sh_name", value: UInt64(offset), reason: "outside the section name table"))
                }
                sections[i].name = table.string(at: offset, length: table.bytes.count - offset) ?? ""
            }
        }
        if let rsc = sections.first(where: { $0.name == Self.resourceTableSection }) {
            let (end, overflow) = rsc.offset.addingReportingOverflow(rsc.size)
            guard rsc.hasFileBytes, !overflow, end <= UInt64(fileSize) else {
                throw fail(.truncated(what: "section .resource_table", needed: Int(clamping: end), fileSize: fileSize))
            }
            guard rsc.size <= 1 << 20 else {
                throw fail(.invalidField(field: ".resource_table size", value: rsc.size, reason: "larger than 1 MiB"))
            }
        }
        self.programHeaders = phdrs
        self.sections = sections
    }

    /// Reads an image's headers from a store, opening and closing it.
    public static func read(_ path: String, from store: ImageStore) throws(ImageError) -> ELFImage {
        let size = try store.open(path)
        defer { store.close() }
        return try ELFImage(store: store, fileSize: size, path: path)
    }

    /// The `.resource_table` bytes from the image, or `nil` when it has none.
    public func resourceTableBytes(from store: ImageStore) throws(ImageError) -> [UInt8]? {
        guard let rsc = resourceTableSection else { return nil }
        return try store.bytes(at: Int(rsc.offset), count: Int(rsc.size))
    }
}
