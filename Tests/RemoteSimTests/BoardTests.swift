import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import Virtio

/// An image for native firmware (``NativeImage``).
func nativeImage(vringCount: UInt32 = 256) throws -> [UInt8] { try NativeImage.make(vringCount: vringCount) }

/// The host side of RPMsg over a running board's first vdev.
func hostRPMsg(_ processor: RemoteProcessor) throws -> RPMsgDevice {
    try #require(try processor.makeHostRPMsg())
}

@Suite("Board")
struct BoardTests {
    @Test("native echo firmware through the real core: announce, 10,000 echoes with content checked, stop while waiting (kicks handled inline on the core's thread, and on a host interrupt thread)",
          .timeLimit(.minutes(2)), arguments: [InterruptDelivery.inline, .thread])
    func echo(delivery: InterruptDelivery) throws {
        let (board, processor) = try startedBoard(EchoFirmware(), hostInterrupts: delivery)
        #expect(board.mailbox.hostInterrupts.delivery == delivery)
        #expect(board.isRunning)
        let rpmsg = try hostRPMsg(processor)
        let announced = MetalMutex<RPMsgAddress?>(nil)
        let ready = WakeSignal()
        rpmsg.onNameServiceAnnouncement { name, address in
            if name == "rpmsg-echo" { announced.withLock { $0 = address }; ready.signal() }
        }
        #expect(ready.wait(timeout: .seconds(30)), "no announcement")
        let service = try #require(announced.withLock { $0 })
        let replies = MetalMutex<[[UInt8]]>([])
        let got = WakeSignal()
        let client = try rpmsg.createEndpoint(destination: service) { message in
            replies.withLock { $0.append(message.payload) }
            got.signal()
        }
        for i in 0..<10_000 {
            let payload = Array("echo \(i) ".utf8) + [UInt8](repeating: UInt8(i & 0xFF), count: i % 400)
            try client.send(payload, timeout: .seconds(5))
            guard got.wait(timeout: .seconds(5)) else { Issue.record("no reply to \(i)"); break }
            guard replies.withLock({ $0.last }) == payload else { Issue.record("reply \(i) differs"); break }
        }
        #expect(replies.withLock { $0.count } == 10_000)
        // The firmware waits in WAIT now: stop must halt it promptly.
        let clock = ContinuousClock()
        let start = clock.now
        try processor.stop()
        #expect(clock.now - start < .seconds(2))
        #expect(!board.isRunning)
        #expect(processor.state == .stopped)
        try processor.shutdown()
        #expect(processor.state == .offline)
    }
}

@Suite("Inline host interrupts")
struct InlineInterruptTests {
    @Test("a handler running inline on the core's thread: stop and suspend fail at once naming why, a send that finds no free buffer fails at once (the remote cannot free one meanwhile); afterwards everything it sent is echoed and the stop works", .timeLimit(.minutes(1)))
    func waitsForItselfAreRefused() throws {
        let (board, processor) = try startedBoard(EchoFirmware(), vringCount: 16)
        let rpmsg = try hostRPMsg(processor)
        let announced = MetalMutex<RPMsgAddress?>(nil)
        let ready = WakeSignal()
        rpmsg.onNameServiceAnnouncement { _, address in announced.withLock { $0 = address }; ready.signal() }
        #expect(ready.wait(timeout: .seconds(30)))
        let service = try #require(announced.withLock { $0 })
        struct Seen: Sendable { var stop: String?; var suspend: String?; var sent = 0; var sendError: RPMsgError?; var replies = 0; var onCoreThread = false }
        let seen = MetalMutex(Seen())
        let flooded = WakeSignal(), allBack = WakeSignal()
        let endpoint = MetalMutex<RPMsgEndpoint?>(nil)
        let client = try rpmsg.createEndpoint(destination: service) { [weak processor] message in
            let first = seen.withLock { s -> Bool in
                s.replies += 1
                return s.replies == 1
            }
            guard first, let processor, let endpoint = endpoint.withLock({ $0 }) else {
                if seen.withLock({ $0.replies == $0.sent + 1 }) { allBack.signal() }
                return
            }
            let onCore = board.isRemoteHeldByCurrentThread
            let stop: String? = { do { try processor.stop(); return nil } catch { return "\(error)" } }()
            let suspend: String? = { do { try processor.suspend(); return nil } catch { return "\(error)" } }()
            var sent = 0, failure: RPMsgError?
            for _ in 0..<100 {
                do { try endpoint.send([1, 2, 3], timeout: .seconds(5)); sent += 1 } catch { failure = error as? RPMsgError; break }
            }
            seen.withLock { $0.stop = stop; $0.suspend = suspend; $0.sent = sent; $0.sendError = failure; $0.onCoreThread = onCore }
            flooded.signal()
        }
        endpoint.withLock { $0 = client }
        let clock = ContinuousClock(), start = clock.now
        try client.send(Array("go".utf8), timeout: .seconds(5))
        #expect(flooded.wait(timeout: .seconds(10)))
        #expect(clock.now - start < .seconds(3))      // nothing waited out a timeout
        let s = seen.withLock { $0 }
        #expect(s.onCoreThread)
        #expect(s.stop?.contains("inline on the core's own thread") == true, "\(String(describing: s.stop))")
        #expect(s.suspend?.contains("inline on the core's own thread") == true, "\(String(describing: s.suspend))")
        #expect(s.sendError?.kind == .noBufferInInterruptHandler)
        #expect(s.sent > 0 && s.sent < 100)
        #expect(processor.state == .running)
        #expect(allBack.wait(timeout: .seconds(10)), "\(seen.withLock { $0.replies }) replies of \(s.sent + 1)")
        #expect(!board.isRemoteHeldByCurrentThread)
        endpoint.withLock { $0 = nil }     // the endpoint's handler holds this box: no cycle left behind
        try processor.stop()
        #expect(processor.state == .stopped)
        try processor.shutdown()
    }
}

@Suite("Board crashes and several boards")
struct BoardCrashTests {
    @Test("a remote that crashed before the host's RPMsg was up is reported as such, not as a refused call", .timeLimit(.minutes(1)))
    func crashBeforeRPMsg() throws {
        let (board, processor) = try startedBoard(PanicFirmware(code: 0x5EED, afterMicroseconds: 0))
        #expect(board.waitWhileLive(upTo: .seconds(30)) { false } == .remoteEnded(.crashed))
        guard case let .remoteCrashed(report) = try processor.attachHostRPMsg() else {
            Issue.record("attached to a crashed remote")
            return
        }
        #expect(report?.kind == .panic && report?.code == 0x5EED)
        // A remote without a crash still attaches, and a table without a vdev says so.
        let (_, healthy) = try startedBoard(EchoFirmware())
        let attachment = try healthy.attachHostRPMsg()
        #expect(attachment.device != nil)
        attachment.device?.close()
        try healthy.shutdown()
        try processor.shutdown()
    }

    @Test("a PANIC write moves the core to Crashed with its code; stop and shutdown follow", .timeLimit(.minutes(1)))
    func panic() throws {
        let (_, processor) = try startedBoard(PanicFirmware(code: 0xBAD, afterMicroseconds: 2000))
        let deadline = ContinuousClock.now + .seconds(30)
        while processor.state != .crashed && ContinuousClock.now < deadline { usleep(1000) }
        #expect(processor.state == .crashed)
        let report = try #require(processor.crashReport)
        #expect(report.kind == .panic && report.code == 0xBAD)
        try processor.stop()
        try processor.shutdown()
        #expect(processor.state == .offline)
        // And again after shutdown: configure, load, start work on the same board.
        try processor.configure()
        try processor.load("p", from: MemoryImageStore(["p": try nativeImage()]))
        try processor.start()
        try processor.shutdown()
    }

    @Test("two boards run at once, each echoing its own traffic", .timeLimit(.minutes(1)))
    func twoBoards() throws {
        var sessions: [(Board, RemoteProcessor, RPMsgEndpoint, Replies)] = []
        for index in 0..<2 {
            let (board, processor) = try startedBoard(EchoFirmware(serviceName: "echo-\(index)"), vringCount: 64)
            let rpmsg = try hostRPMsg(processor)
            let ready = WakeSignal()
            let service = MetalMutex<RPMsgAddress?>(nil)
            rpmsg.onNameServiceAnnouncement { name, address in service.withLock { $0 = address }; ready.signal() }
            #expect(ready.wait(timeout: .seconds(30)), "board \(index): \(String(describing: board.lastHalt)) state \(processor.state)")
            let replies = Replies()
            let client = try rpmsg.createEndpoint(destination: try #require(service.withLock { $0 })) { m in replies.items.withLock { $0.append(m.payload) } }
            sessions.append((board, processor, client, replies))
        }
        for i in 0..<500 {
            for (index, session) in sessions.enumerated() { try session.2.send([UInt8(index), UInt8(i & 0xFF)], timeout: .seconds(5)) }
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while sessions.contains(where: { $0.3.items.withLock { $0.count } < 500 }) && ContinuousClock.now < deadline { usleep(1000) }
        for (index, session) in sessions.enumerated() {
            let replies = session.3.items.withLock { $0 }
            #expect(replies.count == 500)
            #expect(replies.allSatisfy { $0.first == UInt8(index) }, "board \(index) got another board's traffic")
            try session.1.shutdown()
        }
    }
}

final class Replies: Sendable {
    let items = MetalMutex<[[UInt8]]>([])
}

@Suite("Board crash kinds")
struct BoardCrashKindTests {
    func waitForCrash(_ processor: RemoteProcessor) -> CrashReport? {
        let deadline = ContinuousClock.now + .seconds(30)
        while processor.state != .crashed && ContinuousClock.now < deadline { usleep(1000) }
        return processor.crashReport
    }

    @Test("a firmware that stops kicking its watchdog is crashed with kind watchdog", .timeLimit(.minutes(1)))
    func watchdog() throws {
        let (_, processor) = try startedBoard(HangFirmware())
        let report = try #require(waitForCrash(processor))
        #expect(report.kind == .watchdog)
        try processor.shutdown()
    }

    @Test("an access outside every memory after N messages is a fault at that address", .timeLimit(.minutes(1)))
    func fault() throws {
        let (board, processor) = try startedBoard(CrashFirmware(afterMessages: 3, faultAddress: 0x5000_0000))
        let rpmsg = try hostRPMsg(processor)
        let ready = WakeSignal()
        let service = MetalMutex<RPMsgAddress?>(nil)
        rpmsg.onNameServiceAnnouncement { _, address in service.withLock { $0 = address }; ready.signal() }
        #expect(ready.wait(timeout: .seconds(30)), "halt \(String(describing: board.lastHalt)), state \(processor.state), \(rpmsg.statistics)")
        let client = try rpmsg.createEndpoint(destination: try #require(service.withLock { $0 })) { _ in }
        for i in 0..<3 { try client.send([UInt8(i)], timeout: .seconds(5)) }
        let report = try #require(waitForCrash(processor))
        #expect(report.kind == .fault)
        #expect(report.address == DeviceAddress(0x5000_0000))
        try processor.shutdown()
    }
}

@Suite("Board life cycle")
struct BoardLifecycleTests {
    @Test("stop right after start, while the firmware waits for DRIVER_OK, is prompt; the cycle repeats", .timeLimit(.minutes(1)))
    func stopWhileWaitingForDriver() throws {
        let board = try Board(firmware: EchoFirmware())
        let processor = try board.makeProcessor()
        let image = MemoryImageStore(["e": try nativeImage()])
        let clock = ContinuousClock()
        for _ in 0..<5 {
            try processor.configure()
            try processor.load("e", from: image)
            try processor.start()
            let start = clock.now
            try processor.stop()
            #expect(clock.now - start < .seconds(1))
            #expect(board.lastHalt?.reason == .stopped)
            try processor.shutdown()
        }
        #expect(processor.state == .offline)
        try processor.remove()
    }
}

@Suite("Board recovery")
struct BoardRecoveryTests {
    @Test("after a fault, recovery reloads and restarts the firmware; it re-announces and traffic flows again", .timeLimit(.minutes(1)))
    func recoverAfterFault() throws {
        let (_, processor) = try startedBoard(CrashFirmware(afterMessages: 3, faultAddress: 0x5000_0000))
        for round in 0..<2 {
            let rpmsg = try hostRPMsg(processor)
            let ready = WakeSignal()
            let service = MetalMutex<RPMsgAddress?>(nil)
            rpmsg.onNameServiceAnnouncement { _, address in service.withLock { $0 = address }; ready.signal() }
            #expect(ready.wait(timeout: .seconds(30)), "round \(round): no announcement")
            let replies = Replies()
            let client = try rpmsg.createEndpoint(destination: try #require(service.withLock { $0 })) { m in replies.items.withLock { $0.append(m.payload) } }
            for i in 0..<3 { try client.send([UInt8(round), UInt8(i)], timeout: .seconds(5)) }
            let deadline = ContinuousClock.now + .seconds(30)
            while processor.state != .crashed && ContinuousClock.now < deadline { usleep(1000) }
            #expect(processor.state == .crashed)
            #expect(replies.items.withLock { $0 }.allSatisfy { $0.first == UInt8(round) })
            rpmsg.close()
            let old = try #require(processor.virtioDeviceList.first)
            try processor.recover()
            #expect(processor.state == .running)
            #expect(!old.isAvailable, "the old virtio device is gone")
            #expect(processor.virtioDeviceList.count == 1 && processor.virtioDeviceList.first !== old, "rebuilt over the reloaded table")
        }
        try processor.shutdown()
    }
}

@Suite("Board trace")
struct BoardTraceTests {
    @Test("a follower reads only what is new, also after the trace dropped its oldest events")
    func followTheTrace() {
        let trace = Trace(capacity: 10)
        for i in 0..<4 { trace.record(.warning("w\(i)")) }
        var (fresh, seen) = trace.events(after: 0)
        #expect(fresh.count == 4 && seen == 4)
        (fresh, seen) = trace.events(after: seen)
        #expect(fresh.isEmpty && seen == 4)
        for i in 4..<25 { trace.record(.warning("w\(i)")) }   // the oldest are dropped meanwhile
        (fresh, seen) = trace.events(after: seen)
        #expect(seen == 25)
        #expect(fresh.map(\.description).last?.hasSuffix("warning: w24") == true)
        #expect(fresh.count == trace.events.count, "everything still kept is new to the follower")
    }

    @Test("the trace records state changes, kicks both ways, console lines from both sources", .timeLimit(.minutes(1)))
    func trace() throws {
        let (board, processor) = try startedBoard(EchoFirmware())
        let rpmsg = try hostRPMsg(processor)
        let ready = WakeSignal()
        rpmsg.onNameServiceAnnouncement { _, _ in ready.signal() }
        #expect(ready.wait(timeout: .seconds(30)))
        try processor.stop()
        let events = board.trace.events.map(\.kind)
        #expect(events.contains(.stateChanged(from: .offline, to: .configured, call: .configure)))
        #expect(events.contains(.stateChanged(from: .running, to: .stopped, call: .stop)))
        #expect(events.contains { if case .kickToHost = $0 { true } else { false } })
        #expect(events.contains { if case .kickToRemote = $0 { true } else { false } })
        #expect(events.contains(.console("echo: ready", fromTraceBuffer: false)))
        #expect(events.contains(.console("echo: serving rpmsg-echo", fromTraceBuffer: true)))
        let times = board.trace.events.map(\.time)
        #expect(times == times.sorted())
        try processor.shutdown()
    }

    @Test("a crash report carries the last console lines")
    func crashConsole() throws {
        let (board, processor) = try startedBoard(PanicFirmware(code: 7, afterMicroseconds: 100))
        let deadline = ContinuousClock.now + .seconds(30)
        while processor.state != .crashed && ContinuousClock.now < deadline { usleep(1000) }
        let report = try #require(processor.crashReport)
        #expect(report.console.last == "panic: last words")
        #expect(board.trace.events.contains { if case .crash = $0.kind { true } else { false } })
        try processor.shutdown()
    }
}

/// `firmware` on a fresh board, configured, loaded from ``NativeImage`` and started.
func startedBoard(_ firmware: any FirmwareProgram, pollMode: Bool = false, hostInterrupts: InterruptDelivery = .inline,
                  vringCount: UInt32 = 256) throws -> (Board, RemoteProcessor) {
    let board = try Board(firmware: firmware, pollMode: pollMode, hostInterrupts: hostInterrupts)
    let processor = try board.makeProcessor()
    try processor.configure()
    try processor.load("fw", from: MemoryImageStore(["fw": try nativeImage(vringCount: vringCount)]))
    try processor.start()
    return (board, processor)
}

/// Boots `firmware` on a fresh board with a host RPMsg device.
func bootBoard(_ firmware: any FirmwareProgram) throws -> (Board, RemoteProcessor, RPMsgDevice) {
    let (board, processor) = try startedBoard(firmware)
    return (board, processor, try hostRPMsg(processor))
}

@Suite("Board programs")
struct BoardProgramTests {
    @Test("ping: the firmware finds the host's service, sends N messages and checks the replies", .timeLimit(.minutes(1)))
    func ping() throws {
        let (board, processor, rpmsg) = try bootBoard(PingFirmware(count: 50))
        // A Linux host announces a channel it creates with a fixed address.
        _ = try rpmsg.createEndpoint(name: "rpmsg-ping", address: RPMsgAddress(1100)) { message in
            try? rpmsg.send(message.payload, from: message.destination, to: message.source, timeout: .seconds(5))
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while !board.trace.consoleLines.contains("ping: 50/50 replies ok") && ContinuousClock.now < deadline && processor.state == .running {
            usleep(1000)
        }
        #expect(board.trace.consoleLines.contains("ping: 50/50 replies ok"), "\(board.trace.consoleLines) \(String(describing: processor.crashReport))")
        try processor.shutdown()
    }

    @Test("multi-service: every service is announced and behaves as described; destroy is announced too", .timeLimit(.minutes(1)))
    func multiService() throws {
        let (_, processor, rpmsg) = try bootBoard(MultiServiceFirmware())
        let deadline = ContinuousClock.now + .seconds(30)
        while rpmsg.announcedServices.count < 4 && ContinuousClock.now < deadline { usleep(1000) }
        let services = Dictionary(rpmsg.announcedServices.map { ($0.name, $0.address) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(services.keys) == Set(MultiServiceFirmware.services))
        let replies = Replies()
        let got = WakeSignal()
        func ask(_ service: String, _ text: String) throws -> [UInt8]? {
            let endpoint = try rpmsg.createEndpoint(destination: try #require(services[service])) { m in
                replies.items.withLock { $0.append(m.payload) }
                got.signal()
            }
            defer { endpoint.destroy() }
            try endpoint.send(Array(text.utf8), timeout: .seconds(5))
            return got.wait(timeout: .milliseconds(service == "rpmsg-sink" ? 100 : 5000)) ? replies.items.withLock { $0.last } : nil
        }
        #expect(try ask("rpmsg-echo", "Hello") == Array("Hello".utf8))
        #expect(try ask("rpmsg-upper", "Hello, board") == Array("HELLO, BOARD".utf8))
        #expect(try ask("rpmsg-count", "x") == [1, 0, 0, 0])
        #expect(try ask("rpmsg-count", "y") == [2, 0, 0, 0])
        #expect(try ask("rpmsg-sink", "into the void") == nil)
        try processor.shutdown()
    }
}

@Suite("Board transitions")
struct BoardTransitionTests {
    /// A processor on a fresh echo board, brought to `state` through legal calls.
    func processor(in state: RemoteprocState) throws -> (Board, RemoteProcessor) {
        let board = try Board(firmware: state == .crashed ? PanicFirmware(code: 1, afterMicroseconds: 10) : EchoFirmware())
        let processor = try board.makeProcessor()
        let image = MemoryImageStore(["fw": try nativeImage()])
        if state != .offline { try processor.configure() }
        if [.ready, .running, .stopped, .crashed].contains(state) { try processor.load("fw", from: image) }
        if [.running, .stopped, .crashed].contains(state) { try processor.start() }
        if state == .stopped { try processor.stop() }
        if state == .crashed {
            let deadline = ContinuousClock.now + .seconds(30)
            while processor.state != .crashed && ContinuousClock.now < deadline { usleep(500) }
        }
        #expect(processor.state == state)
        return (board, processor)
    }

    @Test("stop from Ready and from Running; shutdown from every state; the core's thread is gone afterwards",
          .timeLimit(.minutes(1)), arguments: [RemoteprocState.configured, .ready, .running, .stopped, .crashed])
    func shutdownFrom(state: RemoteprocState) throws {
        let (board, processor) = try processor(in: state)
        if state == .ready || state == .running {
            try processor.stop()
            #expect(processor.state == .stopped)
            #expect(!board.isRunning)
        }
        try processor.shutdown()
        #expect(processor.state == .offline)
        #expect(!board.isRunning)
        // And the whole cycle again on the same board, then remove.
        try processor.configure()
        try processor.load("fw", from: MemoryImageStore(["fw": try nativeImage()]))
        try processor.start()
        #expect(board.isRunning)
        try processor.shutdown()
        try processor.remove()
    }

    @Test("a crash racing a host stop, shutdown or restart never deadlocks, and a stale report never marks a new run crashed",
          .timeLimit(.minutes(2)))
    func crashRacingStop() throws {
        // The core's thread reports a crash under the processor's lock while the host may hold
        // that lock to stop it: the stop must not wait for the report (it used to join the thread).
        let image = MemoryImageStore(["fw": try nativeImage()])
        for round in 0..<150 {
            let board = try Board(firmware: PanicFirmware(code: 7, afterMicroseconds: UInt32(round % 50)))
            let processor = try board.makeProcessor()
            try processor.configure()
            try processor.load("fw", from: image)
            try processor.start()
            usleep(UInt32(round % 7) * 10)
            if round % 3 == 0 {
                try processor.shutdown()
                #expect(processor.state == .offline)
            } else {
                // Stopped by the host, or crashed first: either way the core is down.
                if processor.state == .running || processor.state == .crashed { try processor.stop() }
                #expect(processor.state == .stopped)
                #expect(!board.isRunning)
                try processor.shutdown()
            }
            #expect(processor.state == .offline, "round \(round): a stale crash report changed the state")
        }
    }

    @Test("a board and its processor are freed when the host lets go of them: memory, interrupt thread and GDB port", .timeLimit(.minutes(1)))
    func freedWhenReleased() throws {
        weak var released: Board?
        weak var releasedServer: GDBServer?
        do {
            let server = try GDBServer(architecture: .rv32)
            releasedServer = server
            let board = try Board(firmware: EmulatedCPU(.rv32, debugger: server))
            let processor = try board.makeProcessor()
            try processor.configure()
            try processor.load(try FirmwareBuilder.forThisPackage().build(program: "minimal", architecture: .rv32).path, from: FileImageStore())
            try processor.start()
            try processor.shutdown()
            try processor.remove()
            released = board
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while (released != nil || releasedServer != nil) && ContinuousClock.now < deadline { usleep(1000) }
        #expect(released == nil, "the board outlived its last user")
        // Its GDB server was shut down with it (its listening thread, which holds it, has ended).
        #expect(releasedServer == nil, "the GDB server outlived its board")
    }

    @Test("illegal transitions are still refused on the board", .timeLimit(.minutes(1)))
    func illegal() throws {
        let (_, running) = try processor(in: .running)
        #expect(throws: RemoteprocError.self) { try running.configure() }
        #expect(throws: RemoteprocError.self) { try running.start() }
        #expect(throws: RemoteprocError.self) { try running.remove() }
        #expect(running.state == .running)
        try running.shutdown()
        let (_, stopped) = try processor(in: .stopped)
        #expect(throws: RemoteprocError.self) { try stopped.start() }
        #expect(throws: RemoteprocError.self) { try stopped.load("fw", from: MemoryImageStore(["fw": try nativeImage()])) }
        #expect(stopped.state == .stopped)
        try stopped.shutdown()
    }

    @Test("name service destroy reaches the host when the firmware's service goes away", .timeLimit(.minutes(1)))
    func nameServiceDestroy() throws {
        let (_, processor, rpmsg) = try bootBoard(MultiServiceFirmware())
        let deadline = ContinuousClock.now + .seconds(30)
        while rpmsg.announcedServices.count < 4 && ContinuousClock.now < deadline { usleep(500) }
        let sink = try #require(rpmsg.announcedServices.first { $0.name == "rpmsg-sink" }?.address)
        let unbound = WakeSignal()
        let endpoint = try rpmsg.createEndpoint(name: "rpmsg-sink", destination: sink, onUnbind: { _ in unbound.signal() }) { _ in }
        try endpoint.send(Array("destroy".utf8), timeout: .seconds(5))
        #expect(unbound.wait(timeout: .seconds(5)))
        #expect(endpoint.destination == .any)
        #expect(!rpmsg.announcedServices.contains { $0.name == "rpmsg-sink" })
        #expect(rpmsg.announcedServices.count == 3)
        try processor.shutdown()
    }
}

@Suite("Board automatic recovery")
struct BoardAutomaticRecoveryTests {
    @Test("with automatic recovery a watchdog crash is followed by reload and restart", .timeLimit(.minutes(1)))
    func automatic() throws {
        // The recovery runs on a thread of its own, which must not outlive the test
        // (docs/reliability.md: nothing of the package's is alive when the process exits).
        weak let released = try recoverAutomatically()
        #expect(waitUntil(.seconds(10)) { released == nil }, "the board is still alive")
    }

    private func recoverAutomatically() throws -> Board {
        let board = try Board(firmware: HangFirmware(watchdogMilliseconds: 20))
        let processor = try board.makeProcessor()
        processor.automaticRecovery = true
        let path = MetalMutex<[RemoteprocState]>([])
        processor.addObserver { event in if case let .stateChanged(change) = event { path.withLock { $0.append(change.to) } } }
        try processor.configure()
        try processor.load("h", from: MemoryImageStore(["h": try nativeImage()]))
        try processor.start()
        let deadline = ContinuousClock.now + .seconds(30)
        while path.withLock({ $0.filter { $0 == .crashed }.count }) < 2 && ContinuousClock.now < deadline { usleep(1000) }
        let seen = path.withLock { $0 }
        // running → crashed → stopped → running → crashed … : it keeps being recovered.
        #expect(seen.filter { $0 == .crashed }.count >= 2, "\(seen)")
        #expect(seen.contains(.stopped))
        processor.automaticRecovery = false
        let settle = ContinuousClock.now + .seconds(5)
        while ![.crashed, .running].contains(processor.state) && ContinuousClock.now < settle { usleep(1000) }
        try processor.shutdown()
        #expect(processor.state == .offline)
        return board
    }
}

@Suite("Board delivery and images")
struct BoardDeliveryTests {
    @Test("poll mode: the remote's kicks reach the processor only when the test polls", .timeLimit(.minutes(1)))
    func pollMode() throws {
        let (board, processor) = try startedBoard(EchoFirmware(), pollMode: true)
        let rpmsg = try hostRPMsg(processor)
        // The firmware announces; nothing reaches the host until it polls.
        let deadline = ContinuousClock.now + .seconds(30)
        while !board.trace.events.contains(where: { if case .kickToHost = $0.kind { true } else { false } }) && ContinuousClock.now < deadline {
            usleep(500)
        }
        #expect(rpmsg.announcedServices.isEmpty)
        #expect(board.poll() > 0)
        #expect(rpmsg.announcedServices.map(\.name) == ["rpmsg-echo"])
        try processor.shutdown()
    }

    @Test("RPMsg messages appear in the trace with endpoints, length and first bytes", .timeLimit(.minutes(1)))
    func messagesInTrace() throws {
        let (board, processor, rpmsg) = try bootBoard(EchoFirmware())
        board.trace.traceTraffic(of: rpmsg)
        let deadline = ContinuousClock.now + .seconds(30)
        while rpmsg.announcedServices.isEmpty && ContinuousClock.now < deadline { usleep(500) }
        let got = WakeSignal()
        let service = try #require(rpmsg.announcedServices.first?.address, "no announcement: \(board.trace.events.suffix(8))")
        let client = try rpmsg.createEndpoint(destination: service) { _ in got.signal() }
        try client.send(Array("traced!".utf8), timeout: .seconds(5))
        #expect(got.wait(timeout: .seconds(5)))
        let messages = board.trace.events.compactMap { if case let .message(m) = $0.kind { m } else { nil } }
        #expect(messages.contains { $0.direction == .sent && $0.destination == service && $0.length == 7 && $0.prefix == Array("traced!".utf8) })
        #expect(messages.contains { $0.direction == .received && $0.source == service && $0.length == 7 })
        #expect(board.trace.events.contains { "\($0)".contains("74 72 61 63 65 64 21") })
        try processor.shutdown()
    }

    @Test("native firmware runs from a real board image built from Firmware/ by clang", .timeLimit(.minutes(2)),
          arguments: FirmwareArchitecture.allCases)
    func firmwareImage(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "minimal", architecture: architecture)
        let board = try Board(firmware: EchoFirmware())
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        let rpmsg = try hostRPMsg(processor)
        let deadline = ContinuousClock.now + .seconds(30)
        while rpmsg.announcedServices.isEmpty && ContinuousClock.now < deadline { usleep(500) }
        let got = WakeSignal()
        let reply = MetalMutex<[UInt8]>([])
        let client = try rpmsg.createEndpoint(destination: try #require(rpmsg.announcedServices.first?.address)) { m in
            reply.withLock { $0 = m.payload }
            got.signal()
        }
        try client.send([1, 2, 3], timeout: .seconds(5))
        #expect(got.wait(timeout: .seconds(5)))
        #expect(reply.withLock { $0 } == [1, 2, 3])
        try processor.shutdown()
    }
}

@Suite("Board fault injection")
struct BoardFaultInjectionTests {
    @Test("a dropped host → remote kick leaves the message waiting until the next kick", .timeLimit(.minutes(1)))
    func droppedKick() throws {
        let (board, processor, rpmsg) = try bootBoard(EchoFirmware())
        #expect(waitUntil { !rpmsg.announcedServices.isEmpty })
        let replies = Replies()
        let client = try rpmsg.createEndpoint(destination: try #require(rpmsg.announcedServices.first?.address)) { m in replies.items.withLock { $0.append(m.payload) } }
        // The remote must be idle with every earlier kick handled: a remote still busy with one
        // looks at every vring when it is done, and would find the message without its kick.
        #expect(waitUntil { board.mailbox.isCoreWaiting && board.mailbox.pendingBits == 0 })
        board.faults.dropKicks(.toRemote)
        try client.send([1], timeout: .seconds(5))
        #expect(board.trace.events.contains { if case let .warning(text) = $0.kind { text.contains("dropped kick host → remote") } else { false } })
        usleep(100_000)
        #expect(replies.items.withLock { $0 }.isEmpty, "the remote never heard of the message")
        let vring = try #require(processor.virtioDeviceList.first?.vrings[1].notifyID)
        try board.notify(vring)
        #expect(waitUntil(.seconds(5)) { replies.items.withLock { $0 } == [[1]] })
        try processor.shutdown()
    }

    @Test("fault injection refuses what it cannot do with a typed error naming the operation; what it can do lands in shared memory", .timeLimit(.minutes(1)))
    func faultErrors() throws {
        let (board, processor, _) = try bootBoard(EchoFirmware())
        #expect {
            try board.faults.corruptVring(9, .availIndex, value: 1)
        } throws: { error in
            guard let error = error as? BoardError, case .noSuchVring(index: 9, available: 2) = error.kind else { return false }
            return error.description == "corrupt vring 9 avail-idx: no vring 9 (the vdev has 2)"
        }
        let table = try #require(processor.installedResourceTable)
        let size = table.table.bytes.count
        #expect {
            try board.faults.corruptResourceTable(at: size - 3, value: 0)
        } throws: { error in
            guard let error = error as? BoardError, case .outsideResourceTable(offset: size - 3, size: size) = error.kind else { return false }
            return true
        }
        // A write that fits lands where the remote reads its table.
        let offset = size - 4
        let before: UInt32 = try table.location.region.read(UInt32.self, at: table.location.offset + offset)
        try board.faults.corruptResourceTable(at: offset, value: ~before)
        #expect(try table.location.region.read(UInt32.self, at: table.location.offset + offset) == ~before)
        let vring = try #require(processor.virtioDeviceList.first?.vrings[0])
        let layout = try VringLayout(count: vring.count, alignment: vring.alignment)
        try board.faults.corruptVring(0, .availFlags, value: 0x1_0001)
        #expect(try vring.mapping.region.read(UInt16.self, at: vring.mapping.offset + layout.availFlags) == 1, "a 16-bit field takes the low half")
        try processor.shutdown()
        #expect(throws: BoardError.self) { try board.faults.inject(.panic(code: 1)) }
        #expect(throws: BoardError.self) { try board.faults.crash(CrashReport(kind: .fault, message: "not running")) }
    }

    @Test("an injected crash halts the core and is reported as given", .timeLimit(.minutes(1)))
    func injectedCrash() throws {
        let (board, processor, _) = try bootBoard(EchoFirmware())
        try board.faults.crash(CrashReport(kind: .fault, code: 7, message: "injected"))
        #expect(waitUntil { processor.state == .crashed })
        #expect(processor.crashReport?.message == "injected" && processor.crashReport?.code == 7)
        try processor.shutdown()
    }
}
