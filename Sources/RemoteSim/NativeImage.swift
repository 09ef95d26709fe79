import Remoteproc
import Virtio

/// The ELF image native firmware is loaded from: a little code and the resource table the
/// board's C firmware carries (an RPMsg vdev with ANY vrings and ids, and a trace buffer), so
/// configure → load → start runs the same path as for any firmware.
public enum NativeImage {
    public static func make(vringCount: UInt32 = 256) throws -> [UInt8] {
        let table = try ResourceTable(entries: [
            .vdev(VirtioDeviceResource(deviceFeatures: [.rpmsgNameService, .ringEventIndex],
                                       vrings: [VringResource(count: vringCount), VringResource(count: vringCount)])),
            .trace(TraceResource(deviceAddress: ResourceAddress(0x2000_1000), length: 1024, name: "trace")),
        ])
        return ELFWriter.image(segments: [.init(address: 0, bytes: [0x00, 0x20, 0x04, 0x20, 0x41, 0, 0, 0])], entry: 0x41,
                               resourceTable: (0x2000_0000, table.bytes))
    }
}
