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
    struct Lifecycle: Sendable {
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
    struct ImageSource: @unchecked Sendable {
        // The store is only used under the life-cycle lock.
        var path: String
        var store: ImageStore
    }

    /// Notify ids and device ranges in use; its lock is held only briefly and never across an op.
    struct Allocations: Sendable {
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

    let lifecycle = MetalMutex(Lifecycle())
    /// A copy of ``Lifecycle`` taken as each life-cycle call ends, for the read-only accessors:
    /// they never wait for (or deadlock on) the life-cycle lock, even from inside an op.
    let published = MetalMutex(Lifecycle())
    let allocations: MetalMutex<Allocations>
    /// The thread holding the life-cycle lock (0: none), to refuse re-entrant calls from ops.
    let lockOwner = Atomic<UInt>(0)
    let memories = MetalMutex<[RemoteprocMemory]>([])
    let virtioDevices = MetalMutex<[VirtioDevice]>([])
    /// Devices marked gone whose removal handlers have not run yet: they run once the life-cycle
    /// lock is released (``announceRemovals()``), so the drivers on top may call the processor.
    let pendingRemovals = MetalMutex<[VirtioDevice]>([])
    let observers = MetalMutex<(next: UInt64, handlers: [(UInt64, @Sendable (RemoteprocEvent) -> Void)])>((0, []))
    let sequence = Atomic<UInt64>(0)
    let recoversAutomatically = Atomic<Bool>(false)
    /// Suspension counters and the autosuspend setting (``RemoteProcessor/powerStatistics``).
    let power = MetalMutex(PowerManagement())
    let autosuspendWake = AutosuspendWake()
    /// Kicks either way while autosuspend is armed (it has been set once): what "idle" is measured by.
    let trafficCount = Atomic<UInt64>(0)
    /// The platform clock's time of the last kick either way (nanoseconds since its origin), while armed.
    let lastTrafficAt = Atomic<Int64>(0)

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

    /// A processor nobody holds can no longer drive its devices: they go away, and the drivers on
    /// them (RPMsg) let go of what they hold.
    deinit {
        autosuspendWake.processorGone.store(true, ordering: .releasing)
        autosuspendWake.signal.signal()
        dropVirtioDevices()
        announceRemovals()
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

    func deliver(_ events: [RemoteprocEvent]) {
        guard !events.isEmpty else { return }
        let handlers = observers.withLock { $0.handlers.map(\.1) }
        for event in events { for handler in handlers { handler(event) } }
    }

    func transition(_ life: inout Lifecycle, to state: RemoteprocState, call: RemoteprocCall, reason: String? = nil) {
        guard life.state != state else { return }
        if life.state == .suspended && call != .resume { suspensionEnded(resumed: false) }
        let change = StateChange(from: life.state, to: state, call: call, reason: reason,
                                 sequence: sequence.add(1, ordering: .relaxed).newValue)
        life.state = state
        life.events.append(.stateChanged(change))
    }

    /// Runs `body` under the life-cycle lock, refusing re-entrant calls and calls in states
    /// outside `allowed`, then delivers the events it queued.
    func locked<R>(_ call: RemoteprocCall, allowed: Set<RemoteprocState>? = nil,
                           _ body: (inout Lifecycle) throws(RemoteprocError) -> R) throws(RemoteprocError) -> R {
        let me = Self.currentThreadID
        guard lockOwner.load(ordering: .relaxed) != me else { throw RemoteprocError(.reentrantCall, call: call) }
        // Held across the platform's waits (a stop waits for the core's thread): under a virtual
        // clock the core may need this lock while the holder waits for its turn.
        let (result, events): (Result<R, RemoteprocError>, [RemoteprocEvent]) = lifecycle.withLock(through: ops.clock) { life in
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
            // The autosuspend monitor looks at the published state: wake it once that has changed.
            if autosuspendWake.armed.load(ordering: .relaxed), events.contains(where: { if case .stateChanged = $0 { true } else { false } }) {
                autosuspendWake.signal.signal()
            }
            return (outcome, events)
        }
        announceRemovals()
        deliver(events)
        return try result.get()
    }

    /// The calling thread as ``lockOwner`` records the thread inside a life-cycle call.
    static var currentThreadID: UInt { UInt(bitPattern: Int(bitPattern: UInt(pthread_self()))) }

    func op(_ name: String, _ call: RemoteprocCall, _ body: () throws -> Void) throws(RemoteprocError) {
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
        announceRemovals()
    }

    /// Powers and prepares the remote (`remoteproc_config`): Offline → Configured.
    public func configure(data: (any Sendable)? = nil) throws(RemoteprocError) {
        try locked(.configure, allowed: [.offline]) { (life) throws(RemoteprocError) in
            try op("configure", .configure) { try ops.configure(data: data) }
            transition(&life, to: .configured, call: .configure)
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
            invalidate(virtioDevices.withLock { $0 })
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
    func recoverInBackground() {
        do {
            try ops.clock.startThread(name: "rproc-recover") {
                do throws(RemoteprocError) { try self.recover() } catch {
                    self.deliver([.warning("automatic recovery failed: \(error)")])
                }
            }.detach()
        } catch {
            deliver([.warning("automatic recovery failed: \(error)")])
        }
    }

    /// Reports that the running remote crashed (called by the platform): Running → Crashed. A
    /// suspended remote's clock is stopped: it cannot crash, and a report then is refused.
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
        try locked(.reportCrash, allowed: [.running]) { life in
            guard isCurrent() else { return }
            reported = true
            life.crash = report
            // Users of the vdevs (a sender waiting for a buffer) fail now instead of waiting for
            // a remote that is gone; recovery builds new devices.
            invalidate(virtioDevices.withLock { $0 })
            transition(&life, to: .crashed, call: .reportCrash, reason: report.description)
        }
    }

}
