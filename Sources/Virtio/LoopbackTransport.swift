#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Synchronization

/// The vdev fields both ends of a ``LoopbackTransport`` pair share (what a resource table's vdev
/// entry holds): status, offered and accepted features.
public final class LoopbackVirtioDevice: Sendable {
    let status = Atomic<UInt8>(0)
    /// Woken by every status write.
    let statusChanges = ConditionWaiters()
    let deviceFeatureBits: UInt32
    let driverFeatureBits = Atomic<UInt32>(0)
    public init(deviceFeatures: VirtioFeatures) { deviceFeatureBits = deviceFeatures.rawValue }
}

/// One end of an in-process virtio transport pair over shared memory — a driver and a device
/// that need no board: a kick raises the peer's "interrupt". With an interrupt thread (the
/// default) a dedicated thread of the peer runs its notification handlers, as a mailbox
/// interrupt would; without one, kicks are only recorded and ``poll()`` delivers them, which
/// makes tests deterministic. Make both ends with ``makePair(vrings:features:interruptThreads:)``.
public final class LoopbackTransport: VirtioTransport, @unchecked Sendable {
    // Mutable state is in Mutexes and atomics; the rest never changes after init.
    public let role: VirtioRole
    public let deviceID: UInt32
    public let vringLocations: [VringLocation]
    let shared: LoopbackVirtioDevice
    private let handlers = MetalMutex<[Int: @Sendable () -> Void]>([:])
    /// The other end, held weakly: the two ends point at each other, and an end nobody holds any
    /// more is gone (its kicks are lost, as a removed device's would be).
    private struct Peer { weak var transport: LoopbackTransport? }
    private let peer = MetalMutex(Peer())
    /// Numbered by vring index.
    private let interrupts: InterruptLine<Int>
    public let usesInterruptThread: Bool
    public let host: HostPersonality

    init(role: VirtioRole, deviceID: UInt32, vrings: [VringLocation], shared: LoopbackVirtioDevice, interruptThread: Bool,
         host: HostPersonality) throws(ThreadError) {
        self.role = role
        self.host = host
        self.deviceID = deviceID
        self.vringLocations = vrings
        self.shared = shared
        self.usesInterruptThread = interruptThread
        self.interrupts = try InterruptLine(thread: interruptThread)
        interrupts.setHandler { [weak self] vring in self?.handlers.withLock { $0[vring] }?() }
    }

    /// A connected driver (host) and device (remote) over the same vrings.
    /// - Parameter host: the host stack the driver end behaves as (its RPMsg start-up and buffers).
    public static func makePair(vrings: [VringLocation], features: VirtioFeatures, deviceID: UInt32 = 7,
                                interruptThreads: Bool = true, host: HostPersonality = .default) throws(ThreadError) -> (driver: LoopbackTransport, device: LoopbackTransport) {
        let shared = LoopbackVirtioDevice(deviceFeatures: features)
        let driver = try LoopbackTransport(role: .driver, deviceID: deviceID, vrings: vrings, shared: shared, interruptThread: interruptThreads, host: host)
        let device = try LoopbackTransport(role: .device, deviceID: deviceID, vrings: vrings, shared: shared, interruptThread: interruptThreads, host: host)
        driver.peer.withLock { $0.transport = device }
        device.peer.withLock { $0.transport = driver }
        return (driver, device)
    }

    /// Stops the interrupt thread (waits up to 5 s for it) and disconnects from the peer.
    public func shutdown() {
        peer.withLock { $0.transport = nil }
        interrupts.shutdown()
    }

    /// Delivers the notifications raised so far, on the calling thread (for pairs made without
    /// interrupt threads).
    public func poll() { interrupts.poll() }

    /// Kicks this end received.
    public var kicksReceived: Int { interrupts.raiseCount }

    fileprivate func raise(_ vring: Int) { interrupts.raise(vring) }

    public func status() throws(VirtioError) -> VirtioStatus { VirtioStatus(rawValue: shared.status.load(ordering: .acquiring)) }
    public func setStatus(_ status: VirtioStatus) throws(VirtioError) {
        shared.status.store(status.rawValue, ordering: .releasing)
        shared.statusChanges.changed()
    }
    public func acknowledgeReset() throws(VirtioError) {
        shared.status.store(0, ordering: .releasing)
        shared.statusChanges.changed()
    }
    public func waitForDriverOK(timeout: Duration) throws(VirtioError) -> Bool {
        let clock = RealTimeClock.shared
        return try Virtio.waitForDriverOK(clock: clock, until: clock.now + timeout, changes: shared.statusChanges,
                                          status: { () throws(VirtioError) in try status() }, clearReset: { () throws(VirtioError) in try acknowledgeReset() })
    }
    public func deviceFeatures() throws(VirtioError) -> VirtioFeatures { VirtioFeatures(rawValue: shared.deviceFeatureBits) }
    public func driverFeatures() throws(VirtioError) -> VirtioFeatures { VirtioFeatures(rawValue: shared.driverFeatureBits.load(ordering: .acquiring)) }
    public func negotiateFeatures(supported: VirtioFeatures) throws(VirtioError) -> VirtioFeatures {
        let accepted = VirtioFeatures(rawValue: shared.deviceFeatureBits).intersection(supported)
        shared.driverFeatureBits.store(accepted.rawValue, ordering: .releasing)
        return accepted
    }
    public func readConfig(at offset: Int, count: Int) throws(VirtioError) -> [UInt8] {
        guard offset == 0, count == 0 else { throw VirtioError(.invalidArgument("a loopback device has no config space")) }
        return []
    }
    public func writeConfig(_ bytes: [UInt8], at offset: Int) throws(VirtioError) {
        guard bytes.isEmpty else { throw VirtioError(.invalidArgument("a loopback device has no config space")) }
    }
    public func kick(vring index: Int) throws(VirtioError) { peer.withLock { $0.transport }?.raise(index) }
    public func setNotificationHandler(forVring index: Int, _ handler: (@Sendable () -> Void)?) {
        handlers.withLock { $0[index] = handler }
    }
}
