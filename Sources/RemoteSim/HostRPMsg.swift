import Remoteproc
import RPMsg
import Virtio

/// What putting the host's RPMsg on a started remote gave.
public enum HostRPMsgAttachment {
    case attached(RPMsgDevice)
    /// The firmware's table has no such vdev.
    case noVirtioDevice
    /// The remote crashed before the host's side was up (firmware that dies right after start,
    /// racing the host): as on Linux, the start itself succeeded and the crash is the news.
    case remoteCrashed(CrashReport?)

    public var device: RPMsgDevice? { if case let .attached(device) = self { device } else { nil } }
}

extension RemoteProcessor {
    /// ``makeHostRPMsg(vdev:poolSize:configuration:)`` after a start, where the remote may crash
    /// at any moment: a failure caused by a crash is ``HostRPMsgAttachment/remoteCrashed(_:)``,
    /// not an error, so what a scenario or test sees does not depend on which side won the race.
    public func attachHostRPMsg(vdev index: Int = 0) throws -> HostRPMsgAttachment {
        do {
            guard let device = try makeHostRPMsg(vdev: index) else { return .noVirtioDevice }
            if state == .crashed { device.close(); return .remoteCrashed(crashReport) }
            return .attached(device)
        } catch {
            if state == .crashed { return .remoteCrashed(crashReport) }
            throw error
        }
    }

    /// Puts the host's RPMsg on vdev `index` of the installed table: creates the virtio device
    /// (driver role), carves a buffer pool of `poolSize` bytes in the allocation pool, and starts
    /// the host role (features, buffers, DRIVER_OK). `nil` when the table has no such vdev.
    public func makeHostRPMsg(vdev index: Int = 0, poolSize: Int = 512 * 512,
                              configuration: RPMsgConfiguration = RPMsgConfiguration()) throws -> RPMsgDevice? {
        guard let table = installedResourceTable, table.table.virtioDevices.indices.contains(index) else { return nil }
        let vdev = try createVirtio(index: index, role: .driver)
        guard let window = registeredMemories.first(where: \.isAllocationPool) else {
            throw RemoteprocError(.invalidArgument("no memory is registered as the allocation pool for RPMsg buffers"), call: .createVirtio)
        }
        let pool = try allocateDeviceMemory(size: poolSize, purpose: "rpmsg buffers")
        return try RPMsgDevice(host: vdev.transport, window: BufferWindow(region: window.region, deviceBase: window.deviceAddress),
                               pool: pool.offset..<(pool.offset + pool.size), configuration: configuration)
    }
}
