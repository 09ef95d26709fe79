import MetalIO
import Synchronization

/// Virtio feature bits, as offered in a vdev's `dfeatures` and accepted in its `gfeatures`.
public struct VirtioFeatures: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `VIRTIO_RPMSG_F_NS` (bit 0): the remote supports the RPMsg name service.
    public static let rpmsgNameService = VirtioFeatures(rawValue: 1 << 0)
    /// `VIRTIO_RING_F_INDIRECT_DESC` (bit 28): indirect descriptor tables (RPMsg never builds them).
    public static let ringIndirectDescriptors = VirtioFeatures(rawValue: 1 << 28)
    /// `VIRTIO_RING_F_EVENT_IDX` (bit 29): `used_event`/`avail_event` interrupt suppression.
    public static let ringEventIndex = VirtioFeatures(rawValue: 1 << 29)
    /// Every bit: a host that accepts whatever the device offers (OpenAMP's driver role).
    public static let all = VirtioFeatures(rawValue: .max)
}

/// The virtio device status byte (virtio 1.x §2.1), the vdev entry's `status` field.
public struct VirtioStatus: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let acknowledge = VirtioStatus(rawValue: 0x01)
    public static let driver = VirtioStatus(rawValue: 0x02)
    public static let driverOK = VirtioStatus(rawValue: 0x04)
    public static let featuresOK = VirtioStatus(rawValue: 0x08)
    /// OpenAMP uses it host → remote to ask for a reset; the remote acknowledges by writing 0.
    public static let needsReset = VirtioStatus(rawValue: 0x40)
    public static let failed = VirtioStatus(rawValue: 0x80)
}

extension VirtioStatus: CustomStringConvertible {
    /// The bits set, by name ("ACKNOWLEDGE|DRIVER|DRIVER_OK"; "reset" for 0).
    public var names: String {
        let named: [(VirtioStatus, String)] = [(.acknowledge, "ACKNOWLEDGE"), (.driver, "DRIVER"), (.featuresOK, "FEATURES_OK"),
                                               (.driverOK, "DRIVER_OK"), (.needsReset, "NEEDS_RESET"), (.failed, "FAILED")]
        var parts = named.filter { contains($0.0) }.map(\.1)
        let unknown = rawValue & ~named.reduce(0) { $0 | $1.0.rawValue }
        if unknown != 0 { parts.append("0x" + String(unknown, radix: 16)) }
        return parts.isEmpty ? "reset" : parts.joined(separator: "|")
    }

    /// "0x07 (ACKNOWLEDGE|DRIVER|DRIVER_OK)".
    public var description: String {
        let digits = String(rawValue, radix: 16)
        return "0x" + (digits.count == 1 ? "0" + digits : digits) + " (\(names))"
    }
}

/// Which side of a virtio device this is.
public enum VirtioRole: String, Sendable, Hashable {
    /// The host: owns the buffers, writes status, features and config (`VIRTIO_DEV_DRIVER`).
    case driver
    /// The remote: reads status, uses the buffers the host offers (`VIRTIO_DEV_DEVICE`).
    case device
}

/// Where one vring lies: its bytes in an I/O region, its geometry and its notify id.
public struct VringLocation: Sendable {
    public var index: Int
    /// The id a kick of this vring carries.
    public var notifyID: NotifyID
    /// The vring's device address (what the resource table says).
    public var deviceAddress: DeviceAddress
    public var region: IORegion
    /// Offset of the descriptor table in ``region``.
    public var offset: Int
    /// Number of descriptors (a power of two).
    public var count: Int
    /// Alignment of the used ring.
    public var alignment: Int

    public init(index: Int, notifyID: NotifyID, deviceAddress: DeviceAddress, region: IORegion, offset: Int, count: Int, alignment: Int) {
        self.index = index
        self.notifyID = notifyID
        self.deviceAddress = deviceAddress
        self.region = region
        self.offset = offset
        self.count = count
        self.alignment = alignment
    }
}

/// A virtio device as its users (RPMsg) see it, whatever carries it: status, features and
/// config space, its vrings, kicks out and notifications in. `Remoteproc`'s `VirtioDevice`
/// (the resource table's vdev entry, OpenAMP's `remoteproc_virtio`) is one implementation.
public protocol VirtioTransport: AnyObject, Sendable {
    var role: VirtioRole { get }
    /// The virtio device id (7 = RPMsg).
    var deviceID: UInt32 { get }
    /// The vrings, in order.
    var vringLocations: [VringLocation] { get }
    /// Which host stack the driver side behaves as (status writes, kicks, buffers, addresses).
    var host: HostPersonality { get }
    /// The time its users' waits go through (a blocking send's): the platform's clock.
    var clock: any WaitClock { get }
    func status() throws(VirtioError) -> VirtioStatus
    /// Writes the status byte (driver role); whether the peer is notified is the host's behaviour
    /// (``HostPersonality/notifiesOnVdevWrites``).
    func setStatus(_ status: VirtioStatus) throws(VirtioError)
    /// Acknowledges a NEEDS_RESET request (device role): status = 0.
    func acknowledgeReset() throws(VirtioError)
    /// The device role's wait for DRIVER_OK (``waitForDriverOK(clock:until:changes:status:clearReset:checkStop:)``),
    /// woken by the driver's status writes where the transport can tell them; false when `timeout` passed first.
    func waitForDriverOK(timeout: Duration) throws(VirtioError) -> Bool
    func deviceFeatures() throws(VirtioError) -> VirtioFeatures
    func driverFeatures() throws(VirtioError) -> VirtioFeatures
    /// Driver role: gfeatures = dfeatures ∩ `supported`; returns it.
    func negotiateFeatures(supported: VirtioFeatures) throws(VirtioError) -> VirtioFeatures
    func readConfig(at offset: Int, count: Int) throws(VirtioError) -> [UInt8]
    func writeConfig(_ bytes: [UInt8], at offset: Int) throws(VirtioError)
    /// Driver role, as the queue is set up (`find_vqs`): a transport whose vring addresses the
    /// host publishes late (Linux writes an allocated vring's `da` into the table only now, after
    /// the remote started) does it here. The queue itself zeroes the ring.
    func prepareDriverQueue(_ index: Int) throws(VirtioError)
    /// Kicks vring `index` (its notify id goes to the other side).
    func kick(vring index: Int) throws(VirtioError)
    /// What runs when vring `index` is notified.
    func setNotificationHandler(forVring index: Int, _ handler: (@Sendable () -> Void)?)
    /// `false` once the device is gone (the remote crashed, stopped or was removed): users stop
    /// waiting on it and fail their calls.
    var isAvailable: Bool { get }
    /// What runs, once, when the device goes away (``isAvailable`` turns false: the remote crashed
    /// or stopped, or the device was removed) — Linux's virtio driver `remove`: the driver on top
    /// lets go of what it holds (RPMsg closes, dropping its endpoints). It runs on the thread that
    /// removed the device, after that call released its locks; set on a device already gone, it
    /// runs at once.
    func setRemovalHandler(_ handler: (@Sendable () -> Void)?)
    /// Driver role, runtime power management: the driver published a request (buffers for the
    /// device) without kicking — a kick already counts. The request counts as traffic, and a
    /// remote suspended for idleness is resumed (Linux's `pm_runtime_get` around I/O).
    func noteDriverActivity()
    /// Driver role: how the driver tells whether it has requests the device has not given back
    /// (buffers it published that are not yet in the used ring) — a device with work outstanding
    /// is not idle, and autosuspend leaves it running. `nil` removes it.
    func setOutstandingWork(_ check: (@Sendable () -> Bool)?)
    /// Whether the calling thread runs the peer's notification inline, on the peer's own thread
    /// (``InterruptDelivery/inline``): the peer cannot move until it returns, so waiting for it
    /// (for buffers it would give back) would wait for nothing.
    var isPeerHeldByCurrentThread: Bool { get }
}

extension VirtioTransport {
    public var clock: any WaitClock { RealTimeClock.shared }
    public var isAvailable: Bool { true }
    public var isPeerHeldByCurrentThread: Bool { false }
    /// A transport that is never removed (``isAvailable`` stays true) has no removal to report.
    public func setRemovalHandler(_ handler: (@Sendable () -> Void)?) {}
    /// A transport without power management has nothing to resume and no idleness to judge.
    public func noteDriverActivity() {}
    public func setOutstandingWork(_ check: (@Sendable () -> Bool)?) {}
    public func prepareDriverQueue(_ index: Int) throws(VirtioError) {}
}

/// The memory buffers live in (the shared window), addressed on the wire by device address.
/// Every address and length read from a descriptor is checked against it.
public struct BufferWindow: Sendable {
    public var region: IORegion
    /// The device address of the region's offset 0.
    public var deviceBase: DeviceAddress

    public init(region: IORegion, deviceBase: DeviceAddress) {
        self.region = region
        self.deviceBase = deviceBase
    }

    /// The region offset of `[address, address + length)`, or `nil` when any byte is outside.
    public func offset(of address: DeviceAddress, length: Int) -> Int? {
        guard address >= deviceBase, length >= 0 else { return nil }
        let delta = address.rawValue - deviceBase.rawValue
        guard delta <= UInt64(region.size), UInt64(length) <= UInt64(region.size) - delta else { return nil }
        return Int(delta)
    }

    /// The device address of region offset `offset`.
    public func address(of offset: Int) -> DeviceAddress { DeviceAddress(deviceBase.rawValue + UInt64(offset)) }
}

/// Why a virtqueue operation failed.
public struct VirtioError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// Not enough free descriptors (`ERROR_VRING_FULL`).
        case ringFull(needed: Int, free: Int)
        /// A buffer does not lie in the buffer window.
        case bufferOutsideWindow(address: DeviceAddress, length: Int)
        /// A head returned to the ring is not one the device took (`ERROR_VRING_NO_BUFF`).
        case unknownHead(Int)
        /// The vring geometry is invalid (count not a power of two, memory too small, …).
        case invalidRing(String)
        case io(MetalIOError)
        case invalidArgument(String)
        /// Memory the ring says is there could not be read.
        case unreadable(address: UInt64, length: Int)
        /// An operation of the transport itself (status, features, config space, a kick) failed
        /// in the platform under it; its error is kept.
        case transport(operation: String, underlying: UnderlyingError)
    }
    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }
    public var description: String {
        switch kind {
        case let .ringFull(needed, free): "vring full: \(needed) descriptor(s) needed, \(free) free"
        case let .bufferOutsideWindow(address, length): "buffer at \(address) (\(length) bytes) is outside the shared buffer window"
        case let .unknownHead(head): "descriptor \(head) was not taken from this ring"
        case let .invalidRing(why): "invalid vring: \(why)"
        case let .io(error): error.description
        case let .invalidArgument(why): why
        case let .unreadable(address, length): "\(length) bytes at \(hex(address)) cannot be read"
        case let .transport(operation, underlying): "\(operation): \(underlying)"
        }
    }
}

/// An error from a lower layer, kept inside a `Hashable` error: two are equal when they read the same.
public struct UnderlyingError: Hashable, Sendable, CustomStringConvertible {
    public let error: any Error
    public init(_ error: any Error) { self.error = error }
    public var description: String { "\(error)" }
    public static func == (a: UnderlyingError, b: UnderlyingError) -> Bool { String(reflecting: a.error) == String(reflecting: b.error) }
    public func hash(into hasher: inout Hasher) { hasher.combine(String(reflecting: error)) }
}

/// Counts of malformed data read from shared memory, per virtqueue. Each bad item was dropped.
public struct VirtqueueErrorCounts: Hashable, Sendable {
    /// A head or `next` index at or beyond the ring size.
    public var descriptorIndexOutOfRange = 0
    /// A chain that loops or is longer than the ring.
    public var chainTooLong = 0
    /// A buffer address or length outside the buffer window.
    public var bufferOutsideWindow = 0
    /// A used length larger than the buffer's writable part.
    public var lengthBeyondBuffer = 0
    /// An avail or used index that moved by more than the ring size.
    public var indexJump = 0
    /// A used element naming a descriptor the driver did not hand out.
    public var unknownUsedID = 0
    /// A chain whose readable/writable parts are not where the protocol needs them.
    public var wrongDirection = 0
    /// A descriptor with a flag this implementation does not support (INDIRECT).
    public var unsupportedFlags = 0

    public init() {}
    public var total: Int {
        descriptorIndexOutOfRange + chainTooLong + bufferOutsideWindow + lengthBeyondBuffer + indexJump + unknownUsedID + wrongDirection + unsupportedFlags
    }
}
