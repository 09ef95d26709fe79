import Virtio

/// What a host's RPMsg driver does that the remote can observe, for each host personality:
/// Linux's `virtio_rpmsg_bus` (with the virtio core's probe around it) or OpenAMP's
/// `rpmsg_virtio` in the driver role. ``RPMsgDevice/init(host:window:pool:configuration:)``
/// follows it step by step; `docs/host-personalities.md` gives the sources.
struct HostDriverProfile: Sendable {
    let host: HostPersonality

    /// Status values written, in order, before the queues are set up. Linux: the virtio core
    /// resets (0) and acknowledges the device as it registers it, then sets DRIVER as it probes
    /// (FEATURES_OK is never written: the device cannot offer VERSION_1 in a 32-bit field, and a
    /// legacy device skips it). OpenAMP: none.
    var statusBeforeQueues: [VirtioStatus] {
        switch host {
        case .linux: [[], .acknowledge, [.acknowledge, .driver]]
        case .openamp: []
        }
    }

    /// The status that makes the device live: Linux ORs DRIVER_OK into 0x3 (0x7); OpenAMP
    /// writes DRIVER_OK alone (0x4).
    var readyStatus: VirtioStatus {
        switch host {
        case .linux: [.acknowledge, .driver, .driverOK]
        case .openamp: .driverOK
        }
    }

    /// Features the host accepts of those offered. Linux: the driver's table (name service) and
    /// the ring features `vring_transport_features` keeps that fit the 32-bit field (indirect
    /// descriptors, event index). OpenAMP: everything offered (gfeatures = dfeatures).
    var acceptedFeatures: VirtioFeatures {
        switch host {
        case .linux: [.rpmsgNameService, .ringIndirectDescriptors, .ringEventIndex]
        case .openamp: .all
        }
    }

    /// Whether the host's own queues use event indices once negotiated. OpenAMP's driver role
    /// never does (its `vdev->features` stays 0), however gfeatures reads.
    func usesEventIndex(_ negotiated: VirtioFeatures) -> Bool {
        host == .linux && negotiated.contains(.ringEventIndex)
    }

    /// Receive buffers posted before DRIVER_OK on a receive vring of `count` entries. Linux:
    /// half of `num_bufs` = min(2 × count, 512); OpenAMP: one per entry.
    func receiveBufferCount(vringCount count: Int) -> Int {
        switch host {
        case .linux: min(count, 256)
        case .openamp: count
        }
    }

    /// Transmit buffers the host ever uses. Linux: the other half of `num_bufs` (taken fresh
    /// first, then reclaimed), no more than the transmit ring holds; OpenAMP: new pool space
    /// while the transmit ring has free descriptors.
    func transmitBufferLimit(receiveVringCount: Int, transmitVringCount: Int) -> Int {
        switch host {
        case .linux: min(receiveBufferCount(vringCount: receiveVringCount), transmitVringCount)
        case .openamp: transmitVringCount
        }
    }

    /// The length a sent buffer's descriptor carries. Linux: header + payload; OpenAMP: the whole buffer.
    func sentLength(payload: Int, bufferSize: Int) -> Int {
        switch host {
        case .linux: RPMsgHeader.size + payload
        case .openamp: bufferSize
        }
    }

    /// Whether the host kicks the receive vring once after DRIVER_OK ("you may send now";
    /// `rpmsg_probe`: prepared before, notified after). OpenAMP never does at start-up.
    var kicksReceiveQueueWhenReady: Bool { host == .linux }

    /// Whether each reposted receive buffer is kicked on its own (OpenAMP) rather than once
    /// after a batch (Linux's `rpmsg_recv_done`).
    var kicksEachRepostedBuffer: Bool { host == .openamp }

    /// Dynamic endpoint addresses, from 1024: Linux's idr has no upper bound below 2³¹; OpenAMP
    /// keeps a 128-bit map (1024–1151).
    var dynamicAddressCount: Int {
        switch host {
        case .linux: Int(Int32.max) - Int(RPMsgAddress.firstDynamic.rawValue) + 1
        case .openamp: 128
        }
    }

    /// Whether creating a named endpoint announces it to the remote (with the name service
    /// negotiated). OpenAMP: whenever it has a name and no destination (`rpmsg_create_ept`).
    /// Linux: only a channel the host creates itself with a fixed local address (`announce` is set
    /// when src ≠ ANY); the endpoints it binds to the remote's announcements say nothing.
    func announces(name: String, fixedAddress: Bool, destination: RPMsgAddress) -> Bool {
        guard !name.isEmpty else { return false }
        switch host {
        case .linux: return fixedAddress
        case .openamp: return destination.isAny
        }
    }
}
