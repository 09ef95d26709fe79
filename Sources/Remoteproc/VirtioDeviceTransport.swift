import MetalIO
import Virtio

/// A ``VirtioDevice`` as `Virtio`'s users (RPMsg) see a device: the same calls, with the core's
/// ``RemoteprocError`` kept inside a ``Virtio/VirtioError`` (`.transport`), so RPMsg's errors stay
/// typed from end to end. Get one from ``VirtioDevice/transport``.
public final class VirtioDeviceTransport: VirtioTransport {
    /// The device this carries.
    public let device: VirtioDevice

    init(_ device: VirtioDevice) { self.device = device }

    private func call<T>(_ operation: String, _ body: () throws(RemoteprocError) -> T) throws(VirtioError) -> T {
        do throws(RemoteprocError) { return try body() } catch {
            throw VirtioError(.transport(operation: operation, underlying: UnderlyingError(error)))
        }
    }

    public var role: VirtioRole { device.role }
    public var deviceID: UInt32 { device.deviceID }
    public var vringLocations: [VringLocation] { device.vringLocations }
    public var host: HostPersonality { device.host }
    public var isAvailable: Bool { device.isAvailable }
    public var isPeerHeldByCurrentThread: Bool { device.isRemoteHeldByCurrentThread }

    public func status() throws(VirtioError) -> VirtioStatus { try call("read the status") { () throws(RemoteprocError) in try device.status() } }
    public func setStatus(_ status: VirtioStatus) throws(VirtioError) {
        try call("write the status") { () throws(RemoteprocError) in try device.setStatus(status) }
    }
    public func acknowledgeReset() throws(VirtioError) { try call("acknowledge a reset") { () throws(RemoteprocError) in try device.acknowledgeReset() } }
    public var clock: any WaitClock { device.clock }
    public func waitForDriverOK(timeout: Duration) throws(VirtioError) -> Bool {
        try call("wait for DRIVER_OK") { () throws(RemoteprocError) in try device.waitForDriverOK(timeout: timeout) }
    }
    public func deviceFeatures() throws(VirtioError) -> VirtioFeatures {
        try call("read the device features") { () throws(RemoteprocError) in try device.deviceFeatures() }
    }
    public func driverFeatures() throws(VirtioError) -> VirtioFeatures {
        try call("read the driver features") { () throws(RemoteprocError) in try device.driverFeatures() }
    }
    public func negotiateFeatures(supported: VirtioFeatures) throws(VirtioError) -> VirtioFeatures {
        try call("negotiate features") { () throws(RemoteprocError) in try device.negotiateFeatures(supported: supported) }
    }
    public func readConfig(at offset: Int, count: Int) throws(VirtioError) -> [UInt8] {
        try call("read the config space") { () throws(RemoteprocError) in try device.readConfig(at: offset, count: count) }
    }
    public func writeConfig(_ bytes: [UInt8], at offset: Int) throws(VirtioError) {
        try call("write the config space") { () throws(RemoteprocError) in try device.writeConfig(bytes, at: offset) }
    }
    public func prepareDriverQueue(_ index: Int) throws(VirtioError) {
        try call("prepare vring \(index)") { () throws(RemoteprocError) in try device.prepareDriverQueue(index) }
    }
    public func kick(vring index: Int) throws(VirtioError) { try call("kick vring \(index)") { () throws(RemoteprocError) in try device.kick(vring: index) } }
    public func setNotificationHandler(forVring index: Int, _ handler: (@Sendable () -> Void)?) {
        device.setNotificationHandler(forVring: index, handler)
    }
    public func setRemovalHandler(_ handler: (@Sendable () -> Void)?) { device.setRemovalHandler(handler) }
    public func noteDriverActivity() { device.noteDriverActivity() }
    public func setOutstandingWork(_ check: (@Sendable () -> Bool)?) { device.setOutstandingWork(check) }
}
