import MetalIO
import Virtio

// Virtio devices from the table's vdev entries (`remoteproc_create_virtio`) and notification routing.
extension RemoteProcessor {
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
    func createVirtioLocked(index: Int, role: VirtioRole, life: Lifecycle) throws(RemoteprocError) -> VirtioDevice {
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
        var beforeKick: (@Sendable () -> Void)?
        if role == .driver {
            let autosuspend = autosuspendWake
            beforeKick = { @Sendable [weak self] in
                guard autosuspend.armed.load(ordering: .sequentiallyConsistent) else { return }
                self?.hostWillKick()
            }
        }
        let device = VirtioDevice(index: index, entryIndex: entryIndex, role: role, resource: resource, vrings: vrings, entry: entry,
                                  host: host, ops: ops, report: { [weak self] event in self?.deliver([event]) },
                                  beforeKick: beforeKick)
        virtioDevices.withLock { $0.append(device) }
        return device
    }

    /// Unlinks a virtio device (`remoteproc_remove_virtio`); its notifications stop.
    public func removeVirtio(_ device: VirtioDevice) {
        virtioDevices.withLock { $0.removeAll { $0 === device } }
        invalidate([device])
        announceRemovals()
    }

    /// Before the core is stopped: the host's drivers let go of their devices, writing what this
    /// host writes then (``VirtioDevice/driverRemoved()``).
    func removeDrivers(_ life: inout Lifecycle) {
        for device in virtioDevices.withLock({ $0 }) where device.role == .driver {
            life.events += device.driverRemoved().map { .vdevWrite($0) }
        }
    }

    /// Unlinks every virtio device and marks it unavailable, so blocked users fail at once.
    func dropVirtioDevices() {
        let devices = virtioDevices.withLock { list in
            defer { list.removeAll() }
            return list
        }
        invalidate(devices)
    }

    /// Marks `devices` gone at once (blocked users fail now); their removal handlers wait for
    /// ``announceRemovals()``.
    func invalidate(_ devices: [VirtioDevice]) {
        guard !devices.isEmpty else { return }
        for device in devices { device.invalidate() }
        pendingRemovals.withLock { $0 += devices }
    }

    /// Runs the removal handlers of the devices marked gone; never under the life-cycle lock.
    func announceRemovals() {
        let devices = pendingRemovals.withLock { list in
            defer { list.removeAll() }
            return list
        }
        for device in devices { device.announceRemoval() }
    }

    /// The virtio devices created and not removed.
    public var virtioDeviceList: [VirtioDevice] { virtioDevices.withLock { $0 } }

    /// Routes an incoming notification to the virtqueues it names (`remoteproc_get_notification`):
    /// every vring whose notify id is `id`, or every vring for ANY. Safe from an interrupt thread.
    /// Returns how many vring handlers ran.
    @discardableResult
    public func handleNotification(_ id: NotifyID) -> Int {
        remoteKicked()
        let devices = virtioDevices.withLock { $0 }
        return devices.reduce(0) { $0 + $1.dispatch(id) }
    }
}
