import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Scenario

/// Virtual time against real time, in one run: the same echo through the board (native and
/// emulated firmware), the same emulated compute loop and the shipped scenario folder, each in
/// both modes — wall-clock rates side by side, and how much board time a second of wall time
/// covers in virtual time.
enum VirtualTimeBench {
    /// One workload's wall-clock rate in each mode (round trips or instructions per second).
    struct Rate: Codable {
        var workload: String
        var realTimePerSecond: Double
        var virtualPerSecond: Double
        /// Board seconds per wall second, virtual time.
        var virtualSecondsPerWallSecond: Double
    }
    struct ScenarioRun: Codable {
        var file: String
        var realTimeWallSeconds: Double
        var virtualWallSeconds: Double
        /// Board time the run covered in virtual time.
        var virtualBoardSeconds: Double
    }
    struct Report: Codable {
        /// The floor of lockstep: two participants of one virtual clock signalling each other,
        /// round trips per second (each is two turn hand-offs).
        var handOffRoundTripsPerSecond: Double
        var echo: [Rate]
        var compute: [Rate]
        var scenarios: [ScenarioRun]
    }

    /// Runs `body` with a fresh clock of `kind`, this thread in its schedule meanwhile.
    private static func onClock<R>(_ kind: BoardClock, _ body: (any WaitClock) throws -> R) rethrows -> R {
        let clock = kind.make()
        clock.join()
        defer { clock.leave() }
        return try body(clock)
    }

    /// `count` 16-byte echoes through the board (sent as a host does, `Board.send`: 10 µs each in
    /// virtual time): (round trips per wall second, board seconds they took).
    private static func echo(_ firmware: any FirmwareProgram, _ kind: BoardClock, count: Int, load: (RemoteProcessor) throws -> Void) throws
        -> (perSecond: Double, boardSeconds: Double) {
        try onClock(kind) { clock in
            let reply = WakeSignal()
            let (board, processor, endpoint) = try EmulatedBench.boot(firmware, clock: clock, load: load) { _ in reply.signal() }
            defer { try? processor.shutdown() }
            let payload = [UInt8](repeating: 0x42, count: 16)
            let boardStart = clock.now
            let trips = try BenchHarness.roundTrips(count, reply: reply, clock: clock) {
                try board.send(payload, through: endpoint, timeout: .seconds(10))
            }
            return (trips.perSecond, (clock.now - boardStart).inSeconds)
        }
    }

    /// Two participants of a virtual clock passing a signal back and forth, `count` round trips.
    static func handOffRate(count: Int) throws -> Double {
        let clock = VirtualClock()
        let ping = WakeSignal(), pong = WakeSignal()
        clock.join()
        let partner = try clock.startThread(name: "hand-off") {
            for _ in 0..<count {
                _ = clock.wait(for: ping, until: nil)
                pong.signal()
            }
        }
        let rate = Result {
            try BenchHarness.rate(count) {
                for _ in 0..<count {
                    ping.signal()
                    guard clock.wait(for: pong, timeout: .seconds(10)) else { throw BenchError("hand-off ping-pong stalled") }
                }
            }
        }
        partner.join()
        clock.leave()
        return try rate.get()
    }

    static func run(roundTrips: Int) throws -> Report {
        let handOff = try handOffRate(count: roundTrips * 4)
        let source = try FirmwareBuilder.locateSourceRoot()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rproc-sim-vt-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let builder = try FirmwareBuilder(sourceRoot: source, outputDirectory: scratch)

        var echoes: [Rate] = []
        let nativeImage = try BoardBench.image()
        let loadNative: (RemoteProcessor) throws -> Void = { try $0.load("fw", from: MemoryImageStore(["fw": nativeImage])) }
        let nativeReal = try echo(EchoFirmware(), .realTime, count: roundTrips, load: loadNative)
        let nativeVirtual = try echo(EchoFirmware(), .virtual, count: roundTrips, load: loadNative)
        echoes.append(Rate(workload: "echo, native", realTimePerSecond: nativeReal.perSecond, virtualPerSecond: nativeVirtual.perSecond,
                           virtualSecondsPerWallSecond: nativeVirtual.boardSeconds * nativeVirtual.perSecond / Double(roundTrips)))
        var computes: [Rate] = []
        for architecture in FirmwareArchitecture.allCases {
            let cpu: CPUArchitecture = architecture == .cortexM4 ? .cortexM4 : .rv32
            let echoELF = try builder.build(program: "echo", architecture: architecture)
            let loadELF: (RemoteProcessor) throws -> Void = { try $0.load(echoELF.path, from: FileImageStore()) }
            let real = try echo(EmulatedCPU(cpu), .realTime, count: roundTrips, load: loadELF)
            let virtual = try echo(EmulatedCPU(cpu), .virtual, count: roundTrips, load: loadELF)
            echoes.append(Rate(workload: "echo, \(architecture.rawValue)", realTimePerSecond: real.perSecond, virtualPerSecond: virtual.perSecond,
                               virtualSecondsPerWallSecond: virtual.boardSeconds * virtual.perSecond / Double(roundTrips)))
            let computeELF = try builder.build(program: "compute", architecture: architecture)
            let realCompute = try EmulatedBench.compute(elf: computeELF, cpu: cpu, done: "compute: done")
            let virtualCompute = try onClock(.virtual) { try EmulatedBench.compute(elf: computeELF, cpu: cpu, done: "compute: done", clock: $0) }
            computes.append(Rate(workload: "compute loop, \(architecture.rawValue)", realTimePerSecond: realCompute.perSecond,
                                 virtualPerSecond: virtualCompute.perSecond,
                                    virtualSecondsPerWallSecond: virtualCompute.boardSeconds * virtualCompute.perSecond / Double(EmulatedBench.computeInstructions)))
        }

        // The shipped scenarios, each in both modes.
        let folder = source.deletingLastPathComponent().appendingPathComponent("Scenarios")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }.sorted()
        var scenarios: [ScenarioRun] = []
        for name in files {
            var file = try ScenarioParser.parse(file: folder.appendingPathComponent(name).path)
            guard file.virtualTimeConflict() == nil else { continue }
            file.clock = .realTime
            let real = try ScenarioRunner(file).run()
            file.clock = .virtual
            let virtual = try ScenarioRunner(file).run()
            guard real.passed, virtual.passed else { throw BenchError("\(name) failed: \(real.failure?.failure ?? virtual.failure?.failure ?? "")") }
            scenarios.append(ScenarioRun(file: name, realTimeWallSeconds: real.wallDuration.inSeconds, virtualWallSeconds: virtual.wallDuration.inSeconds,
                                         virtualBoardSeconds: virtual.duration.inSeconds))
        }
        return Report(handOffRoundTripsPerSecond: handOff, echo: echoes, compute: computes, scenarios: scenarios)
    }

    static func print(_ report: Report) {
        Swift.print("Virtual time against real time (wall-clock rates in this run; board time per wall second in virtual time)")
        Swift.print(String(format: "  lockstep hand-off ping-pong (two participants, one clock): %8.0f rt/s", report.handOffRoundTripsPerSecond))
        for e in report.echo {
            Swift.print(String(format: "  %-22@ real time %8.0f rt/s     virtual %8.0f rt/s     (%.2f×)   %.3f board s per wall s",
                               e.workload, e.realTimePerSecond, e.virtualPerSecond, e.virtualPerSecond / e.realTimePerSecond, e.virtualSecondsPerWallSecond))
        }
        for c in report.compute {
            Swift.print(String(format: "  %-22@ real time %8.0f M insn/s virtual %8.0f M insn/s (%.2f×)   %.2f board s per wall s",
                               c.workload, c.realTimePerSecond / 1e6, c.virtualPerSecond / 1e6, c.virtualPerSecond / c.realTimePerSecond,
                               c.virtualSecondsPerWallSecond))
        }
        var real = 0.0, virtual = 0.0
        for s in report.scenarios {
            real += s.realTimeWallSeconds
            virtual += s.virtualWallSeconds
            Swift.print(String(format: "  %-30@ real time %7.3f s wall   virtual %7.3f s wall for %8.3f s of board time (%.2f× real time)",
                               s.file, s.realTimeWallSeconds, s.virtualWallSeconds, s.virtualBoardSeconds,
                               s.virtualBoardSeconds / max(s.virtualWallSeconds, 1e-9)))
        }
        Swift.print(String(format: "  Scenarios/ (%d files): real time %.2f s wall, virtual time %.2f s wall", report.scenarios.count, real, virtual))
    }
}
