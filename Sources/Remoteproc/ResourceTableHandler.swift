import MetalIO
import Virtio

/// Handles a parsed resource table the way the processor's host does (OpenAMP's
/// `rsc_table_parser.c`, Linux's `rproc_handle_resources`): the host's table rules, notify ids,
/// carveouts, trace buffers and vrings. It decides; the processor keeps the state.
struct ResourceTableHandler {
    let host: HostPersonality
    let notifyIDCapacity: Int
    /// The memories ANY ranges are allocated from.
    let pools: [RemoteprocMemory]
    /// Resolves a range (`remoteproc_mmap`): physical first if given, else device.
    /// `what` names the range in an error only, so it is built only then.
    let map: (_ physical: PhysicalAddress?, _ device: DeviceAddress?, _ size: Int, _ attributes: UInt32, _ what: @autoclosure () -> String) throws(RemoteprocError) -> MemoryMapping
    /// Whether a registered memory already holds the range (no op is asked).
    let isMapped: (_ device: DeviceAddress, _ size: Int) -> Bool
    /// The platform's vendor-resource op.
    let vendor: (_ resource: VendorResource, _ entryIndex: Int) throws -> VendorResourceDisposition
    let call: RemoteprocCall

    struct Outcome {
        /// The table as the host completed it (its own view: every notify id and address).
        var installed: InstalledResourceTable
        /// What goes into the remote's memory before start. A Linux host writes an allocated
        /// vring's address only as its virtio driver sets the queue up, so here it is still ANY.
        var memoryTable: ResourceTable
        var events: [RemoteprocEvent]
    }

    func handle(_ original: ResourceTable, location: MemoryMapping, notifyIDs: inout NotifyIDAllocator,
                ranges: inout DeviceRangeAllocator) throws(RemoteprocError) -> Outcome {
        if let violation = host.violations(in: original, notifyIDCapacity: notifyIDCapacity).first {
            throw RemoteprocError(.refusedByHost(violation), call: call)
        }
        var table = original
        var memoryTable = original
        var events: [RemoteprocEvent] = []
        func warn(_ text: String) { events.append(.warning(text)) }
        func update(_ index: Int, _ entry: ResourceEntry, inMemory memoryEntry: ResourceEntry? = nil) throws(RemoteprocError) {
            do throws(ResourceTableError) {
                try table.update(entry: index, to: entry)
                try memoryTable.update(entry: index, to: memoryEntry ?? entry)
            } catch { throw RemoteprocError(.resourceTable(error), call: call) }
        }

        // Fixed ranges first, so ANY allocations avoid them wherever they appear.
        for entry in original.entries {
            switch entry {
            case let .carveout(m): if let da = m.deviceAddress.device { ranges.claim(da, size: Int(m.length)) }
            case let .trace(t): if let da = t.deviceAddress.device, isMapped(da, Int(t.length)) { ranges.claim(da, size: Int(t.length)) }
            case let .vdev(v):
                for vring in v.vrings { if let da = vring.deviceAddress.device { ranges.claim(da, size: vring.byteSize ?? 0) } }
            default: break
            }
        }
        // Every notify id before any mapping, as both hosts do; written with the addresses below.
        let withIDs = try allocateNotifyIDs(original, notifyIDs: &notifyIDs, warn: warn)

        var traces: [TraceBuffer] = []
        var carveouts: [(name: String, mapping: MemoryMapping)] = []
        for (index, entry) in table.entries.enumerated() {
            switch entry {
            case var .carveout(m):
                let name = m.name
                func what() -> String { "carveout '\(name)'" }
                let mapping = try mapCarveout(m, what: what(), ranges: &ranges)
                carveouts.append((m.name, mapping))
                // Linux writes pa, da and len back (rproc_alloc_registered_carveouts); OpenAMP nothing.
                if host == .linux {
                    m.deviceAddress = try fits32(mapping.device.rawValue, "\(what()) device address")
                    m.physicalAddress = try fits32(mapping.physical.rawValue, "\(what()) physical address")
                    try update(index, .carveout(m))
                }
            case let .devmem(m):
                warn("resource table entry \(index): devmem '\(m.name)' skipped (an OpenAMP host skips devmem entries)")
            case let .trace(t):
                guard let da = t.deviceAddress.device, t.length > 0 else {
                    warn("resource table entry \(index): trace '\(t.name)' with \(t.length == 0 ? "length 0" : "an ANY address") cannot be read")
                    continue
                }
                do throws(RemoteprocError) {
                    let mapping = try map(nil, da, Int(t.length), 0, "trace buffer '\(t.name)'")
                    traces.append(TraceBuffer(name: t.name, deviceAddress: da, length: Int(t.length), mapping: mapping))
                } catch {
                    // Neither host checks a trace entry's address when loading; its text just cannot be read.
                    warn("resource table entry \(index): trace '\(t.name)' at \(da) (\(t.length) bytes) is outside every memory and cannot be read")
                }
            case let .vdev(parsed):
                var v = withIDs[index] ?? parsed
                var inMemory = v
                for k in v.vrings.indices {
                    let size = v.vrings[k].byteSize ?? 0
                    func what() -> String { "vdev \(index) vring \(k)" }
                    let da: DeviceAddress
                    if let fixed = v.vrings[k].deviceAddress.device {
                        da = fixed
                    } else {
                        guard let allocated = ranges.allocate(size: size, alignment: RemoteProcessor.allocationAlignment, in: pools) else {
                            throw RemoteprocError(.allocationFailed(what: what(), size: size), call: call)
                        }
                        da = allocated
                    }
                    let mapping = try map(nil, da, size, 0, what())
                    v.vrings[k].deviceAddress = try fits32(mapping.device.rawValue, "\(what()) address")
                    // A Linux host publishes the address when its driver sets the queue up (rp_find_vq).
                    if host != .linux { inMemory.vrings[k].deviceAddress = v.vrings[k].deviceAddress }
                }
                try update(index, .vdev(v), inMemory: .vdev(inMemory))
            case let .vendor(resource):
                let disposition: VendorResourceDisposition
                do { disposition = try vendor(resource, index) } catch {
                    throw RemoteprocError(.operationFailed(op: "handle vendor resource"), call: call, underlying: error)
                }
                if disposition == .skipped { warn("resource table entry \(index): vendor type \(resource.type) skipped by the platform") }
            case let .unknown(type, _):
                warn("resource table entry \(index): unknown type \(type) skipped")
            }
        }
        return Outcome(installed: InstalledResourceTable(table: table, location: location, traceBuffers: traces, carveouts: carveouts),
                       memoryTable: memoryTable, events: events)
    }

    /// Notify ids as the host takes them. Linux: each vring of each vdev, in table order, gets
    /// the lowest free id (`rproc_alloc_vring`: predefined ids are overwritten, the vdev's own id
    /// is never touched). OpenAMP: the vdev's id and then each vring's, in table order, fixed ids
    /// honoured and ANY ones the lowest free (`handle_vdev_rsc`).
    /// Returns, for each entry, the vdev with its ids filled in (`nil` for other entries).
    private func allocateNotifyIDs(_ table: ResourceTable, notifyIDs: inout NotifyIDAllocator,
                                   warn: (String) -> Void) throws(RemoteprocError) -> [VirtioDeviceResource?] {
        var result = [VirtioDeviceResource?](repeating: nil, count: table.entries.count)
        for (index, entry) in table.entries.enumerated() {
            guard case var .vdev(v) = entry else { continue }
            switch host {
            case .linux:
                for k in v.vrings.indices {
                    let predefined = v.vrings[k].notifyID
                    v.vrings[k].notifyID = try notifyIDs.allocate(.any, call: call)
                    if !predefined.isAny && predefined != v.vrings[k].notifyID {
                        warn("resource table entry \(index): vring \(k)'s notify id \(predefined.rawValue) replaced by \(v.vrings[k].notifyID.rawValue) "
                             + "(a Linux host allocates vring notify ids itself and ignores predefined ones)")
                    }
                }
                if !v.notifyID.isAny, let k = v.vrings.firstIndex(where: { $0.notifyID == v.notifyID }) {
                    warn("resource table entry \(index): the vdev's own notify id \(v.notifyID.rawValue) is also vring \(k)'s "
                         + "(a Linux host never uses the vdev's id; it is left as it is)")
                }
            case .openamp:
                v.notifyID = try notifyIDs.allocate(v.notifyID, call: call)
                for k in v.vrings.indices { v.vrings[k].notifyID = try notifyIDs.allocate(v.vrings[k].notifyID, call: call) }
            }
            result[index] = v
        }
        return result
    }

    /// Maps a carveout. Linux ignores the table's pa and allocates where da is ANY; OpenAMP asks
    /// `remoteproc_mmap` by pa when given, else by da (an ANY da is refused by its rules).
    private func mapCarveout(_ m: MemoryResource, what: @autoclosure () -> String, ranges: inout DeviceRangeAllocator) throws(RemoteprocError) -> MemoryMapping {
        let size = Int(m.length)
        if host == .openamp, let pa = m.physicalAddress.physical {
            return try map(pa, nil, size, m.flags, what())
        }
        if let da = m.deviceAddress.device { return try map(nil, da, size, m.flags, what()) }
        guard let da = ranges.allocate(size: size, alignment: RemoteProcessor.allocationAlignment, in: pools) else {
            throw RemoteprocError(.allocationFailed(what: what(), size: size), call: call)
        }
        return try map(nil, da, size, m.flags, what())
    }

    private func fits32(_ value: UInt64, _ what: @autoclosure () -> String) throws(RemoteprocError) -> ResourceAddress {
        guard value < 0xFFFF_FFFF else {
            throw RemoteprocError(.invalidArgument("\(what()) at \(hex(value)) does not fit the table's 32-bit field"), call: call)
        }
        return ResourceAddress(UInt32(value))
    }
}
