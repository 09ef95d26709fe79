import Foundation
import MetalIO
import RemoteprocTesting
import RemoteSim
import Remoteproc
import RPMsg
import Testing
import XCTest

@Suite("RemoteprocTesting with a debugger", .serialized)
struct RemoteprocTestingDebuggerTests {
    @Test("time the core spends halted in a debugger does not count against the fixture's waits", .timeLimit(.minutes(1)))
    func haltedTimeDoesNotCount() throws {
        try withSimulatedRemote(.program("echo", architecture: .rv32), debug: DebuggerOptions(port: 0, waitForDebugger: false)) { remote in
            let server = try #require(remote.debugger)
            let echo = try remote.connect(to: "rpmsg-echo")
            #expect(try echo.request("before") == "before")
            // gdb attaches (which halts the core) and holds it for 1.5 s — three times the request's limit.
            let gdb = Process()
            gdb.executableURL = URL(fileURLWithPath: "/usr/bin/gdb-multiarch")
            gdb.arguments = ["-q", "-nx", "-batch", "-ex", "target remote 127.0.0.1:\(server.port)", "-ex", "shell sleep 1.5", "-ex", "detach"]
            gdb.standardOutput = FileHandle.nullDevice
            gdb.standardError = FileHandle.nullDevice
            try gdb.run()
            defer { gdb.waitUntilExit() }
            let deadline = ContinuousClock.now + .seconds(10)
            while !remote.board.isHaltedInDebugger && ContinuousClock.now < deadline { usleep(1000) }
            #expect(remote.board.isHaltedInDebugger)
            let clock = ContinuousClock()
            let started = clock.now
            #expect(try echo.request("while halted", timeout: .milliseconds(500)) == "while halted")
            #expect(clock.now - started > .seconds(1), "the reply came only after the debugger let go")
        }
    }

    @Test("RPROC_SIM_GDB=PORT asks fixtures for a GDB server that waits at reset")
    func environment() {
        #expect(DebuggerOptions.fromEnvironment(["RPROC_SIM_GDB": "3333"]) == DebuggerOptions(port: 3333, waitForDebugger: true))
        #expect(DebuggerOptions.fromEnvironment(["RPROC_SIM_GDB": "not-a-port"]) == nil)
        #expect(DebuggerOptions.fromEnvironment(["RPROC_SIM_GDB": "0"]) == nil)
        #expect(DebuggerOptions.fromEnvironment([:]) == nil)
    }
}

@Suite("RemoteprocTesting")
struct RemoteprocTestingTests {
    @Test("the fixture boots, connects and answers in a few lines")
    func basic() throws {
        try withSimulatedRemote(.native(EchoFirmware())) { remote in
            let echo = try remote.connect(to: "rpmsg-echo")
            #expect(try echo.request("hello") == "hello")
            try remote.waitForState(.running)
        }
    }

    @Test("a scripted remote: several services, a crash after N messages, console lines")
    func scripted() throws {
        let script = ScriptedRemote()
            .printing("scripted: up")
            .service("upper") { .reply(Array(String(decoding: $0, as: UTF8.self).uppercased().utf8)) }
            .service("sink") { _ in .none }
            .crash(afterMessages: 3)
        try withSimulatedRemote(.scripted(script)) { remote in
            try remote.waitForConsole(containing: "scripted: up")
            let upper = try remote.connect(to: "upper")
            #expect(try upper.request("abc") == "ABC")
            let sink = try remote.connect(to: "sink")
            try sink.send("x")
            try sink.send("y")
            let report = try remote.waitForCrash()
            #expect(report.kind == .fault && report.address == DeviceAddress(0xDEAD_BEEF))
            try remote.recover()
            #expect(try remote.connect(to: "upper").request("again") == "AGAIN")
        }
    }

    @Test("a timeout records an issue with what was expected, what came, and the console and trace")
    func failureMessage() throws {
        try withSimulatedRemote(.scripted(ScriptedRemote().printing("remote: hello").service("real") { .reply($0) })) { remote in
            var thrown: SimulationFailure?
            withKnownIssue("the wait is meant to fail") {
                do { try remote.waitForService("missing", timeout: .milliseconds(50)) } catch let error as SimulationFailure {
                    thrown = error
                    throw error
                }
            }
            let failure = try #require(thrown)
            #expect(failure.expected == "the remote to announce \"missing\" within 0.05 seconds")
            #expect(failure.actual == "announcements of real")
            #expect(failure.console.contains("remote: hello"))
            #expect(failure.trace.count == 5)
            #expect(failure.description.contains("expected:") && failure.description.contains("console:"))
        }
    }

    @Test("teardown leaves nothing behind: 100 fixtures one after another")
    func noLeaks() throws {
        func threads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0 }
        func mappings() -> Int { ((try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? "").split(separator: "\n").count }
        try withSimulatedRemote(.native(EchoFirmware())) { (_: SimulatedRemote) throws in }   // warm up
        let (threadsBefore, mapsBefore) = (threads(), mappings())
        for _ in 0..<100 {
            try withSimulatedRemote(.native(EchoFirmware())) { (remote: SimulatedRemote) throws in
                let reply = try remote.connect(to: "rpmsg-echo").request("x")
                #expect(reply == "x")
            }
        }
        usleep(100_000)
        // Other suites run meanwhile, so allow some slack; a leak per fixture would add 100 or more.
        #expect(threads() <= threadsBefore + 20, "threads \(threadsBefore) → \(threads())")
        #expect(mappings() <= mapsBefore + 60, "mappings \(mapsBefore) → \(mappings())")
    }

    @Test("async tests work too")
    func asyncUse() async throws {
        try await withSimulatedRemote(.native(EchoFirmware())) { remote in
            try await Task.sleep(for: .milliseconds(1))
            #expect(try remote.connect(to: "rpmsg-echo").request("async") == "async")
        }
    }
}

/// XCTest: failures are attributed to the calling file and line.
final class RemoteprocTestingXCTests: XCTestCase {
    func testEchoInXCTest() throws {
        try withSimulatedRemote(.native(EchoFirmware())) { remote in
            XCTAssertEqual(try remote.connect(to: "rpmsg-echo").request("xc"), "xc")
        }
    }

    /// Failures the test below expects, captured instead of failing the run.
    private var captured: [(description: String, file: String, line: Int)] = []
    private var capturing = false

    override func recordFailure(withDescription description: String, inFile filePath: String, atLine lineNumber: Int, expected: Bool) {
        if capturing { captured.append((description, filePath, lineNumber)) } else {
            super.recordFailure(withDescription: description, inFile: filePath, atLine: lineNumber, expected: expected)
        }
    }

    func testTimeoutIsRecordedAtTheCallersLine() throws {
        try withSimulatedRemote(.native(EchoFirmware())) { remote in
            capturing = true
            let line = #line + 1
            _ = try? remote.waitForService("nope", timeout: .milliseconds(30))
            capturing = false
            XCTAssertEqual(captured.count, 1)
            XCTAssertEqual(captured.first?.line, line)
            XCTAssertEqual(captured.first?.file, #filePath)
            XCTAssertTrue(captured.first?.description.contains("expected: the remote to announce \"nope\"") == true)
        }
    }
}
