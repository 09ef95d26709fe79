import Foundation
import MetalIO
import Remoteproc

/// Why a core file could not be read: where, and what was wrong with it.
public struct CoreDumpError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// The file could not be opened or read (missing, a FIFO, too large, …).
        case file(FileError)
        /// Not an ELF file at all.
        case notELF
        /// An ELF file of another kind (`ET_EXEC` firmware given where the core belongs, …).
        case notCore(type: UInt16)
        /// ELF64, big-endian, or a machine no board has.
        case unsupported(String)
        /// A header, note or segment runs past the end of the file.
        case truncated(String)
        /// Structurally wrong: overlapping segments, a bad note, registers that do not fit the machine.
        case malformed(String)
        /// A core file without rproc-sim's notes (from Linux, QEMU, …).
        case notRprocSim
        /// Written by a newer rproc-sim.
        case newerFormat(Int)
        /// A dump of native firmware, which has no CPU registers to debug.
        case noRegisters
    }
    public var kind: Kind
    /// The file, when it came from one.
    public var path: String?

    public init(_ kind: Kind, path: String? = nil) {
        self.kind = kind
        self.path = path
    }

    public var description: String {
        if case let .file(error) = kind { return "\(error)" }
        let why = switch kind {
        case .file: ""
        case .notELF: "is not an ELF file"
        case let .notCore(type): "is an ELF file of type \(type) (\(type == 2 ? "an executable: the firmware, not its core dump" : "not ET_CORE"))"
        case let .unsupported(what): "is not a core of a board's remote: \(what)"
        case let .truncated(what): "is truncated: \(what) runs past the end of the file"
        case let .malformed(what): "is malformed: \(what)"
        case .notRprocSim: "is a core file, but not one rproc-sim wrote (no RPROCSIM notes)"
        case .noRegisters: "holds no CPU registers (a dump of native firmware): there is nothing for gdb to unwind"
        case let .newerFormat(format): "was written in core format \(format); this rproc-sim reads up to \(CoreDump.Info.currentFormat)"
        }
        return (path.map { "core file \($0) " } ?? "core file ") + why
    }
}

/// The ELF32 little-endian `ET_CORE` layout of a ``CoreDump`` (docs/debugging.md, "The core file"):
///
/// - `e_machine` EM_ARM (40) or EM_RISCV (243) for an emulated core, EM_NONE for native firmware;
/// - one `PT_NOTE`, then one `PT_LOAD` per board memory (`p_vaddr` = `p_paddr` = its device
///   address, `p_filesz` = `p_memsz` = its size);
/// - notes: `CORE`/`NT_PRSTATUS` (1) with the general registers in the layout gdb reads for
///   Linux cores of that machine; `RPROCSIM`/1 with every register the GDB server shows, as
///   (GDB number, value) pairs of 32-bit words after a count; `RPROCSIM`/2 with ``CoreDump/Info`` as JSON.
///
/// Reading trusts nothing in the file: every offset and size is checked against the file's
/// length before it is used, and anything that does not fit is a ``CoreDumpError``.
public enum CoreDumpFile {
    static let machineARM = ELFMachine.arm.rawValue
    static let machineRISCV = ELFMachine.riscv.rawValue
    static let noteRegisters: UInt32 = 1
    static let noteInfo: UInt32 = 2
    static let notePRStatus: UInt32 = 1
    /// gdb's own notes: a target description (NT_GDB_TDESC) and RISC-V CSR values (NT_RISCV_CSR).
    static let noteGDBTargetDescription: UInt32 = 0xFF00_0000
    static let noteRISCVCSRs: UInt32 = 0x900
    static let vendor = "RPROCSIM"
    /// A core file larger than this is refused (the board's memories are a few MiB).
    public static let sizeLimit = 512 << 20
    static let segmentLimit = 16

    /// The offsets and sizes of Linux's 32-bit `elf_prstatus`: the signal at 12, the pid at 24,
    /// the registers at 72; ARM has 18 register words (r0–r15, cpsr, orig_r0), RV32 32 (pc, x1–x31).
    static let prstatusRegisters = 72

    // MARK: Writing

    /// The file's bytes.
    public static func encode(_ dump: CoreDump) -> [UInt8] {
        var notes: [UInt8] = []
        if let cpu = dump.cpu {
            appendNote(&notes, name: "CORE", type: notePRStatus, prstatus(cpu, signal: dump.info.signal))
            // For gdb opening the file itself: a target description of what the core supplies (Arm:
            // xpsr by its name, and no msp/psp, which a core cannot supply and whose absence stops
            // the exception unwinder; RISC-V: the CSRs too, with their values in its CSR note —
            // read under `set osabi none`).
            let core = cpu.architecture == .cortexM4 ? { (r: DebugRegister) in r.feature == "org.gnu.gdb.arm.m-profile" } : { _ in true }
            appendNote(&notes, name: "GDB", type: noteGDBTargetDescription, Array(GDBServer.targetXML(cpu.architecture, including: core).utf8) + [0])
            if cpu.architecture == .rv32 {
                var csrs: [UInt8] = []
                for register in cpu.registers where register.number > 64 { csrs.appendLittleEndian(register.value) }
                appendNote(&notes, name: "GDB", type: noteRISCVCSRs, csrs)
            }
            var registers: [UInt8] = []
            registers.appendLittleEndian(UInt32(cpu.registers.count))
            for register in cpu.registers {
                registers.appendLittleEndian(UInt32(register.number))
                registers.appendLittleEndian(register.value)
            }
            appendNote(&notes, name: vendor, type: noteRegisters, registers)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain strings and numbers cannot fail.
        appendNote(&notes, name: vendor, type: noteInfo, Array((try? encoder.encode(dump.info)) ?? Data()))

        let headerCount = 1 + dump.segments.count
        let offset = align(52 + 32 * headerCount, 16)
        var out = [UInt8]()
        out.reserveCapacity(offset + notes.count + dump.segments.reduce(0) { $0 + $1.bytes.count + 16 })
        out += [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        out.appendLittleEndian(UInt16(4))                                  // ET_CORE
        out.appendLittleEndian(machine(dump.cpu?.architecture))
        out.appendLittleEndian(UInt32(1))                                  // EV_CURRENT
        out.appendLittleEndian(UInt32(0))                                  // e_entry
        out.appendLittleEndian(UInt32(52))                                 // e_phoff
        out.appendLittleEndian(UInt32(0))                                  // e_shoff
        out.appendLittleEndian(dump.info.firmware?.elfFlags ?? flags(dump.cpu?.architecture))
        out.appendLittleEndian(UInt16(52))
        out.appendLittleEndian(UInt16(32))
        out.appendLittleEndian(UInt16(headerCount))
        out.appendLittleEndian(UInt16(40))
        out.appendLittleEndian(UInt16(0))
        out.appendLittleEndian(UInt16(0))

        func programHeader(type: UInt32, offset: Int, address: UInt64, size: Int, flags: UInt32, align: UInt32) {
            out.appendLittleEndian(type)
            out.appendLittleEndian(UInt32(offset))
            out.appendLittleEndian(UInt32(truncatingIfNeeded: address))
            out.appendLittleEndian(UInt32(truncatingIfNeeded: address))
            out.appendLittleEndian(UInt32(size))
            out.appendLittleEndian(type == 4 ? 0 : UInt32(size))
            out.appendLittleEndian(flags)
            out.appendLittleEndian(align)
        }
        programHeader(type: 4, offset: offset, address: 0, size: notes.count, flags: 4, align: 4)
        var placements: [Int] = []
        var cursor = align(offset + notes.count, 16)
        for segment in dump.segments {
            placements.append(cursor)
            programHeader(type: 1, offset: cursor, address: segment.deviceAddress.rawValue, size: segment.bytes.count,
                          flags: segment.flags.rawValue, align: 16)
            cursor = align(cursor + segment.bytes.count, 16)
        }
        out += [UInt8](repeating: 0, count: offset - out.count)
        out += notes
        for (segment, start) in zip(dump.segments, placements) {
            out += [UInt8](repeating: 0, count: start - out.count)
            out += segment.bytes
        }
        return out
    }

    static func machine(_ architecture: CPUArchitecture?) -> UInt16 {
        switch architecture {
        case .cortexM4?: machineARM
        case .rv32?: machineRISCV
        case nil: 0
        }
    }

    /// `e_flags` when the firmware's are not known: the Arm EABI version 5; RISC-V compressed
    /// instructions with the soft-float ABI (what the board's firmware is built for).
    static func flags(_ architecture: CPUArchitecture?) -> UInt32 {
        switch architecture {
        case .cortexM4?: 0x0500_0000
        case .rv32?: 0x0000_0001
        case nil: 0
        }
    }

    /// `NT_PRSTATUS`'s descriptor for `cpu` (see ``prstatusRegisters``).
    static func prstatus(_ cpu: CPUSnapshot, signal: Int) -> [UInt8] {
        let words: [UInt32]
        switch cpu.architecture {
        case .cortexM4:
            // r0–r15, xPSR in the CPSR's place (gdb takes Thumb from the firmware ELF, not from
            // bit 5, which in an xPSR belongs to the exception number), orig_r0.
            words = (0...12).map { cpu["r\($0)"] ?? 0 } + [cpu["sp"] ?? 0, cpu["lr"] ?? 0, cpu.programCounter,
                                                          cpu["xpsr"] ?? 0, cpu["r0"] ?? 0]
        case .rv32:
            let names = UnicornEngine.debugRegisters(.rv32).prefix(32).map(\.name)
            words = [cpu.programCounter] + names.dropFirst().map { cpu[$0] ?? 0 }
        }
        var desc = [UInt8](repeating: 0, count: prstatusRegisters)
        desc.storeLittleEndian(UInt32(truncatingIfNeeded: signal), at: 0)    // si_signo
        desc.storeLittleEndian(UInt16(truncatingIfNeeded: signal), at: 12)   // pr_cursig
        desc.storeLittleEndian(UInt32(1), at: 24)                            // pr_pid
        for word in words { desc.appendLittleEndian(word) }
        desc.appendLittleEndian(UInt32(0))                                   // pr_fpvalid
        return desc
    }

    static func appendNote(_ out: inout [UInt8], name: String, type: UInt32, _ desc: [UInt8]) {
        let nameBytes = Array(name.utf8) + [0]
        out.appendLittleEndian(UInt32(nameBytes.count))
        out.appendLittleEndian(UInt32(desc.count))
        out.appendLittleEndian(type)
        out += nameBytes + [UInt8](repeating: 0, count: align(nameBytes.count, 4) - nameBytes.count)
        out += desc + [UInt8](repeating: 0, count: align(desc.count, 4) - desc.count)
    }

    static func align(_ value: Int, _ to: Int) -> Int { (value + to - 1) / to * to }

    // MARK: Reading

    /// The dump in the core file at `path` (a regular file, at most ``sizeLimit`` bytes).
    public static func read(_ path: String) throws(CoreDumpError) -> CoreDump {
        let bytes: [UInt8]
        do { bytes = try RegularFile.contents(of: path, limit: sizeLimit) } catch { throw CoreDumpError(.file(error), path: path) }
        do { return try decode(bytes) } catch { throw CoreDumpError(error.kind, path: path) }
    }

    /// The dump in `bytes`.
    public static func decode(_ bytes: [UInt8]) throws(CoreDumpError) -> CoreDump {
        let file = ByteReader(bytes: bytes)
        guard bytes.count >= 4, bytes[0..<4] == [0x7F, 0x45, 0x4C, 0x46] else { throw CoreDumpError(.notELF) }
        guard bytes.count >= 52 else { throw CoreDumpError(.truncated("the ELF header")) }
        guard bytes[4] == 1 else { throw CoreDumpError(.unsupported("ELF64 (a board's core is ELF32)")) }
        guard bytes[5] == 1 else { throw CoreDumpError(.unsupported("big-endian")) }
        let type = file.integer(at: 16, as: UInt16.self)!
        guard type == 4 else { throw CoreDumpError(.notCore(type: type)) }
        let machine = file.integer(at: 18, as: UInt16.self)!
        let architecture: CPUArchitecture?
        switch machine {
        case machineARM: architecture = .cortexM4
        case machineRISCV: architecture = .rv32
        case 0: architecture = nil
        default: throw CoreDumpError(.unsupported("machine \(machine) (the board's cores are Arm (40) and RISC-V (243))"))
        }
        let phoff = Int(file.integer(at: 28, as: UInt32.self)!)
        let phentsize = Int(file.integer(at: 42, as: UInt16.self)!)
        let phnum = Int(file.integer(at: 44, as: UInt16.self)!)
        guard phentsize == 32 else { throw CoreDumpError(.malformed("program headers of \(phentsize) bytes (ELF32's are 32)")) }
        guard phnum <= 1 + segmentLimit else { throw CoreDumpError(.malformed("\(phnum) program headers (at most \(1 + segmentLimit))")) }
        guard phoff <= bytes.count, phnum * 32 <= bytes.count - phoff else { throw CoreDumpError(.truncated("the program header table")) }

        var segments: [CoreDump.Segment] = []
        var notes: [(name: String, type: UInt32, desc: [UInt8])] = []
        for index in 0..<phnum {
            let at = phoff + index * 32
            let pType = file.integer(at: at, as: UInt32.self)!
            let offset = Int(file.integer(at: at + 4, as: UInt32.self)!)
            let address = UInt64(file.integer(at: at + 8, as: UInt32.self)!)
            let fileSize = Int(file.integer(at: at + 16, as: UInt32.self)!)
            let memorySize = Int(file.integer(at: at + 20, as: UInt32.self)!)
            let flags = file.integer(at: at + 24, as: UInt32.self)!
            guard offset <= bytes.count, fileSize <= bytes.count - offset else {
                throw CoreDumpError(.truncated("program header \(index)'s \(fileSize) bytes at offset \(offset)"))
            }
            switch pType {
            case 1:
                guard fileSize == memorySize else { throw CoreDumpError(.malformed("segment \(index) has \(fileSize) bytes in the file but \(memorySize) in memory")) }
                guard address + UInt64(fileSize) <= 1 << 32 else { throw CoreDumpError(.malformed("segment \(index) runs past the 32-bit address space")) }
                if let other = segments.first(where: { address < $0.deviceAddress.rawValue + UInt64($0.bytes.count) && $0.deviceAddress.rawValue < address + UInt64(fileSize) }) {
                    throw CoreDumpError(.malformed("segment \(index) at 0x\(String(address, radix: 16)) overlaps the one at \(other.deviceAddress)"))
                }
                segments.append(CoreDump.Segment(name: "", deviceAddress: DeviceAddress(address), bytes: Array(bytes[offset..<(offset + fileSize)]),
                                                 flags: ELFSegmentFlags(rawValue: flags & 7)))
            case 4:
                notes += try parseNotes(Array(bytes[offset..<(offset + fileSize)]), header: index)
            default:
                continue
            }
        }
        guard let infoNote = notes.first(where: { $0.name == vendor && $0.type == noteInfo }) else { throw CoreDumpError(.notRprocSim) }
        let info: CoreDump.Info
        do {
            // Only the format first: a newer file is refused for what it is, not for a field it renamed.
            struct Format: Decodable { var format: Int }
            let format = try JSONDecoder().decode(Format.self, from: Data(infoNote.desc)).format
            guard format <= CoreDump.Info.currentFormat else { throw CoreDumpError(.newerFormat(format)) }
            info = try JSONDecoder().decode(CoreDump.Info.self, from: Data(infoNote.desc))
        } catch let error as CoreDumpError {
            throw error
        } catch {
            throw CoreDumpError(.malformed("the RPROCSIM info note: \(error)"))
        }
        var cpu: CPUSnapshot?
        if let registers = notes.first(where: { $0.name == vendor && $0.type == noteRegisters }) {
            guard let architecture else { throw CoreDumpError(.malformed("CPU registers in a core without a machine (EM_NONE)")) }
            let desc = ByteReader(bytes: registers.desc)
            let count = Int(desc.integer(at: 0, as: UInt32.self) ?? 0)
            guard count <= 256, registers.desc.count == 4 + count * 8 else {
                throw CoreDumpError(.malformed("the register note holds \(registers.desc.count) bytes for \(count) registers"))
            }
            let pairs = (0..<count).map { i in
                (number: Int(desc.integer(at: 4 + i * 8, as: UInt32.self)!), value: desc.integer(at: 8 + i * 8, as: UInt32.self)!)
            }
            guard let snapshot = CPUSnapshot(architecture: architecture, numbered: pairs) else {
                throw CoreDumpError(.malformed("the register note does not hold each of the \(architecture.rawValue)'s \(UnicornEngine.debugRegisters(architecture).count) registers once"))
            }
            cpu = snapshot
            cpu?.isProgramCounterExact = info.programCounterExact ?? true
        }
        return CoreDump(cpu: cpu, segments: segments, info: info)
    }

    /// The notes in one `PT_NOTE` segment's bytes.
    static func parseNotes(_ bytes: [UInt8], header: Int) throws(CoreDumpError) -> [(name: String, type: UInt32, desc: [UInt8])] {
        let reader = ByteReader(bytes: bytes)
        var notes: [(name: String, type: UInt32, desc: [UInt8])] = []
        var at = 0
        while at < bytes.count {
            guard let nameSize = reader.integer(at: at, as: UInt32.self), let descSize = reader.integer(at: at + 4, as: UInt32.self),
                  let type = reader.integer(at: at + 8, as: UInt32.self) else {
                throw CoreDumpError(.truncated("note header at offset \(at) of program header \(header)"))
            }
            let nameStart = at + 12
            let descStart = nameStart + align(Int(nameSize), 4)
            let end = descStart + align(Int(descSize), 4)
            guard Int(nameSize) <= bytes.count, Int(descSize) <= bytes.count, descStart <= bytes.count,
                  Int(descSize) <= bytes.count - descStart else {
                throw CoreDumpError(.truncated("the note at offset \(at) of program header \(header)"))
            }
            let name = String(decoding: bytes[nameStart..<(nameStart + Int(nameSize))].prefix { $0 != 0 }, as: UTF8.self)
            notes.append((name, type, Array(bytes[descStart..<(descStart + Int(descSize))])))
            at = min(end, bytes.count)
        }
        return notes
    }
}
