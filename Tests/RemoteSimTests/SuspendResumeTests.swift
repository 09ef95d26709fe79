import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import Virtio

/// An echo board with its service endpoint on the host side; replies collect in order.
final class EchoClient: Sendable {
    let board: Board
    let processor: RemoteProcessor
    let rpmsg: RPMsgDevice
    let endpoint: RPMsgEndpoint
    let replies = MetalMutex<[[UInt8]]>([])
    let got = WakeSignal()

    convenience init(_ firmware: EchoFirmware = EchoFirmware()) throws {
        let (board, processor) = try startedBoard(firmware)
        try self.init(board: board, processor: processor)
    }

    /// - Parameter service: the name the firmware announces.
    init(board: Board, processor: RemoteProcessor, service name: String = "rpmsg-echo") throws {
        self.board = board
        self.processor = processor
        rpmsg = try hostRPMsg(processor)
        let announced = MetalMutex<RPMsgAddress?>(nil)
        let ready = WakeSignal()
        let wanted = name
        rpmsg.onNameServiceAnnouncement { name, address in
            if name == wanted { announced.withLock { $0 = address }; ready.signal() }
        }
        guard ready.wait(timeout: .seconds(30)), let service = announced.withLock({ $0 }) else {
            throw BoardError("boot", .notRunning)
        }
        let replies = self.replies, got = self.got
        endpoint = try rpmsg.createEndpoint(destination: service) { message in
            replies.withLock { $0.append(message.payload) }
            got.signal()
        }
    }

    /// Waits until `count` replies have come (bounded).
    func waitForReplies(_ count: Int, timeout: Duration = .seconds(30)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while replies.withLock({ $0.count }) < count {
            guard ContinuousClock.now < deadline else { return false }
            _ = got.wait(timeout: .milliseconds(100))
        }
        return true
    }

    /// Sends `payload` without waiting for a reply.
    func sendOnly(_ payload: [UInt8]) throws { try endpoint.send(payload, timeout: .seconds(5)) }

    /// Sends `payload` and waits up to 5 s for its reply (the next one to come).
    func ask(_ payload: [UInt8]) throws -> [UInt8]? {
        let before = replies.withLock { $0.count }
        try endpoint.send(payload, timeout: .seconds(5))
        guard waitForReplies(before + 1, timeout: .seconds(5)) else { return nil }
        return replies.withLock { $0[before] }
    }

    /// `count` round trips, one message at a time, of payloads of 0–299 bytes after a numbered
    /// `tag`: how many came back identical before the first that did not (recorded as an issue).
    func roundTrips(_ count: Int, tag: String) throws -> Int {
        for i in 0..<count {
            let payload = Array("\(tag) \(i) ".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: i % 300)
            guard let answer = try ask(payload) else { Issue.record("no reply to \(i)"); return i }
            guard answer == payload else { Issue.record("reply \(i) differs"); return i }
        }
        return count
    }

    func close() { try? processor.shutdown() }
}

/// Lets a test firmware go on: the test calls `open()` once; the firmware looks at `done` and waits on `signal`.
final class ReleaseSignal: Sendable {
    let signal = WakeSignal()
    let done = Atomic<Bool>(false)
    func open() {
        done.store(true, ordering: .releasing)
        signal.signal()
    }
}

/// Native echo firmware that does not look at its vrings until released (a core slow to get to
/// its messages); meanwhile it passes a board access every 2 ms, where a gated clock parks it.
struct LateEcho: FirmwareProgram {
    let release: ReleaseSignal
    func run(on core: RemoteCore) throws {
        let rpmsg = try core.rpmsg()
        _ = try rpmsg.device.createEndpoint(name: "rpmsg-echo") { message in
            try? rpmsg.reply(to: message, with: message.payload)
        }
        while !release.done.load(ordering: .acquiring) {
            _ = release.signal.wait(timeout: .milliseconds(2))
            try core.checkStop()
        }
        try rpmsg.serve()
    }
}

/// Native firmware that acknowledges the first suspend request and then runs on without a board
/// access (where a gated clock would park it) until released; then says whether it found RESUMED.
struct AckThenStuck: FirmwareProgram {
    let release: ReleaseSignal
    func run(on core: RemoteCore) throws {
        core.answerSuspendRequests { _ in .ack }
        try core.waitForInterrupt()
        while !release.done.load(ordering: .acquiring) { _ = release.signal.wait(timeout: .milliseconds(50)) }
        core.print("resumed: \(core.mailbox.takeResumed())")
        while true { try core.waitForInterrupt() }
    }
}

/// Native firmware that keeps its watchdog (100 ms) kicked every 5 ms and does nothing else.
struct WatchdogKeeper: FirmwareProgram {
    func run(on core: RemoteCore) throws {
        while true {
            core.mailbox.armWatchdog(milliseconds: 100)
            core.mailbox.sleep(microseconds: 5_000)
            try core.checkStop()
        }
    }
}

@Suite("Suspend and resume on the board", .serialized)
struct SuspendResumeTests {
    @Test("forced suspend of native firmware: the host's messages wait in the vring (kicks latched) and all arrive, in order, after resume",
          .timeLimit(.minutes(1)))
    func forcedNative() throws {
        let echo = try EchoClient()
        defer { echo.close() }
        try echo.endpoint.send(Array("before".utf8), timeout: .seconds(5))
        #expect(echo.waitForReplies(1))
        try echo.processor.suspend()
        #expect(echo.processor.state == .suspended)
        #expect(echo.board.isSuspended)
        #expect(echo.board.inspector.answer(monitor: "state").contains("suspended (clock gated)"))
        for i in 0..<100 { try echo.endpoint.send(Array("while suspended \(i)".utf8), timeout: .seconds(5)) }
        usleep(200_000)
        #expect(echo.replies.withLock { $0.count } == 1, "nothing is answered while suspended")
        #expect(echo.board.mailbox.pendingBits != 0, "the host's kicks are latched in PENDING")
        try echo.processor.resume()
        #expect(echo.processor.state == .running)
        #expect(echo.waitForReplies(101))
        #expect(echo.replies.withLock { Array($0.dropFirst()) } == (0..<100).map { Array("while suspended \($0)".utf8) })
        let statistics = echo.processor.powerStatistics
        #expect(statistics.suspensions == 1 && statistics.resumes == 1)
        #expect(statistics.timeSuspended >= .milliseconds(200))
        let power = echo.board.trace.events.compactMap { if case let .power(event) = $0.kind { event } else { nil } }
        #expect(power == [.gated(.forced), .ungated])
    }

    @Test("while suspended the watchdog is frozen and TICKS stands still; stop from Suspended ends the core at once",
          .timeLimit(.minutes(1)))
    func watchdogAndTicks() throws {
        let (board, processor) = try startedBoard(WatchdogKeeper())
        defer { try? processor.shutdown() }
        usleep(30_000)
        try processor.suspend()
        let ticks = board.mailbox.ticks
        usleep(400_000)       // four times the watchdog's timeout
        #expect(board.mailbox.ticks - ticks < 20_000, "TICKS advanced \(board.mailbox.ticks - ticks) µs while suspended")
        #expect(processor.state == .suspended)
        try processor.resume()
        usleep(50_000)
        #expect(processor.state == .running, "the watchdog did not count the suspension")
        #expect(board.mailbox.ticks - ticks >= 40_000, "TICKS runs again after the resume")
        try processor.suspend()
        let start = ContinuousClock.now
        try processor.stop()
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(processor.state == .stopped)
        #expect(!board.isRunning)
    }

    @Test("cooperative suspend of native firmware: ACK suspends (RESUMED set after the resume), CANCEL refuses, silence is busy, firmware outside the handshake is gated",
          .timeLimit(.minutes(1)))
    func cooperativeNative() throws {
        let answer = MetalMutex<SuspendAnswer>(.ack)
        let echo = try EchoClient(EchoFirmware(answersSuspend: { _ in answer.withLock { $0 } }))
        defer { echo.close() }
        try echo.processor.suspend(.auto)
        #expect(echo.processor.state == .suspended)
        try echo.processor.resume()
        #expect(echo.board.mailbox.takeResumed(), "the firmware can tell it was resumed")
        let power = echo.board.trace.events.compactMap { if case let .power(event) = $0.kind { event } else { nil } }
        #expect(power == [.requested(.auto), .answered(.ack), .gated(.auto), .ungated])

        answer.withLock { $0 = .cancel }
        let refused = try #require(remoteprocErrorOf { try echo.processor.suspend(.system) })
        guard case .refusedByRemote(.system) = refused.kind else { Issue.record("got \(refused)"); return }
        #expect(echo.processor.state == .running)

        echo.board.faults.powerReplies(.ignore)
        let clock = ContinuousClock(), start = clock.now
        let busy = try #require(remoteprocErrorOf { try echo.processor.suspend(.auto, timeout: .milliseconds(150)) })
        guard case .busy(.auto, _) = busy.kind else { Issue.record("got \(busy)"); return }
        #expect(clock.now - start >= .milliseconds(150))
        #expect(echo.processor.state == .running)
        echo.board.faults.powerReplies(.cancel)
        #expect(remoteprocErrorOf { try echo.processor.suspend(.auto) }.map { if case .refusedByRemote = $0.kind { true } else { false } } == true)
        echo.board.faults.powerReplies(nil)
        #expect(echo.processor.powerStatistics.refusals == 3)
        // Still serving after three refusals.
        try echo.endpoint.send(Array("after".utf8), timeout: .seconds(5))
        #expect(echo.waitForReplies(1))

        // Firmware that does not take part (version 1) is gated without being asked.
        let plain = try EchoClient()
        defer { plain.close() }
        try plain.processor.suspend(.system)
        #expect(plain.processor.state == .suspended)
        #expect(!plain.board.trace.events.contains { if case .power(.requested) = $0.kind { true } else { false } })
        try plain.processor.resume()
        #expect(!plain.board.mailbox.takeResumed(), "a gated firmware is not told")
    }

    @Test("autosuspend: an idle remote is suspended after the delay; the next send resumes it and is answered",
          .timeLimit(.minutes(1)))
    func autosuspend() throws {
        let echo = try EchoClient(EchoFirmware(answersSuspend: { _ in .ack }))
        defer { echo.close() }
        let suspended = WakeSignal()
        echo.processor.addObserver { event in
            if case let .stateChanged(change) = event, change.to == .suspended { suspended.signal() }
        }
        echo.processor.autosuspendDelay = .milliseconds(50)
        for round in 1...3 {
            #expect(suspended.wait(timeout: .seconds(10)), "round \(round): not autosuspended")
            #expect(echo.processor.state == .suspended)
            try echo.endpoint.send(Array("wake \(round)".utf8), timeout: .seconds(5))
            #expect(echo.waitForReplies(round))
            #expect(echo.replies.withLock { $0.last } == Array("wake \(round)".utf8))
        }
        echo.processor.autosuspendDelay = nil
        let statistics = echo.processor.powerStatistics
        #expect(statistics.autosuspensions >= 3 && statistics.resumes >= 3)
    }

    @Test("firmware that ACKs and then never reaches a board access: the suspend fails (did not park), the state stays Running, and the firmware finds RESUMED — the suspension it agreed to is over",
          .timeLimit(.minutes(1)))
    func ackedButNeverParked() throws {
        let release = ReleaseSignal()
        let (board, processor) = try startedBoard(AckThenStuck(release: release))
        defer { try? processor.shutdown() }
        #expect(waitUntil(.seconds(10)) { board.mailbox.isCoreWaiting })
        let error = try #require(remoteprocErrorOf { try processor.suspend(.auto, timeout: .seconds(5)) })
        #expect("\(error)".contains("did not reach an instruction boundary"), "\(error)")
        #expect(processor.state == .running)
        release.open()
        #expect(waitUntil(.seconds(10)) { board.trace.consoleLines.contains("resumed: true") }, "\(board.trace.consoleLines)")
    }

    @Test("autosuspend leaves a remote with messages it has not taken yet running (a core slow to get to them), and suspends it once it has answered",
          .timeLimit(.minutes(1)))
    func autosuspendWaitsForOutstandingMessages() throws {
        let release = ReleaseSignal()
        let (board, processor) = try startedBoard(LateEcho(release: release))
        let echo = try EchoClient(board: board, processor: processor)
        defer { echo.close() }
        // The message first: an idle remote would rightly be suspended before it.
        try echo.sendOnly(Array("late".utf8))
        echo.processor.autosuspendDelay = .milliseconds(2)
        // The firmware does not look at its vrings yet (it stops at a board access every 2 ms,
        // where a gated clock would park it): idle by the kicks, but a message is outstanding.
        let since = ContinuousClock.now
        while ContinuousClock.now - since < .milliseconds(150) {
            guard echo.processor.state == .running else {
                Issue.record("autosuspended with a message the remote had not taken")
                break
            }
            usleep(5_000)
        }
        #expect(echo.processor.powerStatistics.suspensions == 0)
        release.open()
        #expect(echo.waitForReplies(1, timeout: .seconds(10)))
        #expect(echo.replies.withLock { $0 } == [Array("late".utf8)])
        // Answered and idle: now it is suspended.
        #expect(echo.board.waitWhileLive(upTo: .seconds(10)) { echo.processor.powerStatistics.autosuspensions >= 1 } == .met)
        echo.processor.autosuspendDelay = nil
    }

    @Test("a host RPMsg device let go of without close() no longer keeps the remote awake: its untaken messages stop counting",
          .timeLimit(.minutes(1)))
    func droppedDeviceStopsCounting() throws {
        let release = ReleaseSignal()
        let (board, processor) = try startedBoard(LateEcho(release: release))
        defer {
            release.open()
            try? processor.shutdown()
        }
        var rpmsg: RPMsgDevice? = try #require(try processor.makeHostRPMsg())
        weak let dropped = rpmsg
        // Once the remote's device is up (it takes what was queued before), a message it leaves.
        let announced = WakeSignal()
        rpmsg?.onNameServiceAnnouncement { _, _ in announced.signal() }
        #expect(announced.wait(timeout: .seconds(10)))
        try rpmsg?.send(Array("never taken".utf8), from: RPMsgAddress(1024), to: RPMsgAddress(1024), timeout: .seconds(1))
        processor.autosuspendDelay = .milliseconds(2)
        usleep(50_000)
        #expect(processor.powerStatistics.autosuspensions == 0, "suspended with a message outstanding")
        // Let go of (no endpoint holds it): its message no longer counts.
        rpmsg = nil
        #expect(dropped == nil, "the device is gone")
        #expect(board.waitWhileLive(upTo: .seconds(10)) { processor.powerStatistics.autosuspensions >= 1 } == .met,
                "the gone device's untaken message still held the remote awake")
        processor.autosuspendDelay = nil
    }

    @Test("autosuspend turned off and on again, fast: off means no suspension starts after the setter returns; on always has a monitor that suspends",
          .timeLimit(.minutes(2)))
    func autosuspendToggled() throws {
        // A firmware slow to answer (1 ms): turning autosuspend off often lands inside a suspension.
        let echo = try EchoClient(EchoFirmware(answersSuspend: { _ in usleep(1_000); return .ack }))
        defer { echo.close() }
        for round in 0..<100 {
            echo.processor.autosuspendDelay = .microseconds(300)
            usleep(useconds_t(round % 6 * 300))
            echo.processor.autosuspendDelay = nil
            // Settled: the state and the count of suspensions no longer change.
            let (state, suspensions) = (echo.processor.state, echo.processor.powerStatistics.suspensions)
            usleep(3_000)
            #expect(echo.processor.state == state && echo.processor.powerStatistics.suspensions == suspensions,
                    "round \(round): a suspension started after autosuspend was turned off")
            if state == .suspended { try echo.processor.resume() }
            // On again at once (the old monitor may not have seen the off yet): it must still suspend.
            let before = echo.processor.powerStatistics.autosuspensions
            echo.processor.autosuspendDelay = .milliseconds(1)
            #expect(echo.board.waitWhileLive(upTo: .seconds(10)) { echo.processor.powerStatistics.autosuspensions > before } == .met,
                    "round \(round): autosuspend on, but no suspension")
            echo.processor.autosuspendDelay = nil
            if echo.processor.state == .suspended { try echo.processor.resume() }
        }
        #expect(try echo.ask(Array("still there".utf8)) == Array("still there".utf8))
    }

    @Test("a suspension in the middle of 100,000 echoed messages loses none and duplicates none", .timeLimit(.minutes(3)))
    func nothingLost() throws {
        let echo = try EchoClient()
        defer { echo.close() }
        let total = 100_000
        let suspender = try PlatformThread(name: "suspender") {
            while echo.replies.withLock({ $0.count }) < total / 2 { usleep(1000) }
            do {
                try echo.processor.suspend()
                usleep(50_000)
                try echo.processor.resume()
            } catch { Issue.record("suspend/resume: \(error)") }
        }
        for i in 0..<total {
            try echo.endpoint.send(withUnsafeBytes(of: UInt32(i).littleEndian, Array.init), timeout: .seconds(10))
        }
        suspender.join()
        #expect(echo.waitForReplies(total, timeout: .seconds(60)))
        let replies = echo.replies.withLock { $0 }
        #expect(replies.count == total)
        let numbers = replies.map { $0.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } }
        #expect(numbers == (0..<UInt32(total)).map { $0 }, "in order, none lost, none twice")
        #expect(echo.processor.powerStatistics.suspensions == 1)
    }

    @Test("suspend racing a crash, a stop, a recovery or another suspend ends in one consistent state", .timeLimit(.minutes(3)))
    func races() throws {
        for round in 0..<120 {
            // Every round's board is let go of before the next: a crash's report and a recovery
            // run on threads of their own, which must not outlive the test (docs/reliability.md:
            // nothing of the package's is alive when the process exits).
            weak let released = try raceRound(round)
            #expect(waitUntil(.seconds(10)) { released == nil }, "round \(round): the board is still alive")
        }
    }

    private func raceRound(_ round: Int) throws -> Board {
        let (board, processor) = try startedBoard(WatchdogKeeper())
        processor.automaticRecovery = round % 4 == 2
        let other = try PlatformThread(name: "racer") {
            switch round % 4 {
            case 0: try? board.faults.inject(.fault(code: 7))
            case 1: try? processor.stop()
            case 2: try? board.faults.inject(.panic(code: 3))
            default: try? processor.suspend()
            }
        }
        try? processor.suspend()
        other.join()
        let state = processor.state
        switch state {
        case .suspended: #expect(board.isSuspended && board.isRunning, "round \(round)")
        case .running: #expect(!board.isSuspended, "round \(round)")
        case .crashed, .stopped: break
        default: Issue.record("round \(round): state \(state)")
        }
        if state == .suspended { try processor.resume() }
        try processor.shutdown()
        #expect(processor.state == .offline)
        return board
    }
}

/// Emulated cores: the clock stops between two instructions, and nothing executes until the resume.
@Suite("Suspend and resume of emulated cores", .serialized)
struct EmulatedSuspendTests {
    @Test("forced suspend stops the instruction counter; resume continues from there", .timeLimit(.minutes(1)),
          arguments: FirmwareArchitecture.allCases)
    func instructionCounter(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "compute", architecture: architecture)
        let counter = InstructionCounter()
        let board = try Board(firmware: EmulatedCPU(architecture.cpu, countingInto: counter))
        let processor = try board.makeProcessor()
        defer { try? processor.shutdown() }
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        #expect(waitUntil { counter.value > 10_000 })
        try processor.suspend()
        let atSuspend = counter.value
        usleep(200_000)
        #expect(counter.value == atSuspend, "no instruction runs while the clock is gated")
        try processor.resume()
        #expect(waitUntil { counter.value > atSuspend + 10_000 })
    }

    @Test("registers and PC read through the GDB server are identical across a suspension; a step after the resume executes one instruction",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func registersKept(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "compute", architecture: architecture)
        let counter = InstructionCounter()
        let server = try GDBServer(architecture: architecture.cpu)
        let board = try Board(firmware: EmulatedCPU(architecture.cpu, countingInto: counter, debugger: server))
        let processor = try board.makeProcessor()
        defer { server.shutdown(); try? processor.shutdown() }
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        #expect(waitUntil { counter.value > 10_000 })
        try processor.suspend()
        let client = try GDBClient(port: server.port)      // attaching halts the core, parked or not
        #expect(try client.request("?").hasPrefix("T"))
        let before = try client.request("g")
        let countBefore = counter.value
        let state = try client.monitor("state")
        #expect(state.contains("life cycle: Suspended") && state.contains("suspended (clock gated)"), "monitor state: \(state)")
        client.post("c")
        usleep(150_000)
        client.interrupt()
        #expect(try client.reply().hasPrefix("T"))
        #expect(try client.request("g") == before, "registers unchanged across the suspension")
        #expect(counter.value == countBefore)
        client.post("s")
        #expect(throws: (any Error).self, "the step waits for the clock") { _ = try client.reply(timeout: .milliseconds(200)) }
        try processor.resume()
        #expect(try client.reply(timeout: .seconds(10)).hasPrefix("T05"))
        let stepAcrossResume = counter.value - countBefore
        // The same step again, with nothing suspended: the counter moves by as much (its hook
        // also sees the instruction a step stops at).
        let beforeSecond = counter.value
        #expect(try client.request("s").hasPrefix("T05"))
        #expect(stepAcrossResume == counter.value - beforeSecond, "one instruction after the resume, as any step")
        #expect(try client.request("D") == "OK")
    }

    @Test("C firmware with the handshake library: ACK suspends and it hears of the resume; while it holds on it CANCELs; it keeps echoing",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func cooperative(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("power", architecture)
        let echo = try EchoClient(board: board, processor: processor)
        defer { echo.close() }
        func console(_ line: String) -> Bool { waitUntil(.seconds(10)) { board.trace.consoleLines.contains(line) } }
        try processor.suspend(.auto)
        #expect(processor.state == .suspended)
        #expect(console("power: request auto: ACK"))
        try processor.resume()
        #expect(console("power: resumed 1"), "the firmware learns it was resumed")
        try echo.endpoint.send(Array("hold".utf8), timeout: .seconds(5))
        #expect(echo.waitForReplies(1))
        let refused = try #require(remoteprocErrorOf { try processor.suspend(.system) })
        guard case .refusedByRemote(.system) = refused.kind else { Issue.record("got \(refused)"); return }
        #expect(console("power: request system: CANCEL"))
        #expect(processor.state == .running)
        try echo.endpoint.send(Array("release".utf8), timeout: .seconds(5))
        #expect(echo.waitForReplies(2))
        try processor.suspend(.system)
        #expect(processor.state == .suspended)
        try echo.endpoint.send(Array("queued".utf8), timeout: .seconds(5))
        try processor.resume()
        #expect(echo.waitForReplies(3))
        #expect(echo.replies.withLock { $0.last } == Array("queued".utf8))
        #expect(console("power: resumed 2"))
        let misuse = board.trace.events.filter { if case .power(.misuse) = $0.kind { true } else { false } }
        #expect(misuse.isEmpty, "the library uses the registers as documented: \(misuse)\n\(board.trace.events.filter { if case .power = $0.kind { true } else if case .console = $0.kind { true } else { false } })")
    }
}

/// The RemoteprocError `body` throws, if any.
func remoteprocErrorOf(_ body: () throws -> Void) -> RemoteprocError? {
    do { try body() } catch let error as RemoteprocError { return error } catch { return nil }
    return nil
}

/// Native firmware that takes part in the handshake but panics when asked to suspend.
struct PanicsWhenAsked: FirmwareProgram {
    func run(on core: RemoteCore) throws {
        core.mailbox.setAnswersSuspendRequests(true)
        while true {
            try core.waitForInterrupt()
            if core.mailbox.suspendRequest != nil { try core.panic(0x5E) }
        }
    }
}

@Suite("The power registers under misuse")
struct PowerRegisterMisuseTests {
    typealias R = Mailbox.Register

    @Test("answers nobody asked for, answers twice, garbage values and writes to read-only registers are traced and ignored")
    func misuse() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let events = MetalMutex<[PowerEvent]>([])
        mailbox.setEventHandler { event in if case let .power(power) = event { events.withLock { $0.append(power) } } }
        mailbox.write(R.pmReply.rawValue, PowerRegisters.replyAck)           // no request
        mailbox.write(R.pmReply.rawValue, 0xDEAD_BEEF)                       // neither ACK nor CANCEL
        mailbox.write(R.pmRequest.rawValue, 1)                               // read-only
        mailbox.write(R.pmControl.rawValue, 0xFFFF_FFFF)                     // only bit 0 is defined
        #expect(mailbox.read(R.pmControl.rawValue) == 1)
        mailbox.write(R.pmStatus.rawValue, 0xFF)
        #expect(mailbox.read(R.pmStatus.rawValue) == 0)
        #expect(mailbox.read(R.pmReply.rawValue) == 0, "write-only")
        let misuses = events.withLock { $0 }.filter { if case .misuse = $0 { true } else { false } }
        #expect(misuses.count == 5, "\(events.withLock { $0 })")
        #expect(mailbox.suspendRequest == nil)
    }

    @Test("a request shows in PM_STATUS and PM_REQUEST; a second answer is refused and traced; the host's wait ends with the first")
    func answeredTwice() throws {
        let (board, processor) = try startedBoard(WatchdogKeeper())
        defer { try? processor.shutdown() }
        board.mailbox.setAnswersSuspendRequests(true)
        // Answer from a firmware-side thread as soon as the request shows in PM_STATUS, then again.
        let answerer = try PlatformThread(name: "answerer") {
            #expect(waitUntil(.seconds(10)) { board.mailbox.read(R.pmStatus.rawValue) & PowerRegisters.statusRequest != 0 })
            #expect(board.mailbox.read(R.pmRequest.rawValue) == PowerRegisters.requestSystem)
            board.mailbox.write(R.pmReply.rawValue, PowerRegisters.replyAck)
            board.mailbox.write(R.pmReply.rawValue, PowerRegisters.replyCancel)
        }
        try processor.suspend(.system)
        answerer.join()
        #expect(processor.state == .suspended)
        let power = board.trace.events.compactMap { if case let .power(event) = $0.kind { event } else { nil } }
        #expect(power.contains(.answered(.ack)) && !power.contains(.answered(.cancel)))
        #expect(power.contains { if case .misuse = $0 { true } else { false } }, "the second answer is traced")
        try processor.resume()
        #expect(processor.state == .running)
    }

    @Test("firmware that crashes during the handshake: the suspend fails at once, the crash is reported", .timeLimit(.minutes(1)))
    func crashDuringHandshake() throws {
        let (board, processor) = try startedBoard(PanicsWhenAsked())
        defer { try? processor.shutdown() }
        #expect(waitUntil(.seconds(10)) { board.mailbox.read(Mailbox.Register.pmControl.rawValue) == 1 }, "the firmware takes part")
        let clock = ContinuousClock(), start = clock.now
        let error = try #require(remoteprocErrorOf { try processor.suspend(.auto, timeout: .seconds(20)) })
        #expect(clock.now - start < .seconds(5), "not the whole timeout")
        guard case .operationFailed = error.kind else { Issue.record("got \(error)"); return }
        #expect(waitUntil(.seconds(10)) { processor.state == .crashed })
        #expect(processor.crashReport?.code == 0x5E)
    }
}

/// A core always busy with stores (the `count` program prints 1, 2, 3, … one per line).
@Suite("Stopping a busy emulated core executes nothing twice", .serialized)
struct BusyCoreStopTests {
    @Test("50 forced suspensions of a core busy with stores: the console lines stay consecutive (no instruction re-executed or skipped)",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func consecutive(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("count", architecture)
        defer { try? processor.shutdown() }
        for _ in 0..<50 {
            usleep(UInt32.random(in: 200...2_000))
            try processor.suspend()
            try processor.resume()
        }
        try processor.stop()
        let lines = board.trace.consoleLines
        #expect(lines.count > 100)
        guard let first = lines.first.flatMap({ Int($0) }) else { Issue.record("not a number: \(lines.first ?? "none")"); return }
        for (offset, line) in lines.enumerated() where line != String(first + offset) {
            Issue.record("line \(offset): \"\(line)\" where \(first + offset) was due")
            break
        }
    }
}

@Suite("Suspend and resume back to back", .serialized)
struct SuspendCycleTests {
    @Test("500 cooperative and forced suspend/resume cycles in a row, as fast as the host can: every one answered, the remote still echoes",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func cycles(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("power", architecture)
        let echo = try EchoClient(board: board, processor: processor)
        defer { echo.close() }
        for cycle in 0..<500 {
            do {
                try processor.suspend(cycle % 2 == 0 ? .auto : .forced)
                try processor.resume()
            } catch {
                let power = board.trace.events.filter { if case .power = $0.kind { true } else { false } }.suffix(12)
                Issue.record("cycle \(cycle): \(error)\n\(power.map(\.description).joined(separator: "\n"))")
                return
            }
        }
        try echo.endpoint.send(Array("still there".utf8), timeout: .seconds(5))
        #expect(echo.waitForReplies(1))
    }
}
