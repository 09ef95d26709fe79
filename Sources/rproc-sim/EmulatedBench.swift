import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Virtio

/// Speeds of firmware on the emulated CPU: echo through the real core (against native echo
/// firmware), instructions per second on a compute loop and on the echo workload, and the time
/// to build every Firmware/ program.
enum EmulatedBench {
    struct Result: Codable {
        var architecture: String
        var echoRoundTripsPerSecond: Double
        var echoP50Microseconds: Double
        var echoP99Microseconds: Double
        var echoKicks: BoardBench.KicksPerOperation
        /// Host → remote stream into multi-service's rpmsg-sink, per payload size.
        var stream: [Stream]
        var computeInstructionsPerSecond: Double
        /// The same loop on a bare Unicorn engine (``RemoteSim/RawUnicornReference``), and the board's share of it.
        var rawUnicornComputeInstructionsPerSecond: Double
        var computeOfRawUnicorn: Double
        /// Echo rate against the native echo firmware's in this run.
        var echoOfNative: Double
        var bootToAnnouncement: BoardBench.BootToAnnouncement
        var echoWorkloadInstructionsPerSecond: Double
        var echoInstructionsPerRoundTrip: Double
        /// The same echo by interrupt-driven firmware (`irq-echo`), on the cores that take interrupts.
        var interruptEcho: InterruptEcho?
    }

    struct InterruptEcho: Codable {
        var roundTripsPerSecond: Double
        var p50Microseconds: Double
        var p99Microseconds: Double
        /// Against the WAIT-based echo of the same run.
        var ofWaitEcho: Double
        /// Host kick → the mailbox handler's first instruction (the board's trace: the kick, then
        /// the trap entry), the core asleep in `wfi`; no instruction runs in between.
        var latencyP50Microseconds: Double
        var latencyP99Microseconds: Double
        /// The compute loop with the core timer interrupting at 1 kHz (compute-irq) against
        /// without (compute), instructions per second.
        var computeWithInterruptsInstructionsPerSecond: Double
        var computeWithInterruptsOfWithout: Double
    }

    struct Stream: Codable {
        var payload: Int
        var messagesPerSecond: Double
        var megabytesPerSecond: Double
        /// Kicks each way per message (the end marker's round trip included).
        var kicks: BoardBench.KicksPerOperation
    }

    struct Report: Codable {
        var firmwareBuildSeconds: Double
        var programs: Int
        var emulated: [Result]
        var nativeEchoRoundTripsPerSecond: Double
    }

    /// Boots `firmware` with the ELF at `elf` and returns the endpoint bound to the announced service.
    static func boot(_ firmware: any FirmwareProgram, elf: URL, service: String = "rpmsg-echo",
                     onReceive: @escaping @Sendable (RPMsgMessage) -> Void) throws -> (Board, RemoteProcessor, RPMsgEndpoint) {
        try boot(firmware, service: service, load: { try $0.load(elf.path, from: FileImageStore()) }, onReceive: onReceive)
    }

    /// Boots `firmware` with the image `load` puts in place, on a board keeping time on `clock`
    /// (a virtual clock's: the caller takes part in it), and returns the endpoint bound to the
    /// announced service.
    static func boot(_ firmware: any FirmwareProgram, clock: any WaitClock = RealTimeClock.shared, service: String = "rpmsg-echo",
                     load: (RemoteProcessor) throws -> Void,
                     onReceive: @escaping @Sendable (RPMsgMessage) -> Void) throws -> (Board, RemoteProcessor, RPMsgEndpoint) {
        let board = try Board(firmware: firmware, clock: clock)
        let processor = try board.makeProcessor()
        try processor.configure()
        try load(processor)
        try processor.start()
        guard let rpmsg = try processor.makeHostRPMsg() else { throw BenchError("the image has no vdev") }
        board.trace.wakeWaiters(onActivityOf: rpmsg)
        guard board.wait(upTo: .seconds(30), until: { rpmsg.announcedServices.contains { $0.name == service } }) else {
            throw BenchError("no announcement of \(service)")
        }
        let address = rpmsg.announcedServices.first { $0.name == service }!.address
        return (board, processor, try rpmsg.createEndpoint(destination: address, onReceive: onReceive))
    }

    /// `count` 16-byte echoes.
    static func echo(_ endpoint: RPMsgEndpoint, reply: WakeSignal, count: Int) throws -> BenchHarness.RoundTrips {
        try BenchHarness.echo(endpoint, payload: [UInt8](repeating: 0x42, count: 16), reply: reply, count: count)
    }

    /// `count` messages of `payload` bytes into rpmsg-sink, then one echo through rpmsg-echo of the
    /// same firmware: the remote handles its receive ring in order, so the echo marks the end.
    static func stream(elf: URL, cpu: CPUArchitecture, payload: Int, count: Int) throws -> Stream {
        let marker = WakeSignal()
        let (board, processor, echo) = try boot(EmulatedCPU(cpu), elf: elf) { _ in marker.signal() }
        defer { try? processor.shutdown() }
        let rpmsg = echo.device
        guard board.wait(upTo: .seconds(30), until: { rpmsg.announcedServices.contains { $0.name == "rpmsg-sink" } }) else {
            throw BenchError("no rpmsg-sink")
        }
        let sink = try rpmsg.createEndpoint(destination: rpmsg.announcedServices.first { $0.name == "rpmsg-sink" }!.address) { _ in }
        let bytes = [UInt8](repeating: 0x5A, count: payload)
        let (rate, kicks) = try BoardBench.KicksPerOperation.measure(board: board, rpmsg: rpmsg, count: count) {
            try BenchHarness.rate(count) {
                for _ in 0..<count { try sink.send(bytes, timeout: .seconds(10)) }
                try echo.send([1], timeout: .seconds(10))
                guard marker.wait(timeout: .seconds(60)) else { throw BenchError("stream: the end marker did not come back") }
            }
        }
        return Stream(payload: payload, messagesPerSecond: rate, megabytesPerSecond: rate * Double(payload) / 1e6, kicks: kicks)
    }

    /// The compute programs' work (`Firmware/lib/rsim_compute.h`): 50 M passes of a 4-instruction loop.
    static let computeIterations = 50_000_000
    static let computeInstructions = 4 * computeIterations

    /// Instructions per second of a compute program: ``computeInstructions`` between start and
    /// its console line `done`.
    static func computeRate(elf: URL, cpu: CPUArchitecture, done: String) throws -> Double {
        try compute(elf: elf, cpu: cpu, done: done).perSecond
    }

    /// The same on a board keeping time on `clock` (a virtual clock's: the caller takes part in
    /// it), with the board time the run took.
    static func compute(elf: URL, cpu: CPUArchitecture, done: String, clock: any WaitClock = RealTimeClock.shared) throws
        -> (perSecond: Double, boardSeconds: Double) {
        let board = try Board(firmware: EmulatedCPU(cpu), clock: clock)
        let compute = try board.makeProcessor()
        try compute.configure()
        try compute.load(elf.path, from: FileImageStore())
        let boardStart = clock.now
        let rate = try BenchHarness.rate(computeInstructions) {
            try compute.start()
            guard board.wait(upTo: .seconds(120), until: { board.trace.consoleLines.contains { $0.hasPrefix(done) } }) else {
                throw BenchError("\(done) did not come")
            }
        }
        let boardSeconds = (clock.now - boardStart).inSeconds
        try compute.shutdown()
        return (rate, boardSeconds)
    }

    /// For each host kick in `events`, the time until the mailbox interrupt's handler was entered
    /// (kicks that coalesced into one interrupt count from the first).
    static func interruptLatency(_ events: [TraceEvent]) -> BenchHarness.Samples {
        var kickedAt: Duration?
        var samples: [Double] = []
        for event in events {
            switch event.kind {
            case .kickToRemote:
                if kickedAt == nil { kickedAt = event.time }
            case let .trap(entry) where entry.cause.hasPrefix("IRQ 0") || entry.cause == "\(MachineInterrupt.external)":
                if let kicked = kickedAt { samples.append((event.time - kicked).inMicroseconds) }
                kickedAt = nil
            default: break
            }
        }
        return BenchHarness.Samples(samples.isEmpty ? [0] : samples)
    }

    static func run(roundTrips: Int) throws -> Report {
        // Build every program for both architectures from scratch.
        let source = try FirmwareBuilder.locateSourceRoot()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rproc-sim-fw-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let builder = try FirmwareBuilder(sourceRoot: source, outputDirectory: scratch)
        var elves: [String: URL] = [:]
        let buildSeconds = try BenchHarness.seconds {
            for program in builder.programs() {
                for architecture in FirmwareArchitecture.allCases {
                    elves["\(program)-\(architecture.rawValue)"] = try builder.build(program: program, architecture: architecture)
                }
            }
        }

        // The native echo first: every emulated echo is given as a ratio of it.
        let nativeReply = WakeSignal()
        let (_, nativeProcessor, native) = try BoardBench.boot(EchoFirmware()) { _ in nativeReply.signal() }
        let nativeRate = try echo(native, reply: nativeReply, count: roundTrips).perSecond
        try nativeProcessor.shutdown()

        var results: [Result] = []
        for architecture in FirmwareArchitecture.allCases {
            let cpu: CPUArchitecture = architecture == .cortexM4 ? .cortexM4 : .rv32
            guard let echoELF = elves["echo-\(architecture.rawValue)"], let computeELF = elves["compute-\(architecture.rawValue)"],
                  let multiELF = elves["multi-service-\(architecture.rawValue)"] else {
                throw BenchError("the echo and compute programs are missing")
            }
            // Echo, no hooks.
            let reply = WakeSignal()
            let (echoBoard, processor, endpoint) = try boot(EmulatedCPU(cpu), elf: echoELF) { _ in reply.signal() }
            let (trips, kicks) = try BoardBench.KicksPerOperation.measure(board: echoBoard, rpmsg: endpoint.device, count: roundTrips) {
                try echo(endpoint, reply: reply, count: roundTrips)
            }
            try processor.shutdown()

            // The same echo with every instruction counted, for instructions per round trip.
            let counter = InstructionCounter()
            let countedReply = WakeSignal()
            let (_, countedProcessor, counted) = try boot(EmulatedCPU(cpu, countingInto: counter), elf: echoELF) { _ in countedReply.signal() }
            let before = counter.value
            let countedTrips = max(100, roundTrips / 10)
            _ = try echo(counted, reply: countedReply, count: countedTrips)
            let perTrip = Double(counter.value - before) / Double(countedTrips)
            try countedProcessor.shutdown()

            let computeRate = try Self.computeRate(elf: computeELF, cpu: cpu, done: "compute: done")
            let rawRate = try RawUnicornReference.computeLoopRate(cpu, iterations: UInt32(computeIterations))
            let boots = try BoardBench.bootToAnnouncement(firmware: "echo, \(architecture.rawValue)", count: 50,
                                                          image: { try $0.load(echoELF.path, from: FileImageStore()) }) {
                try Board(firmware: EmulatedCPU(cpu))
            }

            let streams = try [16, 496].map { try stream(elf: multiELF, cpu: cpu, payload: $0, count: roundTrips * 4) }

            // Interrupt-driven echo: round trips, and from the board's trace the latency of each kick.
            var interruptEcho: InterruptEcho?
            if let irqELF = elves["irq-echo-\(architecture.rawValue)"], let computeIrqELF = elves["compute-irq-\(architecture.rawValue)"] {
                let irqReply = WakeSignal()
                let (irqBoard, irqProcessor, irqEndpoint) = try boot(EmulatedCPU(cpu), elf: irqELF) { _ in irqReply.signal() }
                let irqTrips = try echo(irqEndpoint, reply: irqReply, count: roundTrips)
                let latency = interruptLatency(irqBoard.trace.events)
                try irqProcessor.shutdown()
                let interruptRate = try Self.computeRate(elf: computeIrqELF, cpu: cpu, done: "compute-irq: done")
                interruptEcho = InterruptEcho(roundTripsPerSecond: irqTrips.perSecond, p50Microseconds: irqTrips.latency.median,
                                              p99Microseconds: irqTrips.latency.p99, ofWaitEcho: irqTrips.perSecond / trips.perSecond,
                                              latencyP50Microseconds: latency.median, latencyP99Microseconds: latency.p99,
                                              computeWithInterruptsInstructionsPerSecond: interruptRate,
                                              computeWithInterruptsOfWithout: interruptRate / computeRate)
            }
            results.append(Result(architecture: architecture.rawValue, echoRoundTripsPerSecond: trips.perSecond, echoP50Microseconds: trips.latency.median,
                                  echoP99Microseconds: trips.latency.p99, echoKicks: kicks, stream: streams,
                                  computeInstructionsPerSecond: computeRate, rawUnicornComputeInstructionsPerSecond: rawRate,
                                  computeOfRawUnicorn: computeRate / rawRate, echoOfNative: trips.perSecond / nativeRate, bootToAnnouncement: boots,
                                  echoWorkloadInstructionsPerSecond: perTrip * trips.perSecond,
                                  echoInstructionsPerRoundTrip: perTrip, interruptEcho: interruptEcho))
        }

        return Report(firmwareBuildSeconds: buildSeconds, programs: elves.count, emulated: results, nativeEchoRoundTripsPerSecond: nativeRate)
    }
}
