import FirmwareKit
import Foundation
import RemoteSim

/// Turns a scenario's firmware choice into what the board runs and the image the core loads.
enum ScenarioFirmware {
    static func programs() -> [String] { (try? FirmwareBuilder.forThisPackage().programs()) ?? [] }
    static func programExists(_ name: String) -> Bool { programs().contains(name) }

    static func native(_ name: String) -> (any FirmwareProgram)? {
        switch name {
        case "echo": EchoFirmware()
        case "ping": PingFirmware()
        case "sink": SinkFirmware()
        case "multi-service": MultiServiceFirmware()
        case "crash": CrashFirmware()
        case "panic": PanicFirmware()
        case "hang": HangFirmware()
        case "beacon": BeaconFirmware()
        default: nil
        }
    }

    /// The firmware to run and a way to load its image: (path, bytes) — bytes for native images.
    static func resolve(_ choice: FirmwareChoice, debug: DebuggerOptions? = nil, coreClock: CoreClockRate = .default,
                        faults: FaultHandling = .crash, exactPCs: Bool = false) throws
        -> (firmware: any FirmwareProgram, path: String, bytes: [UInt8]?, gdb: GDBServer?) {
        func cpu(_ arch: String) throws -> (EmulatedCPU, GDBServer?) {
            let architecture: CPUArchitecture = arch == "rv32" ? .rv32 : .cortexM4
            let server = try debug.map { options in try GDBServer(architecture: architecture, options: options) }
            return (EmulatedCPU(architecture, coreClock: coreClock, faults: faults, exactPCs: exactPCs, debugger: server), server)
        }
        switch choice {
        case let .program(name, arch):
            let architecture: FirmwareArchitecture = arch == "rv32" ? .rv32 : .cortexM4
            let elf = try FirmwareBuilder.forThisPackage().build(program: name, architecture: architecture)
            let (firmware, server) = try cpu(arch)
            return (firmware, elf.path, nil, server)
        case let .elf(path, arch):
            let (firmware, server) = try cpu(arch)
            return (firmware, path, nil, server)
        case let .native(name):
            guard let firmware = native(name) else { throw ScenarioError(location: SourceLocation(file: name, line: 0, column: 0), message: "no native firmware \(name)") }
            return (firmware, "native-\(name).elf", try NativeImage.make(), nil)
        }
    }
}
