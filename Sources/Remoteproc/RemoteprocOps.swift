import MetalIO
import Virtio

/// What the platform answers for a vendor-specific resource-table entry.
public enum VendorResourceDisposition: Sendable, Hashable {
    /// The platform handled the entry (OpenAMP's 0).
    case handled
    /// The platform does not know the entry; it is skipped (OpenAMP's `RSC_TAB_NS`, −11).
    case skipped
}

/// The platform side of a remote processor: what a hardware driver provides
/// (`struct remoteproc_ops`). The core reaches the platform only through this protocol.
///
/// Ops are called with the processor's life-cycle lock held (except ``notify(_:)``, which is
/// called by whoever kicks). An op must not call a locking API of the same processor (configure,
/// load, start, stop, shutdown, remove, create virtio, set resource table): the core detects it
/// and fails the inner call with ``RemoteprocError/Kind/reentrantCall`` rather than deadlocking.
/// Memory lookups (``RemoteProcessor/memory(named:)`` and friends) are safe from an op.
public protocol RemoteprocOps: AnyObject, Sendable {
    /// Called once by ``RemoteProcessor/init(ops:notifyIDCapacity:)`` (OpenAMP's `init` op).
    func initialize() throws
    /// Called by ``RemoteProcessor/remove()`` in Offline (`remove`).
    func remove() throws
    /// Maps memory no registered region covers (`mmap`). Either address may be absent (the
    /// platform chooses it). Return a memory record covering the request — the core registers
    /// it — or `nil` when the platform cannot map it.
    func map(physical: PhysicalAddress?, device: DeviceAddress?, size: Int, attributes: UInt32) throws -> RemoteprocMemory?
    /// Handles a vendor entry (types 128–512) of the resource table (`handle_rsc`). Throwing
    /// aborts the table's handling.
    func handleVendorResource(_ resource: VendorResource, entryIndex: Int) throws -> VendorResourceDisposition
    /// Powers and prepares the remote (`config`). `data` is what the caller passed to configure.
    func configure(data: (any Sendable)?) throws
    /// Starts the remote at `bootAddress` (`start`).
    func start(bootAddress: DeviceAddress) throws
    /// Halts the remote; it stays powered (`stop`).
    func stop() throws
    /// Powers the remote off and releases what configure and start took (`shutdown`).
    func shutdown() throws
    /// Suspends the running remote (Linux's runtime/system PM suspend of a remoteproc): for
    /// ``SuspendKind/forced`` it gates the core's clock at once; for ``SuspendKind/auto`` and
    /// ``SuspendKind/system`` it asks the remote and waits up to `timeout` for its answer. When it
    /// returns, the core executes nothing until ``resume()``.
    /// - Throws: ``SuspendRefusal`` when the platform cannot suspend, the remote cancelled or did
    ///   not answer (the core keeps running); any other error is an op failure.
    func suspend(_ kind: SuspendKind, timeout: Duration) throws
    /// Lets a suspended remote run on, at the instruction where it stopped.
    func resume() throws
    /// Interrupts the remote with notify id `id` (`notify`): a vring kick or a vdev status change.
    func notify(_ id: NotifyID) throws
    /// Looks up memory the processor has no record of (`get_mem`).
    func memory(physical: PhysicalAddress?, device: DeviceAddress?, size: Int) -> RemoteprocMemory?
    /// The platform's time: the processor's waits (a device's wait for DRIVER_OK) go through it.
    var clock: any WaitClock { get }
    /// Woken whenever the host writes into a vdev entry, on a platform that can tell (a remote
    /// waiting for DRIVER_OK then wakes at once); `nil`: the remote looks at the status every 100 µs.
    var hostWrites: ConditionWaiters? { get }
    /// Whether the calling thread is the remote's own, running a notification handler of the host
    /// inline (a simulated board that handles kicks on the core's thread): waiting for the remote
    /// from there would wait for itself. Default `false`.
    var isRemoteHeldByCurrentThread: Bool { get }
}

extension RemoteprocOps {
    public func initialize() throws {}
    public func remove() throws {}
    public func map(physical: PhysicalAddress?, device: DeviceAddress?, size: Int, attributes: UInt32) throws -> RemoteprocMemory? { nil }
    public func handleVendorResource(_ resource: VendorResource, entryIndex: Int) throws -> VendorResourceDisposition { .skipped }
    public func configure(data: (any Sendable)?) throws {}
    public func shutdown() throws {}
    public func suspend(_ kind: SuspendKind, timeout: Duration) throws { throw SuspendRefusal.unsupported("this platform cannot suspend its remote") }
    public func resume() throws { throw SuspendRefusal.unsupported("this platform cannot resume its remote") }
    public func memory(physical: PhysicalAddress?, device: DeviceAddress?, size: Int) -> RemoteprocMemory? { nil }
    public var clock: any WaitClock { RealTimeClock.shared }
    public var hostWrites: ConditionWaiters? { nil }
    public var isRemoteHeldByCurrentThread: Bool { false }
}

/// How the host suspends a running remote.
public enum SuspendKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The host gates the core's clock without asking; the firmware does not take part.
    case forced
    /// Runtime PM (OMAP's `RP_MBOX_SUSPEND_AUTO`): the host asks, the firmware may cancel.
    case auto
    /// System suspend (`RP_MBOX_SUSPEND_SYSTEM`): the host asks, the firmware may cancel.
    case system
    public var description: String { rawValue }
    /// Whether the firmware is asked first.
    public var isCooperative: Bool { self != .forced }
}

/// Why a platform's ``RemoteprocOps/suspend(_:timeout:)`` (or ``RemoteprocOps/resume()``) did
/// not do it; the core turns it into a ``RemoteprocError`` and leaves the state unchanged.
public enum SuspendRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// The platform cannot suspend (or resume) its remote; says why.
    case unsupported(String)
    /// The remote answered the request with CANCEL.
    case cancelled
    /// The remote did not answer within the time given.
    case noAnswer(within: Duration)
    public var description: String {
        switch self {
        case let .unsupported(why): why
        case .cancelled: "the remote cancelled the request"
        case let .noAnswer(timeout): "the remote did not answer within \(timeout)"
        }
    }
}
