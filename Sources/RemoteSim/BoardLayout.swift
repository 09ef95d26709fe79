import MetalIO

/// The board's memory map (design.md): sizes and addresses are configurable; the default is the
/// design's. Device addresses are what the remote sees; code and sram sit at other host physical
/// addresses, so the loader's translation is exercised.
public struct BoardLayout: Sendable, Hashable {
    public struct Window: Sendable, Hashable {
        public var name: String
        public var deviceAddress: UInt64
        public var physicalAddress: UInt64
        public var size: Int
        public init(name: String, deviceAddress: UInt64, physicalAddress: UInt64, size: Int) {
            self.name = name
            self.deviceAddress = deviceAddress
            self.physicalAddress = physicalAddress
            self.size = size
        }
    }

    public var code = Window(name: "code", deviceAddress: 0x0000_0000, physicalAddress: 0x1000_0000, size: 256 << 10)
    public var sram = Window(name: "sram", deviceAddress: 0x2000_0000, physicalAddress: 0x1004_0000, size: 256 << 10)
    /// Vrings and RPMsg buffers; the host allocates ANY addresses here.
    public var shared = Window(name: "shared", deviceAddress: 0x3000_0000, physicalAddress: 0x9000_0000, size: 1 << 20)
    /// The mailbox registers' device address (4 KiB of MMIO).
    public var mailboxAddress: UInt64 = 0x4000_0000

    public init() {}

    /// The design's map with the shared window's host physical address equal to its device address.
    public static var identityShared: BoardLayout {
        var layout = BoardLayout()
        layout.shared.physicalAddress = layout.shared.deviceAddress
        return layout
    }

    public var windows: [Window] { [code, sram, shared] }
}
