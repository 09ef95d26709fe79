import MetalIO
import Remoteproc
import Virtio

/// The ELF image native firmware is loaded from: a little code and the resource table the
/// board's C firmware carries (an RPMsg vdev with ANY vrings and ids, and a trace buffer), so
/// configure → load → start runs the same path as for any firmware.
public enum NativeImage {
    /// - Parameters:
    ///   - features: what the vdev offers.
    ///   - notifyIDs: the vdev's id and each vring's (ANY: the host allocates them).
    ///   - vringAddresses: each vring's device address (ANY: the host allocates them; an OpenAMP
    ///     host needs fixed ones).
    public static func make(vringCount: UInt32 = 256, features: VirtioFeatures = [.rpmsgNameService, .ringEventIndex],
                            notifyIDs: [NotifyID] = [.any, .any, .any],
                            vringAddresses: [ResourceAddress] = [.any, .any]) throws -> [UInt8] {
        precondition(notifyIDs.count == 3 && vringAddresses.count == 2, "a vdev id, two vring ids and two vring addresses")
        let vrings = (0..<2).map { VringResource(deviceAddress: vringAddresses[$0], count: vringCount, notifyID: notifyIDs[$0 + 1]) }
        let table = try ResourceTable(entries: [
            .vdev(VirtioDeviceResource(notifyID: notifyIDs[0], deviceFeatures: features, vrings: vrings)),
            .trace(TraceResource(deviceAddress: ResourceAddress(0x2000_1000), length: 1024, name: "trace")),
        ])
        return ELFWriter.image(segments: [.init(address: 0, bytes: [0x00, 0x20, 0x04, 0x20, 0x41, 0, 0, 0])], entry: 0x41,
                               resourceTable: (0x2000_0000, table.bytes))
    }
}
