import MetalIO

/// A memory the remote processor can reach (`struct remoteproc_mem`): its host physical base,
/// its device base and the I/O region over its bytes.
///
/// The region's offset 0 is the record's first byte: a device address `da` inside the record is
/// at region offset `da − deviceAddress`, a physical address `pa` at `pa − physicalAddress`.
public struct RemoteprocMemory: Sendable, CustomStringConvertible {
    /// At most 32 bytes are significant, as in OpenAMP.
    public var name: String
    public var physicalAddress: PhysicalAddress
    public var deviceAddress: DeviceAddress
    public var region: IORegion
    /// Whether the host may allocate ANY carveouts and vrings (and later RPMsg buffers) here.
    public var isAllocationPool: Bool

    public var size: Int { region.size }

    /// Mirrors `remoteproc_init_mem`.
    public init(name: String, physicalAddress: PhysicalAddress, deviceAddress: DeviceAddress, region: IORegion,
                isAllocationPool: Bool = false) {
        self.name = name
        self.physicalAddress = physicalAddress
        self.deviceAddress = deviceAddress
        self.region = region
        self.isAllocationPool = isAllocationPool
    }

    /// The region offset of `[device, device + size)`, or `nil` when it is not wholly inside.
    public func offset(ofDevice device: DeviceAddress, size: Int = 1) -> Int? {
        guard device >= deviceAddress, size >= 0 else { return nil }
        let delta = device.rawValue - deviceAddress.rawValue
        guard delta <= UInt64(self.size), UInt64(size) <= UInt64(self.size) - delta else { return nil }
        guard delta < UInt64(self.size) || size == 0 else { return nil }
        return Int(delta)
    }

    /// The region offset of `[physical, physical + size)`, or `nil` when it is not wholly inside.
    public func offset(ofPhysical physical: PhysicalAddress, size: Int = 1) -> Int? {
        guard physical >= physicalAddress, size >= 0 else { return nil }
        let delta = physical.rawValue - physicalAddress.rawValue
        guard delta < UInt64(self.size), UInt64(size) <= UInt64(self.size) - delta else { return nil }
        return Int(delta)
    }

    public var description: String {
        "memory '\(name)' da \(deviceAddress) pa \(physicalAddress) size \(hex(UInt64(size)))"
    }
}

/// A resolved mapping: where a range is for the remote, for the host's physical view and in
/// the host's memory (`remoteproc_mmap`'s results).
public struct MemoryMapping: Sendable {
    public var device: DeviceAddress
    public var physical: PhysicalAddress
    public var region: IORegion
    /// The range's first byte inside ``region``.
    public var offset: Int
    public var size: Int
    /// The name of the memory record it lies in.
    public var memoryName: String

    /// The host virtual address of the first byte.
    public var virtual: VirtualAddress? { region.virtualAddress(ofOffset: offset) }
}
