/// What a split virtqueue holds at one moment, read from shared memory for inspection (a
/// debugger's `monitor vrings`, the dump after a failed scenario step). Nothing here is trusted:
/// indices and ids are reported as read, and ``inFlightHeads`` is empty when the indices cannot
/// both be right.
public struct VringSnapshot: Hashable, Sendable {
    /// One descriptor (`struct vring_desc`).
    public struct Descriptor: Hashable, Sendable {
        public var address: UInt64
        public var length: UInt32
        public var flags: UInt16
        public var next: UInt16
        /// Whether the device writes this buffer (`VRING_DESC_F_WRITE`).
        public var isDeviceWritable: Bool { flags & VringLayout.write != 0 }
        public var isChained: Bool { flags & VringLayout.next != 0 }
    }
    /// One used-ring element (`struct vring_used_elem`).
    public struct UsedElement: Hashable, Sendable {
        public var id: UInt32
        public var length: UInt32
    }

    public let layout: VringLayout
    /// Where the ring starts (a device address).
    public let address: UInt64
    public let descriptors: [Descriptor]
    public let availFlags: UInt16
    public let availIndex: UInt16
    public let availRing: [UInt16]
    /// `used_event`, after the available ring (meaningful with `VIRTIO_F_EVENT_IDX`).
    public let usedEvent: UInt16
    public let usedFlags: UInt16
    public let usedIndex: UInt16
    public let usedRing: [UsedElement]
    /// `avail_event`, after the used ring.
    public let availEvent: UInt16

    /// Reads the ring at device address `address` through `read` (device address, byte count →
    /// bytes, or `nil` when not readable).
    public init(layout: VringLayout, at address: UInt64, read: (UInt64, Int) -> [UInt8]?) throws(VirtioError) {
        guard let bytes = read(address, layout.byteSize), bytes.count == layout.byteSize else {
            throw VirtioError(.unreadable(address: address, length: layout.byteSize))
        }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
        func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
        self.layout = layout
        self.address = address
        descriptors = (0..<layout.count).map { i in
            let at = layout.descriptor(i)
            return Descriptor(address: u64(at), length: u32(at + 8), flags: u16(at + 12), next: u16(at + 14))
        }
        availFlags = u16(layout.availFlags)
        availIndex = u16(layout.availIndex)
        availRing = (0..<layout.count).map { u16(layout.availRing($0)) }
        usedEvent = u16(layout.usedEvent)
        usedFlags = u16(layout.usedFlags)
        usedIndex = u16(layout.usedIndex)
        usedRing = (0..<layout.count).map { UsedElement(id: u32(layout.usedRing($0)), length: u32(layout.usedRing($0) + 4)) }
        availEvent = u16(layout.availEvent)
    }

    /// How many buffers the driver made available that the device has not returned
    /// (`avail.idx − used.idx`), or `nil` when that exceeds the ring size (the indices are inconsistent).
    public var inFlightCount: Int? {
        let distance = Int(availIndex &- usedIndex)
        return distance <= layout.count ? distance : nil
    }

    /// The available-ring positions and heads of the buffers in flight, oldest first (in-order
    /// devices, as RPMsg's are, use them in this order).
    public var inFlightHeads: [(position: UInt16, head: UInt16)] {
        guard let count = inFlightCount else { return [] }
        return (0..<count).map { k in
            let position = usedIndex &+ UInt16(k)
            return (position, availRing[Int(position) & (layout.count - 1)])
        }
    }

    /// The last `limit` used elements, oldest first, with their used-ring positions.
    public func recentlyUsed(_ limit: Int) -> [(position: UInt16, element: UsedElement)] {
        let count = min(max(0, limit), layout.count, Int(usedIndex))
        return (0..<count).reversed().map { back in
            let position = usedIndex &- 1 &- UInt16(back)
            return (position, usedRing[Int(position) & (layout.count - 1)])
        }
    }

    /// The chain starting at descriptor `head` (following `next` while chained), at most the
    /// ring size long; empty when `head` is out of range.
    public func chain(from head: Int) -> [(index: Int, descriptor: Descriptor)] {
        var result: [(Int, Descriptor)] = []
        var index = head
        while descriptors.indices.contains(index) && result.count < layout.count {
            let descriptor = descriptors[index]
            result.append((index, descriptor))
            guard descriptor.isChained else { break }
            index = Int(descriptor.next)
        }
        return result
    }
}
