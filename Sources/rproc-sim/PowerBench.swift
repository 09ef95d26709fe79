#if canImport(Glibc)
import Glibc
#endif
import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg

/// Suspend and resume: how long each call takes (forced and cooperative; native firmware, both
/// emulated architectures; an idle core and, emulated, a core busy with stores), and the host CPU
/// a board uses while its remote is suspended, against the same board running idle.
enum PowerBench {
    struct Result: Codable {
        var firmware: String
        var kind: String
        /// What the core was doing when suspended: idle (in WAIT) or busy.
        var core: String
        var suspendP50Microseconds: Double
        var suspendP99Microseconds: Double
        var resumeP50Microseconds: Double
        var resumeP99Microseconds: Double
    }

    struct IdleCPU: Codable {
        var firmware: String
        var seconds: Double
        /// Process CPU time over wall time while the remote runs idle, then while it is suspended (%).
        var runningIdlePercent: Double
        var suspendedPercent: Double
    }

    struct Report: Codable {
        var latency: [Result]
        var idleCPU: [IdleCPU]
    }

    static func run(cycles: Int, idleSeconds: Double) throws -> Report {
        let builder = try FirmwareBuilder.forThisPackage()
        var latency: [Result] = []
        var idle: [IdleCPU] = []
        let targets: [(String, () throws -> (Board, RemoteProcessor))] = [
            ("native echo", { try boot(EchoFirmware(answersSuspend: { _ in .ack }), image: nil) }),
            ("cortex-m4 power", { try boot(EmulatedCPU(.cortexM4), image: builder.build(program: "power", architecture: .cortexM4)) }),
            ("rv32 power", { try boot(EmulatedCPU(.rv32), image: builder.build(program: "power", architecture: .rv32)) }),
        ]
        for (name, make) in targets {
            let (board, processor) = try make()
            defer { try? processor.shutdown() }
            for kind in [SuspendKind.forced, .auto] {
                latency.append(try measure(processor, kind: kind, firmware: name, core: "idle", cycles: cycles))
            }
            idle.append(try idleCPU(board: board, processor: processor, firmware: name, seconds: idleSeconds))
        }
        for architecture in [FirmwareArchitecture.cortexM4, .rv32] {
            let (_, processor) = try boot(EmulatedCPU(architecture == .cortexM4 ? .cortexM4 : .rv32),
                                          image: builder.build(program: "count", architecture: architecture), waitForService: false)
            defer { try? processor.shutdown() }
            latency.append(try measure(processor, kind: .forced, firmware: "\(architecture.rawValue) count", core: "busy", cycles: cycles))
        }
        return Report(latency: latency, idleCPU: idle)
    }

    private static func boot(_ firmware: any FirmwareProgram, image: URL?, waitForService: Bool = true) throws -> (Board, RemoteProcessor) {
        let board = try Board(firmware: firmware)
        let processor = try board.makeProcessor()
        try processor.configure()
        if let image {
            try processor.load(image.path, from: FileImageStore())
        } else {
            try processor.load("native", from: MemoryImageStore(["native": try NativeImage.make()]))
        }
        try processor.start()
        guard waitForService else { return (board, processor) }
        guard let rpmsg = try processor.makeHostRPMsg() else { throw BenchError("the image has no vdev") }
        board.trace.wakeWaiters(onActivityOf: rpmsg)
        guard board.wait(upTo: .seconds(30), until: { rpmsg.announcedServices.contains { $0.name == "rpmsg-echo" } }) else {
            throw BenchError("no announcement of rpmsg-echo")
        }
        // The firmware takes part in the handshake from its start; a cooperative request now reaches it.
        return (board, processor)
    }

    private static func measure(_ processor: RemoteProcessor, kind: SuspendKind, firmware: String, core: String, cycles: Int) throws -> Result {
        var suspend: [Double] = []
        var resume: [Double] = []
        for cycle in 0..<(cycles + 5) {
            let s = try BenchHarness.seconds { try processor.suspend(kind) }
            let r = try BenchHarness.seconds { try processor.resume() }
            if cycle >= 5 {       // the first cycles warm up
                suspend.append(s * 1e6)
                resume.append(r * 1e6)
            }
        }
        let (s, r) = (BenchHarness.Samples(suspend), BenchHarness.Samples(resume))
        return Result(firmware: firmware, kind: kind.rawValue, core: core, suspendP50Microseconds: s.median, suspendP99Microseconds: s.p99,
                      resumeP50Microseconds: r.median, resumeP99Microseconds: r.p99)
    }

    private static func idleCPU(board: Board, processor: RemoteProcessor, firmware: String, seconds: Double) throws -> IdleCPU {
        func cpuPercent() -> Double { BenchReferences.idleCPUPercent(seconds: seconds, clock: board.clock) }
        let running = cpuPercent()
        try processor.suspend()
        defer { try? processor.resume() }
        let suspended = cpuPercent()
        return IdleCPU(firmware: firmware, seconds: seconds, runningIdlePercent: running, suspendedPercent: suspended)
    }
}
