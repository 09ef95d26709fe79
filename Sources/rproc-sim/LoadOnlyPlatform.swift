import MetalIO
import Virtio
import Remoteproc
import RemoteSim

/// A platform with the board's memory map and no CPU: enough to configure and load an image
/// through the real core and look at what landed where. `start` is refused.
final class LoadOnlyPlatform: RemoteprocOps {
    let memories: [RemoteprocMemory]

    /// The board's memory map (``BoardLayout``); `codeSize` replaces the code memory's size
    /// (benchmarks load big images).
    init(codeSize: Int? = nil) throws {
        var layout = BoardLayout()
        if let codeSize { layout.code.size = codeSize }
        memories = try layout.makeMemories()
    }

    struct NoCPU: Error, CustomStringConvertible {
        var description: String { "this platform only loads images; it has no CPU to start" }
    }

    func start(bootAddress: DeviceAddress) throws { throw NoCPU() }
    func stop() throws {}
    func notify(_ id: NotifyID) throws {}
}
