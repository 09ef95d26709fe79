#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Virtio
import Synchronization

/// A trace buffer of the installed resource table, mapped into host memory.
public struct TraceBuffer: Sendable {
    public var name: String
    public var deviceAddress: DeviceAddress
    public var length: Int
    public var mapping: MemoryMapping
}

/// The resource table a processor works with: where it lies in target memory, what it said
/// once the host filled in its ANY fields, and what the host mapped for it.
public struct InstalledResourceTable: Sendable {
    /// The table with allocated notify ids and addresses, as written back.
    public var table: ResourceTable
    /// Where it lies in the remote's memory.
    public var location: MemoryMapping
    public var traceBuffers: [TraceBuffer]
    /// Carveouts by name, with their mappings.
    public var carveouts: [(name: String, mapping: MemoryMapping)]
}

/// An opaque token identifying an observer, for ``RemoteProcessor/removeObserver(_:)``.
public struct ObserverToken: Hashable, Sendable { let id: UInt64 }

/// A remote processor (`struct remoteproc`): its life cycle, memories, resource table, loaded
/// image and virtio devices. It reaches the hardware (or a simulator) only through its
/// ``RemoteprocOps``.
///
/// Safe to call from several threads. Life-cycle calls serialise on one lock per processor (as
/// OpenAMP's `rproc->lock`); lookups, mapping and notification dispatch do not take it, so ops
/// and interrupt threads may use them. Every call that fails leaves the state unchanged.
public final class RemoteProcessor: Sendable {
    /// How many notify ids the processor hands out when none is given (ids 0–31).
    public static let defaultNotifyIDCapacity = 32
    /// Alignment of ANY vrings and carveouts allocated by the host.
    public static let allocationAlignment = 4096

    public let ops: any RemoteprocOps
    public let notifyIDCapacity: Int
    /// The host stack this processor behaves as: its table rules and notify ids, and through its
    /// virtio devices the status writes, kicks and RPMsg start-up (``Virtio/HostPersonality``).
    public let host: HostPersonality

    /// What the life-cycle calls change; guarded by the life-cycle lock, which ops run under.
    private struct Lifecycle: Sendable {
        var state: RemoteprocState = .offline
        var removed = false
        var installed: InstalledResourceTable?
        var image: ELFImage?
        var bootAddress: DeviceAddress?
        var crash: CrashReport?
        /// Where the loaded image came from, for recovery.
        var imageSource: ImageSource?
        var events: [RemoteprocEvent] = []
    }

    /// An image store and path, kept for reloading on recovery.
    private struct ImageSource: @unchecked Sendable {
        // The store is only used under the life-cycle lock.
        var path: String
        var store: ImageStore
    }

    /// Notify ids and device ranges in use; its lock is held only briefly and never across an op.
    private struct Allocations: Sendable {
        var notifyIDs: NotifyIDAllocator
        var ranges = DeviceRangeAllocator()
        /// Ids the user took with ``RemoteProcessor/allocateNotifyID(_:)``: reserved across loads,
        /// stops and recoveries until released or the processor is shut down.
        var userIDs: Set<UInt32> = []

        /// Every table id given back; the user's stay taken.
        mutating func resetNotifyIDs(capacity: Int) {
            notifyIDs = Self.fresh(capacity: capacity, reserving: userIDs)
        }

        static func fresh(capacity: Int, reserving ids: Set<UInt32>) -> NotifyIDAllocator {
            var allocator = NotifyIDAllocator(capacity: capacity)
            for id in ids.sorted() { _ = try? allocator.allocate(NotifyID(id), call: .allocateNotifyID) }
            return allocator
        }
    }

    private let lifecycle = MetalMutex(Lifecycle())
    /// A copy of ``Lifecycle`` taken as each life-cycle call ends, for the read-only accessors:
    /// they never wait for (or deadlock on) the life-cycle lock, even from inside an op.
    private let published = MetalMutex(Lifecycle())
    private let allocations: MetalMutex<Allocations>
    /// The thread holding the life-cycle lock (0: none), to refuse re-entrant calls from ops.
    private let lockOwner = Atomic<UInt>(0)
    private let memories = MetalMutex<[RemoteprocMemory]>([])
    private let virtioDevices = MetalMutex<[VirtioDevice]>([])
    private let observers = MetalMutex<(next: UInt64, handlers: [(UInt64, @Sendable (RemoteprocEvent) -> Void)])>((0, []))
    private let sequence = Atomic<UInt64>(0)
    private let recoversAutomatically = Atomic<Bool>(false)

    /// When set, a reported crash is followed by ``recover()`` on a thread of its own, as Linux
    /// remoteproc does unless recovery is disabled. Off by default.
    public var automaticRecovery: Bool {
        get { recoversAutomatically.load(ordering: .relaxed) }
        set { recoversAutomatically.store(newValue, ordering: .relaxed) }
    }

    /// Creates a processor in Offline and runs the `initialize` op (`remoteproc_init`).
    /// - Parameters:
    ///   - ops: the platform.
    ///   - notifyIDCapacity: notify ids are allocated from `0..<notifyIDCapacity`.
    ///   - host: the host stack to behave as (``Virtio/HostPersonality/default``: Linux).
    /// - Throws: ``RemoteprocError`` when the op fails.
    public init(ops: any RemoteprocOps, notifyIDCapacity: Int = RemoteProcessor.defaultNotifyIDCapacity,
                host: HostPersonality = .default) throws(RemoteprocError) {
        precondition(notifyIDCapacity > 0, "notifyIDCapacity must be positive")
        self.ops = ops
        self.host = host
        self.notifyIDCapacity = notifyIDCapacity
        self.allocations = MetalMutex(Allocations(notifyIDs: NotifyIDAllocator(capacity: notifyIDCapacity)))
        do { try ops.initialize() } catch { throw RemoteprocError(.operationFailed(op: "init"), call: .initialize, underlying: error) }
    }

    // MARK: State and observers

    /// The current state.
    public var state: RemoteprocState { published.withLock { $0.state } }

    /// The last crash reported, until the processor is shut down.
    public var crashReport: CrashReport? { published.withLock { $0.crash } }

    /// The installed resource table, if any.
    public var installedResourceTable: InstalledResourceTable? { published.withLock { $0.installed } }

    /// The headers of the image loaded last, if any.
    public var loadedImage: ELFImage? { published.withLock { $0.image } }

    /// Where the remote starts (the image's entry point).
    public var bootAddress: DeviceAddress? { published.withLock { $0.bootAddress } }

    /// Calls `handler` for every later event (state changes, warnings), on the thread that
    /// caused it, after the processor's lock is released — a handler may call the processor.
    @discardableResult
    public func addObserver(_ handler: @escaping @Sendable (RemoteprocEvent) -> Void) -> ObserverToken {
        observers.withLock { list in
            list.next += 1
            list.handlers.append((list.next, handler))
            return ObserverToken(id: list.next)
        }
    }

    /// Stops calling the observer `token` names.
    public func removeObserver(_ token: ObserverToken) {
        observers.withLock { list in list.handlers.removeAll { $0.0 == token.id } }
    }

    private func deliver(_ events: [RemoteprocEvent]) {
        guard !events.isEmpty else { return }
        let handlers = observers.withLock { $0.handlers.map(\.1) }
        for event in events { for handler in handlers { handler(event) } }
    }

    private func transition(_ life: inout Lifecycle, to state: RemoteprocState, call: RemoteprocCall, reason: String? = nil) {
        guard life.state != state else { return }
        let change = StateChange(from: life.state, to: state, call: call, reason: reason,
                                 sequence: sequence.add(1, ordering: .relaxed).newValue)
        life.state = state
        life.events.append(.stateChanged(change))
    }

    /// Runs `body` under the life-cycle lock, refusing re-entrant calls and calls in states
    /// outside `allowed`, then delivers the events it queued.
    private func locked<R>(_ call: RemoteprocCall, allowed: Set<RemoteprocState>? = nil,
                           _ body: (inout Lifecycle) throws(RemoteprocError) -> R) throws(RemoteprocError) -> R {
        let me = UInt(bitPattern: Int(bitPattern: UInt(pthread_self())))
        guard lockOwner.load(ordering: .relaxed) != me else { throw RemoteprocError(.reentrantCall, call: call) }
        let (result, events): (Result<R, RemoteprocError>, [RemoteprocEvent]) = lifecycle.withLock { life in
            lockOwner.store(me, ordering: .relaxed)
            defer { lockOwner.store(0, ordering: .relaxed) }
            let outcome: Result<R, RemoteprocError>
            if life.removed {
                outcome = .failure(RemoteprocError(.removed, call: call))
            } else if let allowed, !allowed.contains(life.state) {
                outcome = .failure(RemoteprocError(.wrongState(life.state), call: call))
            } else {
                do throws(RemoteprocError) { outcome = .success(try body(&life)) } catch { outcome = .failure(error) }
            }
            let events = life.events
            life.events = []
            let snapshot = life
            published.withLock { $0 = snapshot }
            return (outcome, events)
        }
        deliver(events)
        return try result.get()
    }

    private func op(_ name: String, _ call: RemoteprocCall, _ body: () throws -> Void) throws(RemoteprocError) {
        do { try body() } catch { throw RemoteprocError(.operationFailed(op: name), call: call, underlying: error) }
    }

    // MARK: Life cycle

    /// Releases the processor (`remoteproc_remove`): runs the `remove` op; afterwards every call
    /// fails with ``RemoteprocError/Kind/removed``. Only in Offline.
    public func remove() throws(RemoteprocError) {
        try locked(.remove, allowed: [.offline]) { (life) throws(RemoteprocError) in
            try op("remove", .remove) { try ops.remove() }
            life.removed = true
        }
        dropVirtioDevices()
    }

    /// Powers and prepares the remote (`remoteproc_config`): Offline → Configured.
    public func configure(data: (any Sendable)? = nil) throws(RemoteprocError) {
        try locked(.configure, allowed: [.offline]) { (life) throws(RemoteprocError) in
            try op("configure", .configure) { try ops.configure(data: data) }
            transition(&life, to: .configured, call: .configure)
        }
    }

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
    private func loadLocked(_ path: String, from store: ImageStore, life: inout Lifecycle, call: RemoteprocCall) throws(RemoteprocError) {
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
    private func tableInMemory(at device: DeviceAddress, size: Int) throws(RemoteprocError) -> (MemoryMapping, [UInt8], ResourceTable) {
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

    /// Starts the remote at the boot address (`remoteproc_start`): Ready → Running.
    public func start() throws(RemoteprocError) {
        try locked(.start, allowed: [.ready]) { (life) throws(RemoteprocError) in
            let boot = life.bootAddress ?? DeviceAddress(0)
            try op("start", .start) { try ops.start(bootAddress: boot) }
            life.crash = nil
            transition(&life, to: .running, call: .start)
        }
    }

    /// Halts the remote, which stays powered (`remoteproc_stop`): Ready, Running, Crashed or
    /// Suspended → Stopped. Notify ids are released, so a reload gets the same ones.
    public func stop() throws(RemoteprocError) {
        try locked(.stop, allowed: [.ready, .running, .crashed, .suspended]) { (life) throws(RemoteprocError) in
            removeDrivers(&life)
            try op("stop", .stop) { try ops.stop() }
            allocations.withLock { $0.resetNotifyIDs(capacity: notifyIDCapacity) }
            for device in virtioDevices.withLock({ $0 }) { device.invalidate() }
            transition(&life, to: .stopped, call: .stop)
        }
    }

    /// Powers the remote off (`remoteproc_shutdown`): from any state but Offline → Offline,
    /// passing through Stopped (the `stop` op runs first unless the remote is Stopped or only
    /// Configured). If the `stop` op succeeds and the `shutdown` op fails, the processor is left
    /// Stopped. Virtio devices, the table and the image are released.
    public func shutdown() throws(RemoteprocError) {
        try locked(.shutdown, allowed: [.configured, .ready, .running, .crashed, .suspended, .stopped]) { (life) throws(RemoteprocError) in
            if life.state != .stopped && life.state != .configured {
                removeDrivers(&life)
                try op("stop", .shutdown) { try ops.stop() }
                allocations.withLock { $0.resetNotifyIDs(capacity: notifyIDCapacity) }
                transition(&life, to: .stopped, call: .shutdown)
            }
            try op("shutdown", .shutdown) { try ops.shutdown() }
            allocations.withLock { $0 = Allocations(notifyIDs: NotifyIDAllocator(capacity: notifyIDCapacity)) }
            life.installed = nil
            life.image = nil
            life.imageSource = nil
            life.bootAddress = nil
            life.crash = nil
            dropVirtioDevices()
            transition(&life, to: .offline, call: .shutdown)
        }
    }

    /// Recovers a crashed remote as Linux remoteproc does: stop it, reload the same image from the
    /// same store (resource table handled again, so vrings and notify ids are fresh), start it:
    /// Crashed → Stopped → Running. The old virtio devices become unavailable; the host-role ones
    /// are rebuilt over the reloaded table (``virtioDeviceList``) for the host to put RPMsg on
    /// again — the remote re-announces its services. The crash report stays readable.
    public func recover() throws(RemoteprocError) {
        try locked(.recover, allowed: [.crashed]) { (life) throws(RemoteprocError) in
            guard let source = life.imageSource else {
                throw RemoteprocError(.invalidArgument("no image to reload: the processor was not loaded from an image store"), call: .recover)
            }
            removeDrivers(&life)
            try op("stop", .recover) { try ops.stop() }
            allocations.withLock { a in
                a.resetNotifyIDs(capacity: notifyIDCapacity)
                a.ranges = DeviceRangeAllocator()
            }
            let rebuild = virtioDevices.withLock { $0.filter { $0.role == .driver }.map(\.index) }
            dropVirtioDevices()
            transition(&life, to: .stopped, call: .recover)
            try loadLocked(source.path, from: source.store, life: &life, call: .recover)
            let boot = life.bootAddress ?? DeviceAddress(0)
            try op("start", .recover) { try ops.start(bootAddress: boot) }
            // The host's virtio devices come back over the reloaded table, as Linux re-probes them.
            for index in rebuild { _ = try? createVirtioLocked(index: index, role: .driver, life: life) }
            transition(&life, to: .running, call: .recover)
        }
    }

    /// Runs ``recover()`` on a new thread (the reporter may be the platform's core thread, which
    /// the stop op waits for). A failure is reported to observers as a warning.
    private func recoverInBackground() {
        do {
            try PlatformThread(name: "rproc-recover") {
                do throws(RemoteprocError) { try self.recover() } catch {
                    self.deliver([.warning("automatic recovery failed: \(error)")])
                }
            }.detach()
        } catch {
            deliver([.warning("automatic recovery failed: \(error)")])
        }
    }

    /// Reports that the running remote crashed (called by the platform): Running or Suspended → Crashed.
    public func reportCrash(_ report: CrashReport) throws(RemoteprocError) {
        try reportCrash(report, ifCurrent: { true })
    }

    /// As ``reportCrash(_:)``, for a platform that reports from its own thread: `isCurrent` is
    /// asked under the life-cycle lock whether the run that crashed is still the processor's (the
    /// host may have stopped and restarted it while the report waited for the lock); when it is
    /// not, nothing changes.
    public func reportCrash(_ report: CrashReport, ifCurrent isCurrent: () -> Bool) throws(RemoteprocError) {
        var reported = false
        defer { if reported && automaticRecovery { recoverInBackground() } }
        try locked(.reportCrash, allowed: [.running, .suspended]) { life in
            guard isCurrent() else { return }
            reported = true
            life.crash = report
            // Users of the vdevs (a sender waiting for a buffer) fail now instead of waiting for
            // a remote that is gone; recovery builds new devices.
            for device in virtioDevices.withLock({ $0 }) { device.invalidate() }
            transition(&life, to: .crashed, call: .reportCrash, reason: report.description)
        }
    }

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
        if let hit = memories.withLock({ list in list.lazy.compactMap { m in m.offset(ofPhysical: address, size: size).map { (m, $0) } }.first }) {
            return hit
        }
        guard let extra = ops.memory(physical: address, device: nil, size: size), let offset = extra.offset(ofPhysical: address, size: size) else { return nil }
        return (extra, offset)
    }

    /// The memory holding device address `address` (`remoteproc_get_io_with_da`), and the
    /// address's offset in its region. Asks the `memory` op when no record matches.
    public func memory(containingDevice address: DeviceAddress, size: Int = 1) -> (memory: RemoteprocMemory, offset: Int)? {
        if let hit = memories.withLock({ list in list.lazy.compactMap { m in m.offset(ofDevice: address, size: size).map { (m, $0) } }.first }) {
            return hit
        }
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

    private func resolve(_ memory: RemoteprocMemory, physical: PhysicalAddress?, device: DeviceAddress?, size: Int) -> MemoryMapping? {
        let offset: Int?
        if let physical { offset = memory.offset(ofPhysical: physical, size: max(size, 1)) } else if let device {
            offset = memory.offset(ofDevice: device, size: max(size, 1))
        } else { offset = nil }
        guard let offset else { return nil }
        return MemoryMapping(device: DeviceAddress(memory.deviceAddress.rawValue + UInt64(offset)),
                             physical: PhysicalAddress(memory.physicalAddress.rawValue + UInt64(offset)),
                             region: memory.region, offset: offset, size: size, memoryName: memory.name)
    }

    private func mapping(physical: PhysicalAddress?, device: DeviceAddress?, size: Int, attributes: UInt32,
                         call: RemoteprocCall, what: String = "the range") throws(RemoteprocError) -> MemoryMapping {
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
        throw RemoteprocError(.noMapping(what: what, device: device, physical: physical, size: size), call: call)
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

    // MARK: Resource table handling

    /// Handles `table` as this processor's host does (``ResourceTableHandler``).
    private func handle(_ table: ResourceTable, location: MemoryMapping, notifyIDs: inout NotifyIDAllocator,
                        ranges: inout DeviceRangeAllocator, call: RemoteprocCall) throws(RemoteprocError) -> ResourceTableHandler.Outcome {
        let handler = ResourceTableHandler(
            host: host, notifyIDCapacity: notifyIDCapacity, pools: memories.withLock { $0.filter(\.isAllocationPool) },
            map: { (physical, device, size, attributes, what) throws(RemoteprocError) in
                try self.mapping(physical: physical, device: device, size: size, attributes: attributes, call: call, what: what)
            },
            isMapped: { device, size in self.memory(containingDevice: device, size: max(size, 1)) != nil },
            vendor: { resource, index in try self.ops.handleVendorResource(resource, entryIndex: index) },
            call: call)
        return try handler.handle(table, location: location, notifyIDs: &notifyIDs, ranges: &ranges)
    }

    // MARK: Virtio

    /// Builds the virtio device of vdev entry `index` (an index among the table's vdev entries,
    /// not a virtio id) from the installed table (`remoteproc_create_virtio`). Creating the same
    /// index twice returns the same device. In the device role it first waits, without holding
    /// the life-cycle lock, up to `driverTimeout` for the host to set DRIVER_OK.
    /// Allowed in Ready and Running.
    public func createVirtio(index: Int, role: VirtioRole, driverTimeout: Duration = .seconds(5)) throws(RemoteprocError) -> VirtioDevice {
        let device: VirtioDevice = try locked(.createVirtio, allowed: [.ready, .running]) { (life) throws(RemoteprocError) in
            try createVirtioLocked(index: index, role: role, life: life)
        }
        if role == .device {
            do throws(RemoteprocError) {
                guard try device.waitForDriverOK(timeout: driverTimeout) else {
                    let status = (try? device.status()).map { hex(UInt64($0.rawValue)) } ?? "unreadable"
                    throw RemoteprocError(.timedOut(what: "vdev status DRIVER_OK (it is \(status))", seconds: driverTimeout.inSeconds), call: .createVirtio)
                }
            } catch {
                removeVirtio(device)
                throw error
            }
        }
        return device
    }

    /// The body of ``createVirtio(index:role:driverTimeout:)`` under the life-cycle lock.
    private func createVirtioLocked(index: Int, role: VirtioRole, life: Lifecycle) throws(RemoteprocError) -> VirtioDevice {
            guard let installed = life.installed else { throw RemoteprocError(.noResourceTable, call: .createVirtio) }
            let vdevs = installed.table.virtioDevices
            guard vdevs.indices.contains(index) else {
                throw RemoteprocError(.noSuchVirtioDevice(index: index, count: vdevs.count), call: .createVirtio)
            }
            if let existing = virtioDevices.withLock({ $0.first { $0.index == index } }) { return existing }
            let (entryIndex, resource) = vdevs[index]
            var vrings: [VringPlacement] = []
            for (k, vring) in resource.vrings.enumerated() {
                guard let da = vring.deviceAddress.device, let size = vring.byteSize else {
                    throw RemoteprocError(.invalidArgument("vring \(k) of vdev \(index) has no address"), call: .createVirtio)
                }
                let mapping = try mapping(physical: nil, device: da, size: size, attributes: 0, call: .createVirtio, what: "vdev \(index) vring \(k)")
                vrings.append(VringPlacement(index: k, notifyID: vring.notifyID, deviceAddress: da, alignment: Int(vring.alignment),
                                             count: Int(vring.count), mapping: mapping))
            }
            var entry = installed.location
            entry.offset += installed.table.entryOffsets[entryIndex]
            entry.device = DeviceAddress(entry.device.rawValue + UInt64(installed.table.entryOffsets[entryIndex]))
            entry.physical = PhysicalAddress(entry.physical.rawValue + UInt64(installed.table.entryOffsets[entryIndex]))
            entry.size = VirtioDeviceResource.configOffset(vringCount: resource.vrings.count) + resource.config.count
            let device = VirtioDevice(index: index, entryIndex: entryIndex, role: role, resource: resource, vrings: vrings, entry: entry,
                                      host: host, ops: ops, report: { [weak self] event in self?.deliver([event]) })
            virtioDevices.withLock { $0.append(device) }
            return device
    }

    /// Unlinks a virtio device (`remoteproc_remove_virtio`); its notifications stop.
    public func removeVirtio(_ device: VirtioDevice) {
        virtioDevices.withLock { $0.removeAll { $0 === device } }
        device.invalidate()
    }

    /// Before the core is stopped: the host's drivers let go of their devices, writing what this
    /// host writes then (``VirtioDevice/driverRemoved()``).
    private func removeDrivers(_ life: inout Lifecycle) {
        for device in virtioDevices.withLock({ $0 }) where device.role == .driver {
            life.events += device.driverRemoved().map { .vdevWrite($0) }
        }
    }

    /// Unlinks every virtio device and marks it unavailable, so blocked users fail at once.
    private func dropVirtioDevices() {
        let devices = virtioDevices.withLock { list in
            defer { list.removeAll() }
            return list
        }
        for device in devices { device.invalidate() }
    }

    /// The virtio devices created and not removed.
    public var virtioDeviceList: [VirtioDevice] { virtioDevices.withLock { $0 } }

    /// Routes an incoming notification to the virtqueues it names (`remoteproc_get_notification`):
    /// every vring whose notify id is `id`, or every vring for ANY. Safe from an interrupt thread.
    /// Returns how many vring handlers ran.
    @discardableResult
    public func handleNotification(_ id: NotifyID) -> Int {
        let devices = virtioDevices.withLock { $0 }
        return devices.reduce(0) { $0 + $1.dispatch(id) }
    }
}
