import MetalIO
import Virtio

// Loading (`remoteproc_load`, the ELF loader over an image store) and the resource table:
// finding it in target memory, setting it, adopting the one the host completed, handling its entries.
extension RemoteProcessor {
    /// Loads an ELF image from `store` (`remoteproc_load`): Configured (or Ready, to reload) → Ready.
    ///
    /// The `.resource_table` section is parsed first: notify ids and ANY addresses are allocated
    /// and carveouts mapped. Then every `PT_LOAD` segment is copied to its load address
    /// (p_paddr, a device address) and `memsz − filesz` zero-filled, and the completed table is
    /// written over the loaded one. The entry point becomes the boot address.
    /// - Throws: ``RemoteprocError`` wrapping an ``ImageError``, a ``ResourceTableError``, a
    ///   mapping or allocation failure. Nothing is written outside the registered memories.
    public func load(_ path: String, from store: ImageStore) throws(RemoteprocError) {
        try locked(.load, allowed: [.configured, .ready]) { (life) throws(RemoteprocError) in
            try loadLocked(path, from: store, life: &life, call: .load)
            transition(&life, to: .ready, call: .load)
        }
    }

    /// The body of ``load(_:from:)``, under the life-cycle lock; recovery reuses it.
    func loadLocked(_ path: String, from store: ImageStore, life: inout Lifecycle, call: RemoteprocCall) throws(RemoteprocError) {
        func image<R>(_ body: () throws(ImageError) -> R) throws(RemoteprocError) -> R {
            do throws(ImageError) { return try body() } catch { throw RemoteprocError(.image(error), call: call) }
        }
        let size = try image { () throws(ImageError) in try store.open(path) }
        defer { store.close() }
        let elf = try image { () throws(ImageError) in try ELFImage(store: store, fileSize: size, path: path) }

        // Where every segment goes, checked before anything is written.
        var placements: [(ELFProgramHeader, MemoryMapping)] = []
        for segment in elf.loadableSegments where segment.memorySize > 0 {
            guard let mapping = try? mapping(physical: nil, device: DeviceAddress(segment.physicalAddress),
                                             size: Int(segment.memorySize), attributes: 0, call: call) else {
                throw RemoteprocError(.image(ImageError(.segmentUnmapped(index: segment.index, address: segment.physicalAddress,
                                                                         size: segment.memorySize), path: path)), call: call)
            }
            placements.append((segment, mapping))
        }

        var notifyIDs = allocations.withLock { Allocations.fresh(capacity: notifyIDCapacity, reserving: $0.userIDs) }
        var ranges = DeviceRangeAllocator()
        for (segment, _) in placements { ranges.claim(DeviceAddress(segment.physicalAddress), size: Int(segment.memorySize)) }

        var handled: ResourceTableHandler.Outcome?
        var events: [RemoteprocEvent] = []
        if let bytes = try image({ () throws(ImageError) in try elf.resourceTableBytes(from: store) }), let section = elf.resourceTableSection {
            let table: ResourceTable
            do throws(ResourceTableError) { table = try ResourceTable(bytes: bytes) } catch { throw RemoteprocError(.resourceTable(error), call: call) }
            let location = try mapping(physical: nil, device: DeviceAddress(section.address), size: bytes.count, attributes: 0,
                                       call: call, what: "the resource table")
            handled = try handle(table, location: location, notifyIDs: &notifyIDs, ranges: &ranges, call: call)
            events += handled!.events
        }

        for (segment, target) in placements {
            try image { () throws(ImageError) in
                try store.copy(from: Int(segment.offset), count: Int(segment.fileSize), into: target.region, at: target.offset)
            }
            let padding = Int(segment.memorySize - segment.fileSize)
            do throws(MetalIOError) { try target.region.fill(0, at: target.offset + Int(segment.fileSize), count: padding) } catch {
                throw RemoteprocError(.io(error), call: call)
            }
        }
        if let handled {
            let location = handled.installed.location
            do throws(MetalIOError) { try location.region.write(handled.memoryTable.bytes, at: location.offset) } catch {
                throw RemoteprocError(.io(error), call: call)
            }
        } else {
            events.append(.warning("\(path): no \(ELFImage.resourceTableSection) section; the image has no resources"))
        }

        dropVirtioDevices()
        allocations.withLock { a in
            a.notifyIDs = notifyIDs
            a.ranges = ranges
        }
        life.installed = handled?.installed
        life.image = elf
        life.imageSource = ImageSource(path: path, store: store)
        life.bootAddress = DeviceAddress(elf.entry)
        life.events += events
    }

    /// The `size`-byte resource table at `device` in the remote's memory: where it lies, its
    /// bytes, and the parsed table (for ``setResourceTable(at:size:bootAddress:)`` and ``adoptResourceTable(at:size:)``).
    func tableInMemory(at device: DeviceAddress, size: Int) throws(RemoteprocError) -> (MemoryMapping, [UInt8], ResourceTable) {
        guard size > 0, size <= 1 << 20 else {
            throw RemoteprocError(.invalidArgument("resource table size \(size) is not between 1 and 1 MiB"), call: .setResourceTable)
        }
        let location = try mapping(physical: nil, device: device, size: size, attributes: 0, call: .setResourceTable, what: "the resource table")
        let bytes: [UInt8]
        do throws(MetalIOError) { bytes = try location.region.readBytes(at: location.offset, count: size) } catch {
            throw RemoteprocError(.io(error), call: .setResourceTable)
        }
        do throws(ResourceTableError) { return (location, bytes, try ResourceTable(bytes: bytes)) } catch {
            throw RemoteprocError(.resourceTable(error), call: .setResourceTable)
        }
    }

    /// Installs the resource table of an image already in the remote's memory
    /// (`remoteproc_set_rsc_table`, the "attach" flow): reads `size` bytes at `device`, parses
    /// and handles them like ``load(_:from:)`` and writes the completed table back.
    /// Configured (or Ready) → Ready.
    public func setResourceTable(at device: DeviceAddress, size: Int, bootAddress: DeviceAddress = DeviceAddress(0)) throws(RemoteprocError) {
        try locked(.setResourceTable, allowed: [.configured, .ready]) { (life) throws(RemoteprocError) in
            let (location, bytes, table) = try tableInMemory(at: device, size: size)
            var notifyIDs = allocations.withLock { Allocations.fresh(capacity: notifyIDCapacity, reserving: $0.userIDs) }
            var ranges = DeviceRangeAllocator()
            ranges.claim(device, size: size)
            let handled = try handle(table, location: location, notifyIDs: &notifyIDs, ranges: &ranges, call: .setResourceTable)
            // Write back only the bytes the host filled in: the table is live memory the other
            // side may be writing (status, features), and a complete table needs no write at all.
            for (index, (old, new)) in zip(bytes, handled.memoryTable.bytes).enumerated() where old != new {
                do throws(MetalIOError) { try location.region.write(new, at: location.offset + index) } catch {
                    throw RemoteprocError(.io(error), call: .setResourceTable)
                }
            }
            dropVirtioDevices()
            allocations.withLock { a in
                a.notifyIDs = notifyIDs
                a.ranges = ranges
            }
            life.installed = handled.installed
            life.bootAddress = bootAddress
            life.events += handled.events
            transition(&life, to: .ready, call: .setResourceTable)
        }
    }

    /// For the remote's own processor (the firmware side, as an OpenAMP remote runs its own
    /// `remoteproc` instance): adopts the table the host completed, as it lies in memory at
    /// `device`. Nothing is allocated, mapped through the platform or written — the host owns
    /// the table, and a remote that rewrote ids or addresses would fight it. Read the table after
    /// the host set DRIVER_OK (a Linux host writes vring addresses late). Configured (or Ready) → Ready.
    public func adoptResourceTable(at device: DeviceAddress, size: Int) throws(RemoteprocError) {
        try locked(.setResourceTable, allowed: [.configured, .ready]) { (life) throws(RemoteprocError) in
            let (location, _, table) = try tableInMemory(at: device, size: size)
            var traces: [TraceBuffer] = []
            var carveouts: [(name: String, mapping: MemoryMapping)] = []
            for entry in table.entries {
                switch entry {
                case let .trace(t):
                    if let da = t.deviceAddress.device, let found = memory(containingDevice: da, size: max(Int(t.length), 1)),
                       let mapping = resolve(found.memory, physical: nil, device: da, size: Int(t.length)) {
                        traces.append(TraceBuffer(name: t.name, deviceAddress: da, length: Int(t.length), mapping: mapping))
                    }
                case let .carveout(m):
                    if let da = m.deviceAddress.device, let found = memory(containingDevice: da, size: Int(m.length)),
                       let mapping = resolve(found.memory, physical: nil, device: da, size: Int(m.length)) {
                        carveouts.append((m.name, mapping))
                    }
                default: break
                }
            }
            dropVirtioDevices()
            life.installed = InstalledResourceTable(table: table, location: location, traceBuffers: traces, carveouts: carveouts)
            life.bootAddress = DeviceAddress(0)
            transition(&life, to: .ready, call: .setResourceTable)
        }
    }

    // MARK: Resource table handling

    /// Handles `table` as this processor's host does (``ResourceTableHandler``).
    func handle(_ table: ResourceTable, location: MemoryMapping, notifyIDs: inout NotifyIDAllocator,
                        ranges: inout DeviceRangeAllocator, call: RemoteprocCall) throws(RemoteprocError) -> ResourceTableHandler.Outcome {
        let handler = ResourceTableHandler(
            host: host, notifyIDCapacity: notifyIDCapacity, pools: memories.withLock { $0.filter(\.isAllocationPool) },
            map: { (physical, device, size, attributes, what) throws(RemoteprocError) in
                try self.mapping(physical: physical, device: device, size: size, attributes: attributes, call: call, what: what())
            },
            isMapped: { device, size in self.memory(containingDevice: device, size: max(size, 1)) != nil },
            vendor: { resource, index in try self.ops.handleVendorResource(resource, entryIndex: index) },
            call: call)
        return try handler.handle(table, location: location, notifyIDs: &notifyIDs, ranges: &ranges)
    }
}
