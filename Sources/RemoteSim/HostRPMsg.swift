import Remoteproc
import RPMsg
import Virtio

extension RemoteProcessor {
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
        return try RPMsgDevice(host: vdev, window: BufferWindow(region: window.region, deviceBase: window.deviceAddress.rawValue),
                               pool: pool.offset..<(pool.offset + pool.size), configuration: configuration)
    }
}
