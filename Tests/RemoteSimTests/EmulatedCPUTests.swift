import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import Virtio

extension FirmwareArchitecture {
    var cpu: CPUArchitecture { self == .cortexM4 ? .cortexM4 : .rv32 }
}

/// A board running the ELF of `Firmware/programs/NAME` on an emulated CPU, loaded and started.
func emulatedBoard(_ program: String, _ architecture: FirmwareArchitecture, pollMode: Bool = false) throws -> (Board, RemoteProcessor) {
    let elf = try FirmwareBuilder.forThisPackage().build(program: program, architecture: architecture)
    let board = try Board(firmware: EmulatedCPU(architecture.cpu), pollMode: pollMode)
    let processor = try board.makeProcessor()
    try processor.configure()
    try processor.load(elf.path, from: FileImageStore())
    try processor.start()
    return (board, processor)
}

func waitUntil(_ timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now > deadline { return false }
        usleep(500)
    }
    return true
}

@Suite("Emulated CPU")
struct EmulatedCPUTests {
    @Test("minimal firmware boots on the emulated core, prints, answers a kick, and stops while waiting",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func minimal(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("minimal", architecture)
        #expect(waitUntil { board.trace.consoleLines.contains("minimal: hello from \(architecture.rawValue)") },
                "console: \(board.trace.consoleLines), halt: \(String(describing: board.lastHalt))")
        // A host kick wakes the firmware, which kicks back on id 0.
        try board.notify(NotifyID(3))
        #expect(waitUntil { board.trace.events.contains { $0.kind == .kickToHost(0) } })
        let clock = ContinuousClock()
        let start = clock.now
        try processor.stop()
        #expect(clock.now - start < .seconds(2))
        #expect(board.lastHalt?.reason == .stopped)
        // The trace buffer the firmware filled reaches the trace too.
        #expect(board.trace.events.contains { if case let .console(line, true) = $0.kind { line.contains("minimal") } else { false } })
        try processor.shutdown()
        // Restart after stop: configure, load, start again on the same board.
        try processor.configure()
        try processor.load(try FirmwareBuilder.forThisPackage().build(program: "minimal", architecture: architecture).path, from: FileImageStore())
        try processor.start()
        #expect(waitUntil { board.trace.consoleLines.filter { $0.hasPrefix("minimal: hello") }.count >= 2 })
        try processor.shutdown()
    }
}

@Suite("Emulated firmware programs")
struct EmulatedProgramTests {
    /// Boots `program`, puts the host's RPMsg on its vdev and waits for `service` to be announced.
    func boot(_ program: String, _ architecture: FirmwareArchitecture, service: String = "rpmsg-echo") throws
        -> (Board, RemoteProcessor, RPMsgDevice, RPMsgAddress) {
        let (board, processor) = try emulatedBoard(program, architecture)
        let rpmsg = try hostRPMsg(processor)
        let found = waitUntil { rpmsg.announcedServices.contains { $0.name == service } }
        let address = try #require(found ? rpmsg.announcedServices.first { $0.name == service }?.address : nil,
                                   "no announcement of \(service); console \(board.trace.consoleLines), halt \(String(describing: board.lastHalt)), state \(processor.state)")
        return (board, processor, rpmsg, address)
    }

    @Test("every program in Firmware/programs builds for both architectures (the board library and both crt0s with it)",
          .timeLimit(.minutes(5)), arguments: FirmwareArchitecture.allCases)
    func everyProgramBuilds(architecture: FirmwareArchitecture) throws {
        let builder = try FirmwareBuilder.forThisPackage()
        let programs = builder.programs()
        #expect(programs.contains("irq-echo") && programs.contains("tick"))
        for program in programs { _ = try builder.build(program: program, architecture: architecture) }
    }

    @Test("echo: 10,000 messages with content checked through the real core and the emulated CPU", .timeLimit(.minutes(3)),
          arguments: FirmwareArchitecture.allCases)
    func echo(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("echo", architecture)
        let echo = try EchoClient(board: board, processor: processor)
        #expect(try echo.roundTrips(10_000, tag: "emulated") == 10_000)
        try processor.stop()
        try processor.shutdown()
    }
}

@Suite("Emulated firmware: faults, services, console")
struct EmulatedFaultTests {
    func crashReport(_ processor: RemoteProcessor) -> CrashReport? {
        _ = waitUntil { processor.state == .crashed }
        return processor.crashReport
    }

    @Test("crash: a load from 0xDEADBEEF after 10 messages is a fault with the address, a PC inside main and the registers; recovery brings the echo back",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func crash(architecture: FirmwareArchitecture) throws {
        let (board, processor, rpmsg, service) = try EmulatedProgramTests().boot("crash", architecture)
        let client = try rpmsg.createEndpoint(destination: service) { _ in }
        for i in 0..<10 { try client.send([UInt8(i)], timeout: .seconds(5)) }
        let report = try #require(crashReport(processor), "console \(board.trace.consoleLines)")
        #expect(report.kind == .fault)
        #expect(report.address == DeviceAddress(0xDEAD_BEEF))
        let elf = try FirmwareBuilder.forThisPackage().build(program: "crash", architecture: architecture)
        let store = FileImageStore()
        let image = try ELFImage(store: store, fileSize: try store.open(elf.path), path: elf.path)
        let main = try #require(try image.symbols(from: store).first { $0.name == "main" })
        store.close()
        let pc = try #require(report.programCounter)
        #expect(main.contains(pc.rawValue), "pc \(pc) is not in main [\(hex(main.value)), +\(main.size))")
        #expect(report.registers["pc"] == pc.rawValue)
        #expect(report.registers.count >= (architecture == .cortexM4 ? 17 : 32))
        #expect(report.console.contains { $0.hasPrefix("crash: loading from 0xdeadbeef") })

        try processor.recover()
        #expect(processor.state == .running)
        let again = try hostRPMsg(processor)
        #expect(waitUntil { !again.announcedServices.isEmpty })
        let got = WakeSignal()
        let echo = try again.createEndpoint(destination: try #require(again.announcedServices.first?.address)) { _ in got.signal() }
        try echo.send([42], timeout: .seconds(5))
        #expect(got.wait(timeout: .seconds(10)))
        try processor.shutdown()
    }

    @Test("panic and hang reach the host as Crashed with their kind", .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func panicAndHang(architecture: FirmwareArchitecture) throws {
        let (panicBoard, panicking) = try emulatedBoard("panic", architecture)
        let panic = try #require(crashReport(panicking), "console \(panicBoard.trace.consoleLines)")
        #expect(panic.kind == .panic && panic.code == 0xBAD0)
        #expect(panic.console.contains("panic: last words"))
        try panicking.shutdown()

        let (hangBoard, hanging) = try emulatedBoard("hang", architecture)
        let hang = try #require(crashReport(hanging), "console \(hangBoard.trace.consoleLines)")
        #expect(hang.kind == .watchdog)
        try hanging.shutdown()
    }

    @Test("ping (with EVENT_IDX negotiated): the firmware finds the host's service and checks 100 replies",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func ping(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("ping", architecture)
        let rpmsg = try hostRPMsg(processor)
        #expect(rpmsg.features.contains(.ringEventIndex), "ping offers EVENT_IDX: the library's event-index paths run")
        // A Linux host announces a channel it creates with a fixed address.
        _ = try rpmsg.createEndpoint(name: "rpmsg-ping", address: RPMsgAddress(1100)) { m in
            try? rpmsg.send(m.payload, from: m.destination, to: m.source, timeout: .seconds(5))
        }
        #expect(waitUntil { board.trace.consoleLines.contains("ping: 100/100 replies ok") },
                "console \(board.trace.consoleLines), crash \(String(describing: processor.crashReport))")
        try processor.shutdown()
    }

    @Test("multi-service: four services, each behaving as described", .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func multiService(architecture: FirmwareArchitecture) throws {
        let (_, processor, rpmsg, _) = try EmulatedProgramTests().boot("multi-service", architecture, service: "rpmsg-sink")
        #expect(waitUntil { rpmsg.announcedServices.count == 4 })
        let services = Dictionary(rpmsg.announcedServices.map { ($0.name, $0.address) }, uniquingKeysWith: { a, _ in a })
        let reply = MetalMutex<[UInt8]?>(nil)
        let got = WakeSignal()
        let upper = try rpmsg.createEndpoint(destination: try #require(services["rpmsg-upper"])) { m in reply.withLock { $0 = m.payload }; got.signal() }
        try upper.send(Array("Hello, Board".utf8), timeout: .seconds(5))
        #expect(got.wait(timeout: .seconds(10)))
        #expect(reply.withLock { $0 } == Array("HELLO, BOARD".utf8))
        let count = try rpmsg.createEndpoint(destination: try #require(services["rpmsg-count"])) { m in reply.withLock { $0 = m.payload }; got.signal() }
        try count.send([0], timeout: .seconds(5))
        #expect(got.wait(timeout: .seconds(10)))
        #expect(reply.withLock { $0 } == [1, 0, 0, 0])
        try processor.shutdown()
    }

    @Test("printf: formatted lines reach the console and the trace buffer", .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func printf(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("printf", architecture)
        #expect(waitUntil { board.trace.consoleLines.contains { $0.hasPrefix("printf: done") } }, "\(board.trace.consoleLines)")
        #expect(board.trace.consoleLines.contains { $0.hasPrefix("printf: -42 42 beef str c ") && $0.hasSuffix(" %") })
        #expect(board.trace.consoleLines.contains("printf: [   42] [42   ] [00042] [-0042] [0000beef] [BEEF]")
                || board.trace.consoleLines.contains { $0.hasPrefix("printf: [   42] [42   ] [00042]") })
        // Each character goes to the console, then to the trace buffer: the last line's newline
        // reaches the buffer a few instructions after the console's (so wait for it, not stop).
        #expect(waitUntil {
            board.collectTraceBuffer()
            return board.trace.events.contains { if case let .console(line, true) = $0.kind { line.hasPrefix("printf: done") } else { false } }
        })
        try processor.stop()
        try processor.shutdown()
    }
}

@Suite("Emulated firmware: illegal instructions")
struct EmulatedIllegalInstructionTests {
    @Test("an undefined instruction halts the core with a fault whose PC is in the function that executed it",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func illegal(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("illegal", architecture)
        _ = waitUntil { processor.state == .crashed }
        let report = try #require(processor.crashReport, "console \(board.trace.consoleLines)")
        #expect(report.kind == .fault)
        let elf = try FirmwareBuilder.forThisPackage().build(program: "illegal", architecture: architecture)
        let store = FileImageStore()
        let image = try ELFImage(store: store, fileSize: try store.open(elf.path), path: elf.path)
        let function = try #require(try image.symbols(from: store).first { $0.name == "execute_illegal" })
        store.close()
        let pc = try #require(report.programCounter)
        #expect(function.contains(pc.rawValue), "pc \(pc) not in execute_illegal at \(hex(function.value)) (\(report.message))")
        #expect(report.message.contains("illegal instruction") || report.message.contains("exception"), "\(report.message)")
        try processor.shutdown()
    }
}
