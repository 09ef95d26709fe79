import MetalIO
import Synchronization
import Testing
import Virtio

// MARK: - Counters

/// A counter several threads may bump: what the kick closures count with.
final class Counter: Sendable {
    private let storage = Atomic<Int>(0)
    var value: Int { storage.load(ordering: .relaxed) }
    func increment() { storage.add(1, ordering: .relaxed) }
}

// MARK: - Raw ring contents

/// A descriptor as it lies in the vring: addr, len, flags, next.
struct RawDescriptor: Equatable, CustomStringConvertible {
    var address: UInt64
    var length: UInt32
    var flags: UInt16
    var next: UInt16
    var description: String { "{addr \(hex(address)), len \(length), flags \(flags), next \(next)}" }
}

/// A used-ring element as it lies in the vring: id, len.
struct UsedElement: Equatable, CustomStringConvertible {
    var id: UInt32
    var length: UInt32
    var description: String { "{id \(id), len \(length)}" }
}

// MARK: - The fixture

/// One shared memory, seen by both sides through one I/O region whose offset 0 is device address
/// 0x3000_0000: a 16-descriptor vring (used ring aligned to 4096) at offset 0 and the buffers from
/// 64 KiB on. A ``DriverQueue`` (the host) and a ``DeviceQueue`` (the remote) work on the same ring.
struct VirtioFixture: Sendable {
    static let deviceBase: UInt64 = 0x3000_0000
    static let memorySize = 256 << 10
    static let ringCount = 16
    static let ringAlignment = 4096
    /// Where the buffer slots start in the region.
    static let bufferArea = 64 << 10
    /// Bytes from one buffer slot to the next.
    static let slotSize = 256

    let memory: SharedMemory
    let region: IORegion
    let window: BufferWindow
    let location: VringLocation
    let layout: VringLayout
    let usesEventIndex: Bool
    let driver: DriverQueue
    let device: DeviceQueue
    /// Kicks the driver sent to the device.
    let driverKicks: Counter
    /// Notifications the device sent to the driver.
    let deviceKicks: Counter

    init(usesEventIndex: Bool = false) throws {
        let memory = try SharedMemory(size: Self.memorySize)
        let region = try IORegion(name: "shared", memory: memory, physicalBase: PhysicalAddress(Self.deviceBase))
        let window = BufferWindow(region: region, deviceBase: DeviceAddress(Self.deviceBase))
        let location = VringLocation(
            index: 0, notifyID: 1, deviceAddress: DeviceAddress(Self.deviceBase), region: region, offset: 0,
            count: Self.ringCount, alignment: Self.ringAlignment)
        let driverKicks = Counter(), deviceKicks = Counter()
        // The driver first: it zeroes the ring. The device uses the ring as the driver laid it out.
        let driver = try DriverQueue(location: location, window: window, usesEventIndex: usesEventIndex) {
            driverKicks.increment()
        }
        let device = try DeviceQueue(location: location, window: window, usesEventIndex: usesEventIndex) {
            deviceKicks.increment()
        }
        self.memory = memory
        self.region = region
        self.window = window
        self.location = location
        self.layout = driver.layout
        self.usesEventIndex = usesEventIndex
        self.driver = driver
        self.device = device
        self.driverKicks = driverKicks
        self.deviceKicks = deviceKicks
    }

    /// Another device queue over the same ring (its kicks are not counted).
    func makeDevice() throws -> DeviceQueue {
        try DeviceQueue(location: location, window: window, usesEventIndex: usesEventIndex) {}
    }

    // MARK: Buffers

    /// The region offset of buffer slot `slot`.
    func offset(ofSlot slot: Int) -> Int { Self.bufferArea + slot * Self.slotSize }

    /// The device address of buffer slot `slot`.
    func address(ofSlot slot: Int) -> UInt64 { Self.deviceBase + UInt64(offset(ofSlot: slot)) }

    /// A buffer in slot `slot`.
    func buffer(_ slot: Int, length: Int = VirtioFixture.slotSize) -> VirtqueueBuffer {
        VirtqueueBuffer(address: DeviceAddress(address(ofSlot: slot)), length: length)
    }

    // MARK: Raw ring access (what the other side, or a corrupting peer, sees and writes)

    func read16(_ offset: Int) throws -> UInt16 { try region.read(UInt16.self, at: location.offset + offset) }
    func read32(_ offset: Int) throws -> UInt32 { try region.read(UInt32.self, at: location.offset + offset) }
    func read64(_ offset: Int) throws -> UInt64 { try region.read(UInt64.self, at: location.offset + offset) }
    func write16(_ value: UInt16, at offset: Int) throws { try region.write(value, at: location.offset + offset) }
    func write32(_ value: UInt32, at offset: Int) throws { try region.write(value, at: location.offset + offset) }
    func write64(_ value: UInt64, at offset: Int) throws { try region.write(value, at: location.offset + offset) }

    func availFlags() throws -> UInt16 { try read16(layout.availFlags) }
    func availIndex() throws -> UInt16 { try read16(layout.availIndex) }
    func usedFlags() throws -> UInt16 { try read16(layout.usedFlags) }
    func usedIndex() throws -> UInt16 { try read16(layout.usedIndex) }

    /// The head published in avail-ring slot `slot`.
    func availEntry(_ slot: Int) throws -> Int { try Int(read16(layout.availRing(slot))) }

    /// The element in used-ring slot `slot`.
    func usedElement(_ slot: Int) throws -> UsedElement {
        let at = layout.usedRing(slot)
        return try UsedElement(id: read32(at), length: read32(at + 4))
    }

    /// Descriptor `index` as it lies in the ring.
    func descriptor(_ index: Int) throws -> RawDescriptor {
        let at = layout.descriptor(index)
        return try RawDescriptor(address: read64(at), length: read32(at + 8), flags: read16(at + 12), next: read16(at + 14))
    }

    /// Overwrites descriptor `index`.
    func setDescriptor(_ index: Int, _ descriptor: RawDescriptor) throws {
        let at = layout.descriptor(index)
        try write64(descriptor.address, at: at)
        try write32(descriptor.length, at: at + 8)
        try write16(descriptor.flags, at: at + 12)
        try write16(descriptor.next, at: at + 14)
    }

    // MARK: Traffic

    /// The driver adds a request: 16 readable bytes in slot `slot`, 32 writable bytes in slot
    /// `slot + 1`. Returns its head, read back from the avail ring.
    @discardableResult
    func addRequest(token: Int, slot: Int = 0) throws -> Int {
        let before = try availIndex()
        try driver.add(readable: [buffer(slot, length: 16)], writable: [buffer(slot + 1, length: 32)], token: token)
        return try availEntry(Int(before) % Self.ringCount)
    }

    /// Sends one request through both queues and expects it to arrive intact and come back with
    /// the length the device reported, with no error counted on either side: proof that the
    /// queues still work. Call it only when nothing else is pending.
    func expectTrafficFlows(token: Int, slot: Int = 200, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let driverErrors = driver.errorCounts, deviceErrors = device.errorCounts
        let payload: [UInt8] = (0..<16).map { UInt8(truncatingIfNeeded: token &+ $0) }
        try region.write(payload, at: offset(ofSlot: slot))
        let head = try addRequest(token: token, slot: slot)

        let chain = try #require(device.takeAvailable(), "the device got no chain", sourceLocation: sourceLocation)
        #expect(chain.head == head, sourceLocation: sourceLocation)
        #expect(chain.segments.map(\.offset) == [offset(ofSlot: slot), offset(ofSlot: slot + 1)], sourceLocation: sourceLocation)
        #expect(chain.segments.map(\.length) == [16, 32], sourceLocation: sourceLocation)
        #expect(chain.segments.map(\.isWritable) == [false, true], sourceLocation: sourceLocation)
        let readable = try #require(chain.segments.first, sourceLocation: sourceLocation)
        #expect(try region.readBytes(at: readable.offset, count: 16) == payload, sourceLocation: sourceLocation)
        try device.returnUsed(chain.head, length: 7)

        let used = try #require(driver.takeUsed(), "the driver got nothing back", sourceLocation: sourceLocation)
        #expect(used.token == token, sourceLocation: sourceLocation)
        #expect(used.length == 7, sourceLocation: sourceLocation)
        #expect(driver.errorCounts == driverErrors, "valid traffic counted as a driver-side error", sourceLocation: sourceLocation)
        #expect(device.errorCounts == deviceErrors, "valid traffic counted as a device-side error", sourceLocation: sourceLocation)
    }
}

// MARK: - Errors

/// Runs `body`, which should throw; returns the kind of what it threw, or records an issue and
/// returns `nil` when it did not throw.
func thrownKind(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> VirtioError.Kind? {
    do {
        try body()
    } catch let error as VirtioError {
        return error.kind
    } catch {
        Issue.record("expected a VirtioError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
    Issue.record("accepted: expected a VirtioError", sourceLocation: sourceLocation)
    return nil
}

extension VirtioError.Kind {
    var isInvalidRing: Bool {
        if case .invalidRing = self { return true }
        return false
    }
}
