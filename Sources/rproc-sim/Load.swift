import ArgumentParser
import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import Synchronization
import Virtio

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a firmware ELF through the remoteproc core and show what landed where.",
        discussion: """
            FIRMWARE is an ELF file, or the name of a program in Firmware/programs (built first \
            with the toolchain's clang for --arch). The image is loaded into the board's memory \
            map (code, sram, shared) by the real core: configure, load, then shutdown.
            """
    )

    @Argument(help: "An ELF file, or a Firmware/ program name such as 'minimal'.")
    var firmware: String

    @Option(help: "Architecture when FIRMWARE is a program name: \(FirmwareArchitecture.allCases.map(\.rawValue).joined(separator: ", ")).")
    var arch: String = FirmwareArchitecture.cortexM4.rawValue

    @Option(help: "The host stack to load as: \(HostPersonality.allCases.map(\.rawValue).joined(separator: ", ")) (docs/host-personalities.md).")
    var host: HostPersonality = .default

    func run() throws {
        let path = try fileStep { try resolve() }
        let platform = try LoadOnlyPlatform()
        let processor = try RemoteProcessor(ops: platform, host: host)
        for memory in platform.memories { processor.addMemory(memory) }
        let log = MetalMutex<[String]>([])
        processor.addObserver { event in
            switch event {
            case let .stateChanged(change): log.withLock { $0.append("\(change.from) → \(change.to)") }
            case let .warning(text): Terminal.line("warning: \(text)")
            case .vdevWrite: break
            }
        }
        try processor.configure()
        let clock = ContinuousClock()
        let started = clock.now
        try fileStep { try processor.load(path, from: FileImageStore()) }
        let elapsed = clock.now - started
        guard let image = processor.loadedImage else { throw ValidationError("the core kept no image") }

        Terminal.line(RprocSimReport.header(image))
        Terminal.line(RprocSimReport.segments(image, processor: processor))
        if let installed = processor.installedResourceTable {
            Terminal.line(RprocSimReport.resourceTable(installed))
            if host == .linux, installed.table.virtioDevices.contains(where: { $0.device.vrings.count > 0 }),
               let bytes = try? installed.location.region.readBytes(at: installed.location.offset, count: installed.table.bytes.count),
               bytes != installed.table.bytes {
                Terminal.line("  (host linux: the vring addresses are written into the table as the host's virtio driver starts, after the core; ANY until then)")
            }
        } else {
            Terminal.line("no resource table")
        }
        Terminal.line("loaded in \(RprocSimReport.duration(elapsed)) as host \(host) · state \(log.withLock { $0.joined(separator: " · ") })")
        try processor.shutdown()
    }

    private func resolve() throws -> String {
        if FileManager.default.fileExists(atPath: firmware) { return firmware }
        guard let architecture = FirmwareArchitecture(rawValue: arch) else {
            throw ValidationError("unknown architecture '\(arch)'; use one of \(FirmwareArchitecture.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let builder = try FirmwareBuilder.forThisPackage()
        let elf = try builder.build(program: firmware, architecture: architecture)
        Terminal.line("built Firmware/programs/\(firmware) for \(architecture) → \(elf.path)")
        return elf.path
    }
}
