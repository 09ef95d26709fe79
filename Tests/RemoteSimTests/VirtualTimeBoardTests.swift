import FirmwareKit
import MetalIO
import Remoteproc
@testable import RemoteSim
import Testing
import Virtio

/// A board in virtual time, with the test's thread in its schedule (call `clock.leave()` at the end).
private func virtualBoard(_ program: String, _ architecture: FirmwareArchitecture) throws -> (Board, RemoteProcessor, VirtualClock) {
    let elf = try FirmwareBuilder.forThisPackage().build(program: program, architecture: architecture)
    let clock = VirtualClock()
    clock.join()
    let board = try Board(firmware: EmulatedCPU(architecture.cpu), clock: clock)
    let processor = try board.makeProcessor()
    try processor.configure()
    try processor.load(elf.path, from: FileImageStore())
    try processor.start()
    return (board, processor, clock)
}

@Suite("A board in virtual time")
struct VirtualTimeBoardTests {
    @Test("a host interrupt thread is refused with virtual time, with a clear error")
    func threadedInterruptsRefused() throws {
        #expect {
            _ = try Board(firmware: EchoFirmware(), hostInterrupts: .thread, clock: VirtualClock())
        } throws: { error in
            guard let error = error as? BoardError, case .realTimeOnly = error.kind else { return false }
            return "\(error)".contains("needs real time")
        }
        // Poll mode (no thread) and inline delivery are fine.
        _ = try Board(firmware: EchoFirmware(), pollMode: true, clock: VirtualClock())
        _ = try Board(firmware: EchoFirmware(), clock: VirtualClock())
    }

    @Test("a busy core's instructions are its time: the watchdog fires 20 ms of core time after the last kick, not after a host-side wait",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func busyLoopWatchdog(architecture: FirmwareArchitecture) throws {
        let (board, processor, clock) = try virtualBoard("hang", architecture)
        defer { clock.leave() }
        // The host waits for the crash, with a deadline far beyond it: the busy core cannot hold
        // time back (its runs end at the watchdog's deadline), and nothing waits in wall time.
        #expect(board.wait(upTo: .seconds(60)) { processor.state == .crashed })
        #expect(processor.crashReport?.kind == .watchdog)
        let events = board.trace.events
        let armed = try #require(events.last { if case .watchdog = $0.kind { true } else { false } })
        let crashed = try #require(events.first { if case .crash = $0.kind { true } else { false } })
        let after = crashed.time - armed.time
        #expect(after >= .milliseconds(20) && after < .milliseconds(21), "\(after)")
        #expect(clock.now.sinceOrigin < .seconds(1))
        try processor.shutdown()
    }

    @Test("a native firmware that spins on checkStop lets virtual time pass: its watchdog fires 20 ms after its last kick", .timeLimit(.minutes(1)))
    func nativeBusyLoopWatchdog() throws {
        let clock = VirtualClock()
        clock.join()
        defer { clock.leave() }
        let board = try Board(firmware: HangFirmware(), clock: clock)
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load("fw", from: MemoryImageStore(["fw": try NativeImage.make()]))
        try processor.start()
        #expect(board.wait(upTo: .seconds(60)) { processor.state == .crashed })
        #expect(processor.crashReport?.kind == .watchdog)
        let events = board.trace.events
        let armed = try #require(events.last { if case .watchdog = $0.kind { true } else { false } })
        let crashed = try #require(events.first { if case .crash = $0.kind { true } else { false } })
        #expect(crashed.time - armed.time >= .milliseconds(20) && crashed.time - armed.time < .milliseconds(21), "\(crashed.time - armed.time)")
        try processor.shutdown()
    }

    @Test("the firmware library drains a backlog with its receive ring quiet: no kick for what the host adds meanwhile, kicks again once it is empty",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func quietWhileDraining(architecture: FirmwareArchitecture) throws {
        let (board, processor, clock) = try virtualBoard("multi-service", architecture)
        defer { clock.leave() }
        guard let rpmsg = try processor.attachHostRPMsg().device else { throw BoardError("test", .noProcessor) }
        #expect(board.wait(upTo: .seconds(1)) { rpmsg.announcedServices.contains { $0.name == "rpmsg-sink" } })
        let sink = try #require(rpmsg.announcedServices.first { $0.name == "rpmsg-sink" })
        let endpoint = try rpmsg.createEndpoint(destination: sink.address) { _ in }
        // The host → remote ring (vring 1) as the host placed it, read from the remote's memory.
        let installed = try #require(processor.installedResourceTable)
        let vdev = try #require(installed.table.virtioDevices.first?.device)
        let ring = vdev.vrings[1]
        let address = try #require(ring.deviceAddress.device)
        let layout = try VringLayout(count: Int(ring.count), alignment: Int(ring.alignment))
        func usedIndex() throws -> UInt16 {
            try VringSnapshot(layout: layout, at: address.rawValue) { device, count in
                guard let found = processor.memory(containingDevice: DeviceAddress(device), size: count) else { return nil }
                return try? found.memory.region.readBytes(at: found.offset, count: count)
            }.usedIndex
        }
        #expect(board.wait(upTo: .seconds(1)) { board.mailbox.isCoreWaiting })
        let start = try usedIndex()
        func kicks() -> Int { rpmsg.statistics.transmitQueueKicks }

        // A backlog, queued while the core waits (no time passes in the host's sends).
        let backlog = 16
        for i in 0..<backlog { try endpoint.send(Array("message \(i)".utf8), timeout: .seconds(1)) }
        // The core runs in steps of 200 ns of its time; once it has taken some of the backlog
        // and not all, one more message is sent: the ring is quiet, so it is not kicked for.
        var sentWhileDraining = false
        for _ in 0..<100_000 where !sentWhileDraining {
            clock.advance(by: .nanoseconds(200))
            let taken = Int(try usedIndex() &- start)
            guard taken > 0 && taken < backlog else { continue }
            let before = kicks()
            try endpoint.send(Array("while draining".utf8), timeout: .seconds(1))
            #expect(kicks() == before, "kicked while the remote drained (\(taken) of \(backlog) taken)")
            sentWhileDraining = true
        }
        #expect(sentWhileDraining, "never saw the remote part-way through its backlog")
        // Drained (the extra message too, though it was not kicked for), the core waits again with
        // kicks on: the next message is kicked for and taken.
        #expect(board.wait(upTo: .seconds(1)) { (try? usedIndex()) == start &+ UInt16(backlog + 1) && board.mailbox.isCoreWaiting })
        let before = kicks()
        try endpoint.send(Array("after".utf8), timeout: .seconds(1))
        #expect(kicks() == before + 1)
        #expect(board.wait(upTo: .seconds(1)) { (try? usedIndex()) == start &+ UInt16(backlog + 2) })
        try processor.shutdown()
    }

    @Test("emulated instructions advance the clock: an echo round trip costs the host's send plus the firmware's instructions, the same on every run",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func echoTime(architecture: FirmwareArchitecture) throws {
        func run() throws -> (perTrip: Duration, trace: [String]) {
            let (board, processor, clock) = try virtualBoard("echo", architecture)
            defer { clock.leave() }
            guard let rpmsg = try processor.attachHostRPMsg().device else { throw BoardError("test", .noProcessor) }
            #expect(board.wait(upTo: .seconds(1)) { !rpmsg.announcedServices.isEmpty })
            let service = try #require(rpmsg.announcedServices.first)
            let replies = MetalMutex(0)
            let endpoint = try rpmsg.createEndpoint(destination: service.address) { _ in replies.withLock { $0 += 1 } }
            let start = clock.now
            for i in 1...100 {
                try board.send(Array("ping \(i)".utf8), through: endpoint, timeout: .seconds(1))
                #expect(board.wait(upTo: .seconds(1)) { replies.withLock { $0 } == i })
            }
            let perTrip = (clock.now - start) / 100
            let trace = board.trace.events.map { "\($0.time) \($0)" }
            try processor.shutdown()
            return (perTrip, trace)
        }
        let first = try run()
        // 10 µs of host send, then a few hundred instructions at 100 MHz (10 ns each).
        #expect(first.perTrip > .microseconds(11) && first.perTrip < .microseconds(30), "\(first.perTrip)")
        let second = try run()
        #expect(second.perTrip == first.perTrip)
        #expect(second.trace == first.trace)
    }
}

@Suite("A board in virtual time, debugged", .serialized)
struct VirtualTimeDebuggerTests {
    @Test("halting in the debugger stops virtual time for everything: monitor time reads the same before and after a wall-clock pause, and the busy core's watchdog fires only after gdb lets go",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func haltStopsTime(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "hang", architecture: architecture)
        let server = try GDBServer(architecture: architecture.cpu, startHalted: true)
        defer { server.shutdown() }
        let board = try Board(firmware: EmulatedCPU(architecture.cpu, debugger: server), clock: VirtualClock())
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        defer { try? processor.shutdown() }
        // gdb (outside the schedule) stops the spinning core in main's loop, reads the time, waits
        // half a second of wall time, reads it again.
        let output = try runGDB(elf: elf.path, port: server.port, commands: [
            "break main", "continue", "monitor time", "shell sleep 0.5", "monitor time", "delete", "detach",
        ])
        let times = output.split(separator: "\n").filter { $0.hasPrefix("board time:") }
        #expect(times.count == 2, "\(output)")
        #expect(Set(times).count == 1, "time moved while the core was halted: \(times)")
        #expect(output.contains("clock: virtual time"), "\(output)")
        // Released, the core spins without kicking its watchdog: 20 ms of its time later it is a crash.
        #expect(board.wait(upTo: .seconds(10)) { processor.state == .crashed })
        #expect(processor.crashReport?.kind == .watchdog)
    }
}
