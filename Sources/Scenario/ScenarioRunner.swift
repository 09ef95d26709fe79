import DequeModule
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Virtio

/// The outcome of one step.
public struct StepResult: Sendable {
    public var title: String
    public var location: SourceLocation
    public var passed: Bool
    /// How long the step took on the board's clock (virtual time on a virtual-time board).
    public var duration: Duration
    /// How long it took on the host's clock (the same as ``duration`` in real time).
    public var wallDuration: Duration = .zero
    /// What happened (state change, rates, …).
    public var detail: String
    /// Why it failed: expected, what came instead.
    public var failure: String?
    /// The board at the moment the step failed: state, vrings with the messages in flight, the
    /// trace's tail (``BoardInspector/dump(traceEvents:)``).
    public var dump: String?
}

/// The outcome of a scenario.
public struct ScenarioResult: Sendable {
    public var name: String
    public var path: String
    public var firmware: String
    public var steps: [StepResult]
    public var duration: Duration
    /// Each processor's own trace, by name, for a scenario with several (``trace`` merges them).
    public var processorTraces: [(name: String, trace: [TraceEvent])] = []
    /// The run's length on the host's clock, and the board's kind of time.
    public var wallDuration: Duration = .zero
    public var clock: BoardClock = .realTime
    /// The board's trace (for `--trace` and failure reports).
    public var trace: [TraceEvent]
    /// Steps after a failure, which were not run (listed as skipped in reports).
    public var notRun: [(title: String, location: SourceLocation)] = []
    public var passed: Bool { steps.allSatisfy(\.passed) && !steps.isEmpty }
    /// The first failing step, if any.
    public var failure: StepResult? { steps.first { !$0.passed } }
    /// What was kept for debugging later (``ScenarioRunner/postMortem``): at the first failure, or
    /// at the end when every scenario keeps one.
    public var postMortem: PostMortem?
    /// The files written for it (`rproc-sim run --artifacts`), which reports reference.
    public var attachments: [String] = []
}

/// What a scenario run keeps for debugging after the board is gone: a core dump of the remote
/// and the vring report, taken when the first step failed (or at the end of a run that keeps
/// them always), and the firmware image that ran.
public struct PostMortem: Sendable {
    /// `nil` when the dump could not be made (the error says why).
    public var coreDump: CoreDump?
    public var coreDumpError: String?
    /// Every vring as it was (``BoardInspector/vrings()``).
    public var vrings: String
    /// The image's path, and its bytes for a native model's generated image.
    public var imagePath: String
    public var imageBytes: [UInt8]?
}

/// Runs a scenario against a fresh board through the real remoteproc core. Steps run in order;
/// the first failure ends the run (later steps are not attempted). Everything is torn down at the end.
public final class ScenarioRunner {
    let file: ScenarioFile
    let board: Board
    let processor: RemoteProcessor
    /// The firmware image the core loads (an ELF path, or a name for a native model's image).
    public let imagePath: String
    let store: ImageStore
    private var rpmsg: RPMsgDevice?
    private var endpoints: [String: RPMsgEndpoint] = [:]
    private let inbox = Inbox()
    /// Trace events (by recorded count) up to the last console line an expectation took.
    private var consoleTaken = 0
    /// Told how far a long step is (0…1), for progress bars.
    public var onProgress: (@Sendable (String, Double) -> Void)?
    /// Told what the user must do now (a `debug` step waits for gdb).
    public var onNotice: (@Sendable (String) -> Void)?

    /// The GDB server of an emulated core, when one was asked for.
    public let gdb: GDBServer?

    /// The runners of a system's other processors (`processors:` after the first), by name.
    private var others: [(name: String, runner: ScenarioRunner)] = []

    /// The runner of the processor a step names (`on:`): this one for the first, or when none is named.
    /// `nil` for a name no processor has (the parser refuses it; a file built in code may not).
    private func remote(_ on: String?) -> ScenarioRunner? {
        guard let on, on != file.processors.first?.name else { return self }
        return others.first { $0.name == on }?.runner
    }

    /// Every processor's runner, in the file's order.
    private var remotes: [ScenarioRunner] { [self] + others.map(\.runner) }

    /// When to keep a ``PostMortem`` in the result.
    public enum PostMortemPolicy: Sendable { case never, onFailure, always }
    public let postMortem: PostMortemPolicy
    private let imageBytes: [UInt8]?

    /// - Parameter gdbPort: serve GDB on this loopback port (instead of the file's `debug:` port);
    ///   the core waits halted at reset for the debugger.
    /// - Parameter postMortem: when to keep a ``PostMortem``. A run that may write a core dump (this,
    ///   or a `dump` step) keeps an emulated core's PC exact, so the dump names the instruction.
    ///
    /// A file with `processors:` gets a board per processor, all on one clock; each step runs on
    /// the processor its `on:` names.
    public convenience init(_ file: ScenarioFile, gdbPort: UInt16? = nil, postMortem: PostMortemPolicy = .never) throws {
        let clock = file.clock.make()
        try self.init(file, gdbPort: file.processors.isEmpty ? gdbPort : nil, postMortem: postMortem, clock: clock)
        // The first processor is this runner's own board (the file's top-level fields describe it).
        for (name, _) in file.processors.dropFirst() {
            guard let alone = file.alone(name) else { continue }
            others.append((name, try ScenarioRunner(alone, gdbPort: nil, postMortem: postMortem, clock: clock)))
        }
    }

    /// A runner for `file`'s (first) processor, its board keeping time on `clock`.
    private init(_ file: ScenarioFile, gdbPort: UInt16?, postMortem: PostMortemPolicy, clock: any WaitClock) throws {
        self.file = file
        self.postMortem = postMortem
        // (Native models have no CPU to debug: a command-line port is ignored for them.) A `debug`
        // step needs a server: on 3333 without waiting at reset, unless the file or --gdb says.
        let hasDebugStep = file.steps.contains { if case .debug = $0.step { true } else { false } }
        let hasDumpStep = file.steps.contains { if case .dump = $0.step { true } else { false } }
        let debug = gdbPort.map { DebuggerOptions(port: $0, waitForDebugger: true) } ?? file.debug
            ?? (hasDebugStep ? DebuggerOptions(port: 3333, waitForDebugger: false) : nil)
        let (firmware, path, bytes, gdb) = try ScenarioFirmware.resolve(file.processor.firmware, debug: debug, coreClock: file.processor.coreClock ?? .default,
                                                                            faults: file.processor.faults ?? .crash,
                                                                            exactPCs: file.processor.exactPCs || hasDumpStep || postMortem != .never)
        self.gdb = gdb
        var layout = BoardLayout()
        if let size = file.processor.codeSize { layout.code.size = size }
        if let size = file.processor.sramSize { layout.sram.size = size }
        if let size = file.processor.sharedSize { layout.shared.size = size }
        board = try Board(firmware: firmware, layout: layout, pollMode: file.processor.pollMode, hostInterrupts: file.processor.hostInterrupts, clock: clock)
        processor = try board.makeProcessor(host: file.processor.host ?? file.host)
        processor.autosuspendDelay = file.processor.autosuspend
        imagePath = path
        imageBytes = bytes
        if let bytes { store = MemoryImageStore([path: bytes]) } else { store = FileImageStore() }
    }

    /// Runs every step, reporting each as it ends.
    public func run(progress: (StepResult) -> Void = { _ in }) -> ScenarioResult {
        let clock = board.clock
        // In virtual time the runner's thread takes part in the board's schedule: it and the
        // board's threads run in lockstep (one at a time, in a fixed order) until the run ends.
        clock.join()
        defer { clock.leave() }
        let wall = RealTimeClock.shared
        let started = clock.now, wallStarted = wall.now
        var results: [StepResult] = []
        var kept: PostMortem?
        func keep(_ remote: ScenarioRunner) {
            guard kept == nil, postMortem != .never else { return }
            let dump = Result { try remote.board.coreDump() }
            kept = PostMortem(coreDump: try? dump.get(), coreDumpError: { if case let .failure(error) = dump { "\(error)" } else { nil } }(),
                              vrings: remote.board.inspector.vrings(), imagePath: remote.imagePath, imageBytes: remote.imageBytes)
        }
        for (step, location, on) in file.steps {
            let title = on.map { "\($0): " + step.title } ?? step.title   // as notRun below
            guard let remote = remote(on) else {
                let result = StepResult(title: title, location: location, passed: false, duration: .zero, detail: "",
                                        failure: "no processor '\(on ?? "")' (processors: \(file.processors.map(\.name).joined(separator: ", ")))")
                results.append(result)
                progress(result)
                break
            }
            let before = remote.processor.state
            let stepStart = clock.now, wallStart = wall.now
            var result: StepResult
            do {
                let detail = try remote.perform(step)
                let after = remote.processor.state
                let transition = before == after ? "" : "\(before) → \(after)"
                result = StepResult(title: title, location: location, passed: true, duration: clock.now - stepStart,
                                    detail: [transition, detail].filter { !$0.isEmpty }.joined(separator: " · "), failure: nil)
            } catch {
                result = StepResult(title: title, location: location, passed: false, duration: clock.now - stepStart, detail: "",
                                    failure: "\(error)", dump: remote.board.inspector.dump())
            }
            result.wallDuration = wall.now - wallStart
            if !result.passed { keep(remote) }
            results.append(result)
            progress(result)
            if !result.passed { break }
        }
        if file.failOnLeftovers, results.allSatisfy(\.passed), let remote = remotes.first(where: { $0.inbox.count > 0 || $0.inbox.dropped > 0 }) {
            let inbox = remote.inbox
            let left = inbox.pending()
            let on = file.processors.isEmpty ? "" : zip(file.processors, remotes).first { $0.1 === remote }.map { "\($0.0.name): " } ?? ""
            let result = StepResult(title: on + "nothing left over", location: file.steps.last?.location ?? SourceLocation(file: file.path, line: 1, column: 1),
                                    passed: false, duration: .zero, detail: "",
                                    failure: "expected: every received message taken by an expectation (leftovers: fail)\n      saw:      \(left.count) left: "
                                        + left.prefix(5).map { readablePayload($0.payload, limit: 32) }.joined(separator: ", ") + (left.count > 5 ? ", …" : "")
                                        + (inbox.dropped > 0 ? " (and \(inbox.dropped) dropped unread: the queue was full)" : ""))
            keep(remote)
            results.append(result)
            progress(result)
        }
        if postMortem == .always { keep(self) }
        for remote in remotes.reversed() { remote.teardown() }
        let notRun = file.steps.dropFirst(min(results.count, file.steps.count)).map { step in
            (title: step.on.map { "\($0): " + step.step.title } ?? step.step.title, location: step.location)
        }
        // One trace: every board's events in time order (a system's boards share the clock).
        let traces = file.processors.isEmpty ? [] : zip(file.processors, remotes).map { (name: $0.0.name, trace: $0.1.board.trace.events) }
        let merged = traces.isEmpty ? board.trace.events : Trace.merged(traces.map(\.trace)).map(\.event)
        var outcome = ScenarioResult(name: file.name, path: file.path, firmware: file.firmwareSummary, steps: results,
                                     duration: clock.now - started, trace: merged, notRun: results.allSatisfy(\.passed) ? [] : Array(notRun),
                                     postMortem: kept)
        outcome.processorTraces = traces
        outcome.wallDuration = wall.now - wallStarted
        outcome.clock = file.clock
        return outcome
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    private func teardown() {
        rpmsg?.close()
        if processor.state != .offline { try? processor.shutdown() }
        board.mailbox.hostInterrupts.shutdown()
        gdb?.shutdown()
        board.waitForCoreThread()   // a crash report still being handed over ends before the board is let go
    }

    private func pump() { if file.processor.pollMode { board.poll() } }

    /// Polls `condition` until it holds or `within` passes (time halted in a debugger not counted).
    private func waitFor(_ within: Duration, _ condition: () -> Bool) -> Bool {
        board.wait(upTo: within, until: condition)
    }

    /// Like ``waitFor(_:_:)`` for a step that needs a live remote: when the remote crashes or is
    /// stopped meanwhile, the wait ends at once with a failure that says so and gives the crash
    /// report — it does not wait out `within` for what can no longer come.
    private func waitAlive(_ within: Duration, for what: String, _ condition: () -> Bool) throws -> Bool {
        switch board.waitWhileLive(upTo: within, until: condition) {
        case .met: return true
        case .timedOut: return false
        case let .remoteEnded(state):
            throw Failure("expected: \(what)\n      saw:      the remote \(state == .crashed ? "crashed" : "left Running (state \(state))") while waiting" + crashNote())
        }
    }

    /// Puts the host's RPMsg on the first vdev; says so when the remote crashed first (the step
    /// that started it still passed: the next step sees the crash, whichever side won the race).
    private func attachRPMsg() throws -> String {
        rpmsg?.close()
        rpmsg = nil
        endpoints = [:]
        switch try processor.attachHostRPMsg() {
        case let .attached(device):
            board.trace.traceTraffic(of: device)
            rpmsg = device
            return ""
        case .noVirtioDevice: return ""
        case let .remoteCrashed(report): return "the remote crashed before the host's RPMsg was up" + (report.map { " (\($0))" } ?? "")
        }
    }

    private func perform(_ step: ScenarioStep) throws -> String {
        switch step {
        case .configure: try processor.configure(); return ""
        case .load:
            try processor.load(imagePath, from: store)
            let image = processor.loadedImage
            return "\(image?.loadableSegments.count ?? 0) segments"
        case .start:
            try processor.start()
            return ["pc \(processor.bootAddress.map { "\($0)" } ?? "?")", try attachRPMsg()].filter { !$0.isEmpty }.joined(separator: " · ")
        case .boot:
            if processor.state == .offline { try processor.configure() }
            try processor.load(imagePath, from: store)
            try processor.start()
            return [file.processor.firmware.summary, try attachRPMsg()].filter { !$0.isEmpty }.joined(separator: " · ")
        case .stop: rpmsg?.close(); try processor.stop(); return ""
        case .shutdown: rpmsg?.close(); try processor.shutdown(); return ""
        case .recover: try processor.recover(); return try attachRPMsg()
        case let .suspend(kind, timeout, expect):
            let outcome: SuspendOutcome
            do {
                try processor.suspend(kind, timeout: timeout)
                outcome = .suspended
            } catch {
                switch error.kind {
                case .refusedByRemote: outcome = .refused
                case .busy: outcome = .busy
                default: throw error
                }
                guard outcome == expect else {
                    throw Failure("expected: \(expect == .suspended ? "the remote suspended" : "the request \(expect)")\n      saw:      \(error)")
                }
                return "\(outcome)"
            }
            guard outcome == expect else { throw Failure("expected: the \(kind) request \(expect)\n      saw:      the remote suspended") }
            return "\(processor.powerStatistics.suspensions) suspension(s) so far"
        case .resume: try processor.resume(); return ""
        case let .powerReplies(fault): board.faults.powerReplies(fault); return ""
        case let .wait(duration):
            _ = waitFor(duration) { false }
            return ""
        case let .sendFor(to, payload, duration):
            let endpoint = try endpoint(for: to)
            let clock = board.clock
            let start = clock.now
            var sent = 0
            while clock.now - start < duration {
                try board.send(payload, through: endpoint, timeout: .seconds(5))
                sent += 1
                pump()
                if sent % 256 == 0 { onProgress?(step.title, min(1, (clock.now - start).inSeconds / duration.inSeconds)) }
            }
            return String(format: "%d messages, %.0f msg/s", sent, Double(sent) / max((clock.now - start).inSeconds, 1e-9))
        case let .sendFile(to, chunks, _, count):
            let endpoint = try endpoint(for: to)
            let total = chunks.count * count
            for i in 0..<total {
                try board.send(chunks[i % chunks.count], through: endpoint, timeout: .seconds(5))
                pump()
                if i % 256 == 0 { onProgress?(step.title, Double(i) / Double(total)) }
            }
            return "\(total) message(s)"
        case let .send(to, payload, count):
            let endpoint = try endpoint(for: to)
            let clock = board.clock
            let start = clock.now
            for i in 0..<count {
                try board.send(payload, through: endpoint, timeout: .seconds(5))
                pump()
                if count >= 1000 && i % 256 == 0 { onProgress?(step.title, Double(i) / Double(count)) }
            }
            let seconds = (clock.now - start).inSeconds
            return count > 1 ? String(format: "%.0f msg/s", Double(count) / max(seconds, 1e-9)) : ""
        case let .expectState(name, within):
            guard waitFor(within, { processor.state.rawValue == name }) else {
                throw Failure("expected: state \(name) within \(scenarioText(within))\n      saw:      state \(processor.state)" + crashNote())
            }
            return ""
        case let .expectAnnounce(name, within):
            guard let rpmsg else { throw Failure("no RPMsg device (is the remote started?)") }
            guard try waitAlive(within, for: "name-service announcement \"\(name)\"", { rpmsg.announcedServices.contains { $0.name == name } }) else {
                throw Failure("expected: name-service announcement \"\(name)\" within \(scenarioText(within))\n      saw:      "
                              + (rpmsg.announcedServices.isEmpty ? "no announcement (state \(processor.state))" : rpmsg.announcedServices.map { visibleText($0.name) }.joined(separator: ", ")))
            }
            return "addr \(rpmsg.announcedServices.first { $0.name == name }!.address)"
        case let .expectReceived(from, match, count, within):
            let source = try sourceAddress(from)
            // Scanned incrementally (the wait polls often and messages pile up): the queue only
            // grows while the step waits, so the positions found stay valid until it takes them.
            let accepts = try Self.predicate(for: match)
            var scanned = 0
            var matched: [Int] = []
            func matching() -> Int {
                let fresh = inbox.pending(from: scanned)
                for m in fresh where matched.count < count && (source == nil || m.source == source) && accepts(m.payload) {
                    matched.append(m.sequence)
                }
                if let last = fresh.last { scanned = last.sequence + 1 }
                return matched.count
            }
            guard try waitAlive(within, for: "\(count) × \(match)", { matching() >= count }) else {
                let waiting = inbox.pending()
                let last = waiting.last.map { readablePayload($0.payload, limit: 48) } ?? "nothing"
                let dropped = inbox.dropped
                throw Failure("expected: \(count) × \(match)\(from.map { " from \($0)" } ?? "") within \(scenarioText(within))\n      saw:      \(matching()) matching of \(waiting.count) waiting; last: \(last)"
                              + (dropped > 0 ? "\n      note:     \(dropped) older message(s) were dropped unread (the queue keeps \(Inbox.maximumCount) messages or \(Inbox.maximumBytes >> 20) MiB)" : ""))
            }
            inbox.take(matched)
            return "\(count) matched, \(inbox.count) left waiting"
        case let .expectNone(from, match, duration):
            let source = try sourceAddress(from)
            let accepts = try Self.predicate(for: match)
            var scanned = 0
            var offender: [UInt8]?
            _ = waitFor(duration) {
                let fresh = inbox.pending(from: scanned)
                if let last = fresh.last { scanned = last.sequence + 1 }
                offender = fresh.first { (source == nil || $0.source == source) && accepts($0.payload) }?.payload
                return offender != nil
            }
            if let offender {
                throw Failure("expected: no \(match)\(from.map { " from \($0)" } ?? "") for \(scenarioText(duration))\n      saw:      \(readablePayload(offender, limit: 48))")
            }
            return "\(inbox.count) message(s) waiting, none matching"
        case let .expectNoCrash(duration):
            guard processor.state.isLive else {
                throw Failure("expected: a running remote for \(scenarioText(duration))\n      saw:      state \(processor.state)" + crashNote())
            }
            if waitFor(duration, { !processor.state.isLive }) {
                throw Failure("expected: no crash for \(scenarioText(duration))\n      saw:      state \(processor.state)" + crashNote())
            }
            return ""
        case let .expectConsole(regex, within):
            // Console lines are a queue too, as a UART is to Renode's `Wait For Line On Uart`: the
            // first line after the last one taken that matches is taken, with the lines before it.
            let expression = try ScenarioRegex(regex)
            var taken: (line: String, through: Int)?
            // Each look reads only the events recorded since the last one (the trace holds up to 100k).
            var scanned = consoleTaken
            func found() -> Bool {
                board.collectTraceBuffer()
                let (events, recorded) = board.trace.events(after: scanned)
                for (i, event) in events.enumerated() {
                    guard case let .console(line, _) = event.kind,
                          expression.matches(line) else { continue }
                    taken = (line, recorded - events.count + i + 1)
                    return true
                }
                scanned = recorded
                return false
            }
            guard try waitAlive(within, for: "a console line matching /\(regex)/", found) else {
                throw Failure("expected: a console line matching /\(regex)/ within \(scenarioText(within))\n      saw:      \(board.trace.consoleLines.suffix(3).map { visibleText($0) }.joined(separator: " | "))")
            }
            consoleTaken = taken!.through
            return "\"\(taken!.line)\""
        case let .expectCrash(kind, within):
            guard waitFor(within, { processor.state == .crashed && (kind == nil || processor.crashReport?.kind.rawValue == kind) }) else {
                throw Failure("expected: a crash\(kind.map { " (\($0))" } ?? "") within \(scenarioText(within))\n      saw:      state \(processor.state)" + crashNote())
            }
            return processor.crashReport.map { "\($0)" } ?? ""
        case let .expectMalformed(atLeast, within):
            guard try waitAlive(within, for: "\(atLeast) malformed item(s)", { malformedCount() >= atLeast }) else {
                throw Failure("expected: at least \(atLeast) malformed item(s) counted within \(scenarioText(within))\n      saw:      \(malformedCount()) (\(rpmsg.map { "\($0.statistics)" } ?? "no RPMsg device"))")
            }
            return "\(malformedCount()) counted"
        case let .expectTrace(regex, within):
            let expression = try ScenarioRegex(regex)
            func found() -> TraceEvent? {
                board.trace.events.first { expression.matches("\($0)") }
            }
            guard try waitAlive(within, for: "a trace event matching /\(regex)/", { found() != nil }) else {
                throw Failure("expected: a trace event matching /\(regex)/ within \(scenarioText(within))\n      saw:      \(board.trace.last(3).map(\.description).joined(separator: " · "))")
            }
            return "\(found()!)"
        case let .inject(crash):
            guard processor.state == .running else { throw Failure("expected: a running remote to inject into\n      saw:      state \(processor.state)") }
            try board.faults.inject(crash)
            return ""
        case let .dropKicks(direction, count):
            board.faults.dropKicks(direction, count: count)
            return ""
        case let .delayKicks(direction, by):
            board.faults.delayKicks(direction, by: by)
            return ""
        case let .corruptVring(index, field, value):
            do { try board.faults.corruptVring(index, field, value: value) } catch {
                guard case let .noSuchVring(_, available) = error.kind else { throw error }
                throw Failure("expected: a vring \(index) to corrupt\n      saw:      \(available) vring(s)")
            }
            return ""
        case let .dump(path):
            let size: Int
            do { size = try board.writeCoreDump(to: path) } catch {
                throw Failure("expected: a core dump written to \(path)\n      saw:      \(error)")
            }
            return "\(size) bytes to \(path)"
        case let .debug(attachWithin, within):
            guard let gdb else { throw Failure("expected: an emulated core to debug\n      saw:      \(file.processor.firmware.summary)") }
            gdb.halt()
            guard waitFor(.seconds(5), { gdb.isHalted }) else {
                throw Failure("expected: the core to halt for the debugger\n      saw:      state \(processor.state)" + crashNote())
            }
            onNotice?("the core is halted: gdb-multiarch -q \(imagePath) -ex 'target remote :\(gdb.port)' — continue or detach to go on")
            let clock = board.clock
            let started = clock.now
            // Nobody comes: fail after attach-within (the step never blocks a CI for its whole `within`).
            // (The board's own waits leave out time halted in the debugger, which is all of it here.)
            _ = board.trace.waiters.wait(clock: clock, until: started + attachWithin) {
                pump()
                return gdb.hasClient || !gdb.isHalted
            }
            guard gdb.hasClient || !gdb.isHalted else {
                throw Failure("expected: a debugger to connect to 127.0.0.1:\(gdb.port) within \(scenarioText(attachWithin)) (attach-within)\n      saw:      none")
            }
            guard board.trace.waiters.wait(clock: clock, until: started + within, {
                pump()
                return !gdb.isHalted
            }) else {
                throw Failure("expected: a debugger to let the core go within \(scenarioText(within))\n      saw:      the core still halted")
            }
            return "held \(scenarioText(clock.now - started))"
        case let .corruptTable(offset, value):
            do { try board.faults.corruptResourceTable(at: offset, value: value) } catch {
                switch error.kind {
                case .noResourceTable: throw Failure("expected: an installed resource table\n      saw:      none (load first)")
                case let .outsideResourceTable(_, size): throw Failure("expected: an offset inside the \(size)-byte table\n      saw:      \(offset)")
                default: throw error
                }
            }
            return ""
        }
    }

    /// The endpoint bound to service `name`, made on first use (waits up to 5 s for the announcement).
    private func endpoint(for name: String) throws -> RPMsgEndpoint {
        if let existing = endpoints[name], !existing.isDestroyed { return existing }
        guard let rpmsg else { throw Failure("no RPMsg device: the firmware's table has no vdev, or the remote is not started") }
        var service: RPMsgAddress?
        _ = try waitAlive(.seconds(5), for: "a service '\(name)' to send to") {
            service = rpmsg.announcedServices.first { $0.name == name }?.address
            return service != nil
        }
        guard let service else {
            throw Failure("expected: a service '\(name)' to send to\n      saw:      \(rpmsg.announcedServices.isEmpty ? "no announcement" : "announced \(rpmsg.announcedServices.map { visibleText($0.name) }.joined(separator: ", "))")")
        }
        let created = try rpmsg.createEndpoint(destination: service) { [inbox] message in
            inbox.append(source: message.source, payload: message.payload)
        }
        endpoints[name] = created
        return created
    }

    /// The address of service `name` (`from:` of an expectation): the endpoint we send to it
    /// through (once bound, it is no longer listed as announced), else its announcement.
    private func sourceAddress(_ name: String?) throws -> RPMsgAddress? {
        guard let name else { return nil }
        guard let address = endpoints[name].map(\.destination) ?? rpmsg?.announcedServices.first(where: { $0.name == name })?.address else {
            throw Failure("expected: messages from service '\(name)'\n      saw:      no such service (not announced, nothing sent to it)")
        }
        return address
    }

    private func malformedCount() -> Int {
        guard let rpmsg else { return 0 }
        return rpmsg.statistics.malformedTotal
    }

    private func crashNote() -> String {
        guard let report = processor.crashReport else { return "" }
        return "\n      crash:    \(report)"
    }

    /// A test for payloads matching `match` (its regular expression compiled once).
    static func predicate(for match: PayloadMatch) throws -> ([UInt8]) -> Bool {
        switch match {
        case .any: return { _ in true }
        case let .exact(bytes): return { $0 == bytes }
        case let .prefix(bytes): return { $0.starts(with: bytes) }
        case let .regex(pattern):
            let expression = try ScenarioRegex(pattern)
            return { payload in
                expression.matches(String(decoding: payload, as: UTF8.self))
            }
        }
    }
}

/// Messages the host received and no expectation has taken yet, in arrival order: the queue
/// expectations take from (as `EmbeddedChannel.readOutbound()` does). Bounded: past
/// ``maximumCount`` messages or ``maximumBytes`` of payload the oldest waiting ones are dropped
/// and counted, so a firmware streaming for hours keeps the runner's memory flat. Every message
/// has a sequence number; an expectation scans by it, so drops never shift what it found.
final class Inbox: Sendable {
    struct Message: Sendable {
        var sequence: Int
        var source: RPMsgAddress
        var payload: [UInt8]
    }
    static let maximumCount = 65_536
    static let maximumBytes = 16 << 20
    private struct State {
        var messages = Deque<Message>()
        var next = 0
        var bytes = 0
        var dropped = 0
    }
    private let state = MetalMutex(State())

    func append(source: RPMsgAddress, payload: [UInt8]) {
        state.withLock { s in
            s.messages.append(Message(sequence: s.next, source: source, payload: payload))
            s.next += 1
            s.bytes += payload.count
            while s.messages.count > Self.maximumCount || s.bytes > Self.maximumBytes, let oldest = s.messages.popFirst() {
                s.bytes -= oldest.payload.count
                s.dropped += 1
            }
        }
    }
    /// The waiting messages with sequence numbers from `start` on. (The queue is in sequence
    /// order but has gaps where messages were taken: the first of them is searched for.)
    func pending(from start: Int = 0) -> [Message] {
        state.withLock { s in
            var low = s.messages.startIndex, high = s.messages.endIndex
            while low < high {
                let middle = low + (high - low) / 2
                if s.messages[middle].sequence < start { low = middle + 1 } else { high = middle }
            }
            return Array(s.messages[low...])
        }
    }
    var count: Int { state.withLock { $0.messages.count } }
    /// Messages dropped unread because the queue was full.
    var dropped: Int { state.withLock { $0.dropped } }
    /// Takes the messages numbered `sequences` (any that were dropped meanwhile are gone already);
    /// the rest stay in order.
    func take(_ sequences: [Int]) {
        let drop = Set(sequences)
        state.withLock { s in
            s.messages.removeAll { message in
                guard drop.contains(message.sequence) else { return false }
                s.bytes -= message.payload.count
                return true
            }
        }
    }
}
