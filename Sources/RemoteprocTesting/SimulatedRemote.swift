import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import Virtio
// Users name the host personality (`host: .openamp`) without importing Virtio themselves.
@_exported import enum Virtio.HostPersonality
import XCTest

/// What a ``SimulatedRemote`` runs.
public enum TestFirmware: Sendable {
    /// A `Firmware/programs` program, built with the toolchain's clang, on an emulated CPU.
    case program(String, architecture: CPUArchitecture)
    /// An ELF file on an emulated CPU.
    case elf(path: String, architecture: CPUArchitecture)
    /// Your own firmware: every `.c` file in a directory, built against this package's board
    /// headers, start-up code and remote-side library (``FirmwareKit/FirmwareBuilder/build(directory:name:architecture:)``).
    case sources(directory: String, architecture: CPUArchitecture)
    /// A native (Swift) firmware model, e.g. `EchoFirmware()`, or a ``ScriptedRemote``.
    case native(any FirmwareProgram)

    /// A scripted remote (see ``ScriptedRemote``).
    public static func scripted(_ remote: ScriptedRemote) -> TestFirmware { .native(remote) }
}

/// A failed wait or check: what was expected, what arrived, and the board's recent history.
public struct SimulationFailure: Error, CustomStringConvertible, Sendable {
    public var expected: String
    public var actual: String
    public var console: [String]
    public var trace: [String]
    /// The remote at the failure (a running core halted for the copy); `nil` when it could not be made.
    public var coreDump: CoreDump?
    /// Where it was written (``SimulatedRemote/artifactsDirectory``).
    public var coreDumpPath: String?
    public var description: String {
        var text = "expected: \(expected)\n  got:      \(actual)"
        if !console.isEmpty { text += "\n  console:  " + console.joined(separator: "\n            ") }
        if !trace.isEmpty { text += "\n  trace:    " + trace.joined(separator: "\n            ") }
        if let coreDumpPath { text += "\n  core:     \(coreDumpPath) (rproc-sim debug --core \(coreDumpPath) FIRMWARE.elf)" }
        return text
    }

    /// The environment variable naming a folder where failures write the remote's core dump.
    public static let artifactsVariable = "RPROC_SIM_ARTIFACTS"
    /// The folder `RPROC_SIM_ARTIFACTS` names, if it names one.
    public static var artifactsFromEnvironment: String? {
        ProcessInfo.processInfo.environment[artifactsVariable].flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// A simulated board with a chosen firmware, booted through the real remoteproc core, with the
/// host's RPMsg on its first vdev — the fixture of an integration test. Tear it down with
/// ``close()`` (or use ``withSimulatedRemote(_:pollMode:host:debug:clock:_:)``); `deinit` closes it too, so no
/// thread, mapping or endpoint outlives the test.
///
/// Every wait is bounded. A wait that times out records one failure at the caller's file and line
/// — in Swift Testing or XCTest, whichever runs the test — and stops the test; the failure says
/// what was expected, what arrived, the last console lines and trace events (outside a test
/// framework it is thrown as ``SimulationFailure``).
public final class SimulatedRemote: @unchecked Sendable {
    // The mutable fields are only touched by the test's own thread; shared state is in Mutexes.
    public let board: Board
    /// Fault injection on the board: kicks lost or delayed, crashes, corrupted vrings and table.
    public var faults: BoardFaults { board.faults }
    public let processor: RemoteProcessor
    public private(set) var rpmsg: RPMsgDevice?
    private var closed = false
    /// The test thread's place in a virtual clock's schedule.
    private var testClock: TestClock?
    /// The default for every wait. Time the core spends halted in a debugger does not count.
    public var timeout: Duration
    /// The GDB server of an emulated core, when one was asked for.
    public let debugger: GDBServer?
    /// Where a failed wait writes the remote's core dump (`remote-<pid>-<n>.core`, named in the
    /// failure); default: the `RPROC_SIM_ARTIFACTS` environment variable. Under Swift Testing the
    /// dump is also the failure's attachment (`swift test --attachments-path DIR` keeps it).
    public var artifactsDirectory: String? = SimulationFailure.artifactsFromEnvironment

    /// Boots `firmware`: configure, load, start, and RPMsg on the first vdev.
    /// - Parameters:
    ///   - host: the host stack the processor behaves as (start-up sequence, notify ids, buffers;
    ///     default Linux, see `docs/host-personalities.md`).
    ///   - debug: serve GDB for an emulated core (default: `RPROC_SIM_GDB=PORT` from the
    ///     environment, which also makes the core wait halted at reset for the debugger).
    ///   - exactPCs: an emulated core keeps its PC exact (``EmulatedCPU/exactPCs``), so the core
    ///     dump of a failure names the faulting instruction; slower on tight loops. Default: on when
    ///     `RPROC_SIM_ARTIFACTS` is set (failures are then kept for later).
    ///   - clock: `.virtual` runs the board in virtual time (docs/virtual-time.md): the calling
    ///     thread takes part in the board's lockstep schedule until ``close()`` — use the remote
    ///     from that thread only; waits and timeouts are then virtual, and runs repeat exactly.
    public convenience init(_ firmware: TestFirmware, timeout: Duration = .seconds(10), pollMode: Bool = false, host: HostPersonality = .default,
                debug: DebuggerOptions? = DebuggerOptions.fromEnvironment(ProcessInfo.processInfo.environment),
                exactPCs: Bool = SimulationFailure.artifactsFromEnvironment != nil, clock: BoardClock = .realTime) throws {
        let time = TestClock(clock)
        do {
            try self.init(firmware, timeout: timeout, pollMode: pollMode, host: host, debug: debug, exactPCs: exactPCs, on: time.clock)
        } catch {
            time.end()
            throw error
        }
        testClock = time
    }

    /// A remote whose board keeps time on `clock` (one of a ``SimulatedSystem``'s, or the real
    /// one); whoever made `clock` has the test's thread take part in it.
    init(_ firmware: TestFirmware, timeout: Duration, pollMode: Bool, host: HostPersonality, debug: DebuggerOptions?, exactPCs: Bool,
         on clock: any WaitClock) throws {
        self.timeout = timeout
        let image: (path: String, store: ImageStore)
        let runner: any FirmwareProgram
        func cpu(_ architecture: CPUArchitecture, elf: String) throws -> (EmulatedCPU, GDBServer?) {
            var server: GDBServer?
            if let debug {
                let gdb = try GDBServer(architecture: architecture, options: debug)
                FileHandle.standardError.write(Data(("rproc-sim: GDB on 127.0.0.1:\(gdb.port)" + (debug.waitForDebugger ? ", the core waits halted at reset" : "")
                                                     + ": gdb-multiarch -q \(elf) -ex 'target remote :\(gdb.port)'\n").utf8))
                server = gdb
            }
            return (EmulatedCPU(architecture, exactPCs: exactPCs, debugger: server), server)
        }
        var server: GDBServer?
        switch firmware {
        case let .program(name, architecture):
            let elf = try FirmwareBuilder.forThisPackage().build(program: name, architecture: architecture == .rv32 ? .rv32 : .cortexM4)
            image = (elf.path, FileImageStore())
            (runner, server) = try cpu(architecture, elf: elf.path)
        case let .elf(path, architecture):
            image = (path, FileImageStore())
            (runner, server) = try cpu(architecture, elf: path)
        case let .sources(directory, architecture):
            let elf = try FirmwareBuilder.forThisPackage().build(directory: URL(fileURLWithPath: directory),
                                                                 architecture: architecture == .rv32 ? .rv32 : .cortexM4)
            image = (elf.path, FileImageStore())
            (runner, server) = try cpu(architecture, elf: elf.path)
        case let .native(native):
            image = ("native.elf", MemoryImageStore(["native.elf": try NativeImage.make()]))
            runner = native
        }
        debugger = server
        board = try Board(firmware: runner, pollMode: pollMode, clock: clock)
        processor = try board.makeProcessor(host: host)
        do {
            try processor.configure()
            try processor.load(image.path, from: image.store)
            try processor.start()
            try attachRPMsg()
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Shuts the remote down and releases the board's threads. Safe to call twice.
    public func close() {
        guard !closed else { return }
        closed = true
        rpmsg?.close()
        if processor.state != .offline { try? processor.shutdown() }
        try? processor.remove()
        board.mailbox.hostInterrupts.shutdown()
        debugger?.shutdown()
        board.waitForCoreThread()   // a crash report still being handed over ends before the board is let go
        testClock?.end()
    }

    /// Puts the host's RPMsg on the first vdev again (after ``recover()``). A remote that crashes
    /// before the host's side is up leaves ``rpmsg`` nil, not an error: the waits that follow
    /// report the crash, whichever side won the race.
    public func attachRPMsg() throws {
        rpmsg?.close()
        rpmsg = nil
        guard let device = try processor.attachHostRPMsg().device else { return }
        board.trace.traceTraffic(of: device)
        rpmsg = device
    }

    /// Recovers a crashed remote and puts RPMsg back on it.
    public func recover() throws {
        try processor.recover()
        try attachRPMsg()
    }

    /// Suspends the remote (``RemoteProcessor/suspend(_:timeout:)``): `forced` gates its clock at
    /// once; `auto` and `system` ask firmware that takes part in the handshake, which may refuse.
    /// What the test sends meanwhile waits in the vrings and is delivered after ``resume()``.
    public func suspend(_ kind: SuspendKind = .forced, timeout: Duration = RemoteProcessor.defaultSuspendTimeout) throws {
        try processor.suspend(kind, timeout: timeout)
    }

    /// Resumes a suspended remote where it stopped.
    public func resume() throws {
        try processor.resume()
    }

    /// Runtime PM's autosuspend on the remote (``RemoteProcessor/autosuspendDelay``): suspended
    /// after this long without traffic, resumed by the next send. `nil` turns it off.
    public var autosuspendDelay: Duration? {
        get { processor.autosuspendDelay }
        set { processor.autosuspendDelay = newValue }
    }

    /// The console lines so far (CONSOLE register and trace buffer).
    public var consoleLines: [String] {
        board.collectTraceBuffer()
        return board.trace.consoleLines
    }

    // MARK: Waits

    /// Ends a failed wait with exactly one failure, at the caller's line, and stops the test:
    /// - under Swift Testing, the issue `#require` records, and the error it throws (which Swift
    ///   Testing does not report again);
    /// - under XCTest, the failure `XCTUnwrap` records, and the error it throws (which XCTest does
    ///   not report again either);
    /// - outside both, ``SimulationFailure`` is thrown for the caller to handle.
    func fail(_ expected: String, _ actual: String, _ location: Testing.SourceLocation, _ file: StaticString, _ line: UInt) throws -> Never {
        let report = processor.crashReport.map { "\($0)" }
        var failure = SimulationFailure(expected: expected, actual: actual + (report.map { " — crash: \($0)" } ?? ""),
                                        console: consoleLines.suffix(5).map { visibleText($0) }, trace: board.trace.last(5).map(\.description))
        // The remote as it was, for the debugger later: with the failure, in a file when asked
        // for, and as the attachment under Swift Testing.
        failure.coreDump = try? board.coreDump()
        let encoded = failure.coreDump.map(CoreDumpFile.encode)
        if let encoded, let folder = artifactsDirectory, !folder.isEmpty {
            let path = URL(fileURLWithPath: folder).appendingPathComponent("remote-\(Self.nextDumpNumber()).core").path
            if (try? RegularFile.write(encoded, to: path)) != nil { failure.coreDumpPath = path }
        }
        if Test.current != nil {
            if let encoded { Attachment.record(encoded, named: "remote.core", sourceLocation: location) }
            let waitSucceeded = false
            try #require(waitSucceeded, Comment(rawValue: failure.description), sourceLocation: location)
        } else if Self.isXCTestProcess {
            _ = try XCTUnwrap(Optional<PassingWait>.none, failure.description, file: file, line: line)
        }
        throw failure
    }

    /// Numbers the core dumps this process writes (`remote-<pid>-<n>.core`).
    private static let dumpCount = MetalMutex(0)
    static func nextDumpNumber() -> String {
        "\(getpid())-" + String(dumpCount.withLock { n in n += 1; return n })
    }

    /// What a wait that failed under XCTest did not get (named in XCTest's message:
    /// `XCTUnwrap failed: expected non-nil value of type "PassingWait" - expected: …`).
    struct PassingWait {}

    /// Whether this process is an XCTest run: a `.xctest` bundle (Linux, Windows) or the `xctest`
    /// runner (macOS). Swift Testing tests are told apart by `Test.current` first.
    static let isXCTestProcess: Bool = {
        let program = URL(fileURLWithPath: CommandLine.arguments.first ?? "").lastPathComponent
        return program == "xctest" || program.hasSuffix(".xctest")
    }()

    /// ``poll(_:_:)`` for a wait that needs a live remote: it ends at once (false) when the
    /// remote crashes or is stopped, instead of waiting out its time.
    func pollAlive(_ timeout: Duration, _ condition: () -> Bool) -> Bool {
        board.waitWhileLive(upTo: timeout, until: condition) == .met
    }

    /// Polls `condition` until it holds or `timeout` passes; time the core spends halted in a
    /// debugger does not count, so stepping through firmware fails no wait.
    func poll(_ timeout: Duration, _ condition: () -> Bool) -> Bool {
        board.wait(upTo: timeout, until: condition)
    }

    /// Waits for the remote to announce `name`; returns its address.
    @discardableResult
    public func waitForService(_ name: String, timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                               file: StaticString = #filePath, line: UInt = #line) throws -> RPMsgAddress {
        let limit = timeout ?? self.timeout
        var address: RPMsgAddress?
        guard pollAlive(limit, {
            address = rpmsg?.announcedServices.first { $0.name == name }?.address
            return address != nil
        }), let address else {
            let seen = rpmsg?.announcedServices.map(\.name) ?? []
            try fail("the remote to announce \"\(name)\" within \(limit)",
                       seen.isEmpty ? "no announcement (state \(processor.state))" : "announcements of \(seen.map { visibleText($0) }.joined(separator: ", "))",
                       sourceLocation, file, line)
        }
        return address
    }

    /// Opens an endpoint to service `name` (waiting for its announcement).
    public func connect(to name: String, timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                        file: StaticString = #filePath, line: UInt = #line) throws -> TestEndpoint {
        let address = try waitForService(name, timeout: timeout, sourceLocation: sourceLocation, file: file, line: line)
        guard let rpmsg else { try fail("an RPMsg device", "none", sourceLocation, file, line) }
        let inbox = TestEndpoint.Inbox()
        let endpoint = try rpmsg.createEndpoint(destination: address) { message in inbox.append(message.payload) }
        return TestEndpoint(remote: self, endpoint: endpoint, inbox: inbox, service: name)
    }

    /// An endpoint of your own on the host — any name, a fixed or dynamic address, a fixed or
    /// learnt destination — whose messages are collected as ``TestEndpoint``'s are (``TestEndpoint/next(timeout:sourceLocation:file:line:)``,
    /// ``TestEndpoint/messages``). With a name and a fixed address a Linux host announces it.
    public func createEndpoint(name: String = "", address: RPMsgAddress = .any, destination: RPMsgAddress = .any,
                               sourceLocation: Testing.SourceLocation = #_sourceLocation, file: StaticString = #filePath, line: UInt = #line) throws -> TestEndpoint {
        guard let rpmsg else {
            try fail("an RPMsg device", processor.state == .crashed ? "none (the remote crashed before it was up)" : "none (the firmware's table has no vdev)",
                     sourceLocation, file, line)
        }
        let inbox = TestEndpoint.Inbox()
        let endpoint = try rpmsg.createEndpoint(name: name, address: address, destination: destination) { message in inbox.append(message.payload) }
        return TestEndpoint(remote: self, endpoint: endpoint, inbox: inbox, service: name.isEmpty ? "\(endpoint.address)" : name)
    }

    /// Waits for the processor to reach `state`.
    public func waitForState(_ state: RemoteprocState, timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let limit = timeout ?? self.timeout
        // A crash ends the wait at once unless a crash is what it waits for.
        guard poll(limit, { processor.state == state || (state != .crashed && processor.state == .crashed) }), processor.state == state else {
            try fail("state \(state) within \(limit)", "state \(processor.state)" + (processor.crashReport.map { " (\($0))" } ?? ""),
                       sourceLocation, file, line)
        }
    }

    /// Waits for the remote to crash; returns the report.
    @discardableResult
    public func waitForCrash(timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                             file: StaticString = #filePath, line: UInt = #line) throws -> CrashReport {
        try waitForState(.crashed, timeout: timeout, sourceLocation: sourceLocation, file: file, line: line)
        return processor.crashReport!
    }

    /// Waits for a console line containing `text`; returns it.
    @discardableResult
    public func waitForConsole(containing text: String, timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                               file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let limit = timeout ?? self.timeout
        var found: String?
        guard pollAlive(limit, {
            found = consoleLines.first { $0.contains(text) }
            return found != nil
        }), let found else {
            try fail("a console line containing \"\(text)\" within \(limit)", consoleLines.isEmpty ? "no console output" : "other lines",
                       sourceLocation, file, line)
        }
        return found
    }
}

/// An endpoint a test talks to a remote service through, collecting what comes back.
public final class TestEndpoint: Sendable {
    final class Inbox: Sendable {
        let messages = MetalMutex<[[UInt8]]>([])
        let arrived = WakeSignal()
        let stream: AsyncStream<[UInt8]>
        let continuation: AsyncStream<[UInt8]>.Continuation
        init() { (stream, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(100_000)) }
        func append(_ bytes: [UInt8]) {
            messages.withLock { $0.append(bytes) }
            continuation.yield(bytes)
            arrived.signal()
        }
    }

    public let remote: SimulatedRemote
    public let endpoint: RPMsgEndpoint
    let inbox: Inbox
    public let service: String
    private let taken = MetalMutex(0)

    init(remote: SimulatedRemote, endpoint: RPMsgEndpoint, inbox: Inbox, service: String) {
        self.remote = remote
        self.endpoint = endpoint
        self.inbox = inbox
        self.service = service
    }

    /// Every message received so far.
    public var received: [[UInt8]] { inbox.messages.withLock { $0 } }

    /// The payloads as they arrive, for `for await` (the newest 100,000 are kept until read);
    /// it ends when the endpoint is closed.
    public var messages: AsyncStream<[UInt8]> { inbox.stream }

    /// Closes the endpoint (the remote is told if it was announced); ``messages`` ends.
    public func close() {
        endpoint.destroy()
        inbox.continuation.finish()
    }

    /// Sends `bytes` (waiting up to the remote's timeout for a buffer; time the core spends
    /// halted in a debugger does not count).
    public func send(_ bytes: [UInt8]) throws { try remote.board.send(bytes, through: endpoint, timeout: remote.timeout) }

    /// Sends `text` as UTF-8.
    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Waits for the next message not yet returned by `next`/`request`.
    public func next(timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                     file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        let limit = timeout ?? remote.timeout
        let index = taken.withLock { $0 }
        guard remote.pollAlive(limit, { inbox.messages.withLock { $0.count } > index }) else {
            try remote.fail("a message from \"\(service)\" within \(limit)", "\(index) message(s) and nothing new", sourceLocation, file, line)
        }
        taken.withLock { $0 += 1 }
        return inbox.messages.withLock { $0[index] }
    }

    /// Sends `bytes` and waits for the reply.
    public func request(_ bytes: [UInt8], timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                        file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        try send(bytes)
        return try next(timeout: timeout, sourceLocation: sourceLocation, file: file, line: line)
    }

    /// Sends `text` and waits for the reply, as text.
    public func request(_ text: String, timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                        file: StaticString = #filePath, line: UInt = #line) throws -> String {
        String(decoding: try request(Array(text.utf8), timeout: timeout, sourceLocation: sourceLocation, file: file, line: line), as: UTF8.self)
    }

    /// Waits until `count` messages arrived in total; returns them.
    @discardableResult
    public func waitForMessages(_ count: Int, timeout: Duration? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation,
                                file: StaticString = #filePath, line: UInt = #line) throws -> [[UInt8]] {
        let limit = timeout ?? remote.timeout
        guard remote.pollAlive(limit, { inbox.messages.withLock { $0.count } >= count }) else {
            try remote.fail("\(count) message(s) from \"\(service)\" within \(limit)", "\(received.count)", sourceLocation, file, line)
        }
        return received
    }
}

/// Runs `body` with a booted remote and tears it down afterwards, even when `body` throws.
/// `clock: .virtual` runs it in virtual time, with this thread in the board's schedule (there is no
/// `async` form of that: a task may resume on another thread).
public func withSimulatedRemote<R>(_ firmware: TestFirmware, pollMode: Bool = false, host: HostPersonality = .default,
                                   debug: DebuggerOptions? = DebuggerOptions.fromEnvironment(ProcessInfo.processInfo.environment),
                                   clock: BoardClock = .realTime, _ body: (SimulatedRemote) throws -> R) throws -> R {
    let remote = try SimulatedRemote(firmware, pollMode: pollMode, host: host, debug: debug, clock: clock)
    defer { remote.close() }
    return try body(remote)
}

/// Runs `body` with a booted remote and tears it down afterwards, even when `body` throws.
public func withSimulatedRemote<R>(_ firmware: TestFirmware, pollMode: Bool = false, host: HostPersonality = .default,
                                   debug: DebuggerOptions? = DebuggerOptions.fromEnvironment(ProcessInfo.processInfo.environment),
                                   _ body: (SimulatedRemote) async throws -> R) async throws -> R {
    let remote = try SimulatedRemote(firmware, pollMode: pollMode, host: host, debug: debug)
    defer { remote.close() }
    return try await body(remote)
}
