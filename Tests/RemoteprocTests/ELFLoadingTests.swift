import FirmwareKit
import Foundation
import MetalIO
import Virtio
@testable import Remoteproc
import Testing

/// What a file says must be at each device address after a load: every PT_LOAD's file bytes,
/// then zeros up to memsz.
/// The table a Linux host leaves in memory at load: the completed one, except that a vring the
/// image left ANY keeps ANY until the host's driver sets its queue up.
func tableInMemoryAtLoad(_ installed: ResourceTable, image original: ResourceTable) throws -> ResourceTable {
    var table = installed
    for ((index, vdev), (_, before)) in zip(installed.virtioDevices, original.virtioDevices) {
        var v = vdev
        for k in v.vrings.indices where before.vrings[k].deviceAddress.isAny { v.vrings[k].deviceAddress = .any }
        try table.update(entry: index, to: .vdev(v))
    }
    return table
}

func expectImageLanded(_ path: URL, platform: TestPlatform, processor: RemoteProcessor, sentinel: UInt8,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
    let file = try Fixtures.bytes(path)
    let image = try ELFImage.read(path.path, from: FileImageStore())
    let installed = processor.installedResourceTable
    let store = FileImageStore()
    _ = try store.open(path.path)
    defer { store.close() }
    let original = try image.resourceTableBytes(from: store)
    var written: [(UInt64, Int)] = []
    for segment in image.loadableSegments where segment.memorySize > 0 {
        let landed = try platform.bytes(atDevice: segment.physicalAddress, count: Int(segment.memorySize))
        var expected = Array(file[Int(segment.offset)..<Int(segment.offset + segment.fileSize)])
        expected += [UInt8](repeating: 0, count: Int(segment.memorySize - segment.fileSize))
        // The resource table's bytes are the completed table, written back after the segments.
        if let installed, let section = image.resourceTableSection,
           section.address >= segment.physicalAddress, section.address < segment.physicalAddress + segment.memorySize,
           let original {
            let at = Int(section.address - segment.physicalAddress)
            let loaded = try tableInMemoryAtLoad(installed.table, image: try ResourceTable(bytes: original))
            expected.replaceSubrange(at..<(at + installed.table.bytes.count), with: loaded.bytes)
        }
        #expect(landed == expected, "segment \(segment.index) at \(hex(segment.physicalAddress))", sourceLocation: sourceLocation)
        written.append((segment.physicalAddress, Int(segment.memorySize)))
    }
    // Nothing else changed: every other byte still holds the sentinel.
    for memory in platform.memories {
        let bytes = try memory.region.readBytes(at: 0, count: memory.size)
        var mask = [Bool](repeating: false, count: memory.size)
        for (address, size) in written {
            guard let offset = memory.offset(ofDevice: DeviceAddress(address), size: size) else { continue }
            for i in offset..<(offset + size) { mask[i] = true }
        }
        let stray = bytes.indices.first { !mask[$0] && bytes[$0] != sentinel }
        #expect(stray == nil, "byte \(stray.map { String($0) } ?? "") of \(memory.name) was written outside every segment",
                sourceLocation: sourceLocation)
    }
}

@Suite("ELF loading")
struct ELFLoadingTests {
    @Test("board firmware built by clang + ld.lld loads byte for byte", arguments: FirmwareArchitecture.allCases)
    func boardFirmware(architecture: FirmwareArchitecture) throws {
        let elf = try Fixtures.program("minimal", architecture)
        let platform = try TestPlatform()
        try platform.fillAll(0xA5)
        let processor = try platform.processor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        #expect(processor.state == .ready)
        let image = try #require(processor.loadedImage)
        #expect(image.header.fileClass == .elf32)
        #expect(image.header.machine == (architecture == .cortexM4 ? .arm : .riscv))
        #expect(processor.bootAddress == DeviceAddress(image.entry))
        // .data is loaded at its load address in code, not its run address in sram.
        #expect(image.loadableSegments.contains { $0.physicalAddress < 0x2000_0000 && $0.virtualAddress >= 0x2000_0000 })
        try expectImageLanded(elf, platform: platform, processor: processor, sentinel: 0xA5)

        // The table in target memory has the host's choices filled in.
        let installed = try #require(processor.installedResourceTable)
        #expect(installed.location.device == DeviceAddress(0x2000_0000))
        let inMemory = try ResourceTable(bytes: try platform.bytes(atDevice: 0x2000_0000, count: installed.table.bytes.count))
        guard case let .carveout(carveout) = inMemory.entries[0], case let .vdev(vdev) = inMemory.entries[1],
              case let .trace(trace) = inMemory.entries[2], case let .vdev(hostView) = installed.table.entries[1] else {
            Issue.record("unexpected table \(inMemory.entries)"); return
        }
        #expect(carveout.deviceAddress.device.map { $0.rawValue >= 0x3000_0000 && $0.rawValue < 0x3010_0000 } == true)
        #expect(carveout.physicalAddress == ResourceAddress(UInt32(carveout.deviceAddress.rawValue - 0x3000_0000 + 0x9000_0000)))
        // A Linux host (the default): vring ids from 0, the vdev's id untouched (ANY), vring
        // addresses allocated now but written when its driver sets the queues up.
        #expect(vdev.notifyID == .any)
        #expect(vdev.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1)])
        #expect(vdev.vrings.allSatisfy { $0.deviceAddress.isAny })
        #expect(hostView.vrings.allSatisfy { !$0.deviceAddress.isAny })
        #expect(installed.traceBuffers.map(\.name) == ["rsim-trace"])
        #expect(installed.traceBuffers.first?.deviceAddress == trace.deviceAddress.device)
    }

    @Test("the file store's reads and copies (a small file served from one whole-file block, a larger one from 4 KiB blocks when they lie in one) return the file's bytes: inside a block, across blocks, at the end, after a reopen")
    func fileStoreReads() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rsim-store-\(UUID().uuidString).bin")
        defer { try? FileManager.default.removeItem(at: url) }
        let store = FileImageStore()
        let large = FileImageStore.wholeFileLimit + 10_000
        let target = try IORegion(name: "target", memory: try SharedMemory(size: large + 4096), physicalBase: PhysicalAddress(0))
        for (round, size) in [large, FileImageStore.wholeFileLimit, 10_000, 4096, 5].enumerated() {
            let content = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) }
            try Data(content).write(to: url)
            #expect(try store.open(url.path) == size)
            var random = SplitMix64(seed: UInt64(size))
            var cases = [(0, 0), (0, min(16, size)), (0, min(52, size)), (size - 1, 1), (size, 0), (0, size)]
            if size > 4200 { cases += [(4090, 12), (4096, 100), (8000, 2000), (size - 100, 100), (100, 5000)] }
            for _ in 0..<200 {
                let offset = Int(random.next() % UInt64(size + 1))
                cases.append((offset, Int(random.next() % UInt64(size - offset + 1))))
            }
            for (offset, count) in cases {
                #expect(try store.bytes(at: offset, count: count) == Array(content[offset..<offset + count]), "size \(size): [\(offset), +\(count))")
                // A copy right after a read: from the block just read when it lies inside it, else from the file.
                try target.fill(0xEE, at: 0, count: target.size)
                try store.copy(from: offset, count: count, into: target, at: 7)
                #expect(try target.readBytes(at: 7, count: count) == Array(content[offset..<offset + count]), "copy, size \(size): [\(offset), +\(count))")
                #expect(try target.readBytes(at: 0, count: 7) == [UInt8](repeating: 0xEE, count: 7))
                #expect(try target.readBytes(at: 7 + count, count: 16) == [UInt8](repeating: 0xEE, count: 16))
            }
            #expect(throws: ImageError.self) { try store.bytes(at: size - 1, count: 2) }
            #expect(throws: ImageError.self) { try store.copy(from: size - 1, count: 2, into: target, at: 0) }
            // A copy that does not fit the target is refused, from the block as from the file.
            _ = try store.bytes(at: 0, count: 1)
            #expect(throws: ImageError.self) { try store.copy(from: 0, count: 2, into: target, at: target.size - 1) }
            store.close()
        }
    }

    @Test("symbols: the entry point lies in the start-up function", arguments: FirmwareArchitecture.allCases)
    func symbols(architecture: FirmwareArchitecture) throws {
        let elf = try Fixtures.program("minimal", architecture)
        let store = FileImageStore()
        let size = try store.open(elf.path)
        defer { store.close() }
        let image = try ELFImage(store: store, fileSize: size, path: elf.path)
        let symbols = try image.symbols(from: store)
        let start = try #require(symbols.first { $0.name == (architecture == .cortexM4 ? "reset_handler" : "_start") })
        #expect(start.isFunction)
        #expect(start.contains(image.entry & ~1))
        #expect(symbols.contains { $0.name == "main" && $0.isFunction })
    }

    @Test("a 64-bit ELF (AArch64) loads byte for byte")
    func elf64() throws {
        let elf = try Fixtures.elf64()
        let platform = try TestPlatform()
        try platform.fillAll(0x5A)
        let processor = try platform.processor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        let image = try #require(processor.loadedImage)
        #expect(image.header.fileClass == .elf64)
        #expect(image.header.machine == .aarch64)
        try expectImageLanded(elf, platform: platform, processor: processor, sentinel: 0x5A)
        #expect(processor.installedResourceTable?.table.virtioDevices.count == 1)
    }

    @Test("the in-memory store and the file store load the same bytes")
    func memoryStore() throws {
        let elf = try Fixtures.program("minimal", .rv32)
        let platform = try TestPlatform()
        try platform.fillAll(0xA5)
        let processor = try platform.processor()
        try processor.configure()
        try processor.load("fw", from: MemoryImageStore(["fw": try Fixtures.bytes(elf)]))
        try expectImageLanded(elf, platform: platform, processor: processor, sentinel: 0xA5)
    }

    @Test("memsz beyond filesz is zero-filled; p_vaddr is ignored for placement")
    func zeroFill() throws {
        let bytes = ELFWriter.image(segments: [
            .init(address: 0x1000, virtualAddress: 0x2000_1000, bytes: [1, 2, 3], memorySize: 64),
        ], entry: 0x1000)
        let platform = try TestPlatform()
        try platform.fillAll(0xEE)
        let processor = try platform.processor()
        try processor.configure()
        try processor.load("z", from: MemoryImageStore(["z": bytes]))
        #expect(try platform.bytes(atDevice: 0x1000, count: 66) == [1, 2, 3] + [UInt8](repeating: 0, count: 61) + [0xEE, 0xEE])
        #expect(try platform.bytes(atDevice: 0x2000_1000, count: 4) == [0xEE, 0xEE, 0xEE, 0xEE])
        let log = processor.installedResourceTable
        #expect(log == nil)
    }

    @Test("an image laid out as a linker does (offsets congruent to addresses modulo the page) loads byte for byte from a file")
    func pageCongruentLayout() throws {
        let first = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let second = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        let built = ELFWriter.build(segments: [.init(address: 0x1234, bytes: first), .init(address: 0x2000_0010, bytes: second)],
                                    entry: 0x1234, pageSize: 4096)
        #expect(built.layout.segmentData.map { $0 % 4096 } == [0x234, 0x10])
        let alignments = (0..<2).map { i in (0..<4).reduce(0) { $0 | Int(built.bytes[built.layout.programHeader(i) + 28 + $1]) << (8 * $1) } }
        #expect(alignments == [4096, 4096])   // p_align

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rsim-page-\(UUID().uuidString).elf")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(built.bytes).write(to: file)
        let platform = try TestPlatform()
        try platform.fillAll(0xEE)
        let processor = try platform.processor()
        try processor.configure()
        try processor.load(file.path, from: FileImageStore())
        #expect(try platform.bytes(atDevice: 0x1234, count: first.count) == first)
        #expect(try platform.bytes(atDevice: 0x2000_0010, count: second.count) == second)
        #expect(try platform.bytes(atDevice: 0x1234 + UInt64(first.count), count: 1) == [0xEE])
    }

    @Test("a segment that exactly fills a memory loads; one byte more is refused")
    func regionEdge() throws {
        let platform = try TestPlatform(codeSize: 4096)
        let processor = try platform.processor()
        try processor.configure()
        let fits = ELFWriter.image(segments: [.init(address: 0xF00, bytes: [7], memorySize: 256)], entry: 0)
        try processor.load("fits", from: MemoryImageStore(["fits": fits]))
        let over = ELFWriter.image(segments: [.init(address: 0xF00, bytes: [7], memorySize: 257)], entry: 0)
        let error = try #require(remoteprocError { try processor.load("over", from: MemoryImageStore(["over": over])) })
        guard case let .image(image) = error.kind, case .segmentUnmapped = image.kind else { Issue.record("\(error)"); return }
    }

    // MARK: Bad images

    /// A valid two-segment ELF32 with a resource table, and where its fields are.
    static func valid() throws -> (bytes: [UInt8], layout: ELFWriter.Layout) {
        let table = try ResourceTable(entries: [.trace(TraceResource(deviceAddress: ResourceAddress(0x2000_0100), length: 64, name: "t"))])
        return ELFWriter.build(segments: [.init(address: 0x0, bytes: Array(repeating: 0x11, count: 32)),
                                               .init(address: 0x2000_0200, bytes: [0x22], memorySize: 16)],
                                    entry: 1, resourceTable: (0x2000_0000, table.bytes))
    }

    static func store(_ mutate: (inout [UInt8], ELFWriter.Layout) -> Void) throws -> MemoryImageStore {
        var (bytes, layout) = try valid()
        mutate(&bytes, layout)
        return MemoryImageStore(["bad": bytes])
    }

    static func put32(_ bytes: inout [UInt8], _ value: UInt32, at offset: Int) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    static var badImages: [(String, (inout [UInt8], ELFWriter.Layout) -> Void, (ImageError.Kind) -> Bool)] { [
        ("empty file", { b, _ in b = [] }, { $0 == .notELF }),
        ("three bytes", { b, _ in b = [0x7F, 0x45, 0x4C] }, { $0 == .notELF }),
        ("bad magic", { b, _ in b[1] = 0x46 }, { $0 == .notELF }),
        ("a text file", { b, _ in b = Array("hello, this is not firmware at all, just text\n".utf8) }, { $0 == .notELF }),
        ("class 0", { b, _ in b[4] = 0 }, { $0 == .unsupportedClass(0) }),
        ("class 3", { b, _ in b[4] = 3 }, { $0 == .unsupportedClass(3) }),
        ("big-endian", { b, _ in b[5] = 2 }, { $0 == .unsupportedByteOrder(2) }),
        ("relocatable object", { b, _ in b[16] = 1 }, { $0 == .unsupportedType(1) }),
        ("header cut short", { b, _ in b = Array(b.prefix(40)) }, { if case .truncated = $0 { true } else { false } }),
        ("program headers cut short", { b, l in b = Array(b.prefix(l.programHeaders + 40)) }, { if case .truncated = $0 { true } else { false } }),
        ("section headers cut short", { b, l in b = Array(b.prefix(l.sectionHeaders + 10)) }, { if case .truncated = $0 { true } else { false } }),
        ("wrong e_phentsize", { b, _ in b[42] = 31 }, { if case .invalidField(field: "e_phentsize", _, _) = $0 { true } else { false } }),
        ("absurd e_phnum", { b, _ in b[44] = 0xFF; b[45] = 0xFF }, { if case .truncated = $0 { true } else { false } }),
        ("e_shstrndx out of range", { b, _ in b[50] = 9 }, { if case .invalidField = $0 { true } else if case .libelf = $0 { true } else { false } }),
        ("segment data beyond the file", { b, l in put32(&b, 0x7FFF_0000, at: l.programHeader(0) + 16); put32(&b, 0x7FFF_0000, at: l.programHeader(0) + 20) },
         { if case .segmentBeyondFile(index: 0, _, _, _) = $0 { true } else { false } }),
        ("segment offset beyond the file", { b, l in put32(&b, 0xFFFF_FF00, at: l.programHeader(1) + 4) },
         { if case .segmentBeyondFile(index: 1, _, _, _) = $0 { true } else { false } }),
        ("memsz below filesz", { b, l in put32(&b, 4, at: l.programHeader(0) + 20) },
         { if case .memorySizeBelowFileSize(index: 0, _, _) = $0 { true } else { false } }),
        ("absurd memsz", { b, l in put32(&b, 0xFFFF_F000, at: l.programHeader(1) + 20) }, { if case .invalidField = $0 { true } else { false } }),
        ("segment outside every memory", { b, l in put32(&b, 0x5000_0000, at: l.programHeader(1) + 12) },
         { if case .segmentUnmapped(index: 1, address: 0x5000_0000, _) = $0 { true } else { false } }),
        ("segment straddling the end of sram", { b, l in put32(&b, 0x2003_FFF8, at: l.programHeader(1) + 12) },
         { if case .segmentUnmapped(index: 1, _, _) = $0 { true } else { false } }),
        ("overlapping segments", { b, l in put32(&b, 0x10, at: l.programHeader(1) + 12) },
         { if case .overlappingSegments = $0 { true } else { false } }),
        ("address wrapping around", { b, l in put32(&b, 0xFFFF_FFF8, at: l.programHeader(1) + 12) },
         { if case .segmentUnmapped = $0 { true } else if case .overlappingSegments = $0 { true } else { false } }),
        ("resource table section beyond the file", { b, l in put32(&b, 0x00FF_0000, at: l.sectionHeaders + 40 + 16) },
         { if case .truncated = $0 { true } else { false } }),
        ("section name outside the name table", { b, l in put32(&b, 0x1000, at: l.sectionHeaders + 40) },
         { if case .invalidField = $0 { true } else { false } }),
    ] }

    @Test("bad images are refused with a clear error; state and memory are untouched",
          arguments: 0..<24)
    func badImage(index: Int) throws {
        let (name, mutate, matches) = Self.badImages[index]
        let platform = try TestPlatform()
        try platform.fillAll(0xC3)
        let processor = try platform.processor()
        try processor.configure()
        let error = try #require(remoteprocError { try processor.load("bad", from: try Self.store(mutate)) }, "\(name) was accepted")
        guard case let .image(image) = error.kind else { Issue.record("\(name): \(error)"); return }
        #expect(matches(image.kind), "\(name): \(image)")
        #expect(image.path == "bad")
        #expect(!"\(error)".isEmpty)
        #expect(processor.state == .configured)
        #expect(processor.loadedImage == nil)
        for memory in platform.memories {
            #expect(try memory.region.readBytes(at: 0, count: memory.size).allSatisfy { $0 == 0xC3 }, "\(name) wrote into \(memory.name)")
        }
    }

    @Test("ELF64 header offsets near 2^64 are refused, not overflowed", arguments: [32, 40])
    func elf64HugeOffsets(field: Int) throws {
        var (bytes, _) = ELFWriter.build(segments: [.init(address: 0, bytes: [1, 2, 3, 4])], entry: 0, is64: true, machine: 183)
        for i in 0..<8 { bytes[field + i] = 0xFF }
        bytes[field] = 0xF0
        let platform = try TestPlatform()
        let processor = try platform.processor()
        try processor.configure()
        let error = try #require(remoteprocError { try processor.load("e", from: MemoryImageStore(["e": bytes])) })
        guard case let .image(image) = error.kind, case .truncated = image.kind else { Issue.record("\(error)"); return }
        #expect(processor.state == .configured)
    }

    @Test("thousands of corrupted real images: each loads or is refused with an error, never a crash",
          arguments: FirmwareArchitecture.allCases)
    func corruptedImages(architecture: FirmwareArchitecture) throws {
        let original = try Fixtures.bytes(try Fixtures.program("minimal", architecture))
        let headers = try ELFImage.read("x", from: MemoryImageStore(["x": original]))
        // The bytes that steer the loader: the ELF header, the program and section header tables,
        // the section names and the resource table.
        var hot = Array(0..<64)
        let phoff = Int(original[28]) | Int(original[29]) << 8 | Int(original[30]) << 16
        let shoff = Int(original[32]) | Int(original[33]) << 8 | Int(original[34]) << 16
        hot += Array(phoff..<(phoff + 32 * headers.programHeaders.count))
        hot += Array(shoff..<min(original.count, shoff + 40 * headers.sections.count))
        if let rsc = headers.resourceTableSection { hot += Array(Int(rsc.offset)..<Int(rsc.offset + rsc.size)) }
        var random = SplitMix64(seed: architecture == .cortexM4 ? 1 : 2)
        let platform = try TestPlatform()
        var loaded = 0, refused = 0
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0..<Int(random.next() % 4 + 1) {
                let at = hot[Int(random.next() % UInt64(hot.count))]
                bytes[at] = [0, 0xFF, 0x80, 0x7F, UInt8(truncatingIfNeeded: random.next())][Int(random.next() % 5)]
            }
            let processor = try platform.processor()
            try processor.configure()
            if remoteprocError({ try processor.load("fuzz", from: MemoryImageStore(["fuzz": bytes])) }) == nil { loaded += 1 } else { refused += 1 }
        }
        #expect(loaded + refused == 3000)
        #expect(refused > 0 && loaded > 0)
    }

    @Test("a malformed resource table in an image fails the load before any segment is written")
    func badTableInImage() throws {
        var table = try ResourceTable(entries: [.trace(TraceResource(deviceAddress: ResourceAddress(0x2000_0100), length: 64, name: "t"))]).bytes
        table[0] = 2   // version 2
        let image = ELFWriter.image(segments: [.init(address: 0, bytes: [1, 2, 3])], entry: 0, resourceTable: (0x2000_0000, table))
        let platform = try TestPlatform()
        try platform.fillAll(0xC3)
        let processor = try platform.processor()
        try processor.configure()
        let error = try #require(remoteprocError { try processor.load("t", from: MemoryImageStore(["t": image])) })
        guard case let .resourceTable(tableError) = error.kind else { Issue.record("\(error)"); return }
        #expect(tableError.kind == .unsupportedVersion(2))
        #expect(processor.state == .configured)
        #expect(try platform.bytes(atDevice: 0, count: 3) == [0xC3, 0xC3, 0xC3])
    }

    @Test("a missing file and a directory are refused for what they are, with the path")
    func storeErrors() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        try processor.configure()
        for (path, expected) in [("/nonexistent/firmware.elf", FileError.Kind.notFound), ("/tmp", .notRegular("a directory"))] {
            let error = try #require(remoteprocError { try processor.load(path, from: FileImageStore()) })
            guard case let .image(image) = error.kind, case let .file(problem) = image.kind else { Issue.record("\(error)"); continue }
            #expect(problem.kind == expected)
            #expect(image.path == path)
        }
        #expect(processor.state == .configured)
    }

    @Test("the file store refuses ranges outside the file and works without an open image only by error")
    func fileStoreRanges() throws {
        let store = FileImageStore()
        #expect(throws: ImageError.self) { _ = try store.bytes(at: 0, count: 1) }
        let elf = try Fixtures.program("minimal", .cortexM4)
        let size = try store.open(elf.path)
        #expect(try store.bytes(at: 0, count: 4) == [0x7F, 0x45, 0x4C, 0x46])
        #expect(try store.bytes(at: size, count: 0) == [])
        #expect(throws: ImageError.self) { _ = try store.bytes(at: size - 1, count: 2) }
        #expect(throws: ImageError.self) { _ = try store.bytes(at: -1, count: 2) }
        store.close()
    }
}


/// A small deterministic generator, so a failing corruption can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
