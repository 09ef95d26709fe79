import MetalIO
import Virtio
import Remoteproc
import Testing

// Expected bytes follow openamp-facts §1 (resource table wire layout). They are written by hand
// here, independently of the library's encoder, so the tests check the layout, not themselves.

// MARK: - Wire helpers

/// Little-endian field encoders for writing expected tables by hand.
enum TableWire {
    static func u32(_ value: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8),
         UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 24)]
    }

    static func u16(_ value: UInt16) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8)]
    }

    /// A 32-byte NUL-padded name field.
    static func name(_ text: String) -> [UInt8] {
        let utf8 = Array(text.utf8)
        return utf8 + [UInt8](repeating: 0, count: 32 - utf8.count)
    }

    static func concat(_ parts: [[UInt8]]) -> [UInt8] { Array(parts.joined()) }

    /// `ver` 1, `num`, two reserved zeros, then the offset array.
    static func header(offsets: [UInt32]) -> [UInt8] {
        concat([u32(1), u32(UInt32(offsets.count)), u32(0), u32(0)] + offsets.map { u32($0) })
    }

    /// A 56-byte carveout (type 0) or devmem (type 1) entry.
    static func memory(
        type: UInt32 = 0, da: UInt32, pa: UInt32 = 0xFFFF_FFFF, len: UInt32, flags: UInt32 = 0,
        reserved: UInt32 = 0, name text: String
    ) -> [UInt8] {
        concat([u32(type), u32(da), u32(pa), u32(len), u32(flags), u32(reserved), name(text)])
    }

    /// A 48-byte trace entry.
    static func trace(da: UInt32, len: UInt32, reserved: UInt32 = 0, name text: String) -> [UInt8] {
        concat([u32(2), u32(da), u32(len), u32(reserved), name(text)])
    }

    /// A table whose only entry is `entry`, at offset 20.
    static func table(with entry: [UInt8]) -> [UInt8] { header(offsets: [20]) + entry }

    static func read32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(bytes[offset + i]) << UInt32(8 * i) }
        return value
    }

    static func read16(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }
}

fileprivate extension Array where Element == UInt8 {
    func patching(_ offset: Int, u32 value: UInt32) -> [UInt8] {
        var copy = self
        copy.replaceSubrange(offset..<(offset + 4), with: TableWire.u32(value))
        return copy
    }

    func patching(_ offset: Int, u16 value: UInt16) -> [UInt8] {
        var copy = self
        copy.replaceSubrange(offset..<(offset + 2), with: TableWire.u16(value))
        return copy
    }

    func patching(_ offset: Int, u8 value: UInt8) -> [UInt8] {
        var copy = self
        copy[offset] = value
        return copy
    }
}

fileprivate extension ResourceTableError.Kind {
    /// `invalidField` with its free-text reason blanked, so expectations need not copy prose.
    static func invalid(_ field: String, _ value: UInt64) -> Self {
        .invalidField(field: field, value: value, reason: "")
    }

    var ignoringReason: Self {
        switch self {
        case let .invalidField(field, value, _): return .invalidField(field: field, value: value, reason: "")
        default: return self
        }
    }

    var isUnrepresentable: Bool {
        if case .unrepresentable = self { return true }
        return false
    }
}

/// `ResourceTable(bytes:)` as a `Result`.
fileprivate func parseTable(_ bytes: [UInt8]) -> Result<ResourceTable, ResourceTableError> {
    do throws(ResourceTableError) {
        return .success(try ResourceTable(bytes: bytes))
    } catch {
        return .failure(error)
    }
}

/// The error `ResourceTable(bytes:)` throws, or `nil` when it parses.
fileprivate func parseError(_ bytes: [UInt8]) -> ResourceTableError? {
    if case let .failure(error) = parseTable(bytes) { return error }
    return nil
}

/// Runs `update(entry:to:)` on a copy of `table`; returns the copy as it is afterwards and the
/// error, if the update threw.
fileprivate func attemptUpdate(
    _ table: ResourceTable, entry index: Int, to entry: ResourceEntry
) -> (table: ResourceTable, error: ResourceTableError?) {
    var copy = table
    do throws(ResourceTableError) {
        try copy.update(entry: index, to: entry)
        return (copy, nil)
    } catch {
        return (copy, error)
    }
}

// MARK: - Sample tables

enum TableSamples {
    /// openamp-facts §1.4: the 88-byte table of the Linux-process machine.
    static let linuxExample: [UInt8] = [
        // @0 header: ver 1, num 1, reserved 0, 0, offset[0] = 20
        0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x00, 0x00,
        // @20 vdev: type 3, id 7, notifyid 0, dfeatures 0x1 (NS), gfeatures 0, config_len 0
        0x03, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // @44 status 0, num_of_vrings 2, reserved 0
        0x00, 0x02, 0x00, 0x00,
        // @48 vring[0]: da 0x4000, align 0x1000, num 256, notifyid 1, reserved 0
        0x00, 0x40, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
        // @68 vring[1]: da 0x8000, align 0x1000, num 256, notifyid 2, reserved 0
        0x00, 0x80, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ]

    /// The entry of ``linuxExample``.
    static let linuxExampleVdev = VirtioDeviceResource(
        deviceID: 7, notifyID: NotifyID(0), deviceFeatures: .rpmsgNameService,
        vrings: [
            VringResource(deviceAddress: ResourceAddress(0x4000), alignment: 0x1000, count: 256, notifyID: NotifyID(1)),
            VringResource(deviceAddress: ResourceAddress(0x8000), alignment: 0x1000, count: 256, notifyID: NotifyID(2)),
        ])

    /// One entry of every kind. Built, it lays out as: header 16 + 6·4 = 40; carveout @40 (56);
    /// devmem @96 (56); trace @152 (48); vdev @200 (28 + 2·20 + 5 = 73, padded to 276);
    /// vendor @276 (8 + 3, padded to 288); unknown @288 (its 4-byte type word); 292 bytes.
    static let richEntries: [ResourceEntry] = [
        .carveout(MemoryResource(deviceAddress: ResourceAddress(0x2000_0000), length: 0x1_0000, flags: 0x3, name: "text")),
        .devmem(MemoryResource(
            deviceAddress: ResourceAddress(0x4000_0000), physicalAddress: ResourceAddress(0x4000_0000), length: 0x1000,
            name: "uart0")),
        .trace(TraceResource(deviceAddress: ResourceAddress(0x2001_0000), length: 0x800, name: "trace0")),
        .vdev(VirtioDeviceResource(
            deviceFeatures: [.rpmsgNameService, .ringEventIndex],
            vrings: [
                VringResource(count: 16),
                VringResource(deviceAddress: ResourceAddress(0x3000_0000), alignment: 16, count: 64, notifyID: NotifyID(5)),
            ],
            config: [1, 2, 3, 4, 5])),
        .vendor(VendorResource(type: 128, payload: [0xDE, 0xAD, 0xBE])),
        .unknown(type: 42),
    ]
    static let richOffsets = [40, 96, 152, 200, 276, 288]
    static let richSize = 292

    /// A carveout "fw" at da 0x2000_0000, 0x1000 bytes: 76 bytes, the entry at 20.
    static let carveoutTable = TableWire.table(with: TableWire.memory(da: 0x2000_0000, len: 0x1000, name: "fw"))
    /// A devmem "uart" at 0x4000_0000, 0x1000 bytes: 76 bytes.
    static let devmemTable = TableWire.table(
        with: TableWire.memory(type: 1, da: 0x4000_0000, pa: 0x4000_0000, len: 0x1000, name: "uart"))
    /// A trace "log" at 0x2001_0000, 0x400 bytes: 68 bytes.
    static let traceTable = TableWire.table(with: TableWire.trace(da: 0x2001_0000, len: 0x400, name: "log"))
    /// A vendor entry, type 200, len 12, payload 1 2 3 4: 32 bytes.
    static let vendorTable = TableWire.table(with: TableWire.concat([TableWire.u32(200), TableWire.u32(12), [1, 2, 3, 4]]))
}

// MARK: - Malformed tables

/// A table `ResourceTable(bytes:)` must refuse, and exactly how.
struct MalformedTable: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    /// For `invalidField` the reason is left empty; it is not compared.
    let kind: ResourceTableError.Kind
    let entry: Int?
    let offset: Int?

    init(_ name: String, _ bytes: [UInt8], _ kind: ResourceTableError.Kind, entry: Int? = nil, offset: Int? = nil) {
        self.name = name
        self.bytes = bytes
        self.kind = kind
        self.entry = entry
        self.offset = offset
    }

    var testDescription: String { name }

    static let header: [MalformedTable] = {
        let t = TableSamples.linuxExample
        return [
            MalformedTable("empty", [], .truncatedHeader(size: 0, needed: 16)),
            MalformedTable("15 bytes", Array(t.prefix(15)), .truncatedHeader(size: 15, needed: 16)),
            MalformedTable("header without its offset array", Array(t.prefix(16)), .truncatedHeader(size: 16, needed: 20)),
            MalformedTable("version 0", t.patching(0, u32: 0), .unsupportedVersion(0), offset: 0),
            MalformedTable("version 2", t.patching(0, u32: 2), .unsupportedVersion(2), offset: 0),
            MalformedTable("reserved[0] = 1", t.patching(8, u32: 1),
                           .reservedNotZero(field: "reserved[0]", value: 1), offset: 8),
            MalformedTable("reserved[1] = 0xFFFFFFFF", t.patching(12, u32: 0xFFFF_FFFF),
                           .reservedNotZero(field: "reserved[1]", value: 0xFFFF_FFFF), offset: 12),
            MalformedTable("num 19: the offset array runs past 88 bytes", t.patching(4, u32: 19),
                           .truncatedHeader(size: 88, needed: 92)),
            MalformedTable("num 0xFFFFFFFF: more entries than any table has", t.patching(4, u32: 0xFFFF_FFFF),
                           .invalidField(field: "num", value: 0xFFFF_FFFF, reason: ""), offset: 4),
        ]
    }()

    static let offsets: [MalformedTable] = {
        let t = TableSamples.linuxExample
        func outside(_ name: String, _ offset: UInt32) -> MalformedTable {
            MalformedTable(name, t.patching(16, u32: offset), .entryOutsideTable(offset: offset, tableSize: 88),
                           entry: 0, offset: 16)
        }
        let carveout = TableWire.memory(da: 0x2000_0000, len: 0x1000, name: "fw")
        let twoEntries = TableWire.header(offsets: [24, 200]) + carveout  // 80 bytes
        return [
            outside("offset 0: the header", 0),
            outside("offset 16: the offset array", 16),
            outside("offset 19: the last byte of the offset array", 19),
            outside("offset 88: the end of the table", 88),
            outside("offset 85: only 3 bytes left", 85),
            outside("offset 0xFFFFFFFF", 0xFFFF_FFFF),
            MalformedTable("offset 84: a zero type word and nothing after it", t.patching(16, u32: 84),
                           .entryTruncated(needed: 56, available: 4), entry: 0, offset: 84),
            MalformedTable("second offset past the end", twoEntries,
                           .entryOutsideTable(offset: 200, tableSize: 80), entry: 1, offset: 20),
        ]
    }()

    static let memory: [MalformedTable] = {
        let c = TableSamples.carveoutTable
        let d = TableSamples.devmemTable
        return [
            MalformedTable("carveout one byte short", Array(c.prefix(75)),
                           .entryTruncated(needed: 56, available: 55), entry: 0, offset: 20),
            MalformedTable("carveout reserved = 1", c.patching(40, u32: 1),
                           .reservedNotZero(field: "carveout.reserved", value: 1), entry: 0, offset: 40),
            MalformedTable("devmem reserved = 7", d.patching(40, u32: 7),
                           .reservedNotZero(field: "devmem.reserved", value: 7), entry: 0, offset: 40),
            MalformedTable("carveout len 0", c.patching(32, u32: 0), .invalid("carveout.len", 0), entry: 0, offset: 32),
            MalformedTable("devmem len 0", d.patching(32, u32: 0), .invalid("devmem.len", 0), entry: 0, offset: 32),
            MalformedTable("carveout da + len one byte past 4 GiB", c.patching(24, u32: 0xFFFF_F000).patching(32, u32: 0x1001),
                           .invalid("carveout.da + len", 0x1_0000_0001), entry: 0, offset: 24),
        ]
    }()

    static let trace: [MalformedTable] = {
        let t = TableSamples.traceTable
        return [
            MalformedTable("trace one byte short", Array(t.prefix(67)),
                           .entryTruncated(needed: 48, available: 47), entry: 0, offset: 20),
            MalformedTable("trace reserved = 2", t.patching(32, u32: 2),
                           .reservedNotZero(field: "trace.reserved", value: 2), entry: 0, offset: 32),
            MalformedTable("trace da + len one byte past 4 GiB", t.patching(24, u32: 0xFFFF_FF00).patching(28, u32: 0x101),
                           .invalid("trace.da + len", 0x1_0000_0001), entry: 0, offset: 24),
        ]
    }()

    /// Offsets in ``TableSamples/linuxExample``: vdev @20 (notifyid @28, config_len @40,
    /// num_of_vrings @45, reserved @46); vring[0] @48 (align @52, num @56, notifyid @60,
    /// reserved @64); vring[1] @68 (num @76, notifyid @80, reserved @84).
    static let vdev: [MalformedTable] = {
        let t = TableSamples.linuxExample
        func badNum(_ value: UInt32) -> MalformedTable {
            MalformedTable("vring[0] num \(value)", t.patching(56, u32: value), .invalid("vring[0].num", UInt64(value)),
                           entry: 0, offset: 56)
        }
        func badAlign(_ value: UInt32) -> MalformedTable {
            MalformedTable("vring[0] align \(value)", t.patching(52, u32: value), .invalid("vring[0].align", UInt64(value)),
                           entry: 0, offset: 52)
        }
        return [
            MalformedTable("vdev header one byte short", Array(t.prefix(47)),
                           .entryTruncated(needed: 28, available: 27), entry: 0, offset: 20),
            MalformedTable("last vring one byte short", Array(t.prefix(87)),
                           .entryTruncated(needed: 68, available: 67), entry: 0, offset: 20),
            MalformedTable("num_of_vrings 3 with room for 2", t.patching(45, u8: 3),
                           .entryTruncated(needed: 88, available: 68), entry: 0, offset: 20),
            MalformedTable("num_of_vrings 255", t.patching(45, u8: 255),
                           .entryTruncated(needed: 28 + 20 * 255, available: 68), entry: 0, offset: 20),
            MalformedTable("config_len 1 with no config bytes", t.patching(40, u32: 1),
                           .entryTruncated(needed: 69, available: 68), entry: 0, offset: 20),
            MalformedTable("config_len 0xFFFFFFFF", t.patching(40, u32: 0xFFFF_FFFF),
                           .entryTruncated(needed: 68 + Int(UInt32.max), available: 68), entry: 0, offset: 20),
            MalformedTable("vdev reserved = 0x8000", t.patching(46, u16: 0x8000),
                           .reservedNotZero(field: "vdev.reserved", value: 0x8000), entry: 0, offset: 46),
            MalformedTable("vring[0] reserved = 1", t.patching(64, u32: 1),
                           .reservedNotZero(field: "vring[0].reserved", value: 1), entry: 0, offset: 64),
            MalformedTable("vring[1] reserved = 0xFFFFFFFF", t.patching(84, u32: 0xFFFF_FFFF),
                           .reservedNotZero(field: "vring[1].reserved", value: 0xFFFF_FFFF), entry: 0, offset: 84),
            badNum(0), badNum(3), badNum(65536),
            MalformedTable("vring[1] num 3", t.patching(76, u32: 3), .invalid("vring[1].num", 3), entry: 0, offset: 76),
            badAlign(0), badAlign(2), badAlign(3), badAlign(0x2_0000),
            MalformedTable("vring[0] runs past 4 GiB", t.patching(48, u32: 0xFFFF_F000),
                           .invalid("vring[0].da", 0xFFFF_F000), entry: 0, offset: 48),
        ]
    }()

    /// ``TableSamples/vendorTable``: type @20, len @24, payload @28.
    static let vendor: [MalformedTable] = {
        let v = TableSamples.vendorTable
        return [
            MalformedTable("vendor header one byte short", Array(v.prefix(27)),
                           .entryTruncated(needed: 8, available: 7), entry: 0, offset: 20),
            MalformedTable("vendor len 0", v.patching(24, u32: 0), .invalid("vendor.len", 0), entry: 0, offset: 24),
            MalformedTable("vendor len 7", v.patching(24, u32: 7), .invalid("vendor.len", 7), entry: 0, offset: 24),
            MalformedTable("vendor len one byte past the end", v.patching(24, u32: 13),
                           .entryTruncated(needed: 13, available: 12), entry: 0, offset: 20),
            MalformedTable("vendor len 0xFFFFFFFF", v.patching(24, u32: 0xFFFF_FFFF),
                           .entryTruncated(needed: Int(UInt32.max), available: 12), entry: 0, offset: 20),
        ]
    }()
}

/// `VringResource.byteSize` cases: `align_up(18·num + 6, align) + 8·num + 6`.
struct VringSizeCase: Sendable, CustomTestStringConvertible {
    let count: UInt32
    let alignment: UInt32
    let bytes: Int?
    var testDescription: String { "num \(count), align \(alignment)" }

    static let all: [VringSizeCase] = [
        VringSizeCase(count: 256, alignment: 4096, bytes: 10246),
        VringSizeCase(count: 16, alignment: 4, bytes: 430),
        VringSizeCase(count: 1, alignment: 4, bytes: 38),
        VringSizeCase(count: 32768, alignment: 4096, bytes: 856_070),
        VringSizeCase(count: 65536, alignment: 4096, bytes: nil),
        VringSizeCase(count: 256, alignment: 0, bytes: nil),
    ]
}

enum ResourceTableCases {
    static let codes: [(ResourceTableError.Kind, Int32)] = [
        (.truncatedHeader(size: 0, needed: 16), -5),
        (.entryOutsideTable(offset: 200, tableSize: 80), -5),
        (.entryTruncated(needed: 56, available: 4), -5),
        (.unsupportedVersion(2), -6),
        (.reservedNotZero(field: "reserved[0]", value: 1), -7),
        (.invalidField(field: "vring[0].num", value: 3, reason: "not a power of two"), -2),
        (.unrepresentable("too many vrings"), -2),
    ]
}

// MARK: - Building and layout

@Suite struct ResourceTableLayoutTests {
    @Test func buildsTheLinuxProcessExampleByteForByte() throws {
        let table = try ResourceTable(entries: [.vdev(TableSamples.linuxExampleVdev)])
        #expect(table.bytes.count == 88)
        #expect(table.bytes == TableSamples.linuxExample)
        #expect(table.entryOffsets == [20])
        #expect(table.version == 1)
    }

    @Test func parsesTheLinuxProcessExample() throws {
        let table = try ResourceTable(bytes: TableSamples.linuxExample)
        #expect(table.entries == [.vdev(TableSamples.linuxExampleVdev)])
        #expect(table.entryOffsets == [20])
        #expect(table.bytes == TableSamples.linuxExample)
        #expect(table.version == ResourceTable.supportedVersion)
    }

    @Test func everyKindOfEntryRoundTrips() throws {
        let built = try ResourceTable(entries: TableSamples.richEntries)
        let parsed = try ResourceTable(bytes: built.bytes)
        #expect(parsed.entries == TableSamples.richEntries)
        #expect(parsed.bytes == built.bytes)
        #expect(parsed == built)
        #expect(try ResourceTable(entries: parsed.entries).bytes == built.bytes)
    }

    @Test func entriesStartOnFourByteBoundariesAndPaddingIsZero() throws {
        let table = try ResourceTable(entries: TableSamples.richEntries)
        #expect(table.entryOffsets == TableSamples.richOffsets)
        #expect(table.bytes.count == TableSamples.richSize)
        for (index, offset) in table.entryOffsets.enumerated() {
            #expect(TableWire.read32(table.bytes, at: 16 + 4 * index) == UInt32(offset))
            #expect(TableWire.read32(table.bytes, at: offset) == table.entries[index].type)
        }
        #expect(table.bytes[273..<276].allSatisfy { $0 == 0 })  // after the 5 config bytes of the vdev
        #expect(table.bytes[287] == 0)  // after the 11-byte vendor entry
    }

    @Test func emptyTableIsJustTheHeader() throws {
        let table = try ResourceTable(entries: [])
        #expect(table.bytes == TableWire.header(offsets: []))
        #expect(table.entries.isEmpty)
        #expect(try ResourceTable(bytes: table.bytes).entries.isEmpty)
    }

    @Test func parsingKeepsTheImageBytesExactly() throws {
        let trailing = TableSamples.linuxExample + [0xEE, 0xEE, 0xEE]
        let withTail = try ResourceTable(bytes: trailing)
        #expect(withTail.bytes == trailing)
        #expect(withTail.entries == [.vdev(TableSamples.linuxExampleVdev)])

        // The entry four bytes further on, after a gap of junk.
        let gapped = TableWire.concat([TableWire.header(offsets: [24]), [0xAA, 0xAA, 0xAA, 0xAA],
                                       Array(TableSamples.linuxExample[20...])])
        let withGap = try ResourceTable(bytes: gapped)
        #expect(withGap.bytes == gapped)
        #expect(withGap.entryOffsets == [24])
        #expect(withGap.entries == [.vdev(TableSamples.linuxExampleVdev)])

        // Building from the entries gives the canonical layout back.
        #expect(try ResourceTable(entries: withGap.entries).bytes == TableSamples.linuxExample)
    }

    @Test func carveoutIsFiftySixBytesAtTheDocumentedOffsets() throws {
        let carveout = MemoryResource(
            deviceAddress: ResourceAddress(0x1000_0000), physicalAddress: ResourceAddress(0x8000_0000),
            length: 0x2_0000, flags: 0x5, name: "ipc-shm")
        let b = try ResourceTable(entries: [.carveout(carveout)]).bytes
        #expect(b.count == 20 + 56)
        #expect(TableWire.read32(b, at: 20) == 0)  // type
        #expect(TableWire.read32(b, at: 24) == 0x1000_0000)  // da
        #expect(TableWire.read32(b, at: 28) == 0x8000_0000)  // pa
        #expect(TableWire.read32(b, at: 32) == 0x2_0000)  // len
        #expect(TableWire.read32(b, at: 36) == 0x5)  // flags
        #expect(TableWire.read32(b, at: 40) == 0)  // reserved
        #expect(Array(b[44..<76]) == TableWire.name("ipc-shm"))
        #expect(b == TableWire.table(with: TableWire.memory(
            da: 0x1000_0000, pa: 0x8000_0000, len: 0x2_0000, flags: 0x5, name: "ipc-shm")))

        var devmem = try ResourceTable(entries: [.devmem(carveout)]).bytes
        #expect(TableWire.read32(devmem, at: 20) == 1)
        devmem[20] = 0
        #expect(devmem == b, "devmem and carveout share one layout")
    }

    @Test func traceIsFortyEightBytesAtTheDocumentedOffsets() throws {
        let trace = TraceResource(deviceAddress: ResourceAddress(0x2001_0000), length: 0x400, name: "trace0")
        let b = try ResourceTable(entries: [.trace(trace)]).bytes
        #expect(b.count == 20 + 48)
        #expect(TableWire.read32(b, at: 20) == 2)  // type
        #expect(TableWire.read32(b, at: 24) == 0x2001_0000)  // da
        #expect(TableWire.read32(b, at: 28) == 0x400)  // len
        #expect(TableWire.read32(b, at: 32) == 0)  // reserved
        #expect(Array(b[36..<68]) == TableWire.name("trace0"))
        #expect(b == TableWire.table(with: TableWire.trace(da: 0x2001_0000, len: 0x400, name: "trace0")))
    }

    @Test func vdevIsTwentyEightPlusTwentyPerVringPlusConfig() throws {
        let vdev = VirtioDeviceResource(
            deviceID: 7, notifyID: .any, deviceFeatures: [.rpmsgNameService, .ringEventIndex],
            driverFeatures: .rpmsgNameService, status: [.acknowledge, .driver],
            vrings: [
                VringResource(count: 16),
                VringResource(deviceAddress: ResourceAddress(0x3000_0000), alignment: 16, count: 64, notifyID: NotifyID(5)),
            ],
            config: [1, 2, 3, 4, 5])
        let b = try ResourceTable(entries: [.vdev(vdev)]).bytes
        #expect(b.count == 20 + 28 + 2 * 20 + 5)
        #expect(TableWire.read32(b, at: 20) == 3)  // type
        #expect(TableWire.read32(b, at: 24) == 7)  // id
        #expect(TableWire.read32(b, at: 28) == 0xFFFF_FFFF)  // notifyid ANY
        #expect(TableWire.read32(b, at: 32) == 0x2000_0001)  // dfeatures: NS | EVENT_IDX
        #expect(TableWire.read32(b, at: 36) == 0x1)  // gfeatures
        #expect(TableWire.read32(b, at: 40) == 5)  // config_len
        #expect(b[44] == 0x03)  // status
        #expect(b[45] == 2)  // num_of_vrings
        #expect(TableWire.read16(b, at: 46) == 0)  // reserved
        // vring[0] @48: all defaults
        #expect(TableWire.read32(b, at: 48) == 0xFFFF_FFFF)
        #expect(TableWire.read32(b, at: 52) == 4096)
        #expect(TableWire.read32(b, at: 56) == 16)
        #expect(TableWire.read32(b, at: 60) == 0xFFFF_FFFF)
        #expect(TableWire.read32(b, at: 64) == 0)
        // vring[1] @68
        #expect(TableWire.read32(b, at: 68) == 0x3000_0000)
        #expect(TableWire.read32(b, at: 72) == 16)
        #expect(TableWire.read32(b, at: 76) == 64)
        #expect(TableWire.read32(b, at: 80) == 5)
        #expect(TableWire.read32(b, at: 84) == 0)
        // config space @88
        #expect(Array(b[88...]) == [1, 2, 3, 4, 5])
    }

    @Test func vendorLenCountsTheWholeEntry() throws {
        let b = try ResourceTable(entries: [.vendor(VendorResource(type: 300, payload: [9, 8, 7]))]).bytes
        #expect(b.count == 20 + 8 + 3)
        #expect(TableWire.read32(b, at: 20) == 300)
        #expect(TableWire.read32(b, at: 24) == 11)
        #expect(Array(b[28...]) == [9, 8, 7])
    }

    @Test func vdevFieldOffsetsMatchTheWireLayout() {
        #expect(VirtioDeviceResource.deviceFeaturesOffset == 12)
        #expect(VirtioDeviceResource.driverFeaturesOffset == 16)
        #expect(VirtioDeviceResource.statusOffset == 24)
        #expect(VirtioDeviceResource.vringOffset(0) == 28)
        #expect(VirtioDeviceResource.vringOffset(1) == 48)
        #expect(VirtioDeviceResource.configOffset(vringCount: 0) == 28)
        #expect(VirtioDeviceResource.configOffset(vringCount: 2) == 68)
    }

    @Test func anyValuesAreAllOnes() {
        #expect(ResourceAddress.any.rawValue == 0xFFFF_FFFF)
        #expect(ResourceAddress.any.device == nil)
        #expect(ResourceAddress(0x4000).device == DeviceAddress(0x4000))
        #expect(NotifyID.any.rawValue == 0xFFFF_FFFF)
        #expect(NotifyID.any.isAny)
    }

    @Test func namesAreNULPaddedAndCutAtThirtyTwoBytes() throws {
        let exact = String(repeating: "n", count: 32)
        let long = String(repeating: "x", count: 40)
        let table = try ResourceTable(entries: [
            .carveout(MemoryResource(deviceAddress: .any, length: 0x1000, name: exact)),
            .trace(TraceResource(deviceAddress: .any, length: 0x100, name: long)),
        ])
        let b = table.bytes
        let carveoutName = table.entryOffsets[0] + 24
        let traceName = table.entryOffsets[1] + 16
        #expect(Array(b[carveoutName..<(carveoutName + 32)]) == Array(exact.utf8))  // no terminator needed
        #expect(Array(b[traceName..<(traceName + 32)]) == Array(long.utf8.prefix(32)))
        #expect(b.count == traceName + 32)  // the cut name does not spill past its field
        guard case let .carveout(carveout) = table.entries[0], case let .trace(trace) = table.entries[1] else {
            Issue.record("unexpected entries \(table.entries)")
            return
        }
        #expect(carveout.name == exact)
        #expect(trace.name == String(repeating: "x", count: 32))
    }

    @Test func aVdevWithMoreThan255VringsCannotBeBuilt() {
        let vdev = VirtioDeviceResource(vrings: Array(repeating: VringResource(count: 1), count: 256))
        let error = #expect(throws: ResourceTableError.self) { try ResourceTable(entries: [.vdev(vdev)]) }
        #expect(error?.kind.isUnrepresentable == true)
        #expect(error?.entryIndex == 0)
    }

    @Test(arguments: VringSizeCase.all)
    func vringByteSize(_ c: VringSizeCase) {
        #expect(VringResource(alignment: c.alignment, count: c.count).byteSize == c.bytes)
    }
}

// MARK: - Updating in place

@Suite struct ResourceTableUpdateTests {
    @Test func updateWritesHostChosenValuesInPlace() throws {
        let firmware = VirtioDeviceResource(
            deviceFeatures: .rpmsgNameService,
            vrings: [VringResource(alignment: 0x1000, count: 256), VringResource(alignment: 0x1000, count: 256)])
        var table = try ResourceTable(entries: [.vdev(firmware)])
        #expect(table.bytes != TableSamples.linuxExample)

        var allocated = firmware
        allocated.notifyID = NotifyID(0)
        allocated.vrings[0].deviceAddress = ResourceAddress(0x4000)
        allocated.vrings[0].notifyID = NotifyID(1)
        allocated.vrings[1].deviceAddress = ResourceAddress(0x8000)
        allocated.vrings[1].notifyID = NotifyID(2)
        try table.update(entry: 0, to: .vdev(allocated))

        #expect(allocated == TableSamples.linuxExampleVdev)
        #expect(table.bytes == TableSamples.linuxExample)
        #expect(table.entries == [.vdev(allocated)])
        #expect(table.entryOffsets == [20])
    }

    @Test func updateWritesStatusAndAcceptedFeatures() throws {
        var table = try ResourceTable(bytes: TableSamples.linuxExample)
        var started = TableSamples.linuxExampleVdev
        started.driverFeatures = .rpmsgNameService
        started.status = [.acknowledge, .driver, .featuresOK, .driverOK]
        try table.update(entry: 0, to: .vdev(started))
        #expect(table.bytes == TableSamples.linuxExample.patching(36, u32: 0x1).patching(44, u8: 0x0F))
        #expect(table.entries == [.vdev(started)])
    }

    @Test func updateTouchesOnlyThatEntrysBytes() throws {
        var table = try ResourceTable(entries: TableSamples.richEntries)
        let before = table.bytes
        guard case var .vdev(vdev) = table.entries[3] else {
            Issue.record("entry 3 is \(table.entries[3].kindName), not a vdev")
            return
        }
        vdev.vrings[0].deviceAddress = ResourceAddress(0x3800_0000)
        vdev.vrings[0].notifyID = NotifyID(9)
        try table.update(entry: 3, to: .vdev(vdev))

        let start = 200, end = 200 + 73
        #expect(table.bytes[..<start] == before[..<start])
        #expect(table.bytes[end...] == before[end...])
        #expect(TableWire.read32(table.bytes, at: start + 28) == 0x3800_0000)
        #expect(TableWire.read32(table.bytes, at: start + 28 + 12) == 9)
        #expect(table.entries[3] == .vdev(vdev))
        #expect(Array(table.entries[..<3]) == Array(TableSamples.richEntries[..<3]))
    }

    @Test func updateRefusesAChangeOfTypeOrSize() throws {
        let original = try ResourceTable(bytes: TableSamples.linuxExample)
        var fewerVrings = TableSamples.linuxExampleVdev
        fewerVrings.vrings.removeLast()
        var withConfig = TableSamples.linuxExampleVdev
        withConfig.config = [0]
        let refused: [(Int, ResourceEntry)] = [
            (0, .vdev(fewerVrings)),
            (0, .vdev(withConfig)),
            (0, .carveout(MemoryResource(deviceAddress: .any, length: 0x1000, name: "x"))),
            (0, .vendor(VendorResource(type: 128, payload: Array(repeating: 0, count: 60)))),  // 68 bytes too
            (1, .vdev(TableSamples.linuxExampleVdev)),
            (-1, .vdev(TableSamples.linuxExampleVdev)),
        ]
        for (index, entry) in refused {
            let (after, error) = attemptUpdate(original, entry: index, to: entry)
            let e = try #require(error, "update(entry: \(index)) accepted a \(entry.kindName)")
            #expect(e.kind.isUnrepresentable)
            #expect(after == original)
        }
    }

    @Test func updateRefusesAnInvalidEntryAndKeepsTheTable() throws {
        let original = try ResourceTable(bytes: TableSamples.linuxExample)
        var bad = TableSamples.linuxExampleVdev
        bad.vrings[1].count = 3
        let (after, error) = attemptUpdate(original, entry: 0, to: .vdev(bad))
        #expect(error?.kind.ignoringReason == ResourceTableError.Kind.invalid("vring[1].num", 3))
        #expect(after == original)
    }

    @Test("an update may give the vdev a vring's notify id: whether a host takes that is the host's rule, not the format's")
    func updateMayShareANotifyID() throws {
        var table = try ResourceTable(bytes: TableSamples.linuxExample)
        var clash = TableSamples.linuxExampleVdev
        clash.notifyID = NotifyID(2)  // vring[1] already uses 2
        try table.update(entry: 0, to: .vdev(clash))
        #expect(table.entries[0] == .vdev(clash))
        #expect(HostPersonality.linux.violations(in: table).isEmpty)
        #expect(HostPersonality.openamp.violations(in: table).map(\.rule) == [.notifyIDTakenTwice])
    }

    @Test func virtioDevicesListsEachVdevWithItsIndex() throws {
        let second = VirtioDeviceResource(deviceID: 3, vrings: [VringResource(count: 8)])
        let table = try ResourceTable(entries: [
            .vdev(TableSamples.linuxExampleVdev),
            .carveout(MemoryResource(deviceAddress: ResourceAddress(0x2000_0000), length: 0x1000, name: "fw")),
            .vdev(second),
        ])
        #expect(table.virtioDevices.map { $0.index } == [0, 2])
        #expect(table.virtioDevices.map { $0.device } == [TableSamples.linuxExampleVdev, second])

        let rich = try ResourceTable(entries: TableSamples.richEntries)
        #expect(rich.virtioDevices.map { $0.index } == [3])
        #expect(try ResourceTable(bytes: TableSamples.carveoutTable).virtioDevices.isEmpty)
    }
}

// MARK: - Validation

@Suite struct ResourceTableValidationTests {
    func expectRefusal(_ c: MalformedTable, sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: ResourceTableError.self, sourceLocation: sourceLocation) {
            try ResourceTable(bytes: c.bytes)
        }
        #expect(error?.kind.ignoringReason == c.kind, sourceLocation: sourceLocation)
        #expect(error?.entryIndex == c.entry, sourceLocation: sourceLocation)
        #expect(error?.offset == c.offset, sourceLocation: sourceLocation)
    }

    @Test(arguments: MalformedTable.header)
    func malformedHeader(_ c: MalformedTable) { expectRefusal(c) }

    @Test(arguments: MalformedTable.offsets)
    func entryOffsetOutsideTheTable(_ c: MalformedTable) { expectRefusal(c) }

    @Test(arguments: MalformedTable.memory)
    func malformedCarveoutOrDevmem(_ c: MalformedTable) { expectRefusal(c) }

    @Test(arguments: MalformedTable.trace)
    func malformedTrace(_ c: MalformedTable) { expectRefusal(c) }

    @Test(arguments: MalformedTable.vdev)
    func malformedVdev(_ c: MalformedTable) { expectRefusal(c) }

    @Test(arguments: MalformedTable.vendor)
    func malformedVendor(_ c: MalformedTable) { expectRefusal(c) }

    @Test func memoryMayEndExactlyAtFourGiB() throws {
        let bytes = TableSamples.carveoutTable.patching(24, u32: 0xFFFF_F000).patching(32, u32: 0x1000)
        let table = try ResourceTable(bytes: bytes)
        #expect(table.entries.count == 1)
        // ANY is not an address, so no length can run past it.
        let any = TableSamples.carveoutTable.patching(24, u32: 0xFFFF_FFFF).patching(32, u32: 0xFFFF_FFFF)
        #expect(try ResourceTable(bytes: any).entries.count == 1)
    }

    @Test("notify ids used twice across two vdevs parse; an OpenAMP host refuses them at the second vdev, a Linux host reallocates them")
    func duplicateNotifyIDsAcrossTwoVdevs() throws {
        let second = VirtioDeviceResource(
            notifyID: NotifyID(3),
            vrings: [VringResource(count: 8, notifyID: NotifyID(4)), VringResource(count: 8, notifyID: NotifyID(1))])
        let table = try ResourceTable(entries: [.vdev(TableSamples.linuxExampleVdev), .vdev(second)])
        let refusals = HostPersonality.openamp.violations(in: table).filter { $0.rule == .notifyIDTakenTwice }
        #expect(refusals.map(\.entryIndex) == [1])
        #expect(refusals.first?.detail == "vring 1's notify id 1 is already vring 0's in entry 0")
        #expect(HostPersonality.linux.violations(in: table).isEmpty)
    }

    @Test func anyNotifyIDMayRepeat() throws {
        let vdev = VirtioDeviceResource(vrings: [VringResource(count: 8), VringResource(count: 8)])
        let table = try ResourceTable(entries: [.vdev(vdev), .vdev(vdev)])
        #expect(table.virtioDevices.count == 2)
    }

    @Test("an unknown entry keeps its bytes up to the next entry, so a table rebuilt from its entries is byte-identical")
    func unknownEntryBodiesRoundTrip() throws {
        let body: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        // An unknown 12-byte entry at 24, then the example's vdev at 36.
        let bytes = TableWire.concat([TableWire.header(offsets: [24, 36]), TableWire.u32(77), body,
                                      Array(TableSamples.linuxExample[20...])])
        let table = try ResourceTable(bytes: bytes)
        #expect(table.entries == [.unknown(type: 77, payload: body), .vdev(TableSamples.linuxExampleVdev)])
        #expect(try ResourceTable(entries: table.entries).bytes == bytes)
        // Last in the table: its body runs to the table's end.
        let last = TableWire.concat([TableWire.header(offsets: [20]), TableWire.u32(600), body])
        #expect(try ResourceTable(bytes: last).entries == [.unknown(type: 600, payload: body)])
    }

    @Test(arguments: [UInt32(4), 5, 127, 513, 0xFFFF_FFFF])
    func unknownTypesAreKeptAndSkipped(type: UInt32) throws {
        // An unknown 4-byte entry at 24, then the example's vdev at 28.
        let bytes = TableWire.concat([TableWire.header(offsets: [24, 28]), TableWire.u32(type),
                                      Array(TableSamples.linuxExample[20...])])
        let table = try ResourceTable(bytes: bytes)
        #expect(table.entries == [.unknown(type: type), .vdev(TableSamples.linuxExampleVdev)])
        #expect(table.entryOffsets == [24, 28])
        #expect(table.entries[0].type == type)
    }

    @Test(arguments: [UInt32(128), 300, 512])
    func vendorRangeIsInclusive(type: UInt32) throws {
        let table = try ResourceTable(bytes: TableSamples.vendorTable.patching(20, u32: type))
        #expect(table.entries == [.vendor(VendorResource(type: type, payload: [1, 2, 3, 4]))])
    }

    @Test(arguments: ResourceTableCases.codes)
    func openAMPErrorCodes(kind: ResourceTableError.Kind, code: Int32) {
        #expect(ResourceTableError(kind).code == code)
    }

    @Test func parseErrorsCarryTheOpenAMPCodes() {
        let t = TableSamples.linuxExample
        #expect(parseError([])?.code == -5)
        #expect(parseError(Array(t.prefix(15)))?.code == -5)
        #expect(parseError(t.patching(0, u32: 2))?.code == -6)
        #expect(parseError(t.patching(8, u32: 1))?.code == -7)
    }

    @Test func errorDescriptionLocatesTheFault() {
        let error = #expect(throws: ResourceTableError.self) {
            try ResourceTable(bytes: TableSamples.linuxExample.patching(56, u32: 3))
        }
        let text = error?.description ?? ""
        #expect(text.contains("entry 0"))
        #expect(text.contains("byte 56"))
        #expect(text.contains("vring[0].num"))
    }

    /// The "never a trap" guarantee: any corruption or truncation of a valid table either parses
    /// or throws a ResourceTableError. A trap here kills the test process.
    @Test func corruptedOrTruncatedTablesNeverTrap() throws {
        let rich = try ResourceTable(entries: TableSamples.richEntries).bytes
        var accepted = 0
        var refused = 0

        func attempt(_ bytes: [UInt8]) {
            switch parseTable(bytes) {
            case let .success(table):
                accepted += 1
                if table.bytes != bytes { Issue.record("a parsed table does not keep its bytes") }
                if table.entryOffsets.count != table.entries.count { Issue.record("offsets and entries disagree") }
                _ = try? ResourceTable(entries: table.entries)  // rebuilding must not trap either
            case let .failure(error):
                refused += 1
                if error.code >= 0 { Issue.record("\(error) has code \(error.code)") }
                _ = error.description
            }
        }

        for base in [TableSamples.linuxExample, rich] {
            for length in 0..<base.count {
                attempt(Array(base.prefix(length)))
            }
            for position in base.indices {
                let values: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xFF, base[position] ^ 0xFF]
                for value in values {
                    attempt(base.patching(position, u8: value))
                }
            }
            let words: [UInt32] = [0, 1, 3, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFF0, 0xFFFF_FFFF]
            for position in stride(from: 0, through: base.count - 4, by: 4) {
                for word in words {
                    attempt(base.patching(position, u32: word))
                }
            }
        }
        #expect(accepted > 0)
        #expect(refused > 0)
    }
}


@Suite struct ResourceTableBuildRefusalTests {
    @Test("entries that cannot be written as their type are refused when building")
    func unrepresentable() {
        for entry in [ResourceEntry.vendor(VendorResource(type: 5, payload: [1])), .vendor(VendorResource(type: 513, payload: [])),
                      .unknown(type: 0), .unknown(type: 3), .unknown(type: 128)] {
            do throws(ResourceTableError) {
                _ = try ResourceTable(entries: [entry])
                Issue.record("\(entry) was built")
            } catch {
                guard case .unrepresentable = error.kind else { Issue.record("\(entry): \(error)"); continue }
                #expect(error.entryIndex == 0)
            }
        }
    }
}
