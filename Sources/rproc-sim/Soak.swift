import ArgumentParser
import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Scenario
import Virtio

struct Soak: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Random life-cycle operations, crashes, recoveries, faults and checked traffic on several boards at once; then counts.",
        discussion: """
            Each board (native echo, and the echo firmware on an emulated Cortex-M4 and RV32 core) \
            runs its own random sequence, chosen from --seed: echo traffic of random sizes and \
            contents (every reply checked byte for byte), restarts, full reboots, crashes (fault or \
            panic) followed by recovery, traffic with delayed kicks, suspensions (forced, auto or \
            system) in the middle of traffic with the remote resumed from another thread while \
            the sender waits, and autosuspend (an idle remote suspended, the next send resuming \
            it). At the end: operations, \
            messages sent, delivered, failed with a reported error (a crash or stop the soak caused \
            itself), lost (sent to a live remote and never echoed, or echoed wrong) and hangs (an \
            operation still running 60 s after the end). Exit 1 on any loss, hang or operation \
            that failed where it should not.
            """
    )

    @Option(name: .customLong("for"), help: "How long: e.g. 30s, 10m, 1h.")
    var duration: String = "60s"

    @Option(help: "Seed of every random choice (default: random, printed).")
    var seed: UInt64?

    @Option(help: "Boards, comma-separated: native, cortex-m4, rv32.")
    var boards: String = "native,cortex-m4,rv32"

    @Option(help: "How long a running remote may take to echo a message before it counts as lost.")
    var replyTimeout: String = "10s"

    @Flag(help: "Also drop host → remote kicks. A lost interrupt stalls a virtqueue until the next kick, so expect losses: this shows the soak sees them.")
    var dropKicks = false

    func validate() throws {
        guard let length = ScenarioParser.duration(duration), length > .zero else { throw ValidationError("--for: '\(duration)' is not a duration such as 30s or 10m") }
        guard length <= .seconds(7 * 24 * 3600) else { throw ValidationError("--for: at most a week") }
        guard let reply = ScenarioParser.duration(replyTimeout), reply > .zero else { throw ValidationError("--reply-timeout: '\(replyTimeout)' is not a duration") }
        for kind in boards.split(separator: ",") where SoakBoard.Kind(rawValue: String(kind)) == nil {
            throw ValidationError("--boards: unknown board '\(kind)' (native, cortex-m4, rv32)")
        }
    }

    func run() throws {
        let length = ScenarioParser.duration(duration)!
        let seed = self.seed ?? UInt64.random(in: 0...UInt64.max)
        let kinds = boards.split(separator: ",").compactMap { SoakBoard.Kind(rawValue: String($0)) }
        Terminal.line("soak: \(kinds.map(\.rawValue).joined(separator: ", ")) for \(duration), seed \(seed)")
        let options = SoakBoard.Options(replyTimeout: ScenarioParser.duration(replyTimeout)!, dropKicks: dropKicks)
        let boards = try fileStep { try kinds.enumerated().map { index, kind in try SoakBoard(kind, seed: seed &+ UInt64(index), options: options) } }
        let deadline = RealTimeClock.shared.now + length
        let finished = WakeSignal()
        for board in boards {
            try PlatformThread(name: "rproc-soak") {
                board.run(until: deadline)
                finished.signal()
            }.detach()
        }
        // Every board gets until the deadline plus a minute for the operation it is in.
        var done = 0
        while done < boards.count, finished.wait(timeout: max(.zero, deadline - RealTimeClock.shared.now) + .seconds(60)) { done += 1 }
        var total = SoakCounts()
        for board in boards {
            let counts = board.counts
            let hung = board.currentOperation
            Terminal.line("  \(board.kind.rawValue): " + counts.summary + (hung.map { " — HUNG in \($0)" } ?? ""))
            for problem in counts.problems.prefix(5) { Terminal.line("    \(problem)") }
            if !counts.firstLoss.isEmpty { Terminal.line("    at the first loss:") }
            for line in counts.firstLoss { Terminal.line("      \(line)") }
            total.add(counts)
            if hung != nil { total.hangs += 1 }
        }
        Terminal.line("soak: " + total.summary)
        let failed = total.lost > 0 || total.hangs > 0 || total.operationErrors > 0
        if failed { Terminal.line("soak: FAILED (\(total.lost) lost, \(total.operationErrors) operation errors, \(total.hangs) hung); replay with --seed \(seed)") }
        if total.hangs > 0 {
            // A hung board's thread cannot be joined: leave without tearing it down.
            fflush(nil)
            Foundation.exit(1)
        }
        for board in boards { board.close() }
        if failed { throw ExitCode(1) }
    }
}

/// What a soak counted on one board.
struct SoakCounts: Sendable {
    var operations: [String: Int] = [:]
    /// Messages tried; each ends delivered, failed with a reported error, or lost.
    var sent = 0
    var delivered = 0
    /// Sends or replies that ended with a reported error the soak caused itself (it crashed or
    /// stopped the remote meanwhile).
    var failedWithError = 0
    /// Sent to a live remote and never echoed, or echoed wrong.
    var lost = 0
    /// Operations that failed where they should not have (a restart refused, no announcement).
    var operationErrors = 0
    var hangs = 0
    var problems: [String] = []
    /// The board's state and its last trace events when it first lost a message.
    var firstLoss: [String] = []
    /// The longest operation and how long it took.
    var slowest: (name: String, duration: Duration) = ("", .zero)

    mutating func add(_ other: SoakCounts) {
        for (name, count) in other.operations { operations[name, default: 0] += count }
        sent += other.sent
        delivered += other.delivered
        failedWithError += other.failedWithError
        lost += other.lost
        operationErrors += other.operationErrors
        hangs += other.hangs
        if other.slowest.duration > slowest.duration { slowest = other.slowest }
    }

    var summary: String {
        let ops = operations.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "\(operations.values.reduce(0, +)) operations (\(ops)); messages: \(sent) sent, \(delivered) delivered, "
            + "\(failedWithError) failed with a reported error, \(lost) lost; \(operationErrors) operation errors; \(hangs) hangs; "
            + "slowest \(slowest.name) \(RprocSimReport.duration(slowest.duration))"
    }
}

/// One board under soak: its firmware, processor and host RPMsg, driven by its own thread.
final class SoakBoard: @unchecked Sendable {
    // The board, processor, device and endpoint are only touched by the board's own thread (and
    // by `close()` after it finished); what the main thread reads is in MetalMutexes.
    enum Kind: String, CaseIterable { case native, cortexM4 = "cortex-m4", rv32 }

    struct Options {
        var replyTimeout: Duration
        var dropKicks: Bool
    }

    let kind: Kind
    private let options: Options
    private var random: SplitMix64
    private let board: Board
    private let processor: RemoteProcessor
    private let image: (path: String, store: ImageStore)
    private var rpmsg: RPMsgDevice?
    private var endpoint: RPMsgEndpoint?
    private let replies = MetalMutex<[[UInt8]]>([])
    private let state = MetalMutex((counts: SoakCounts(), operation: String?.none))

    var counts: SoakCounts { state.withLock { $0.counts } }
    /// The operation the board's thread is in, or nil between operations.
    var currentOperation: String? { state.withLock { $0.operation } }

    init(_ kind: Kind, seed: UInt64, options: Options) throws {
        self.kind = kind
        self.options = options
        random = SplitMix64(seed: seed)
        let firmware: any FirmwareProgram
        switch kind {
        case .native:
            firmware = EchoFirmware(answersSuspend: { _ in .ack })
            image = ("native.elf", MemoryImageStore(["native.elf": try NativeImage.make()]))
        case .cortexM4, .rv32:
            let elf = try FirmwareBuilder.forThisPackage().build(program: "echo", architecture: kind == .rv32 ? .rv32 : .cortexM4)
            firmware = EmulatedCPU(kind == .rv32 ? .rv32 : .cortexM4)
            image = (elf.path, FileImageStore())
        }
        board = try Board(firmware: firmware)
        processor = try board.makeProcessor()
        try boot()
    }

    func close() {
        rpmsg?.close()
        if processor.state != .offline { try? processor.shutdown() }
        board.mailbox.hostInterrupts.shutdown()
        // The core's thread may still be handing a crash report over: let it finish before the
        // process ends with the board still referenced from that thread.
        board.waitForCoreThread()
    }

    /// Runs random operations until `deadline`.
    func run(until deadline: ClockInstant) {
        while RealTimeClock.shared.now < deadline {
            let roll = Int.random(in: 0..<100, using: &random)
            let name = options.dropKicks && roll < 10 ? "dropped kick"
                : roll < 42 ? "traffic" : roll < 50 ? "delayed kicks" : roll < 57 ? "crash in traffic" : roll < 64 ? "restart"
                : roll < 69 ? "reboot" : roll < 76 ? "crash+recover" : roll < 82 ? "panic+recover"
                : roll < 94 ? "suspend in traffic" : "autosuspend"
            state.withLock { $0.operation = name; $0.counts.operations[name, default: 0] += 1 }
            let started = RealTimeClock.shared.now
            do {
                switch name {
                case "traffic": try traffic()
                case "dropped kick":
                    board.faults.dropKicks(.toRemote)
                    try traffic()
                case "delayed kicks":
                    board.faults.delayKicks(.toRemote, by: .microseconds(Int64.random(in: 50...2000, using: &random)))
                    board.faults.delayKicks(.toHost, by: .microseconds(Int64.random(in: 50...2000, using: &random)))
                    defer {
                        board.faults.delayKicks(.toRemote, by: .zero)
                        board.faults.delayKicks(.toHost, by: .zero)
                    }
                    try traffic()
                case "crash in traffic":
                    // The remote dies while messages are in flight: what was not echoed by then
                    // must end with a reported error, not silently.
                    try traffic(.crash(after: Int.random(in: 0...16, using: &random)))
                    guard processor.state == .crashed || board.waitWhileLive(upTo: .seconds(10), until: { false }) == .remoteEnded(.crashed) else {
                        throw SoakFailure("an injected crash did not crash the remote (state \(processor.state))")
                    }
                    rpmsg?.close()
                    try processor.recover()
                    try attach()
                case "restart":
                    // Stop, then what a stopped remote allows: shut down and boot again.
                    rpmsg?.close()
                    try processor.stop()
                    try boot()
                case "reboot":
                    // Shut down straight from Running, and boot again.
                    rpmsg?.close()
                    try boot()
                case "suspend in traffic":
                    // Suspended after some of the sends (forced, or asking the firmware), resumed
                    // by another thread a little later while this one goes on sending: what was
                    // in flight either way and what waited in the vring or in a blocked send must
                    // all come back, in order.
                    let kind = SuspendKind.allCases.randomElement(using: &random)!
                    try traffic(.suspend(after: Int.random(in: 0...16, using: &random), kind: kind,
                                         resumeAfter: .microseconds(Int64.random(in: 0...20_000, using: &random))))
                case "autosuspend":
                    try autosuspend(delay: .microseconds(Int64.random(in: 1_000...5_000, using: &random)))
                default:
                    let kind: CrashReport.Kind = name == "crash+recover" ? .fault : .panic
                    try board.faults.crash(CrashReport(kind: kind, code: UInt64(random.next() & 0xFFFF), message: "soak: injected \(kind)"))
                    guard board.waitWhileLive(upTo: .seconds(10), until: { false }) == .remoteEnded(.crashed) else {
                        throw SoakFailure("an injected \(kind) did not crash the remote (state \(processor.state))")
                    }
                    rpmsg?.close()
                    try processor.recover()
                    try attach()
                }
            } catch {
                state.withLock { s in
                    s.counts.operationErrors += 1
                    if s.counts.problems.count < 20 { s.counts.problems.append("\(name): \(error)") }
                }
                recoverFromUnexpectedState()
            }
            let took = RealTimeClock.shared.now - started
            state.withLock { s in
                s.operation = nil
                if took > s.counts.slowest.duration { s.counts.slowest = (name, took) }
            }
        }
    }

    /// What happens to the remote in the middle of ``traffic(_:)``, after `after` sends.
    private enum Interruption {
        /// A crash (a fault): what was not echoed by then ends with a reported error.
        case crash(after: Int)
        /// A suspension of `kind`, resumed by another thread `resumeAfter` later.
        case suspend(after: Int, kind: SuspendKind, resumeAfter: Duration)

        var after: Int {
            switch self {
            case let .crash(after), let .suspend(after, _, _): after
            }
        }
    }

    /// Sends 1…64 messages of random sizes and contents and checks every echo, in order, with
    /// the remote crashed or suspended after some of them.
    private func traffic(_ interruption: Interruption? = nil) throws {
        try traffic(interruption, allowed: [.running])
    }

    /// Runtime PM: an idle remote is suspended after `delay`; the next send resumes it and every
    /// echo comes back. Autosuspend is off again at the end, the remote running.
    private func autosuspend(delay: Duration) throws {
        let before = processor.powerStatistics.autosuspensions
        processor.autosuspendDelay = delay
        let outcome = Result { () throws -> Void in
            // A remote still holding messages is not idle (with --drop-kicks, one never kicked for
            // may wait there): as long as a reply may take.
            guard board.waitWhileLive(upTo: options.replyTimeout, until: { processor.powerStatistics.autosuspensions > before }) == .met else {
                throw SoakFailure("autosuspend (\(delay)) did not suspend the remote within \(options.replyTimeout) (state \(processor.state); "
                                  + "a remote with messages it has not taken is not idle)")
            }
            try traffic(nil, allowed: [.running, .suspended])
        }
        // Once the setter returns no automatic suspension is under way: the state is settled.
        processor.autosuspendDelay = nil
        if processor.state == .suspended { try processor.resume() }
        try outcome.get()
    }

    private func traffic(_ interruption: Interruption?, allowed: Set<RemoteprocState>) throws {
        guard allowed.contains(processor.state), let endpoint else { return }
        let count = Int.random(in: 1...64, using: &random)
        let payloads = (0..<count).map { _ in random.bytes(Int.random(in: 1...496, using: &random)) }
        replies.withLock { $0.removeAll() }
        var sent = 0, failedSends = 0
        var resumer: PlatformThread?, interrupted = false
        let resumeError = MetalMutex<RemoteprocError?>(nil)
        func interrupt() throws {
            interrupted = true
            switch interruption {
            case nil: break
            case .crash:
                do { try board.faults.crash(CrashReport(kind: .fault, message: "soak: crashed with messages in flight")) } catch {
                    // Only `notRunning`: the remote ended first (it crashed or was stopped); the
                    // sends below are then counted against that end.
                }
            case let .suspend(_, kind, resumeAfter):
                try processor.suspend(kind, timeout: .seconds(5))
                let (processor, clock) = (processor, RealTimeClock.shared)
                resumer = try PlatformThread(name: "rproc-soak-resume") {
                    clock.sleep(for: resumeAfter)
                    do throws(RemoteprocError) { try processor.resume() } catch { resumeError.withLock { $0 = error } }
                }
            }
        }
        // A suspension or resume that fails is an operation error, thrown after what was sent is counted.
        var failure: (any Error)?
        for payload in payloads {
            if sent == interruption?.after {
                do { try interrupt() } catch {
                    failure = error
                    break
                }
            }
            do { try endpoint.send(payload, timeout: .seconds(5)) } catch {
                // The device closes when its remote crashes or stops, and says so.
                let reported = !processor.state.isLive || error.kind == .deviceClosed
                failedSends = 1
                state.withLock { s in
                    if !reported {
                        // A live remote with no free buffer for 5 s has lost the link.
                        s.counts.lost += 1
                        s.counts.problems.append("traffic: send \(sent + 1) of \(count) failed on a live remote (\(processor.state); \(processor.powerStatistics)): \(error)")
                    } else {
                        s.counts.failedWithError += 1
                    }
                }
                break
            }
            sent += 1
        }
        // Not reached in the loop (more sends asked for than were made, or a send failed first): now.
        if interruption != nil, !interrupted, failure == nil {
            do { try interrupt() } catch { failure = error }
        }
        if let thread = resumer.take() { thread.join() }
        if let error = resumeError.withLock({ $0 }) { failure = failure ?? SoakFailure("resume after a suspension in traffic failed: \(error)") }
        _ = board.waitWhileLive(upTo: options.replyTimeout) { replies.withLock { $0.count } >= sent }
        let got = replies.withLock { $0 }
        let live = processor.state.isLive
        var delivered = 0, wrong = 0
        for (index, reply) in got.prefix(sent).enumerated() { if reply == payloads[index] { delivered += 1 } else { wrong += 1 } }
        let missing = sent - delivered - wrong
        state.withLock { s in
            s.counts.sent += sent + failedSends    // every message tried: delivered + failed + lost
            s.counts.delivered += delivered
            s.counts.lost += wrong + (live ? missing : 0)
            s.counts.failedWithError += live ? 0 : missing
            if wrong > 0 { s.counts.problems.append("traffic: \(wrong) of \(sent) echoes differ from what was sent") }
            if live && missing > 0 { s.counts.problems.append("traffic: \(missing) of \(sent) messages never echoed by a running remote") }
            if (wrong > 0 || (live && missing > 0)) && s.counts.firstLoss.isEmpty {
                // What the board did up to the first loss, to find its cause.
                let m = board.mailbox
                s.counts.firstLoss = ["\(processor.state), \(processor.powerStatistics); mailbox PENDING \(hex(UInt64(m.pendingBits))), "
                                      + "clock \(m.isGated ? "gated" : m.isGateRequested ? "gate requested" : "running"), core \(m.isCoreWaiting ? "in WAIT" : "not waiting")"]
                    + board.trace.last(40).map(\.description)
            }
        }
        if let failure { throw failure }
    }

    /// Shuts down (from whatever state allows it) and boots the image again, with RPMsg.
    private func boot() throws {
        if processor.state != .offline { try processor.shutdown() }
        try processor.configure()
        try processor.load(image.path, from: image.store)
        try processor.start()
        try attach()
    }

    /// Puts the host's RPMsg on the remote and opens an endpoint to its echo service.
    private func attach() throws {
        rpmsg?.close()
        rpmsg = nil
        endpoint = nil
        guard let device = try processor.attachHostRPMsg().device else { return }
        rpmsg = device
        board.trace.wakeWaiters(onActivityOf: device)
        var address: RPMsgAddress?
        guard board.waitWhileLive(upTo: .seconds(10), until: {
            address = device.announcedServices.first { $0.name == "rpmsg-echo" }?.address
            return address != nil
        }) == .met, let address else { throw SoakFailure("the echo service was not announced (state \(processor.state))") }
        let replies = self.replies
        endpoint = try device.createEndpoint(destination: address) { message in
            let payload = message.payload
            replies.withLock { $0.append(payload) }
        }
    }

    /// After an operation failed: back to a running remote with RPMsg, whatever state it left.
    private func recoverFromUnexpectedState() {
        rpmsg?.close()
        rpmsg = nil
        endpoint = nil
        // A recovered remote announces its service again; a running one would not (it did at
        // its boot), so it is booted afresh, as from every other state.
        if processor.state == .crashed, (try? processor.recover()) != nil {
            try? attach()
        } else {
            try? boot()
        }
    }
}

struct SoakFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
