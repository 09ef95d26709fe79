import MetalIO
import Virtio
import Remoteproc

/// A platform with the board's memory map and no CPU: enough to configure and load an image
/// through the real core and look at what landed where. `start` is refused.
final class LoadOnlyPlatform: RemoteprocOps {
    struct Layout {
        var name: String
        var device: UInt64
        var physical: UInt64
        var regionBase: UInt64
        var size: Int
        var pool: Bool
    }

    /// The board's memory map (design.md): code and sram at host physical addresses other than
    /// their device addresses; the shared window indexed by device address.
    static let boardLayout = [
        Layout(name: "code", device: 0x0000_0000, physical: 0x1000_0000, regionBase: 0x1000_0000, size: 256 << 10, pool: false),
        Layout(name: "sram", device: 0x2000_0000, physical: 0x1004_0000, regionBase: 0x1004_0000, size: 256 << 10, pool: false),
        Layout(name: "shared", device: 0x3000_0000, physical: 0x9000_0000, regionBase: 0x3000_0000, size: 1 << 20, pool: true),
    ]

    let memories: [RemoteprocMemory]

    /// The board's map; `codeSize` replaces the code memory's size (benchmarks load big images).
    init(codeSize: Int? = nil) throws {
        var layouts = Self.boardLayout
        if let codeSize { layouts[0].size = codeSize }
        memories = try layouts.map { layout in
            let memory = try SharedMemory(size: layout.size)
            let region = try IORegion(name: layout.name, memory: memory, physicalBase: PhysicalAddress(layout.regionBase))
            return RemoteprocMemory(name: layout.name, physicalAddress: PhysicalAddress(layout.physical),
                                    deviceAddress: DeviceAddress(layout.device), region: region, isAllocationPool: layout.pool)
        }
    }

    struct NoCPU: Error, CustomStringConvertible {
        var description: String { "this platform only loads images; it has no CPU to start" }
    }

    func start(bootAddress: DeviceAddress) throws { throw NoCPU() }
    func stop() throws {}
    func notify(_ id: NotifyID) throws {}
}
