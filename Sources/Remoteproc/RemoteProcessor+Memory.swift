import MetalIO
import Virtio

// The memories the remote can reach, address translation, mapping and allocation; notify ids.
extension RemoteProcessor {
    // MARK: Memory

    /// Registers a memory the remote can reach (`remoteproc_add_mem`). Lookups search memories in
    /// the order they were added.
    public func addMemory(_ memory: RemoteprocMemory) {
        memories.withLock { $0.append(memory) }
    }

    /// Every registered memory, in lookup order.
    public var registeredMemories: [RemoteprocMemory] { memories.withLock { $0 } }

    /// The memory called `name` (`remoteproc_get_io_with_name`). Names compare over 32 bytes.
    public func memory(named name: String) -> RemoteprocMemory? {
        let key = Array(name.utf8)
        guard key.count <= 32 else { return nil }
        return memories.withLock { $0.first { Array($0.name.utf8.prefix(32)) == key } }
    }

    /// The memory holding physical address `address` (`remoteproc_get_io_with_pa`), and the
    /// address's offset in its region. Asks the `memory` op when no record matches.
    public func memory(containingPhysical address: PhysicalAddress, size: Int = 1) -> (memory: RemoteprocMemory, offset: Int)? {
        let hit = memories.withLock { list -> (memory: RemoteprocMemory, offset: Int)? in
            for m in list { if let offset = m.offset(ofPhysical: address, size: size) { return (m, offset) } }
            return nil
        }
        if let hit { return hit }
        guard let extra = ops.memory(physical: address, device: nil, size: size), let offset = extra.offset(ofPhysical: address, size: size) else { return nil }
        return (extra, offset)
    }

    /// The memory holding device address `address` (`remoteproc_get_io_with_da`), and the
    /// address's offset in its region. Asks the `memory` op when no record matches.
    public func memory(containingDevice address: DeviceAddress, size: Int = 1) -> (memory: RemoteprocMemory, offset: Int)? {
        let hit = memories.withLock { list -> (memory: RemoteprocMemory, offset: Int)? in
            for m in list { if let offset = m.offset(ofDevice: address, size: size) { return (m, offset) } }
            return nil
        }
        if let hit { return hit }
        guard let extra = ops.memory(physical: nil, device: address, size: size), let offset = extra.offset(ofDevice: address, size: size) else { return nil }
        return (extra, offset)
    }

    /// The memory whose region holds host virtual address `address` (`remoteproc_get_io_with_va`).
    public func memory(containingVirtual address: VirtualAddress) -> (memory: RemoteprocMemory, offset: Int)? {
        memories.withLock { list in list.lazy.compactMap { m in m.region.offset(ofVirtual: address).map { (m, $0) } }.first }
    }

    /// Resolves a range for both sides (`remoteproc_mmap`): looks it up by physical address if
    /// given, else by device address; when no memory covers it, asks the `map` op, registers the
    /// memory the op returns, and resolves again.
    /// - Throws: ``RemoteprocError/Kind/noMapping(what:device:physical:size:)`` when nothing covers it.
    public func map(physical: PhysicalAddress?, device: DeviceAddress?, size: Int, attributes: UInt32 = 0) throws(RemoteprocError) -> MemoryMapping {
        try mapping(physical: physical, device: device, size: size, attributes: attributes, call: .mmap)
    }

    func resolve(_ memory: RemoteprocMemory, physical: PhysicalAddress?, device: DeviceAddress?, size: Int) -> MemoryMapping? {
        let offset: Int?
        if let physical { offset = memory.offset(ofPhysical: physical, size: max(size, 1)) } else if let device {
            offset = memory.offset(ofDevice: device, size: max(size, 1))
        } else { offset = nil }
        guard let offset else { return nil }
        return MemoryMapping(device: DeviceAddress(memory.deviceAddress.rawValue + UInt64(offset)),
                             physical: PhysicalAddress(memory.physicalAddress.rawValue + UInt64(offset)),
                             region: memory.region, offset: offset, size: size, memoryName: memory.name)
    }

    func mapping(physical: PhysicalAddress?, device: DeviceAddress?, size: Int, attributes: UInt32,
                         call: RemoteprocCall, what: @autoclosure () -> String = "the range") throws(RemoteprocError) -> MemoryMapping {
        guard size > 0, physical != nil || device != nil else {
            throw RemoteprocError(.invalidArgument("a mapping needs a positive size and an address"), call: call)
        }
        let lookup: RemoteprocMemory?
        if let physical { lookup = memory(containingPhysical: physical, size: size)?.memory } else { lookup = memory(containingDevice: device!, size: size)?.memory }
        if let lookup, let result = resolve(lookup, physical: physical, device: device, size: size) { return result }
        let provided: RemoteprocMemory?
        do { provided = try ops.map(physical: physical, device: device, size: size, attributes: attributes) } catch {
            throw RemoteprocError(.operationFailed(op: "mmap"), call: call, underlying: error)
        }
        if let provided, let result = resolve(provided, physical: physical ?? (device == nil ? nil : provided.physicalAddress.advanced(by: device!.rawValue &- provided.deviceAddress.rawValue)),
                                              device: device, size: size) {
            addMemory(provided)
            return result
        }
        throw RemoteprocError(.noMapping(what: what(), device: device, physical: physical, size: size), call: call)
    }

    /// Allocates `size` bytes of device memory in the memories marked as allocation pools,
    /// avoiding everything the loaded image and its table use (for RPMsg buffer pools and the like).
    public func allocateDeviceMemory(size: Int, alignment: Int = RemoteProcessor.allocationAlignment, purpose: String) throws(RemoteprocError) -> MemoryMapping {
        let pools = memories.withLock { $0.filter(\.isAllocationPool) }
        let address = allocations.withLock { $0.ranges.allocate(size: size, alignment: alignment, in: pools) }
        guard let address else { throw RemoteprocError(.allocationFailed(what: purpose, size: size), call: .mmap) }
        return try mapping(physical: nil, device: address, size: size, attributes: 0, call: .mmap, what: purpose)
    }

    // MARK: Notify ids

    /// Takes a notify id (`remoteproc_allocate_id`): exactly `id`, or the lowest free id for ANY.
    /// - Throws: when `id` is taken or out of range, or no id is left (never a duplicate).
    /// The id stays taken across loads, stops and recoveries (a table asking for it fails to
    /// load) until ``releaseNotifyID(_:)`` or ``shutdown()``.
    public func allocateNotifyID(_ id: NotifyID = .any) throws(RemoteprocError) -> NotifyID {
        try allocations.withLock { (a) throws(RemoteprocError) in
            let taken = try a.notifyIDs.allocate(id, call: .allocateNotifyID)
            a.userIDs.insert(taken.rawValue)
            return taken
        }
    }

    /// Gives back a notify id taken with ``allocateNotifyID(_:)``.
    public func releaseNotifyID(_ id: NotifyID) {
        allocations.withLock { a in
            a.notifyIDs.release(id)
            a.userIDs.remove(id.rawValue)
        }
    }
}
