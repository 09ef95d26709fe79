import MetalIO
import Remoteproc

/// The board's memory map (design.md): sizes and addresses are configurable; the default is the
/// design's. Device addresses are what the remote sees; code and sram sit at other host physical
/// addresses, so the loader's translation is exercised.
public struct BoardLayout: Sendable, Hashable {
    public struct Window: Sendable, Hashable {
        public var name: String
        public var deviceAddress: DeviceAddress
        public var physicalAddress: PhysicalAddress
        public var size: Int
        public init(name: String, deviceAddress: DeviceAddress, physicalAddress: PhysicalAddress, size: Int) {
            self.name = name
            self.deviceAddress = deviceAddress
            self.physicalAddress = physicalAddress
            self.size = size
        }
    }

    public var code = Window(name: "code", deviceAddress: DeviceAddress(0x0000_0000), physicalAddress: PhysicalAddress(0x1000_0000), size: 256 << 10)
    public var sram = Window(name: "sram", deviceAddress: DeviceAddress(0x2000_0000), physicalAddress: PhysicalAddress(0x1004_0000), size: 256 << 10)
    /// Vrings and RPMsg buffers; the host allocates ANY addresses here.
    public var shared = Window(name: "shared", deviceAddress: DeviceAddress(0x3000_0000), physicalAddress: PhysicalAddress(0x9000_0000), size: 1 << 20)
    /// The mailbox registers' device address (4 KiB of MMIO).
    public var mailboxAddress = DeviceAddress(0x4000_0000)

    public init() {}

    /// The design's map with the shared window's host physical address equal to its device address.
    public static var identityShared: BoardLayout {
        var layout = BoardLayout()
        layout.shared.physicalAddress = PhysicalAddress(layout.shared.deviceAddress.rawValue)
        return layout
    }

    public var windows: [Window] { [code, sram, shared] }

    /// The board's memories, one per window, zeroed: what the remoteproc core maps and loads
    /// into. The shared window's region is indexed by device address (what appears on the wire),
    /// the others by host physical address, so the loader's translation is exercised; the shared
    /// window is the pool the host allocates ANY addresses from.
    public func makeMemories() throws(MetalIOError) -> [RemoteprocMemory] {
        try windows.map { (window) throws(MetalIOError) in
            let memory = try SharedMemory(size: window.size)
            let isShared = window.name == shared.name
            let regionBase = isShared ? PhysicalAddress(window.deviceAddress.rawValue) : window.physicalAddress
            let region = try IORegion(name: window.name, memory: memory, physicalBase: regionBase)
            return RemoteprocMemory(name: window.name, physicalAddress: window.physicalAddress, deviceAddress: window.deviceAddress,
                                    region: region, isAllocationPool: isShared)
        }
    }
}
