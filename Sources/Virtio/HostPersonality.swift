/// Which host stack the host side behaves as: the start-up sequence, the notify ids, the table
/// rules and the RPMsg driver's buffer and address rules of a Linux host or of an OpenAMP host.
/// Firmware teams ship against one of them, and the two differ in ways firmware observes (see
/// `docs/host-personalities.md`, which lists every difference with the source it comes from).
///
/// Each layer keeps its own part of a personality next to the code it changes: the resource-table
/// rules and notify ids in `Remoteproc` (`HostRules`), the vdev status and kick behaviour in its
/// `VirtioDevice`, the RPMsg driver's start-up and buffers in `RPMsg` (`HostDriverProfile`).
public enum HostPersonality: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Linux `remoteproc` + `virtio_rpmsg_bus` (kernel 6.x): vring notify ids allocated by the
    /// host from 0 (predefined ids overwritten), status 0 → 0x1 → 0x3 → 0x7 with no kick, the
    /// receive vring kicked once after DRIVER_OK.
    case linux
    /// OpenAMP's library in the host (virtio driver) role: the table's notify ids honoured (ANY
    /// ones allocated in table order, the vdev's first), gfeatures = dfeatures and then DRIVER_OK
    /// alone, each write followed by a kick of the vdev's notify id; fixed vring addresses only.
    case openamp

    /// The personality a processor has when none is chosen: `linux`. Firmware written for a Linux
    /// host needs its behaviour (the first kick of the transmit ring, vring ids it allocates), and
    /// firmware written for an OpenAMP host that follows the board contract (waits for DRIVER_OK,
    /// tolerates kicks, reads its vrings from the table) runs under it too; the reverse is not
    /// true (an OpenAMP host never kicks the transmit ring and refuses ANY vring addresses).
    public static let `default` = HostPersonality.linux

    public var description: String { rawValue }

    /// What the personality is called in documents and messages ("a Linux host").
    public var hostName: String {
        switch self {
        case .linux: "Linux"
        case .openamp: "OpenAMP"
        }
    }

    /// Whether writing the vdev's status byte or its gfeatures notifies the vdev's own notify id
    /// (OpenAMP's `rproc_virtio_set_status` and `rproc_virtio_set_features` do; Linux's
    /// `rproc_virtio_set_status` and `rproc_virtio_finalize_features` never kick).
    public var notifiesOnVdevWrites: Bool { self == .openamp }

    /// Whether the vdev entry's own notify id means anything to this host. Linux never reads,
    /// allocates or kicks it; OpenAMP allocates it and kicks it after status and feature writes.
    public var usesVdevNotifyID: Bool { self == .openamp }
}
