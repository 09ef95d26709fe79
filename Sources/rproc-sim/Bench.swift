import ArgumentParser
import Foundation
import MetalIO
import Remoteproc
import RemoteSim

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speeds: ELF loading (against memcpy), RPMsg streaming and echo (against a futex ping-pong), the board, emulated firmware, and debugging it.",
        discussion: "Build with -c release for meaningful figures: swift run -c release rproc-sim bench"
    )

    enum Suite: String, CaseIterable, ExpressibleByArgument { case load, rpmsg, board, emulated, debug, power, virtual }

    @Option(name: .customLong("suite"), help: "Which benchmarks to run: \(Suite.allCases.map(\.rawValue).joined(separator: ", ")) (repeatable; default: all).")
    var suites: [Suite] = []

    @Option(help: "Messages per RPMsg stream run.")
    var messages: Int = 200_000

    @Option(help: "Round trips per RPMsg echo run.")
    var roundTrips: Int = 20_000

    @Option(name: .customLong("size-mib"), help: "Image size in MiB.")
    var sizeMiB: Int = 1

    @Option(help: "Timed repetitions (the median is reported).")
    var iterations: Int = 30

    @Option(name: .customLong("idle-seconds"), help: "How long the power suite measures the host CPU of a running-idle and of a suspended board.")
    var idleSeconds: Double = 10

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Report: Codable {
        var load: [Result]?
        var rpmsgStream: [RPMsgBench.StreamResult]?
        var rpmsgEcho: [RPMsgBench.EchoResult]?
        /// The floors, measured in this run: a futex ping-pong (both threads park every time) and
        /// a spin ping-pong (both spin) between two threads.
        var futexPingPong: BenchReferences.PingPong?
        var spinPingPong: BenchReferences.PingPong?
        var board: [BoardBench.Result]?
        /// Native echo firmware: start → the announcement.
        var boardBootToAnnouncement: BoardBench.BootToAnnouncement?
        /// Host CPU with a booted board whose firmware waits (% of one core).
        var boardIdleCPUPercent: Double?
        var emulated: EmulatedBench.Report?
        var debug: [DebugBench.Result]?
        var power: PowerBench.Report?
        var virtualTime: VirtualTimeBench.Report?
    }

    struct Result: Codable {
        var name: String
        var bytes: Int
        var medianMicroseconds: Double
        var p99Microseconds: Double
        var megabytesPerSecond: Double
    }

    func validate() throws {
        guard (1...64).contains(sizeMiB) else { throw ValidationError("--size-mib must be between 1 and 64") }
        guard (3...10_000).contains(iterations) else { throw ValidationError("--iterations must be between 3 and 10000") }
        guard (1...100_000_000).contains(messages) else { throw ValidationError("--messages must be between 1 and 100000000") }
        guard idleSeconds >= 0.1 && idleSeconds <= 600 else { throw ValidationError("--idle-seconds must be between 0.1 and 600") }
        guard (1...10_000_000).contains(roundTrips) else { throw ValidationError("--round-trips must be between 1 and 10000000") }
    }

    func run() throws {
        let chosen = suites.isEmpty ? Suite.allCases : suites
        var report = Report()
        if chosen.contains(.load) { report.load = try loadBenchmarks() }
        if chosen.contains(.rpmsg) {
            report.rpmsgStream = try [16, 496].map { try RPMsgBench.stream(payload: $0, count: messages) }
            report.rpmsgEcho = try [16, 496].map { try RPMsgBench.echo(payload: $0, count: roundTrips) }
        }
        if chosen.contains(.rpmsg) || chosen.contains(.board) {
            report.futexPingPong = try BenchReferences.futexPingPong(count: roundTrips)
            report.spinPingPong = try BenchReferences.spinPingPong(count: roundTrips)
        }
        if chosen.contains(.board) {
            report.board = try [16, 496].map { try BoardBench.run(payload: $0, roundTrips: roundTrips, messages: messages, cycles: 50) }
            report.boardBootToAnnouncement = try BoardBench.bootToAnnouncement(
                firmware: "echo, native", count: 100, image: { try $0.load("fw", from: MemoryImageStore(["fw": try BoardBench.image()])) }
            ) { try Board(firmware: EchoFirmware()) }
            report.boardIdleCPUPercent = try BoardBench.idleCPUPercent(seconds: min(idleSeconds, 3))
        }
        if chosen.contains(.emulated) {
            report.emulated = try EmulatedBench.run(roundTrips: min(roundTrips, 5_000))
        }
        if chosen.contains(.debug) {
            report.debug = try DebugBench.run(requests: min(max(roundTrips / 10, 100), 5_000))
        }
        if chosen.contains(.power) {
            report.power = try PowerBench.run(cycles: max(iterations * 10, 100), idleSeconds: idleSeconds)
        }
        if chosen.contains(.virtual) {
            report.virtualTime = try VirtualTimeBench.run(roundTrips: min(roundTrips, 5_000))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        if let load = report.load {
            print("ELF load: \(loadRounds) interleaved runs each, \(sizeMiB) MiB image (one segment + resource table); the fixed cost: a 4 KiB one")
            for r in load {
                print("  " + RprocSimReport.pad(r.name, 28) + String(format: "median %9.1f µs   p99 %9.1f µs   %8.0f MB/s", r.medianMicroseconds, r.p99Microseconds, r.megabytesPerSecond))
            }
            let median = Dictionary(load.map { ($0.name, $0.medianMicroseconds) }, uniquingKeysWith: { a, _ in a })
            if let memcpy = median["memcpy of the same bytes"], let file = median["ELF load, file store"],
               let memory = median["ELF load, memory store"], let pread = median["pread of the same bytes"] {
                print(String(format: "  against memcpy (time ratio, higher is faster): file store %.2f×, memory store %.2f×, pread alone %.2f×; file store %.2f× of pread alone",
                             memcpy / file, memcpy / memory, memcpy / pread, pread / file))
            }
        }
        if let stream = report.rpmsgStream {
            print("RPMsg stream host → remote, two threads, one process (\(messages) messages)")
            for r in stream {
                print(String(format: "  %3d-byte payload   %10.0f msg/s   %8.1f MB/s   %.3f kicks/msg", r.payload, r.messagesPerSecond, r.megabytesPerSecond, r.kicksPerMessage))
            }
        }
        if let echo = report.rpmsgEcho {
            print("RPMsg echo round trips (\(roundTrips) each)")
            for r in echo {
                print(String(format: "  %3d-byte payload   %10.0f rt/s    p50 %6.1f µs   p99 %6.1f µs   %.2f kicks/rt", r.payload, r.roundTripsPerSecond, r.p50Microseconds, r.p99Microseconds, r.kicksPerRoundTrip))
            }
        }
        if let board = report.board {
            print("Through the real core and the simulated board, native firmware (echo, sink)")
            for r in board {
                let ofFutex = report.futexPingPong.map { String(format: " = %.2f× futex ping-pong", r.echoRoundTripsPerSecond / $0.roundTripsPerSecond) } ?? ""
                print(String(format: "  %3d-byte payload   echo %8.0f rt/s (p50 %6.1f µs, p99 %6.1f µs)%@", r.echoPayload,
                             r.echoRoundTripsPerSecond, r.echoP50Microseconds, r.echoP99Microseconds, ofFutex))
                print(String(format: "                     per round trip: %5.2f µs CPU, %4.2f voluntary context switches, %.2f kicks to the remote, %.2f to the host",
                             r.echoCost.cpuMicroseconds, r.echoCost.voluntarySwitches, r.echoKicks.toRemote, r.echoKicks.toHost))
                print(String(format: "                     stream %9.0f msg/s %7.1f MB/s   per message: %5.2f µs CPU, %5.3f voluntary switches",
                             r.streamMessagesPerSecond, r.streamMegabytesPerSecond, r.streamCost.cpuMicroseconds, r.streamCost.voluntarySwitches))
            }
            if let first = board.first {
                print(String(format: "  configure → load → start → stop → shutdown: median %.0f µs", first.lifecycleCycleMedianMicroseconds))
            }
            if let boot = report.boardBootToAnnouncement { print("  " + Self.describe(boot)) }
            if let idle = report.boardIdleCPUPercent { print(String(format: "  host CPU, booted board, firmware waiting: %.2f %% of one core", idle)) }
        }
        if let emulated = report.emulated {
            print(String(format: "Emulated firmware (Unicorn): %d ELFs built in %.2f s", emulated.programs, emulated.firmwareBuildSeconds))
            for r in emulated.emulated {
                print(String(format: "  %-9@  echo %7.0f rt/s (p50 %6.1f µs, p99 %6.1f µs) = %.2f× native   echo workload %5.1f M insn/s (%.0f insn/rt)",
                             r.architecture, r.echoRoundTripsPerSecond, r.echoP50Microseconds, r.echoP99Microseconds, r.echoOfNative,
                             r.echoWorkloadInstructionsPerSecond / 1e6, r.echoInstructionsPerRoundTrip))
                print(String(format: "             compute loop %6.0f M insn/s = %.2f× raw Unicorn (%.0f M insn/s, same loop, bare engine)",
                             r.computeInstructionsPerSecond / 1e6, r.computeOfRawUnicorn, r.rawUnicornComputeInstructionsPerSecond / 1e6))
                print("             " + Self.describe(r.bootToAnnouncement))
                print(String(format: "             echo kicks per round trip: %.2f to the remote, %.2f to the host", r.echoKicks.toRemote, r.echoKicks.toHost))
                for s in r.stream {
                    print(String(format: "             stream %3d B into rpmsg-sink: %8.0f msg/s  %6.2f MB/s   %.3f kicks/msg to the remote, %.3f to the host",
                                 s.payload, s.messagesPerSecond, s.megabytesPerSecond, s.kicks.toRemote, s.kicks.toHost))
                }
                if let irq = r.interruptEcho {
                    print(String(format: "             interrupt-driven echo (irq-echo): %7.0f rt/s (p50 %6.1f µs, p99 %6.1f µs) = %.2f× the WAIT echo",
                                 irq.roundTripsPerSecond, irq.p50Microseconds, irq.p99Microseconds, irq.ofWaitEcho))
                    print(String(format: "             interrupt latency, host kick → handler (core in wfi, 0 instructions between): p50 %6.1f µs, p99 %6.1f µs",
                                 irq.latencyP50Microseconds, irq.latencyP99Microseconds))
                    print(String(format: "             compute loop with a 1 kHz timer interrupt: %6.0f M insn/s = %.2f× without",
                                 irq.computeWithInterruptsInstructionsPerSecond / 1e6, irq.computeWithInterruptsOfWithout))
                }
            }
            print(String(format: "  native echo firmware, same host side: %7.0f rt/s", emulated.nativeEchoRoundTripsPerSecond))
        }
        if let debug = report.debug {
            print("Debugging the emulated core: GDB requests over loopback TCP (gdb's own round trips), compute loop speed")
            for r in debug {
                print(String(format: "  %-9@  single step p50 %6.1f µs (p99 %6.1f µs)   read registers %6.1f µs   read 256 B %6.1f µs", r.architecture,
                             r.stepP50Microseconds, r.stepP99Microseconds, r.registersP50Microseconds, r.memoryReadP50Microseconds))
                print(String(format: "             attached, running: %6.0f M insn/s   with a watchpoint set: %6.2f M insn/s",
                             r.attachedInstructionsPerSecond / 1e6, r.watchpointInstructionsPerSecond / 1e6))
            }
        }
        if let power = report.power {
            print("Suspend and resume (the calls, host side; \(max(iterations * 10, 100)) cycles each)")
            for r in power.latency {
                print("  " + RprocSimReport.pad("\(r.firmware), \(r.kind), core \(r.core)", 36)
                      + String(format: "suspend p50 %7.1f µs p99 %7.1f µs   resume p50 %6.1f µs p99 %6.1f µs",
                               r.suspendP50Microseconds, r.suspendP99Microseconds, r.resumeP50Microseconds, r.resumeP99Microseconds))
            }
            for c in power.idleCPU {
                print("  " + RprocSimReport.pad("host CPU, \(c.firmware)", 36)
                      + String(format: "running idle %5.2f %%   suspended %5.2f %%   (%.0f s each)", c.runningIdlePercent, c.suspendedPercent, c.seconds))
            }
        }
        if let virtual = report.virtualTime { VirtualTimeBench.print(virtual) }
        for (name, pingPong) in [("futex", report.futexPingPong), ("spin ", report.spinPingPong)] {
            guard let pingPong else { continue }
            print(String(format: "Reference: %@ ping-pong between two threads   %10.0f rt/s   per round trip: %5.2f µs CPU, %4.2f voluntary context switches",
                         name, pingPong.roundTripsPerSecond, pingPong.cost.cpuMicroseconds, pingPong.cost.voluntarySwitches))
        }
    }

    private static func describe(_ boot: BoardBench.BootToAnnouncement) -> String {
        String(format: "start → announcement (%@, %d boots): p50 %.0f µs, p99 %.0f µs, max %.0f µs; configure + load + start → announcement: p50 %.0f µs, p99 %.0f µs",
               boot.firmware, boot.boots, boot.p50Microseconds, boot.p99Microseconds, boot.maxMicroseconds,
               boot.fromConfigureP50Microseconds, boot.fromConfigureP99Microseconds)
    }

    /// The load suite's runs of each measure (ten per `--iterations`: a run is tens of µs).
    private var loadRounds: Int { iterations * 10 }

    private func loadBenchmarks() throws -> [Result] {
        let size = sizeMiB << 20
        var generator = SystemRandomNumberGenerator()
        let payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let table = try ResourceTable(entries: [
            .vdev(VirtioDeviceResource(deviceFeatures: [.rpmsgNameService], vrings: [VringResource(count: 256), VringResource(count: 256)])),
            .trace(TraceResource(deviceAddress: ResourceAddress(0x2000_1000), length: 2048, name: "trace")),
        ])
        // Laid out as a linker does (segment offsets congruent to addresses modulo the page), so
        // the copy is between page-aligned source and target, as for a real firmware image.
        let (image, layout) = ELFWriter.build(segments: [.init(address: 0, bytes: payload)], entry: 1,
                                              resourceTable: (0x2000_0000, table.bytes), pageSize: 4096)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rproc-sim-bench-\(getpid()).elf")
        try Data(image).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        let platform = try LoadOnlyPlatform(codeSize: size + (64 << 10))
        let processor = try RemoteProcessor(ops: platform)
        for memory in platform.memories { processor.addMemory(memory) }
        try processor.configure()
        let memoryStore = MemoryImageStore(["bench": image])
        let fileStore = FileImageStore()

        let target = platform.memories[0].region
        // The kernel's part of a file load alone: open the file, copy the segment's bytes out of
        // the page cache into the target (one pread), close — the floor of any load from a file.
        let segmentOffset = layout.segmentData[0]
        // The fixed cost of a load (headers, the table, its handling, the store's open and
        // reads): the same image with a 4 KiB segment.
        let small = ELFWriter.image(segments: [.init(address: 0, bytes: Array(payload.prefix(4096)))], entry: 1,
                                    resourceTable: (0x2000_0000, table.bytes), pageSize: 4096)
        let smallFile = FileManager.default.temporaryDirectory.appendingPathComponent("rproc-sim-bench-small-\(getpid()).elf")
        try Data(small).write(to: smallFile)
        defer { try? FileManager.default.removeItem(at: smallFile) }
        memoryStore.add(small, as: "small")
        let measures: [(name: String, bytes: Int, body: () throws -> Void)] = [
            ("ELF load, memory store", image.count, { try processor.load("bench", from: memoryStore) }),
            ("ELF load, file store", image.count, { try processor.load(file.path, from: fileStore) }),
            ("pread of the same bytes", image.count, {
                let opened = try RegularFile(opening: file.path)
                try target.withUnsafeMutableBytes(at: 0, count: payload.count) { try opened.read(into: $0, at: segmentOffset) }
            }),
            ("memcpy of the same bytes", image.count, { try payload.withUnsafeBytes { try target.write(bytes: $0, at: 0) } }),
            ("fixed cost, memory store", small.count, { try processor.load("small", from: memoryStore) }),
            ("fixed cost, file store", small.count, { try processor.load(smallFile.path, from: fileStore) }),
        ]
        // Interleaved, so each ratio compares figures taken side by side (the first runs warm
        // caches and page tables).
        let samples = try BenchHarness.timeInterleaved(loadRounds, warmUp: 2, measures.map(\.body))
        let results = zip(measures, samples).map { measure, s in
            Result(name: measure.name, bytes: measure.bytes, medianMicroseconds: s.median, p99Microseconds: s.p99,
                   megabytesPerSecond: Double(measure.bytes) / s.median)
        }
        try processor.shutdown()
        return results
    }
}
