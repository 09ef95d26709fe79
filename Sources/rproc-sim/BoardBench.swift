import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Virtio

/// Speeds through the real remoteproc core and the simulated board with native firmware.
enum BoardBench {
    struct Result: Codable {
        var echoPayload: Int
        var echoRoundTripsPerSecond: Double
        var echoP50Microseconds: Double
        var echoP99Microseconds: Double
        /// Process CPU time and voluntary context switches per round trip.
        var echoCost: OperationCost
        /// Kicks per round trip, host → remote and remote → host.
        var echoKicks: KicksPerOperation
        var streamPayload: Int
        var streamMessagesPerSecond: Double
        var streamMegabytesPerSecond: Double
        /// Per message.
        var streamCost: OperationCost
        var lifecycleCycleMedianMicroseconds: Double
    }

    /// Kicks each way per operation (a message, a round trip).
    struct KicksPerOperation: Codable {
        var toRemote: Double
        var toHost: Double

        /// What `body` returns, and what it kicked each way per operation (it does `count` over
        /// `rpmsg` on `board`).
        static func measure<T>(board: Board, rpmsg: RPMsgDevice, count: Int, _ body: () throws -> T) rethrows -> (result: T, kicks: KicksPerOperation) {
            func toRemote() -> Int { rpmsg.statistics.transmitQueueKicks + rpmsg.statistics.receiveQueueKicks }
            let (remote, host) = (toRemote(), board.mailbox.hostInterrupts.raiseCount)
            let result = try body()
            return (result, KicksPerOperation(toRemote: Double(toRemote() - remote) / Double(count),
                                              toHost: Double(board.mailbox.hostInterrupts.raiseCount - host) / Double(count)))
        }
    }

    /// `processor.start()` → the host has the firmware's name-service announcement (the host's
    /// RPMsg set up on the way, as a Linux host does), over fresh boots.
    struct BootToAnnouncement: Codable {
        var firmware: String
        var boots: Int
        /// From the host's start.
        var p50Microseconds: Double
        var p99Microseconds: Double
        var maxMicroseconds: Double
        /// The whole boot: from configure (the board powered; an emulated core's engine is
        /// opened then), through load and start.
        var fromConfigureP50Microseconds: Double
        var fromConfigureP99Microseconds: Double

        init(firmware: String, samples: BenchHarness.Samples, fromConfigure: BenchHarness.Samples) {
            self.firmware = firmware
            boots = samples.count
            p50Microseconds = samples.median
            p99Microseconds = samples.p99
            maxMicroseconds = samples.max
            fromConfigureP50Microseconds = fromConfigure.median
            fromConfigureP99Microseconds = fromConfigure.p99
        }
    }

    /// Times `count` boots of `make()`'s board with `image`, each from start to the announcement.
    static func bootToAnnouncement(firmware name: String, count: Int, image load: (RemoteProcessor) throws -> Void,
                                   _ make: () throws -> Board) throws -> BootToAnnouncement {
        var samples: [Double] = [], whole: [Double] = []
        for _ in 0..<count {
            let board = try make()
            let processor = try board.makeProcessor()
            let configure = BenchHarness.clock.now
            try processor.configure()
            try load(processor)
            let announced = WakeSignal()
            let start = BenchHarness.clock.now
            try processor.start()
            guard let rpmsg = try processor.makeHostRPMsg() else { throw BenchError("the image has no vdev") }
            rpmsg.onNameServiceAnnouncement { _, _ in announced.signal() }
            guard announced.wait(timeout: .seconds(10)) else { throw BenchError("\(name): no announcement within 10 s") }
            let now = BenchHarness.clock.now
            samples.append((now - start).inMicroseconds)
            whole.append((now - configure).inMicroseconds)
            try processor.shutdown()
        }
        return BootToAnnouncement(firmware: name, samples: BenchHarness.Samples(samples), fromConfigure: BenchHarness.Samples(whole))
    }

    /// Host CPU (% of one core) with a booted board whose native echo firmware waits for messages.
    static func idleCPUPercent(seconds: Double) throws -> Double {
        let (board, processor, _) = try boot(EchoFirmware()) { _ in }
        defer { try? processor.shutdown() }
        return BenchReferences.idleCPUPercent(seconds: seconds, clock: board.clock)
    }

    static func image() throws -> [UInt8] {
        let table = try ResourceTable(entries: [
            .vdev(VirtioDeviceResource(deviceFeatures: [.rpmsgNameService, .ringEventIndex],
                                       vrings: [VringResource(count: 256), VringResource(count: 256)])),
        ])
        return ELFWriter.image(segments: [.init(address: 0, bytes: [0, 0x20, 0x04, 0x20, 0x41, 0, 0, 0])], entry: 0x41,
                               resourceTable: (0x2000_0000, table.bytes))
    }

    /// Boots `firmware` on a fresh board and returns the host's RPMsg endpoint bound to the announced service.
    static func boot(_ firmware: any FirmwareProgram, onReceive: @escaping @Sendable (RPMsgMessage) -> Void) throws
        -> (Board, RemoteProcessor, RPMsgEndpoint) {
        let board = try Board(firmware: firmware)
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load("fw", from: MemoryImageStore(["fw": try image()]))
        try processor.start()
        guard let rpmsg = try processor.makeHostRPMsg() else { throw BenchError("the image has no vdev") }
        let announced = WakeSignal()
        let service = MetalMutex<RPMsgAddress?>(nil)
        rpmsg.onNameServiceAnnouncement { _, address in
            service.withLock { $0 = address }
            announced.signal()
        }
        guard announced.wait(timeout: .seconds(10)), let address = service.withLock({ $0 }) else { throw BenchError("no announcement from the firmware") }
        return (board, processor, try rpmsg.createEndpoint(destination: address, onReceive: onReceive))
    }

    static func run(payload: Int, roundTrips: Int, messages: Int, cycles: Int) throws -> Result {
        // Echo round trips.
        let reply = WakeSignal()
        let (echoBoard, echoProcessor, echo) = try boot(EchoFirmware()) { _ in reply.signal() }
        let bytes = [UInt8](repeating: 0x3C, count: payload)
        let ((trips, echoCost), echoKicks) = try KicksPerOperation.measure(board: echoBoard, rpmsg: echo.device, count: roundTrips) {
            try OperationCost.measure(roundTrips) { try BenchHarness.echo(echo, payload: bytes, reply: reply, count: roundTrips) }
        }
        try echoProcessor.shutdown()

        // A one-way stream into the sink, then one query that waits for all of it.
        let counted = MetalMutex<UInt32?>(nil)
        let answered = WakeSignal()
        let (_, sinkProcessor, sink) = try boot(SinkFirmware()) { message in
            let b = message.payload
            if b.count == 4 { counted.withLock { $0 = b.enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) } } }
            answered.signal()
        }
        let (streamRate, streamCost) = try OperationCost.measure(messages) {
            try BenchHarness.rate(messages) {
                for _ in 0..<messages { try sink.send(bytes, timeout: .seconds(10)) }
                try sink.send(Array("count?".utf8), timeout: .seconds(10))
                guard answered.wait(timeout: .seconds(30)), counted.withLock({ $0 }) == UInt32(messages) else {
                    throw BenchError("stream: the sink counted \(String(describing: counted.withLock { $0 })) of \(messages)")
                }
            }
        }
        try sinkProcessor.shutdown()

        // configure → load → start → stop → shutdown.
        let board = try Board(firmware: EchoFirmware())
        let processor = try board.makeProcessor()
        let store = MemoryImageStore(["fw": try image()])
        let cycle = try BenchHarness.time(cycles) {
            try processor.configure()
            try processor.load("fw", from: store)
            try processor.start()
            try processor.stop()
            try processor.shutdown()
        }
        return Result(echoPayload: payload, echoRoundTripsPerSecond: trips.perSecond, echoP50Microseconds: trips.latency.median,
                      echoP99Microseconds: trips.latency.p99, echoCost: echoCost, echoKicks: echoKicks, streamPayload: payload, streamMessagesPerSecond: streamRate,
                      streamMegabytesPerSecond: streamRate * Double(payload) / 1e6, streamCost: streamCost,
                      lifecycleCycleMedianMicroseconds: cycle.median)
    }
}
