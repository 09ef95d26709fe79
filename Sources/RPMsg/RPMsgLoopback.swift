import MetalIO
import Virtio

/// A host and a remote RPMsg device in one process, over one shared memory and a
/// ``Virtio/LoopbackTransport`` pair: RPMsg code can be exercised (and measured) with no board.
/// With interrupt threads each side's notifications run on its own thread, as mailbox interrupts
/// would; without, nothing moves until ``pump()``, which makes tests deterministic.
public struct RPMsgLoopback: Sendable {
    /// The device address of the shared window.
    public static let sharedBase = DeviceAddress(0x3000_0000)

    public let host: RPMsgDevice
    public let remote: RPMsgDevice
    public let hostTransport: LoopbackTransport
    public let remoteTransport: LoopbackTransport
    public let window: BufferWindow

    /// Two vrings of `vringCount` descriptors and a buffer pool in 1 MiB of shared memory; the
    /// host side behaves as `host` (its start-up, buffers and announcements).
    public init(interruptThreads: Bool = true, vringCount: Int = 256,
                features: VirtioFeatures = [.rpmsgNameService, .ringEventIndex],
                configuration: RPMsgConfiguration = RPMsgConfiguration(), host personality: HostPersonality = .default) throws {
        let memory = try SharedMemory(size: 1 << 20)
        let region = try IORegion(name: "shared", memory: memory, physicalBase: PhysicalAddress(Self.sharedBase.rawValue))
        let window = BufferWindow(region: region, deviceBase: Self.sharedBase)
        self.window = window
        let layout = try VringLayout(count: vringCount, alignment: 4096)
        let stride = (layout.byteSize + 4095) / 4096 * 4096
        let vrings = (0..<2).map { i in
            VringLocation(index: i, notifyID: NotifyID(UInt32(i + 1)), deviceAddress: window.address(of: i * stride), region: region,
                          offset: i * stride, count: vringCount, alignment: 4096)
        }
        (hostTransport, remoteTransport) = try LoopbackTransport.makePair(vrings: vrings, features: features, interruptThreads: interruptThreads, host: personality)
        host = try RPMsgDevice(host: hostTransport, window: window, pool: (2 * stride)..<region.size, configuration: configuration)
        remote = try RPMsgDevice(remote: remoteTransport, window: window, configuration: configuration)
    }

    /// Without interrupt threads: delivers pending notifications both ways until nothing moves.
    public func pump() {
        for _ in 0..<8 {
            hostTransport.poll()
            remoteTransport.poll()
        }
    }

    /// Closes both devices and stops the interrupt threads.
    public func shutdown() {
        host.close()
        remote.close()
        hostTransport.shutdown()
        remoteTransport.shutdown()
    }
}
