#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Virtio
import Synchronization

/// One vring of a virtio device, as placed by the resource table.
public struct VringPlacement: Sendable {
    public var index: Int
    public var notifyID: NotifyID
    public var deviceAddress: DeviceAddress
    public var alignment: Int
    /// Number of descriptors.
    public var count: Int
    /// Where the vring's bytes are: region and offset of its first byte.
    public var mapping: MemoryMapping
}

/// A virtio device built from a vdev entry of the installed resource table
/// (`remoteproc_create_virtio`): status, features and config space are read and written in the
/// entry itself, in target memory, as OpenAMP's `remoteproc_virtio` dispatch does; kicks go to
/// the platform's `notify` op; incoming notifications reach the handlers set per vring.
public final class VirtioDevice: Sendable {
    /// The vdev's position among the table's vdev entries.
    public let index: Int
    /// The entry's index in the table.
    public let entryIndex: Int
    public let role: VirtioRole
    /// The virtio device id (7 = RPMsg).
    public let deviceID: UInt32
    /// The vdev's own notify id (status changes are signalled with it).
    public let notifyID: NotifyID
    public let vrings: [VringPlacement]
    /// `config_len`.
    public let configLength: Int
    /// Where the vdev entry lies in target memory.
    public let entry: MemoryMapping
    /// The host stack this device's driver side behaves as (the processor's personality).
    public let host: HostPersonality
    private let ops: any RemoteprocOps
    /// Tells the processor's observers about every write into the vdev entry.
    private let report: @Sendable (RemoteprocEvent) -> Void
    /// Runs before each vring kick of the host's driver (autosuspend resumes the remote there).
    private let beforeKick: (@Sendable () -> Void)?
    private let handlers = MetalMutex<[Int: @Sendable () -> Void]>([:])
    private let available = Atomic<Bool>(true)
    /// The removal handler (in a struct: a `Mutex` whose value is a closure re-wraps it in thunks)
    /// and whether the removal was announced.
    private struct Removal { var handler: (@Sendable () -> Void)?; var announced = false }
    private let removal = MetalMutex(Removal())
    /// The host driver's check for requests the remote has not completed (in a struct, as above).
    private struct OutstandingWork { var check: (@Sendable () -> Bool)? }
    private let outstandingWork = MetalMutex(OutstandingWork())

    /// This device as a `Virtio` transport (what RPMsg runs over).
    public var transport: VirtioDeviceTransport { VirtioDeviceTransport(self) }

    /// `false` once the remote crashed, stopped, shut down, or the device was removed.
    public var isAvailable: Bool { available.load(ordering: .acquiring) }
    /// Marks the device gone; the processor calls ``announceRemoval()`` once its lock is released.
    func invalidate() { available.store(false, ordering: .releasing) }

    /// Runs the removal handler of a device marked gone (once; later calls do nothing).
    func announceRemoval() {
        guard !isAvailable else { return }
        let handler = removal.withLock { r -> (@Sendable () -> Void)? in
            guard !r.announced else { return nil }
            r.announced = true
            defer { r.handler = nil }
            return r.handler
        }
        handler?()
    }

    /// The host driver published a request without a kick (``Virtio/VirtioTransport/noteDriverActivity()``):
    /// traffic for autosuspend, and a remote suspended for idleness is resumed.
    public func noteDriverActivity() { beforeKick?() }

    /// Sets how the host driver tells whether the remote has requests to complete
    /// (``Virtio/VirtioTransport/setOutstandingWork(_:)``).
    public func setOutstandingWork(_ check: (@Sendable () -> Bool)?) { outstandingWork.withLock { $0.check = check } }

    /// Whether the host driver has requests the remote has not completed: the remote is not idle.
    public var hasOutstandingWork: Bool { outstandingWork.withLock { $0.check }?() ?? false }

    /// Sets what runs when the device goes away (``Virtio/VirtioTransport/setRemovalHandler(_:)``):
    /// after the remoteproc call that stopped, crashed or removed it released the life-cycle lock,
    /// on that call's thread; at once when the removal was already announced.
    public func setRemovalHandler(_ handler: (@Sendable () -> Void)?) {
        let runNow = removal.withLock { r -> Bool in
            r.handler = r.announced ? nil : handler
            return r.announced
        }
        if runNow { handler?() }
    }

    init(index: Int, entryIndex: Int, role: VirtioRole, resource: VirtioDeviceResource, vrings: [VringPlacement],
         entry: MemoryMapping, host: HostPersonality, ops: any RemoteprocOps, report: @escaping @Sendable (RemoteprocEvent) -> Void,
         beforeKick: (@Sendable () -> Void)? = nil) {
        self.index = index
        self.beforeKick = beforeKick
        self.host = host
        self.report = report
        self.entryIndex = entryIndex
        self.role = role
        self.deviceID = resource.deviceID
        self.notifyID = resource.notifyID
        self.vrings = vrings
        self.configLength = resource.config.count
        self.entry = entry
        self.ops = ops
    }

    private func field(_ offset: Int) -> Int { entry.offset + offset }

    /// The vrings as the `Virtio` module's queues need them.
    public var vringLocations: [VringLocation] {
        vrings.map { VringLocation(index: $0.index, notifyID: $0.notifyID, deviceAddress: $0.deviceAddress,
                                   region: $0.mapping.region, offset: $0.mapping.offset, count: $0.count, alignment: $0.alignment) }
    }

    private func checkDriver(_ what: String) throws(RemoteprocError) {
        guard role == .driver else {
            throw RemoteprocError(.invalidArgument("only the driver (host) role may \(what)"), call: .createVirtio)
        }
    }

    private func io<R>(_ body: () throws(MetalIOError) -> R) throws(RemoteprocError) -> R {
        do throws(MetalIOError) { return try body() } catch { throw RemoteprocError(.io(error), call: .createVirtio) }
    }

    /// After a write into the vdev entry: tells the observers, and kicks the vdev's own notify id
    /// if this host does (OpenAMP does after status and feature writes; Linux never does).
    private func wrote(_ kind: VdevWrite.Kind, notify: Bool) throws(RemoteprocError) {
        report(.vdevWrite(VdevWrite(vdev: index, kind: kind)))
        guard notify, host.notifiesOnVdevWrites else { return }
        do { try ops.notify(notifyID) } catch { throw RemoteprocError(.operationFailed(op: "notify"), call: .notification, underlying: error) }
    }

    /// Each vring's `avail->idx` as it is in memory (0 where it cannot be read).
    private var availableIndices: [UInt16] {
        vrings.map { vring in
            guard let layout = try? VringLayout(count: vring.count, alignment: vring.alignment) else { return 0 }
            return (try? vring.mapping.region.read(UInt16.self, at: vring.mapping.offset + layout.availIndex)) ?? 0
        }
    }

    /// The status byte (`get_status`).
    public func status() throws(RemoteprocError) -> VirtioStatus {
        try io { () throws(MetalIOError) in VirtioStatus(rawValue: try entry.region.read(UInt8.self, at: field(VirtioDeviceResource.statusOffset))) }
    }

    /// Writes the status byte (`set_status`, driver role); an OpenAMP host then kicks the vdev's id.
    public func setStatus(_ status: VirtioStatus) throws(RemoteprocError) {
        try checkDriver("set the status")
        try io { () throws(MetalIOError) in try entry.region.write(status.rawValue, at: field(VirtioDeviceResource.statusOffset)) }
        try wrote(.status(status, availableIndices: availableIndices), notify: true)
    }

    /// Acknowledges a reset request from the driver by writing 0 (device role).
    public func acknowledgeReset() throws(RemoteprocError) {
        try io { () throws(MetalIOError) in try entry.region.write(UInt8(0), at: field(VirtioDeviceResource.statusOffset)) }
    }

    /// Asks the remote to reset: status = NEEDS_RESET (`reset_device`, driver role; an OpenAMP
    /// host then kicks the vdev's id). Neither host's RPMsg driver does it on its own.
    public func reset() throws(RemoteprocError) { try setStatus(.needsReset) }

    /// What the firmware offers (`dfeatures`).
    public func deviceFeatures() throws(RemoteprocError) -> VirtioFeatures {
        try io { () throws(MetalIOError) in VirtioFeatures(rawValue: try entry.region.read(UInt32.self, at: field(VirtioDeviceResource.deviceFeaturesOffset))) }
    }

    /// What the host accepted (`gfeatures`).
    public func driverFeatures() throws(RemoteprocError) -> VirtioFeatures {
        try io { () throws(MetalIOError) in VirtioFeatures(rawValue: try entry.region.read(UInt32.self, at: field(VirtioDeviceResource.driverFeaturesOffset))) }
    }

    /// The features both sides use: dfeatures ∩ gfeatures (`get_features`).
    public func negotiatedFeatures() throws(RemoteprocError) -> VirtioFeatures {
        try deviceFeatures().intersection(try driverFeatures())
    }

    /// Accepts the offered features the host supports: gfeatures = dfeatures ∩ `supported`
    /// (`negotiate_features` / `finalize_features`, driver role); an OpenAMP host then kicks the
    /// vdev's id. Returns the accepted set.
    @discardableResult
    public func negotiateFeatures(supported: VirtioFeatures) throws(RemoteprocError) -> VirtioFeatures {
        try checkDriver("negotiate features")
        let accepted = try deviceFeatures().intersection(supported)
        try io { () throws(MetalIOError) in try entry.region.write(accepted.rawValue, at: field(VirtioDeviceResource.driverFeaturesOffset)) }
        if host == .openamp, accepted.contains(.ringEventIndex) {
            report(.warning("vdev \(index): the OpenAMP host accepts VIRTIO_RING_F_EVENT_IDX (its gfeatures echo every offered feature) "
                            + "but its own queues never use event indices: a remote that relies on them misses notifications"))
        }
        try wrote(.features(accepted), notify: true)
        return accepted
    }

    /// Driver role, as the queue of vring `index` is set up: a Linux host writes the vring's
    /// device address into the table now (`rp_find_vq`), after the remote was started — an
    /// allocated (ANY) vring's address reaches the remote only here. An OpenAMP host never writes it.
    public func prepareDriverQueue(_ index: Int) throws(RemoteprocError) {
        try checkDriver("set up a queue")
        guard vrings.indices.contains(index) else {
            throw RemoteprocError(.invalidArgument("no vring \(index) (the vdev has \(vrings.count))"), call: .createVirtio)
        }
        guard host == .linux else { return }
        let address = vrings[index].deviceAddress
        try io { () throws(MetalIOError) in
            try entry.region.write(UInt32(truncatingIfNeeded: address.rawValue), at: field(VirtioDeviceResource.vringOffset(index)))
        }
        try wrote(.vringAddress(vring: index, address), notify: false)
    }

    /// Driver role, as the host removes its driver (stop, shutdown, crash recovery): a Linux host
    /// resets the device (status 0, `rpmsg_remove`) and then acknowledges it again (0x01,
    /// `virtio_dev_remove`) before it stops the core; an OpenAMP host writes nothing. Returns the
    /// writes made (the processor reports them once its lock is released).
    func driverRemoved() -> [VdevWrite] {
        guard role == .driver, host == .linux else { return [] }
        var writes: [VdevWrite] = []
        for status in [VirtioStatus(), .acknowledge] {
            guard (try? entry.region.write(status.rawValue, at: field(VirtioDeviceResource.statusOffset))) != nil else { break }
            writes.append(VdevWrite(vdev: index, kind: .status(status, availableIndices: availableIndices)))
        }
        return writes
    }

    private func configRange(_ offset: Int, _ count: Int) throws(RemoteprocError) -> Int {
        guard offset >= 0, count >= 0, offset <= configLength, count <= configLength - offset else {
            throw RemoteprocError(.invalidArgument("config access [\(offset), +\(count)) is outside the \(configLength)-byte config space"), call: .createVirtio)
        }
        return field(VirtioDeviceResource.configOffset(vringCount: vrings.count) + offset)
    }

    /// Reads `count` bytes of the config space from `offset` (`read_config`), bounded by `config_len`.
    public func readConfig(at offset: Int, count: Int) throws(RemoteprocError) -> [UInt8] {
        let start = try configRange(offset, count)
        return try io { () throws(MetalIOError) in try entry.region.readBytes(at: start, count: count) }
    }

    /// Writes the config space at `offset` (`write_config`, driver role); an OpenAMP host then
    /// kicks the vdev's id (`rproc_virtio_write_config`), a Linux host does not (`rproc_virtio_set`).
    public func writeConfig(_ bytes: [UInt8], at offset: Int) throws(RemoteprocError) {
        try checkDriver("write the config space")
        let start = try configRange(offset, bytes.count)
        try io { () throws(MetalIOError) in try entry.region.write(bytes, at: start) }
        try wrote(.config(offset: offset, count: bytes.count), notify: true)
    }

    /// The platform's clock (``RemoteprocOps/clock``).
    public var clock: any WaitClock { ops.clock }

    /// The device role's wait for DRIVER_OK (acknowledging NEEDS_RESET), woken by the host's vdev
    /// writes where the platform tells them (``RemoteprocOps/hostWrites``). False when `timeout` passed first.
    public func waitForDriverOK(timeout: Duration) throws(RemoteprocError) -> Bool {
        let clock = ops.clock
        return try Virtio.waitForDriverOK(clock: clock, until: clock.now + timeout, changes: ops.hostWrites,
                                          status: { () throws(RemoteprocError) in try status() },
                                          clearReset: { () throws(RemoteprocError) in try acknowledgeReset() })
    }

    /// Kicks vring `index`: calls the `notify` op with that vring's notify id.
    /// Whether the calling thread runs a notification from the remote inline, on the remote's
    /// own thread (``RemoteprocOps/isRemoteHeldByCurrentThread``).
    public var isRemoteHeldByCurrentThread: Bool { ops.isRemoteHeldByCurrentThread }

    public func kick(vring index: Int) throws(RemoteprocError) {
        guard vrings.indices.contains(index) else {
            throw RemoteprocError(.invalidArgument("no vring \(index) (the vdev has \(vrings.count))"), call: .notification)
        }
        beforeKick?()
        do { try ops.notify(vrings[index].notifyID) } catch { throw RemoteprocError(.operationFailed(op: "notify"), call: .notification, underlying: error) }
    }

    /// Sets what runs when vring `index`'s notify id arrives (`nil` removes it).
    public func setNotificationHandler(forVring index: Int, _ handler: (@Sendable () -> Void)?) {
        handlers.withLock { $0[index] = handler }
    }

    /// Runs the handlers of the vrings `id` addresses (every vring for ANY). The vdev's own id
    /// reaches no vring unless a vring has it too (a table made for a Linux host may give the vdev
    /// vring 0's id; Linux routes by vring ids alone). Returns how many ran.
    func dispatch(_ id: NotifyID) -> Int {
        let targets = handlers.withLock { table in
            vrings.filter { id.isAny || $0.notifyID == id }.compactMap { table[$0.index] }
        }
        for handler in targets { handler() }
        return targets.count
    }
}

