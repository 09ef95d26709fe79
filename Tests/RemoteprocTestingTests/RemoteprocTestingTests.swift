import Foundation
import MetalIO
import RemoteprocTesting
import RemoteSim
import Remoteproc
import RPMsg
import Synchronization
import Testing
import TestSupport
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
    @Test("in virtual time the fixture's waits are virtual: 30 s of beacons pass at once, and two runs trace the same, timestamps included",
          .timeLimit(.minutes(1)))
    func virtualTime() throws {
        func run(_ firmware: TestFirmware) throws -> [String] {
            try withSimulatedRemote(firmware, clock: .virtual) { remote in
                let beacon = try remote.connect(to: "rpmsg-beacon")
                try beacon.send("start")
                let messages = try beacon.waitForMessages(3, timeout: .seconds(40))
                #expect(messages.map { String(decoding: $0, as: UTF8.self) } == ["beacon 1", "beacon 2", "beacon 3"])
                // Three 10 s intervals of board time have passed (the host's send costs 10 µs).
                #expect(remote.board.clock.now.sinceOrigin >= .seconds(30))
                #expect(remote.board.clock.now.sinceOrigin < .seconds(31))
                return remote.board.trace.events.map { "\($0.time) \($0)" }
            }
        }
        let first = try run(.native(BeaconFirmware()))
        #expect(first.count > 10)
        #expect(try run(.native(BeaconFirmware())) == first)
    }

    @Test("a system of two remotes (Cortex-M4 and RV32) and one host under one virtual clock: each answers by name, one merged trace, the same on every run",
          .timeLimit(.minutes(1)))
    func system() throws {
        func run() throws -> [String] {
            let system = try SimulatedSystem(["m4": .program("echo", architecture: .cortexM4), "rv": .program("echo", architecture: .rv32),
                                              "beacon": .native(BeaconFirmware(interval: .seconds(2), count: 2))])
            defer { system.close() }
            let m4 = try system["m4"].connect(to: "rpmsg-echo"), rv = try system["rv"].connect(to: "rpmsg-echo")
            let beacon = try system["beacon"].connect(to: "rpmsg-beacon")
            try beacon.send("start")
            for i in 0..<5 {
                #expect(try m4.request("m4 \(i)") == "m4 \(i)")
                #expect(try rv.request("rv \(i)") == "rv \(i)")
            }
            // The beacon's 4 s pass in virtual time while the echoes wait for nothing.
            #expect(try beacon.waitForMessages(2, timeout: .seconds(5)).map { String(decoding: $0, as: UTF8.self) } == ["beacon 1", "beacon 2"])
            #expect(system.clock.now.sinceOrigin >= .seconds(4))
            let trace = system.trace
            #expect(Set(trace.map(\.processor)) == ["m4", "rv", "beacon"])
            #expect(zip(trace, trace.dropFirst()).allSatisfy { $0.event.time <= $1.event.time })
            return trace.map { "\($0.processor) \($0.event.time) \($0.event)" }
        }
        let first = try run()
        #expect(try run() == first)
    }

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

    @Test("suspend and resume through the fixture: a scripted remote answers the handshake; what is sent while suspended arrives after the resume",
          .timeLimit(.minutes(1)))
    func suspendResume() throws {
        let refuseRuntimePM = Atomic<Bool>(true)
        let script = ScriptedRemote()
            .service("upper") { .reply(Array(String(decoding: $0, as: UTF8.self).uppercased().utf8)) }
            .answeringSuspend { $0 == .auto && refuseRuntimePM.load(ordering: .relaxed) ? .cancel : .ack }
        try withSimulatedRemote(.scripted(script)) { remote in
            let upper = try remote.connect(to: "upper")
            #expect(try upper.request("a") == "A")
            #expect(throws: RemoteprocError.self, "the script cancels runtime PM") { try remote.suspend(.auto) }
            #expect(remote.processor.state == .running)
            try remote.suspend(.system)
            #expect(remote.processor.state == .suspended)
            try upper.send("while suspended")
            try remote.resume()
            #expect(try upper.next() == Array("WHILE SUSPENDED".utf8))
            refuseRuntimePM.store(false, ordering: .relaxed)
            remote.autosuspendDelay = .milliseconds(20)
            try remote.waitForState(.suspended)
            #expect(try upper.request("wakes it") == "WAKES IT")
            remote.autosuspendDelay = nil
        }
    }

    @Test("a failed wait is exactly one issue, at the caller's line, with what was expected, what came, and the console and trace")
    func failureMessage() throws {
        try withSimulatedRemote(.scripted(ScriptedRemote().printing("remote: hello").service("real") { .reply($0) })) { remote in
            let seen = IssueLog()
            let line = #line + 2
            try withKnownIssue("the wait is meant to fail") {
                try remote.waitForService("missing", timeout: .milliseconds(50))
            } matching: { issue in
                seen.append("\(issue)", line: issue.sourceLocation?.line)
                return true
            }
            let issues = seen.all
            #expect(issues.count == 1, "one issue, not one recorded and one for the thrown error: \(issues)")
            #expect(issues.first?.line == line)
            let text = issues.first?.text ?? ""
            #expect(text.contains("expected: the remote to announce \"missing\" within 0.05 seconds"), "\(text)")
            #expect(text.contains("got:      announcements of real") && text.contains("console:  remote: hello") && text.contains("trace:"), "\(text)")
        }
    }

    @Test("a failed wait keeps the remote's core dump: written to the artifacts folder and named in the failure", .timeLimit(.minutes(1)))
    func failureCoreDump() throws {
        try withSimulatedRemote(.scripted(ScriptedRemote().printing("remote: hello").service("real") { .reply($0) })) { remote in
            let folder = try TestScratch.directory("simulated-artifacts")
            remote.artifactsDirectory = folder.path
            let seen = IssueLog()
            try withKnownIssue("the wait is meant to fail") {
                try remote.waitForService("missing", timeout: .milliseconds(50))
            } matching: { issue in
                seen.append("\(issue)", line: nil)
                return true
            }
            let text = seen.all.first?.text ?? ""
            let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            #expect(files.count == 1 && files[0].hasSuffix(".core"), "\(files)")
            #expect(text.contains("core:     \(folder.path)/\(files.first ?? "")"), "\(text)")
            let dump = try CoreDumpFile.read(folder.appendingPathComponent(files.first ?? "").path)
            #expect(dump.info.reason == .snapshot && dump.info.console.contains("remote: hello") && dump.segments.count == 3)
            #expect(remote.processor.state == .running, "the remote runs on after the snapshot")
        }
    }

    @Test("a crash ends a wait at once, with the crash report, instead of waiting out its time", .timeLimit(.minutes(1)))
    func crashEndsWaits() throws {
        try withSimulatedRemote(.scripted(ScriptedRemote().service("echo") { .reply($0) }.crash(afterMessages: 1))) { remote in
            let echo = try remote.connect(to: "echo")
            try echo.send("boom")
            let seen = IssueLog()
            let clock = ContinuousClock()
            let started = clock.now
            try withKnownIssue("the remote crashes") {
                _ = try echo.waitForMessages(5, timeout: .seconds(30))
            } matching: { issue in
                seen.append("\(issue)", line: nil)
                return true
            }
            #expect(clock.now - started < .seconds(20), "ended at the crash")
            #expect(seen.all.count == 1)
            #expect(seen.all.first?.text.contains("crash:") == true, "\(seen.all)")
        }
    }

    @Test("your own endpoints: createEndpoint collects what arrives, with next() and as an async sequence")
    func ownEndpoints() async throws {
        try await withSimulatedRemote(.native(EchoFirmware())) { remote in
            let service = try remote.waitForService("rpmsg-echo")
            let mine = try remote.createEndpoint(address: RPMsgAddress(1500), destination: service)
            #expect(mine.endpoint.address == RPMsgAddress(1500))
            try mine.send("one")
            try mine.send("two")
            #expect(try mine.next() == Array("one".utf8))
            var streamed: [String] = []
            for await payload in mine.messages {
                streamed.append(String(decoding: payload, as: UTF8.self))
                if streamed.count == 2 { break }
            }
            #expect(streamed == ["one", "two"])
            mine.close()
        }
    }

    @Test("your own firmware directory, outside the package, built against the board headers and library", .timeLimit(.minutes(2)),
          arguments: [CPUArchitecture.cortexM4, .rv32])
    func ownFirmware(architecture: CPUArchitecture) throws {
        let directory = try TestScratch.directory("my-firmware")
        defer { try? FileManager.default.removeItem(at: directory) }
        try """
            #include "rsim_rpmsg.h"
            #include "shout.h"
            RSIM_RPMSG_RESOURCE_TABLE(RSIM_RPMSG_VRING_NUM);
            static void on_message(struct rsim_rpmsg_ept *ept, const void *data, uint32_t len, uint32_t src, void *priv) {
                (void)priv;
                char out[64];
                uint32_t n = shout(data, len, out, sizeof out);
                rsim_rpmsg_send(ept, src, out, n);
            }
            int main(void) {
                if (rsim_rpmsg_init(&rsim_rsc_table.vdev) < 0) rsim_panic(1);
                struct rsim_rpmsg_ept *ept;
                if (rsim_rpmsg_create_ept(&ept, "shout", RSIM_RPMSG_ADDR_ANY, on_message, 0) < 0) rsim_panic(2);
                for (;;) rsim_rpmsg_wait_and_poll();
            }
            """.write(to: directory.appendingPathComponent("main.c"), atomically: true, encoding: .utf8)
        try """
            #include <stdint.h>
            static inline uint32_t shout(const void *in, uint32_t len, char *out, uint32_t size) {
                const char *s = in; uint32_t n = len < size ? len : size;
                for (uint32_t i = 0; i < n; i++) out[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 32) : s[i];
                return n;
            }
            """.write(to: directory.appendingPathComponent("shout.h"), atomically: true, encoding: .utf8)
        try withSimulatedRemote(.sources(directory: directory.path, architecture: architecture)) { (remote: SimulatedRemote) throws in
            #expect(try remote.connect(to: "shout").request("hello, board") == "HELLO, BOARD")
        }
    }

    @Test("teardown leaves nothing behind: 300 fixtures one after another")
    func noLeaks() throws {
        func threads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0 }
        func mappings() -> Int { ((try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? "").split(separator: "\n").count }
        try withSimulatedRemote(.native(EchoFirmware())) { (_: SimulatedRemote) throws in }   // warm up
        let (threadsBefore, mapsBefore) = (threads(), mappings())
        // Other tests run beside this one (on threads of their own), so the counts move by
        // some tens either way; a leak of one thread or mapping per fixture adds 300.
        for _ in 0..<300 {
            try withSimulatedRemote(.native(EchoFirmware())) { (remote: SimulatedRemote) throws in
                let reply = try remote.connect(to: "rpmsg-echo").request("x")
                #expect(reply == "x")
            }
        }
        usleep(100_000)
        #expect(threads() <= threadsBefore + 150, "threads \(threadsBefore) → \(threads())")
        #expect(mappings() <= mapsBefore + 150, "mappings \(mapsBefore) → \(mappings())")
    }

    @Test("async tests work too")
    func asyncUse() async throws {
        try await withSimulatedRemote(.native(EchoFirmware())) { remote in
            try await Task.sleep(for: .milliseconds(1))
            #expect(try remote.connect(to: "rpmsg-echo").request("async") == "async")
        }
    }
}

@Suite("Firmware that dies at once")
struct ImmediateCrashTests {
    @Test("a fixture over firmware that panics right after start sees the crash, whichever side wins the race",
          .timeLimit(.minutes(1)))
    func immediateCrash() throws {
        for round in 0..<20 {
            let remote = try SimulatedRemote(.native(PanicFirmware(code: UInt32(round), afterMicroseconds: UInt32(round % 4) * 50)))
            defer { remote.close() }
            let report = try remote.waitForCrash()
            #expect(report.kind == .panic && report.code == UInt64(round))
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

    func testAFailedWaitIsOneFailureAtTheCallersLineAndStopsTheTest() throws {
        let line = #line + 3
        let probe = FailureCapturingCase(name: "probe") { _ in
            try withSimulatedRemote(.native(EchoFirmware())) { remote in
                try remote.waitForService("nope", timeout: .milliseconds(30))
                FailureCapturingCase.reachedAfterTheWait = true
            }
        }
        probe.run()
        // XCTest forgets the running test case when a nested one ends: record on `self` directly.
        func check(_ condition: Bool, _ what: String, at checkLine: Int = #line) {
            if !condition { recordFailure(withDescription: what, inFile: #filePath, atLine: checkLine, expected: true) }
        }
        check(probe.captured.count == 1, "one failure, got \(probe.captured.map(\.description))")
        check(probe.captured.first?.line == line, "at line \(line), got \(String(describing: probe.captured.first?.line))")
        check(probe.captured.first?.file == #filePath, "in this file, got \(String(describing: probe.captured.first?.file))")
        check(probe.captured.first?.description.contains("expected: the remote to announce \"nope\"") == true,
              "names the wait: \(String(describing: probe.captured.first?.description))")
        check(!FailureCapturingCase.reachedAfterTheWait, "the test went on after the failed wait")
    }
}

/// A test case run inside another that keeps the failures XCTest would record for it.
final class FailureCapturingCase: XCTestCase {
    nonisolated(unsafe) static var reachedAfterTheWait = false   // only the one probe sets it
    var captured: [(description: String, file: String, line: Int)] = []
    override func recordFailure(withDescription description: String, inFile filePath: String, atLine lineNumber: Int, expected: Bool) {
        captured.append((description, filePath, lineNumber))
    }
}

/// The issues a known-issue block saw (its matcher runs on any thread).
final class IssueLog: Sendable {
    private let items = MetalMutex<[(text: String, line: Int?)]>([])
    func append(_ text: String, line: Int?) { items.withLock { $0.append((text, line)) } }
    var all: [(text: String, line: Int?)] { items.withLock { $0 } }
}
