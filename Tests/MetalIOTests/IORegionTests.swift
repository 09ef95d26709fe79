import Foundation  // Thread, for the two-thread ordering test
import MetalIO
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Helpers

/// A 64-byte window in the middle of a page whose every byte holds a sentinel, so that a stray
/// write anywhere (inside the window or next to it) shows.
struct SentinelFixture {
    static let sentinel: UInt8 = 0xA5
    static let windowOffset = 128
    static let windowSize = 64

    let memory: SharedMemory
    /// The whole page.
    let whole: IORegion
    /// Bytes [128, 192) of the page.
    let window: IORegion

    init() throws {
        memory = try SharedMemory(size: 4096)
        whole = try IORegion(name: "whole", memory: memory, physicalBase: PhysicalAddress(0x1000_0000))
        window = try IORegion(
            name: "window", memory: memory, memoryOffset: Self.windowOffset, size: Self.windowSize,
            physicalBase: PhysicalAddress(0x1000_0000 + UInt64(Self.windowOffset)))
        try whole.fill(Self.sentinel, at: 0, count: whole.size)
    }

    /// Whether every byte of the memory still holds the sentinel.
    var isUntouched: Bool {
        memory.withUnsafeMutableBytes { bytes in bytes.allSatisfy { $0 == Self.sentinel } }
    }

    /// Expects `body` to fail with exactly `kind`, reported for `operation` on the window, and to
    /// leave every byte of the memory as it was.
    func expectRefused<R>(
        _ kind: MetalIOError.Kind, _ operation: String,
        sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
    ) {
        let error = #expect(throws: MetalIOError.self, sourceLocation: sourceLocation) { try body() }
        #expect(error?.kind == kind, sourceLocation: sourceLocation)
        #expect(error?.operation == operation, sourceLocation: sourceLocation)
        #expect(error?.region == window.name, sourceLocation: sourceLocation)
        #expect(isUntouched, "a refused \(operation) changed memory", sourceLocation: sourceLocation)
    }
}

/// Expects `body` to be refused by `IORegion.init` as an invalid region.
func expectInvalidRegion<R>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) {
    let error = #expect(throws: MetalIOError.self, sourceLocation: sourceLocation) { try body() }
    #expect(error?.kind.isInvalidRegion == true, sourceLocation: sourceLocation)
    #expect(error?.operation == "IORegion.init", sourceLocation: sourceLocation)
}

extension MetalIOError.Kind {
    var isInvalidRegion: Bool {
        if case .invalidRegion = self { return true }
        return false
    }
}

/// A zero-filled region over a fresh mapping of `size` bytes.
func makeRegion(size: Int = 4096, name: String = "shm") throws -> IORegion {
    try IORegion(name: name, memory: SharedMemory(size: size), physicalBase: PhysicalAddress(0x8000_0000))
}

/// `read(UIntN.self, at:)` for N = 8 × `width`.
func readInteger(_ region: IORegion, width: Int, at offset: Int) throws(MetalIOError) -> UInt64 {
    switch width {
    case 1: return try UInt64(region.read(UInt8.self, at: offset))
    case 2: return try UInt64(region.read(UInt16.self, at: offset))
    case 4: return try UInt64(region.read(UInt32.self, at: offset))
    default: return try region.read(UInt64.self, at: offset)
    }
}

/// `write(UIntN(value), at:)` for N = 8 × `width`.
func writeInteger(_ region: IORegion, width: Int, value: UInt64, at offset: Int) throws(MetalIOError) {
    switch width {
    case 1: try region.write(UInt8(truncatingIfNeeded: value), at: offset)
    case 2: try region.write(UInt16(truncatingIfNeeded: value), at: offset)
    case 4: try region.write(UInt32(truncatingIfNeeded: value), at: offset)
    default: try region.write(value, at: offset)
    }
}

/// A byte range `[offset, offset + count)` for parameterised bounds tests.
struct AccessRange: Sendable, CustomTestStringConvertible {
    var offset: Int
    var count: Int
    var testDescription: String { "offset \(offset), count \(count)" }

    /// Ranges that do not lie inside a ``SentinelFixture/windowSize``-byte (64) region.
    static let outside64: [AccessRange] = [
        AccessRange(offset: -1, count: 1),
        AccessRange(offset: -1, count: 0),
        AccessRange(offset: Int.min, count: 1),
        AccessRange(offset: 64, count: 1),  // starts at the end
        AccessRange(offset: 65, count: 0),  // empty, but past the end
        AccessRange(offset: 61, count: 4),  // straddles the end by one byte
        AccessRange(offset: 0, count: 65),  // one byte more than the region
        AccessRange(offset: 0, count: -1),
        AccessRange(offset: 8, count: Int.min),
        AccessRange(offset: 0, count: Int.max),
        AccessRange(offset: 1, count: Int.max),  // offset + count overflows Int
        AccessRange(offset: 64, count: Int.max),
        AccessRange(offset: Int.max, count: 1),
        AccessRange(offset: Int.max, count: Int.max),
    ]
}

enum Cases {
    static let hexStrings: [(UInt64, String)] = [
        (0, "0x0000_0000"),
        (0x1000, "0x0000_1000"),
        (0xFFFF_FFFF, "0xffff_ffff"),
        (0x1_0000_0000, "0x0000_0001_0000_0000"),
        (0x8000_0000_1234, "0x0000_8000_0000_1234"),
        (UInt64.max, "0xffff_ffff_ffff_ffff"),
    ]
}

// MARK: - SharedMemory

@Suite struct SharedMemoryTests {
    @Test(arguments: [1, 100, 4095, 4096, 4097, 3 * 4096 + 1])
    func sizeIsRoundedUpToWholePages(requested: Int) throws {
        let page = SharedMemory.pageSize
        let memory = try SharedMemory(size: requested)
        #expect(memory.size % page == 0)
        #expect(memory.size >= requested)
        #expect(memory.size - requested < page)
        #expect(memory.baseAddress.rawValue % UInt(page) == 0)
    }

    @Test func newMemoryIsZeroFilled() throws {
        let memory = try SharedMemory(size: 3 * 4096)
        let allZero = memory.withUnsafeMutableBytes { bytes in bytes.allSatisfy { $0 == 0 } }
        #expect(allZero)
    }

    @Test(arguments: [0, -1, Int.min, Int.max])
    func refusesSizesItCannotMap(size: Int) {
        let error = #expect(throws: MetalIOError.self) { try SharedMemory(size: size) }
        #expect(error?.kind.isInvalidRegion == true)
        #expect(error?.operation == "SharedMemory.init")
    }
}

// MARK: - Address translation

@Suite struct IORegionTranslationTests {
    @Test func contiguousRegionTranslatesEveryWay() throws {
        let memory = try SharedMemory(size: 2 * 4096)
        let region = try IORegion(name: "shm", memory: memory, size: 2 * 4096, physicalBase: PhysicalAddress(0x8000_0000))
        #expect(region.virtualBase == memory.baseAddress)
        #expect(region.description == "IORegion 'shm' (8192 bytes at physical 0x8000_0000)")

        for offset in [0, 1, 0xFFF, 0x1000, 0x1FFF] {
            let physical = PhysicalAddress(0x8000_0000 + UInt64(offset))
            let virtual = VirtualAddress(region.virtualBase.rawValue + UInt(offset))
            #expect(region.physicalAddress(ofOffset: offset) == physical)
            #expect(region.virtualAddress(ofOffset: offset) == virtual)
            #expect(region.offset(ofPhysical: physical) == offset)
            #expect(region.offset(ofVirtual: virtual) == offset)
            #expect(region.virtualAddress(ofPhysical: physical) == virtual)
            #expect(region.physicalAddress(ofVirtual: virtual) == physical)
        }
    }

    @Test func contiguousRegionTranslatesNothingOutsideItself() throws {
        let memory = try SharedMemory(size: 2 * 4096)
        let region = try IORegion(memory: memory, size: 2 * 4096, physicalBase: PhysicalAddress(0x8000_0000))
        let end = region.size
        let base = region.virtualBase.rawValue

        #expect(region.physicalAddress(ofOffset: -1) == nil)
        #expect(region.physicalAddress(ofOffset: end) == nil)
        #expect(region.physicalAddress(ofOffset: Int.min) == nil)
        #expect(region.virtualAddress(ofOffset: -1) == nil)
        #expect(region.virtualAddress(ofOffset: end) == nil)

        #expect(region.offset(ofPhysical: PhysicalAddress(0)) == nil)
        #expect(region.offset(ofPhysical: PhysicalAddress(0x7FFF_FFFF)) == nil)  // one below the base
        #expect(region.offset(ofPhysical: PhysicalAddress(0x8000_0000 + UInt64(end))) == nil)  // base + size
        #expect(region.offset(ofPhysical: .any) == nil)
        #expect(region.virtualAddress(ofPhysical: PhysicalAddress(0x7FFF_FFFF)) == nil)
        #expect(region.virtualAddress(ofPhysical: PhysicalAddress(0x8000_0000 + UInt64(end))) == nil)

        #expect(region.offset(ofVirtual: VirtualAddress(base - 1)) == nil)
        #expect(region.offset(ofVirtual: VirtualAddress(base + UInt(end))) == nil)
        #expect(region.offset(ofVirtual: VirtualAddress(0)) == nil)
        #expect(region.offset(ofVirtual: VirtualAddress(UInt.max)) == nil)
        #expect(region.physicalAddress(ofVirtual: VirtualAddress(base - 1)) == nil)
        #expect(region.physicalAddress(ofVirtual: VirtualAddress(base + UInt(end))) == nil)
    }

    @Test func contiguousRegionMayEndAtTheTopOfThePhysicalSpace() throws {
        let memory = try SharedMemory(size: 2 * 4096)
        let top = try IORegion(memory: memory, size: 4096, physicalBase: PhysicalAddress(UInt64.max - 4095))
        #expect(top.physicalAddress(ofOffset: 4095) == PhysicalAddress(UInt64.max))
        #expect(top.offset(ofPhysical: PhysicalAddress(UInt64.max)) == 4095)
        // One byte more and the last byte would have no physical address.
        expectInvalidRegion { try IORegion(memory: memory, size: 4097, physicalBase: PhysicalAddress(UInt64.max - 4095)) }
    }

    @Test func pagedRegionTranslatesThroughItsPhysicalMap() throws {
        let memory = try SharedMemory(size: 3 * 4096)
        let map = [PhysicalAddress(0x8000_0000), PhysicalAddress(0x1000_0000), PhysicalAddress(0x5000_0000)]
        let region = try IORegion(name: "paged", memory: memory, size: 3 * 4096, physicalMap: map, pageShift: 12)

        let pairs: [(offset: Int, physical: UInt64)] = [
            (0, 0x8000_0000), (0xFFF, 0x8000_0FFF),
            (0x1000, 0x1000_0000), (0x1234, 0x1000_0234), (0x1FFF, 0x1000_0FFF),
            (0x2000, 0x5000_0000), (0x2FFF, 0x5000_0FFF),
        ]
        for (offset, raw) in pairs {
            let physical = PhysicalAddress(raw)
            let virtual = try #require(region.virtualAddress(ofOffset: offset))
            #expect(region.physicalAddress(ofOffset: offset) == physical)
            #expect(region.offset(ofPhysical: physical) == offset)
            #expect(region.virtualAddress(ofPhysical: physical) == virtual)
            #expect(region.physicalAddress(ofVirtual: virtual) == physical)
        }

        #expect(region.physicalAddress(ofOffset: 3 * 4096) == nil)
        // Addresses between and around the pages belong to no byte of the region.
        let gaps: [UInt64] = [0, 0x0FFF_FFFF, 0x1000_1000, 0x4FFF_FFFF, 0x5000_1000, 0x7FFF_FFFF, 0x8000_1000, UInt64.max]
        for raw in gaps {
            #expect(region.offset(ofPhysical: PhysicalAddress(raw)) == nil, "\(hex(raw)) is in a gap")
            #expect(region.virtualAddress(ofPhysical: PhysicalAddress(raw)) == nil, "\(hex(raw)) is in a gap")
        }
    }

    @Test func pagedRegionStopsInsideAPartialLastPage() throws {
        let memory = try SharedMemory(size: 3 * 4096)
        let map = [PhysicalAddress(0x8000_0000), PhysicalAddress(0x1000_0000), PhysicalAddress(0x5000_0000)]
        let region = try IORegion(memory: memory, size: 2 * 4096 + 100, physicalMap: map, pageShift: 12)
        #expect(region.offset(ofPhysical: PhysicalAddress(0x5000_0000 + 99)) == 2 * 4096 + 99)
        #expect(region.offset(ofPhysical: PhysicalAddress(0x5000_0000 + 100)) == nil)
        #expect(region.physicalAddress(ofOffset: 2 * 4096 + 100) == nil)
    }

    @Test func windowSharesBytesWithTheWholeMemory() throws {
        let memory = try SharedMemory(size: 3 * 4096)
        let whole = try IORegion(name: "whole", memory: memory, physicalBase: PhysicalAddress(0x1000_0000))
        let window = try IORegion(
            name: "middle", memory: memory, memoryOffset: 4096, size: 4096, physicalBase: PhysicalAddress(0x1000_1000))

        #expect(window.virtualBase == whole.virtualAddress(ofOffset: 4096))

        try window.write(UInt32(0xDEAD_BEEF), at: 0)
        #expect(try whole.read(UInt32.self, at: 4096) == 0xDEAD_BEEF)
        try whole.write(UInt8(0x77), at: 2 * 4096 - 1)
        #expect(try window.read(UInt8.self, at: 4095) == 0x77)

        // Both regions map the same physical address to the same host byte.
        let physical = PhysicalAddress(0x1000_1010)
        #expect(window.offset(ofPhysical: physical) == 0x10)
        #expect(whole.offset(ofPhysical: physical) == 4096 + 0x10)
        #expect(window.virtualAddress(ofPhysical: physical) == whole.virtualAddress(ofPhysical: physical))

        // The window ends where it says, even though the memory goes on.
        let pastWindow = try #require(whole.virtualAddress(ofOffset: 2 * 4096))
        #expect(window.offset(ofVirtual: whole.virtualBase) == nil)
        #expect(window.offset(ofVirtual: pastWindow) == nil)
        #expect(throws: MetalIOError.self) { try window.read(UInt8.self, at: 4096) }
    }

    @Test func sizeDefaultsToTheRestOfTheMemory() throws {
        let memory = try SharedMemory(size: 3 * 4096)
        let tail = try IORegion(memory: memory, memoryOffset: 4096, physicalBase: PhysicalAddress(0))
        #expect(tail.size == memory.size - 4096)
    }
}

// MARK: - Access

@Suite struct IORegionAccessTests {
    @Test func integersAreLittleEndianInMemory() throws {
        let region = try makeRegion()
        try region.write(UInt8(0xAB), at: 0)
        try region.write(UInt16(0x1234), at: 1)
        try region.write(UInt32(0x1234_5678), at: 3)
        try region.write(UInt64(0x0102_0304_0506_0708), at: 7)

        let expected: [UInt8] = [
            0xAB,
            0x34, 0x12,
            0x78, 0x56, 0x34, 0x12,
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        ]
        #expect(try region.readBytes(at: 0, count: 15) == expected)
        #expect(try region.read(UInt8.self, at: 0) == 0xAB)
        #expect(try region.read(UInt16.self, at: 1) == 0x1234)
        #expect(try region.read(UInt32.self, at: 3) == 0x1234_5678)
        #expect(try region.read(UInt64.self, at: 7) == 0x0102_0304_0506_0708)

        try region.write([0xEF, 0xBE, 0xAD, 0xDE], at: 32)
        #expect(try region.read(UInt32.self, at: 32) == 0xDEAD_BEEF)
        #expect(try region.read(UInt16.self, at: 34) == 0xDEAD)
    }

    @Test func blockOperationsCopyAndSetExactlyTheirRange() throws {
        let f = try SentinelFixture()
        let s = SentinelFixture.sentinel

        try f.window.fill(0x5A, at: 4, count: 8)
        let filled: [UInt8] = [s] + [UInt8](repeating: 0x5A, count: 8) + [s]
        #expect(try f.window.readBytes(at: 3, count: 10) == filled)

        try f.window.write([1, 2, 3], at: 61)  // ends exactly at the end of the window
        #expect(try f.window.readBytes(at: 60, count: 4) == [s, 1, 2, 3])

        let source: [UInt8] = [9, 8]
        try source.withUnsafeBytes { raw in try f.window.write(bytes: raw, at: 0) }
        #expect(try f.window.readBytes(at: 0, count: 3) == [9, 8, s])

        // Nothing outside the window moved.
        let before = try f.whole.readBytes(at: 0, count: SentinelFixture.windowOffset)
        let after = try f.whole.readBytes(
            at: SentinelFixture.windowOffset + SentinelFixture.windowSize,
            count: f.whole.size - SentinelFixture.windowOffset - SentinelFixture.windowSize)
        #expect(before.allSatisfy { $0 == s })
        #expect(after.allSatisfy { $0 == s })
    }

    @Test func withUnsafeMutableBytesSeesTheRangeAndPassesErrorsThrough() throws {
        struct Boom: Error {}
        let f = try SentinelFixture()
        let count = try f.window.withUnsafeMutableBytes(at: 8, count: 4) { buffer in
            buffer.copyBytes(from: [1, 2, 3, 4])
            return buffer.count
        }
        #expect(count == 4)
        #expect(try f.whole.readBytes(at: SentinelFixture.windowOffset + 8, count: 4) == [1, 2, 3, 4])
        #expect(throws: Boom.self) {
            try f.window.withUnsafeMutableBytes(at: 0, count: 1) { (_) -> Void in throw Boom() }
        }
    }

    @Test(arguments: [1, 2, 4, 8])
    func integerAccessOutsideTheRegionThrows(width: Int) throws {
        let f = try SentinelFixture()
        let size = SentinelFixture.windowSize
        for offset in [-1, Int.min, size - width + 1, size, size + 100, Int.max] {
            let kind = MetalIOError.Kind.outOfBounds(offset: offset, count: width, regionSize: size)
            f.expectRefused(kind, "read\(8 * width)") { try readInteger(f.window, width: width, at: offset) }
            f.expectRefused(kind, "write\(8 * width)") { try writeInteger(f.window, width: width, value: 0, at: offset) }
        }
    }

    @Test(arguments: [1, 2, 4, 8])
    func integerAccessAtTheLastOffsetStaysInside(width: Int) throws {
        let f = try SentinelFixture()
        let last = SentinelFixture.windowSize - width
        try writeInteger(f.window, width: width, value: 0, at: last)
        #expect(try readInteger(f.window, width: width, at: last) == 0)

        let bytes = try f.whole.readBytes(at: 0, count: f.whole.size)
        let changed = bytes.indices.filter { bytes[$0] != SentinelFixture.sentinel }
        let windowEnd = SentinelFixture.windowOffset + SentinelFixture.windowSize
        #expect(changed == Array((windowEnd - width)..<windowEnd))
    }

    @Test(arguments: AccessRange.outside64)
    func blockAccessOutsideTheRegionThrows(range: AccessRange) throws {
        let f = try SentinelFixture()
        let (offset, count) = (range.offset, range.count)
        let kind = MetalIOError.Kind.outOfBounds(offset: offset, count: count, regionSize: SentinelFixture.windowSize)

        #expect(!f.window.contains(offset: offset, count: count))
        f.expectRefused(kind, "block read") { try f.window.readBytes(at: offset, count: count) }
        f.expectRefused(kind, "block set") { try f.window.fill(0, at: offset, count: count) }
        f.expectRefused(kind, "withUnsafeMutableBytes") {
            try f.window.withUnsafeMutableBytes(at: offset, count: count) { _ in
                Issue.record("the body ran for an out-of-bounds range")
            }
        }

        guard count >= 0 else { return }  // a buffer cannot have a negative count
        if count <= 1024 {
            f.expectRefused(kind, "block write") { try f.window.write([UInt8](repeating: 0, count: count), at: offset) }
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 8)
        defer { scratch.deallocate() }
        scratch.initializeMemory(as: UInt8.self, repeating: 0)
        // For counts above 128 this buffer claims more bytes than exist: the region must refuse
        // the range before it reads any of them.
        let source = UnsafeRawBufferPointer(start: scratch.baseAddress, count: count)
        f.expectRefused(kind, "block write") { try f.window.write(bytes: source, at: offset) }
    }

    @Test func emptyBlockAccessAtTheEndIsAllowed() throws {
        let f = try SentinelFixture()
        let end = SentinelFixture.windowSize
        #expect(f.window.contains(offset: end, count: 0))
        #expect(try f.window.readBytes(at: end, count: 0).isEmpty)
        try f.window.fill(0, at: end, count: 0)
        try f.window.write([], at: end)
        try f.window.write(bytes: UnsafeRawBufferPointer(start: nil, count: 0), at: end)
        let seen = try f.window.withUnsafeMutableBytes(at: end, count: 0) { $0.count }
        #expect(seen == 0)
        #expect(f.isUntouched)
    }

    @Test func acquiringAndReleasingAccessesAreLittleEndian() throws {
        let region = try makeRegion()
        try region.writeReleasing(UInt16(0xBEEF), at: 2)
        try region.writeReleasing(UInt32(0x0A0B_0C0D), at: 4)
        #expect(try region.readBytes(at: 2, count: 6) == [0xEF, 0xBE, 0x0D, 0x0C, 0x0B, 0x0A])
        #expect(try region.readAcquiring(at: 2) == 0xBEEF)
        #expect(try region.readAcquiring(UInt16.self, at: 2) == 0xBEEF)
        #expect(try region.readAcquiring(UInt32.self, at: 4) == 0x0A0B_0C0D)

        // Plain and ordered accesses see the same bytes.
        try region.write(UInt32(0x1122_3344), at: 8)
        #expect(try region.readAcquiring(UInt32.self, at: 8) == 0x1122_3344)
        #expect(try region.read(UInt16.self, at: 2) == 0xBEEF)
    }

    @Test func orderedAccessAtAMisalignedOffsetThrows() throws {
        let f = try SentinelFixture()
        f.expectRefused(.misaligned(offset: 1, alignment: 2), "read16 acquiring") { try f.window.readAcquiring(at: 1) }
        f.expectRefused(.misaligned(offset: 3, alignment: 2), "write16 releasing") { try f.window.writeReleasing(UInt16(1), at: 3) }
        f.expectRefused(.misaligned(offset: 2, alignment: 4), "read32 acquiring") { try f.window.readAcquiring(UInt32.self, at: 2) }
        f.expectRefused(.misaligned(offset: 6, alignment: 4), "write32 releasing") { try f.window.writeReleasing(UInt32(1), at: 6) }
    }

    @Test func orderedAccessOutsideTheRegionIsOutOfBoundsBeforeMisaligned() throws {
        let f = try SentinelFixture()
        let size = SentinelFixture.windowSize
        f.expectRefused(.outOfBounds(offset: 63, count: 2, regionSize: size), "read16 acquiring") {
            try f.window.readAcquiring(at: 63)
        }
        f.expectRefused(.outOfBounds(offset: -2, count: 2, regionSize: size), "write16 releasing") {
            try f.window.writeReleasing(UInt16(1), at: -2)
        }
        f.expectRefused(.outOfBounds(offset: 62, count: 4, regionSize: size), "read32 acquiring") {
            try f.window.readAcquiring(UInt32.self, at: 62)
        }
        f.expectRefused(.outOfBounds(offset: 64, count: 4, regionSize: size), "write32 releasing") {
            try f.window.writeReleasing(UInt32(1), at: 64)
        }
    }

    @Test func alignmentIsOfTheHostAddressNotTheOffset() throws {
        let memory = try SharedMemory(size: 4096)
        let odd = try IORegion(name: "odd", memory: memory, memoryOffset: 1, size: 64, physicalBase: PhysicalAddress(1))
        let error = #expect(throws: MetalIOError.self) { try odd.readAcquiring(at: 0) }
        #expect(error?.kind == .misaligned(offset: 0, alignment: 2))
        try odd.writeReleasing(UInt16(0x0102), at: 1)  // host byte 2
        #expect(try odd.readAcquiring(at: 1) == 0x0102)
        try odd.writeReleasing(UInt32(0x0304_0506), at: 3)  // host byte 4
        #expect(try odd.readAcquiring(UInt32.self, at: 3) == 0x0304_0506)
    }
}

// MARK: - Initialisation errors

@Suite struct IORegionInitTests {
    @Test func windowMustLieInsideItsMemory() throws {
        let memory = try SharedMemory(size: 2 * 4096)
        let base = PhysicalAddress(0x1000)
        expectInvalidRegion { try IORegion(memory: memory, memoryOffset: -1, physicalBase: base) }
        expectInvalidRegion { try IORegion(memory: memory, memoryOffset: memory.size, physicalBase: base) }  // empty
        expectInvalidRegion { try IORegion(memory: memory, memoryOffset: memory.size + 1, size: 1, physicalBase: base) }
        expectInvalidRegion { try IORegion(memory: memory, size: 0, physicalBase: base) }
        expectInvalidRegion { try IORegion(memory: memory, size: -5, physicalBase: base) }
        expectInvalidRegion { try IORegion(memory: memory, size: memory.size + 1, physicalBase: base) }
        expectInvalidRegion { try IORegion(memory: memory, size: Int.max, physicalBase: base) }
        expectInvalidRegion { try IORegion(memory: memory, memoryOffset: 4096, size: memory.size - 4095, physicalBase: base) }
        // The largest windows that fit are fine.
        #expect(try IORegion(memory: memory, memoryOffset: 4096, size: memory.size - 4096, physicalBase: base).size
            == memory.size - 4096)
        #expect(try IORegion(memory: memory, memoryOffset: memory.size - 1, size: 1, physicalBase: base).size == 1)
    }

    @Test func physicalMapMustCoverEveryPage() throws {
        let memory = try SharedMemory(size: 3 * 4096)
        let twoPages = [PhysicalAddress(0x8000_0000), PhysicalAddress(0x1000_0000)]
        expectInvalidRegion { try IORegion(memory: memory, size: 3 * 4096, physicalMap: twoPages, pageShift: 12) }
        expectInvalidRegion { try IORegion(memory: memory, size: 4096, physicalMap: [], pageShift: 12) }
        expectInvalidRegion { try IORegion(memory: memory, size: 4096, physicalMap: twoPages, pageShift: -1) }
        expectInvalidRegion { try IORegion(memory: memory, size: 4096, physicalMap: twoPages, pageShift: 65) }

        // Two pages of map are enough for a region that ends inside its second page.
        let region = try IORegion(memory: memory, size: 4096 + 1, physicalMap: twoPages, pageShift: 12)
        #expect(region.physicalAddress(ofOffset: 4096) == PhysicalAddress(0x1000_0000))
    }

    @Test func pagesMustNotOverflowThePhysicalAddressSpace() throws {
        let memory = try SharedMemory(size: 2 * 4096)
        let map = [PhysicalAddress(0x1000), PhysicalAddress(UInt64.max - 0x7FF)]
        // Page 1 is a whole page: its last byte would be past 2^64.
        expectInvalidRegion { try IORegion(memory: memory, size: 2 * 4096, physicalMap: map, pageShift: 12) }
        // A region that uses only 0x800 bytes of page 1 ends exactly at the top.
        let region = try IORegion(memory: memory, size: 4096 + 0x800, physicalMap: map, pageShift: 12)
        #expect(region.physicalAddress(ofOffset: 4096 + 0x7FF) == PhysicalAddress(UInt64.max))
    }

    @Test func initErrorsNameTheRegion() throws {
        let memory = try SharedMemory(size: 4096)
        let error = #expect(throws: MetalIOError.self) {
            try IORegion(name: "vrings", memory: memory, size: memory.size + 1, physicalBase: PhysicalAddress(0))
        }
        #expect(error?.region == "vrings")
        let text = error?.description ?? ""
        #expect(text.contains("IORegion.init"))
        #expect(text.contains("'vrings'"))
    }
}

// MARK: - Ordering between threads

/// How the writer thread of the ordering test ended.
final class WriterOutcome: Sendable {
    static let running = 0, finished = 1, timedOut = 2, failed = 3
    let value = Atomic<Int>(WriterOutcome.running)
}

/// Word `word` of the data published in round `round`.
func payload(round: UInt16, word: Int) -> UInt32 {
    (UInt32(round) &* 0x9E37_79B9) ^ UInt32(word)
}

@Suite struct IORegionOrderingTests {
    /// A writer thread fills a data block, then publishes a round number with `writeReleasing`;
    /// this thread waits for it with `readAcquiring`, checks the whole block and acknowledges.
    /// Each side gives up after 60 seconds (other suites load both cores meanwhile), so a bug
    /// fails the test instead of hanging it.
    @Test func releasedIndexPublishesTheDataWrittenBeforeIt() throws {
        let memory = try SharedMemory(size: 4096)
        let region = try IORegion(name: "ring", memory: memory, physicalBase: PhysicalAddress(0))
        let indexOffset = 0, ackOffset = 4, dataOffset = 64, words = 64
        let rounds: UInt16 = 300
        let deadline = ContinuousClock.now + .seconds(60)
        let writer = WriterOutcome()

        Thread.detachNewThread {
            do {
                for round in 1...rounds {
                    for word in 0..<words {
                        try region.write(payload(round: round, word: word), at: dataOffset + 4 * word)
                    }
                    try region.writeReleasing(round, at: indexOffset)
                    while try region.readAcquiring(at: ackOffset) != round {
                        guard ContinuousClock.now < deadline else {
                            writer.value.store(WriterOutcome.timedOut, ordering: .releasing)
                            return
                        }
                        sched_yield()
                    }
                }
                writer.value.store(WriterOutcome.finished, ordering: .releasing)
            } catch {
                writer.value.store(WriterOutcome.failed, ordering: .releasing)
            }
        }

        var next: UInt16 = 1
        var corruptRounds: [UInt16] = []
        while next <= rounds && ContinuousClock.now < deadline {
            guard try region.readAcquiring(at: indexOffset) == next else {
                sched_yield()
                continue
            }
            var intact = true
            for word in 0..<words {
                if try region.read(UInt32.self, at: dataOffset + 4 * word) != payload(round: next, word: word) {
                    intact = false
                }
            }
            if !intact { corruptRounds.append(next) }
            try region.writeReleasing(next, at: ackOffset)
            next += 1
        }
        while writer.value.load(ordering: .acquiring) == WriterOutcome.running
            && ContinuousClock.now < deadline + .seconds(1)
        {
            sched_yield()
        }

        #expect(next == rounds + 1, "the reader saw \(next - 1) of \(rounds) rounds before giving up")
        #expect(corruptRounds.isEmpty, "rounds whose data was not yet visible: \(corruptRounds.prefix(10))")
        #expect(writer.value.load(ordering: .acquiring) == WriterOutcome.finished)
    }
}

// MARK: - Formatting

@Suite struct MetalIOFormattingTests {
    @Test(arguments: Cases.hexStrings)
    func hexPadsToEightOrSixteenDigitsInGroupsOfFour(value: UInt64, text: String) {
        #expect(hex(value) == text)
    }

    @Test func addressesDescribeThemselvesInHex() {
        #expect(PhysicalAddress(0x1000).description == "0x0000_1000")
        #expect(DeviceAddress(0x1_0000_0000).description == "0x0000_0001_0000_0000")
        #expect(VirtualAddress(0xFFFF).description == "0x0000_ffff")
        #expect(PhysicalAddress.any.description == "0xffff_ffff_ffff_ffff")
    }

    @Test func advancingAnAddressReportsOverflow() {
        #expect(PhysicalAddress(0x1000).advanced(by: 0x10) == PhysicalAddress(0x1010))
        #expect(PhysicalAddress(UInt64.max - 1).advanced(by: 1) == PhysicalAddress(UInt64.max))
        #expect(PhysicalAddress(UInt64.max - 1).advanced(by: 2) == nil)
        #expect(DeviceAddress(UInt64.max).advanced(by: 0) == DeviceAddress(UInt64.max))
        #expect(DeviceAddress(UInt64.max).advanced(by: 1) == nil)
    }

    @Test func errorDescriptionNamesTheOperationAndRegion() throws {
        let f = try SentinelFixture()
        let error = #expect(throws: MetalIOError.self) { try f.window.read(UInt32.self, at: 62) }
        #expect(error?.operation == "read32")
        #expect(error?.region == "window")
        #expect(error?.description
            == "read32 in region 'window': 4 byte(s) at offset 0x0000_003e lie outside the region (size 0x0000_0040)")
    }

    @Test func errorDescriptionWithoutARegionName() {
        let misaligned = MetalIOError(.misaligned(offset: 1, alignment: 2), operation: "read16 acquiring")
        #expect(misaligned.description == "read16 acquiring: offset 0x0000_0001 is not 2-byte aligned")
        let negative = MetalIOError(.outOfBounds(offset: -1, count: 1, regionSize: 16), operation: "block read")
        #expect(!negative.description.contains("in region"))
        #expect(negative.description.contains("0xffff_ffff_ffff_ffff"))
    }
}

@Suite struct IORegionHostileParameterTests {
    @Test("page shifts whose page offsets would overflow are refused, not trapped on", arguments: [61, 62])
    func hugePageShift(shift: Int) throws {
        let memory = try SharedMemory(size: 3 * 4096)
        let map = [PhysicalAddress(0x1000), PhysicalAddress(0x2000), PhysicalAddress(0x3000), PhysicalAddress(0x4000), PhysicalAddress(0x5000)]
        #expect(throws: MetalIOError.self) { _ = try IORegion(memory: memory, physicalMap: map, pageShift: shift) }
    }

    @Test("a window offset of Int.min or Int.max is refused", arguments: [Int.min, Int.max])
    func extremeWindowOffset(offset: Int) throws {
        let memory = try SharedMemory(size: 4096)
        #expect(throws: MetalIOError.self) { _ = try IORegion(memory: memory, memoryOffset: offset, physicalBase: PhysicalAddress(0)) }
    }
}

@Suite struct HexBytesTests {
    @Test("hex text to bytes and back; odd length or a non-hex digit is refused")
    func roundTrip() {
        #expect(bytes(fromHex: "deADbe0f") == [0xDE, 0xAD, 0xBE, 0x0F])
        #expect(bytes(fromHex: "") == [])
        #expect(bytes(fromHex: "abc") == nil)
        #expect(bytes(fromHex: "zz") == nil)
        #expect(hexString([0x00, 0x7F, 0xFF]) == "007fff")
    }
}
