import MetalIO
import Virtio

/// A 32-bit address field of the resource table, where all ones means "the host chooses"
/// (`FW_RSC_U32_ADDR_ANY`).
public struct ResourceAddress: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    public static let any = ResourceAddress(0xFFFF_FFFF)
    public var isAny: Bool { self == .any }
    /// The value as a device address, or `nil` when it is ANY.
    public var device: DeviceAddress? { isAny ? nil : DeviceAddress(UInt64(rawValue)) }
    /// The value as a physical address, or `nil` when it is ANY.
    public var physical: PhysicalAddress? { isAny ? nil : PhysicalAddress(UInt64(rawValue)) }
    public var description: String { isAny ? "ANY" : hex(UInt64(rawValue)) }
}

/// `struct fw_rsc_carveout` / `fw_rsc_devmem` (56 bytes): memory the remote needs.
public struct MemoryResource: Hashable, Sendable {
    public var deviceAddress: ResourceAddress
    public var physicalAddress: ResourceAddress
    public var length: UInt32
    public var flags: UInt32
    public var reserved: UInt32
    public var name: String

    public init(deviceAddress: ResourceAddress, physicalAddress: ResourceAddress = .any, length: UInt32,
                flags: UInt32 = 0, reserved: UInt32 = 0, name: String) {
        self.deviceAddress = deviceAddress
        self.physicalAddress = physicalAddress
        self.length = length
        self.flags = flags
        self.reserved = reserved
        self.name = name
    }
}

/// `struct fw_rsc_trace` (48 bytes): a NUL-terminated log ring the host reads as console output.
public struct TraceResource: Hashable, Sendable {
    public var deviceAddress: ResourceAddress
    public var length: UInt32
    public var reserved: UInt32
    public var name: String

    public init(deviceAddress: ResourceAddress, length: UInt32, reserved: UInt32 = 0, name: String) {
        self.deviceAddress = deviceAddress
        self.length = length
        self.reserved = reserved
        self.name = name
    }
}

/// `struct fw_rsc_vdev_vring` (20 bytes), inside a vdev entry.
public struct VringResource: Hashable, Sendable {
    public var deviceAddress: ResourceAddress
    /// Alignment of the used ring.
    public var alignment: UInt32
    /// Number of descriptors (a power of two).
    public var count: UInt32
    public var notifyID: NotifyID
    public var reserved: UInt32

    public init(deviceAddress: ResourceAddress = .any, alignment: UInt32 = 4096, count: UInt32,
                notifyID: NotifyID = .any, reserved: UInt32 = 0) {
        self.deviceAddress = deviceAddress
        self.alignment = alignment
        self.count = count
        self.notifyID = notifyID
        self.reserved = reserved
    }

    /// Bytes the split virtqueue occupies: `align_up(18·num + 6, align) + 8·num + 6`
    /// (OpenAMP's `vring_size`), or `nil` when that overflows.
    public var byteSize: Int? {
        guard count <= 32768, alignment > 0 else { return nil }
        let num = Int(count), align = Int(alignment)
        let head = 16 * num + 2 * num + 6
        let aligned = (head + align - 1) / align * align
        return aligned + 8 * num + 6
    }
}

/// `struct fw_rsc_vdev` (28 + 20·n + config_len bytes): a virtio device and its vrings.
public struct VirtioDeviceResource: Hashable, Sendable {
    /// Virtio device id (7 = RPMsg).
    public var deviceID: UInt32
    public var notifyID: NotifyID
    /// `dfeatures`: what the firmware offers.
    public var deviceFeatures: VirtioFeatures
    /// `gfeatures`: what the host accepted.
    public var driverFeatures: VirtioFeatures
    public var status: VirtioStatus
    public var reserved: UInt16
    public var vrings: [VringResource]
    /// The device-specific config space (`config_len` bytes).
    public var config: [UInt8]

    /// `VIRTIO_ID_RPMSG`.
    public static let rpmsgDeviceID: UInt32 = 7

    public init(deviceID: UInt32 = VirtioDeviceResource.rpmsgDeviceID, notifyID: NotifyID = .any,
                deviceFeatures: VirtioFeatures = [], driverFeatures: VirtioFeatures = [],
                status: VirtioStatus = [], reserved: UInt16 = 0, vrings: [VringResource], config: [UInt8] = []) {
        self.deviceID = deviceID
        self.notifyID = notifyID
        self.deviceFeatures = deviceFeatures
        self.driverFeatures = driverFeatures
        self.status = status
        self.reserved = reserved
        self.vrings = vrings
        self.config = config
    }

    /// Offset of the `status` byte inside the entry.
    public static let statusOffset = 24
    /// Offset of `dfeatures` / `gfeatures` inside the entry.
    public static let deviceFeaturesOffset = 12
    public static let driverFeaturesOffset = 16
    /// Offset of the config space inside an entry with `vringCount` vrings.
    public static func configOffset(vringCount: Int) -> Int { 28 + 20 * vringCount }
    /// Offset of vring `index`'s entry inside the vdev entry.
    public static func vringOffset(_ index: Int) -> Int { 28 + 20 * index }
}

/// A vendor-specific entry (types 128…512): handed to the platform's vendor-resource op.
public struct VendorResource: Hashable, Sendable {
    public var type: UInt32
    /// The bytes after the 8-byte `type`/`len` header. `len` on the wire counts the whole entry.
    public var payload: [UInt8]
    public init(type: UInt32, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }
}

/// One entry of a resource table.
public enum ResourceEntry: Hashable, Sendable {
    case carveout(MemoryResource)
    case devmem(MemoryResource)
    case trace(TraceResource)
    case vdev(VirtioDeviceResource)
    case vendor(VendorResource)
    /// A type with no handler (4…127, above 512): skipped, as OpenAMP and Linux do. Its layout
    /// is unknown, so `payload` is every byte after the type word up to the next entry (or the
    /// table's end) — kept, so a table rebuilt from its entries keeps them.
    case unknown(type: UInt32, payload: [UInt8] = [])

    /// The entry's `type` word.
    public var type: UInt32 {
        switch self {
        case .carveout: 0
        case .devmem: 1
        case .trace: 2
        case .vdev: 3
        case let .vendor(v): v.type
        case let .unknown(type, _): type
        }
    }

    /// A short name for messages: "carveout", "vdev", …
    public var kindName: String {
        switch self {
        case .carveout: "carveout"
        case .devmem: "devmem"
        case .trace: "trace"
        case .vdev: "vdev"
        case .vendor: "vendor"
        case .unknown: "unknown"
        }
    }
}
