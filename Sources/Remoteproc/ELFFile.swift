import CLibElf
#if canImport(Glibc)
import Glibc
#endif

/// ELF class (EI_CLASS).
public enum ELFClass: UInt8, Sendable, Hashable, CustomStringConvertible {
    case elf32 = 1
    case elf64 = 2
    public var description: String { self == .elf32 ? "ELF32" : "ELF64" }
}

/// e_machine, with names for the architectures this project knows.
public struct ELFMachine: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let arm = ELFMachine(rawValue: 40)
    public static let x86_64 = ELFMachine(rawValue: 62)
    public static let aarch64 = ELFMachine(rawValue: 183)
    public static let riscv = ELFMachine(rawValue: 243)
    public var description: String {
        switch self {
        case .arm: "ARM"
        case .x86_64: "x86-64"
        case .aarch64: "AArch64"
        case .riscv: "RISC-V"
        default: "machine \(rawValue)"
        }
    }
}

/// Segment permissions (p_flags).
public struct ELFSegmentFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let execute = ELFSegmentFlags(rawValue: 1)
    public static let write = ELFSegmentFlags(rawValue: 2)
    public static let read = ELFSegmentFlags(rawValue: 4)
    public var description: String {
        (contains(.read) ? "R" : " ") + (contains(.write) ? "W" : " ") + (contains(.execute) ? "X" : " ")
    }
}

/// The ELF file header fields the loader uses.
public struct ELFHeader: Hashable, Sendable {
    public var fileClass: ELFClass
    public var machine: ELFMachine
    public var type: UInt16
    public var entry: UInt64
    public var flags: UInt32
}

/// One program header.
public struct ELFProgramHeader: Hashable, Sendable {
    /// Index in the program header table.
    public var index: Int
    public var type: UInt32
    public var offset: UInt64
    public var virtualAddress: UInt64
    /// p_paddr: the load address, where the loader places the segment.
    public var physicalAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    public var flags: ELFSegmentFlags
    /// `PT_LOAD`.
    public static let loadType: UInt32 = 1
    public var isLoadable: Bool { type == Self.loadType }
}

/// One section header (with its name resolved).
public struct ELFSectionHeader: Hashable, Sendable {
    public var index: Int
    public var name: String
    /// sh_name: the name's offset in the section-name string table.
    public var nameOffset: UInt32
    public var type: UInt32
    public var address: UInt64
    public var offset: UInt64
    public var size: UInt64
    /// `SHT_NOBITS`: occupies no file bytes.
    public var hasFileBytes: Bool { type != 8 }
}

/// An ELF image's headers, decoded by libelf. The only type in the project that calls libelf.
///
/// It owns a private copy of the header bytes (libelf's `elf_memory` does not copy) and the
/// `Elf *` handle; both are released by `deinit`.
struct ELFFile: ~Copyable {
    private let storage: UnsafeMutableRawBufferPointer
    private let elf: OpaquePointer
    let path: String

    /// Parses an image's headers. libelf sees a buffer of `size` bytes that holds `pieces` —
    /// (offset, bytes) — at their offsets and zeros elsewhere: the file header and its tables,
    /// packed by ``ELFImage`` (segment data is never read here).
    init(size: Int, pieces: [(offset: Int, bytes: [UInt8])], path: String) throws(ImageError) {
        self.path = path
        guard elf_version(UInt32(EV_CURRENT)) != UInt32(EV_NONE) else {
            throw ImageError(.libelf(operation: "elf_version", message: Self.lastMessage()), path: path)
        }
        guard let base = calloc(max(1, size), 1) else {
            throw ImageError(.libelf(operation: "calloc", message: "cannot allocate \(size) bytes for the headers"), path: path)
        }
        let storage = UnsafeMutableRawBufferPointer(start: base, count: max(1, size))
        for piece in pieces {
            precondition(piece.offset >= 0 && piece.offset + piece.bytes.count <= size, "header piece outside the header buffer")
            piece.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: storage[piece.offset...]).copyMemory(from: $0) }
        }
        guard let elf = elf_memory(base.assumingMemoryBound(to: CChar.self), size) else {
            free(base)
            throw ImageError(.libelf(operation: "elf_memory", message: Self.lastMessage()), path: path)
        }
        guard elf_kind(elf) == ELF_K_ELF else {
            elf_end(elf)
            free(base)
            throw ImageError(.notELF, path: path)
        }
        self.storage = storage
        self.elf = elf
    }

    deinit {
        elf_end(elf)
        free(storage.baseAddress)
    }

    private static func lastMessage() -> String {
        guard let text = elf_errmsg(-1) else { return "unknown error" }
        return String(cString: text)
    }

    private func failure(_ operation: String) -> ImageError {
        ImageError(.libelf(operation: operation, message: Self.lastMessage()), path: path)
    }

    func header() throws(ImageError) -> ELFHeader {
        var ehdr = GElf_Ehdr()
        guard gelf_getehdr(elf, &ehdr) != nil else { throw failure("gelf_getehdr") }
        let fileClass: ELFClass = gelf_getclass(elf) == ELFCLASS64 ? .elf64 : .elf32
        return ELFHeader(fileClass: fileClass, machine: ELFMachine(rawValue: ehdr.e_machine), type: ehdr.e_type,
                         entry: ehdr.e_entry, flags: ehdr.e_flags)
    }

    func programHeaders() throws(ImageError) -> [ELFProgramHeader] {
        var count = 0
        guard elf_getphdrnum(elf, &count) == 0 else { throw failure("elf_getphdrnum") }
        var result: [ELFProgramHeader] = []
        result.reserveCapacity(count)
        for i in 0..<count {
            var phdr = GElf_Phdr()
            guard gelf_getphdr(elf, Int32(i), &phdr) != nil else { throw failure("gelf_getphdr") }
            result.append(ELFProgramHeader(index: i, type: phdr.p_type, offset: phdr.p_offset, virtualAddress: phdr.p_vaddr,
                                           physicalAddress: phdr.p_paddr, fileSize: phdr.p_filesz, memorySize: phdr.p_memsz,
                                           flags: ELFSegmentFlags(rawValue: phdr.p_flags)))
        }
        return result
    }

    /// Section headers with names not yet resolved, and the index of the name string table.
    func sectionHeaders() throws(ImageError) -> (sections: [ELFSectionHeader], nameTable: Int) {
        var count = 0
        guard elf_getshdrnum(elf, &count) == 0 else { throw failure("elf_getshdrnum") }
        guard count > 0 else { return ([], 0) }
        var nameTable = 0
        guard elf_getshdrstrndx(elf, &nameTable) == 0 else { throw failure("elf_getshdrstrndx") }
        var result: [ELFSectionHeader] = []
        result.reserveCapacity(count)
        for i in 0..<count {
            guard let scn = elf_getscn(elf, i) else { throw failure("elf_getscn") }
            var shdr = GElf_Shdr()
            guard gelf_getshdr(scn, &shdr) != nil else { throw failure("gelf_getshdr") }
            result.append(ELFSectionHeader(index: i, name: "", nameOffset: shdr.sh_name, type: shdr.sh_type, address: shdr.sh_addr,
                                           offset: shdr.sh_offset, size: shdr.sh_size))
        }
        return (result, nameTable)
    }
}
