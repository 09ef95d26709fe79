import ArgumentParser
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import RemoteSim
import Remoteproc
@testable import rproc_sim
import Scenario
import Synchronization
import Testing
import TestSupport
import MetalIO

/// Runs a subcommand in-process and returns its exit code (0 when it returns normally).
func exitCode(_ arguments: [String]) throws -> Int32 {
    var command = try RprocSim.parseAsRoot(arguments)
    do {
        try command.run()
        return 0
    } catch let code as ExitCode {
        return code.rawValue
    }
}

func temporaryFile(_ name: String, _ contents: String) throws -> String {
    let directory = try TestScratch.directory("rproc-sim-cli")
    let path = directory.appendingPathComponent(name).path
    try contents.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite("rproc-sim")
struct CLITests {
    @Test("run: 0 when every scenario passes, and the JUnit file is written", .timeLimit(.minutes(1)))
    func runPasses() throws {
        let scenario = try temporaryFile("ok.yaml", "firmware: echo\narch: native\nsteps:\n  - boot\n  - expect: { announce: rpmsg-echo }\n  - shutdown\n")
        let junit = scenario + ".xml"
        #expect(try exitCode(["run", scenario, "--junit", junit]) == 0)
        let xml = try String(contentsOfFile: junit, encoding: .utf8)
        #expect(xml.contains("tests=\"3\"") && xml.contains("failures=\"0\""))
    }

    @Test("run: 1 when a scenario fails", .timeLimit(.minutes(1)))
    func runFails() throws {
        let scenario = try temporaryFile("bad.yaml", "firmware: echo\narch: native\nsteps:\n  - boot\n  - expect: { state: stopped, within: 50ms }\n")
        #expect(try exitCode(["run", scenario]) == 1)
    }

    @Test("run: 2 for a file with a mistake or a missing path, before anything runs")
    func runRefuses() throws {
        let scenario = try temporaryFile("typo.yaml", "firmware: echo\narch: native\nsteps:\n  - bot\n")
        #expect(try exitCode(["run", scenario]) == 2)
        #expect(try exitCode(["run", "/nonexistent/scenario.yaml"]) == 2)
    }

    @Test("inspect: 0 for a firmware ELF with --json; 2 for a file that is not ELF")
    func inspect() throws {
        let elf = try FirmwareBuilderForTests.echo()
        #expect(try exitCode(["inspect", elf, "--json"]) == 0)
        let text = try temporaryFile("not.elf", "just text")
        #expect(try exitCode(["inspect", text]) == 2)
    }

    @Test("soak: random operations (suspensions and autosuspend among them) on native and emulated boards, every message accounted for; lost messages (dropped kicks) fail it", .timeLimit(.minutes(2)))
    func soak() throws {
        let (code, output) = try runBinary(["soak", "--for", "3s", "--seed", "11", "--boards", "native,rv32"])
        #expect(code == 0, "\(output)")
        let total = try #require(output.split(separator: "\n").last { $0.hasPrefix("soak: ") && $0.contains("operations") }.map(String.init), "\(output)")
        func number(before word: String) -> Int? {
            guard let range = total.range(of: " \(word)") else { return nil }
            return Int(total[..<range.lowerBound].split(separator: " ").last ?? "")
        }
        let sent = try #require(number(before: "sent")), delivered = try #require(number(before: "delivered"))
        let failed = try #require(number(before: "failed")), lost = try #require(number(before: "lost;"))
        #expect(sent > 100 && delivered > 0, "\(total)")
        #expect(lost == 0 && delivered + failed == sent, "every message delivered or failed with an error: \(total)")
        #expect(total.contains("0 hangs"), "\(total)")
        // Suspensions in the middle of traffic and autosuspend ran too (6 % of the operations are
        // autosuspend: with 150 or more, that none ran has a chance below 10⁻⁴ — fewer only on a
        // runner too loaded to say).
        let operations = try #require(number(before: "operations"))
        for operation in ["suspend in traffic", "autosuspend"] where operations >= 150 {
            let count = total.range(of: "\(operation) ").flatMap { Int(total[$0.upperBound...].prefix { $0.isNumber }) }
            #expect((count ?? 0) > 0, "no \(operation) operation: \(total)")
        }

        let (lossy, lossyOutput) = try runBinary(["soak", "--for", "2s", "--seed", "3", "--boards", "native", "--drop-kicks", "--reply-timeout", "200ms"])
        #expect(lossy == 1, "\(lossyOutput)")
        #expect(lossyOutput.contains("never echoed by a running remote") && lossyOutput.contains("FAILED"), "\(lossyOutput)")
        #expect(try runBinary(["soak", "--for", "soon"]).code == 2)
    }

    @Test("inspect, load and run refuse a FIFO, a device or a folder as firmware or output, at once, with exit 2", .timeLimit(.minutes(1)))
    func specialPaths() throws {
        let fifo = TestScratch.path("cli-fifo")
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let scenario = try temporaryFile("ok.yaml", "firmware: echo\narch: native\nsteps: [boot]\n")
        for (path, says) in [(fifo, "is a FIFO, not a regular file"), ("/dev/zero", "is a character device"), ("/", "is a directory")] {
            for command in [["inspect", path], ["load", path, "--arch", "rv32"]] {
                let (code, output) = try runBinary(command)
                #expect(code == 2, "\(command): \(output)")
                #expect(output.contains(says), "\(command): \(output)")
            }
        }
        for option in ["--junit", "--trace"] {
            let (code, output) = try runBinary(["run", scenario, option, fifo])
            #expect(code == 2 && output.contains("is a FIFO or another special file, not a regular file"), "\(option): \(output)")
        }
    }

    @Test("inspect says which hosts take a table; load --host loads as that host and an OpenAMP host refuses a Linux vendor table")
    func hosts() throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "linkwait", architecture: .rv32).path
        let store = FileImageStore()
        let size = try store.open(elf)
        defer { store.close() }
        let image = try ELFImage(store: store, fileSize: size, path: elf)
        let table = try ResourceTable(bytes: try #require(try image.resourceTableBytes(from: store)))
        let verdict = RprocSimReport.hostAcceptance(table)
        #expect(verdict.hasPrefix("hosts      linux ✓ · openamp ✗"), "\(verdict)")
        #expect(verdict.contains("vring 0's notify id 0 is already the vdev's"), "\(verdict)")
        #expect(try exitCode(["load", elf, "--host", "linux"]) == 0)
        #expect(try exitCode(["load", elf, "--host", "openamp"]) == 2, "a table the host refuses is a file error")
        #expect(throws: (any Error).self) { try exitCode(["load", elf, "--host", "qnx"]) }
    }
}

import FirmwareKit
enum FirmwareBuilderForTests {
    static func echo() throws -> String { try FirmwareBuilder.forThisPackage().build(program: "echo", architecture: .cortexM4).path }
}

/// Runs the built `rproc-sim` binary (next to the test bundle) and returns its exit code and output.
/// rproc-sim running in the background, its output collected as it comes.
final class LiveTool {
    private final class Output: Sendable {
        let text = MetalMutex("")
    }
    let process = Process()
    private let pipe = Pipe()
    private let collected = Output()

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("rproc-sim")
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = pipe
        let collected = self.collected
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let text = String(decoding: handle.availableData, as: UTF8.self)
            collected.text.withLock { $0 += text }
        }
        try process.run()
    }

    var output: String { collected.text.withLock { $0 } }

    /// Waits (bounded) until the output contains `text`.
    func waitFor(_ text: String, seconds: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !output.contains(text) && Date() < deadline { usleep(20_000) }
        return output.contains(text)
    }

    /// Ctrl-C, then up to 20 s for the tool to end (killed after that); its exit status.
    func interrupt() -> Int32 {
        process.interrupt()
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        finish()
        return process.terminationStatus
    }

    /// Ends the tool if it still runs (SIGKILL cannot be blocked: the test runner's signal mask is
    /// inherited) and collects the last of its output.
    func finish() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        usleep(100_000)
        pipe.fileHandleForReading.readabilityHandler = nil
    }
}

func runBinary(_ arguments: [String]) throws -> (code: Int32, output: String) {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("rproc-sim")
    try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the rproc-sim product first (swift build --build-tests)")
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

@Suite("rproc-sim run, failure dumps")
struct CLIDumpTests {
    static let failing = """
        firmware: echo
        arch: native
        steps:
          - boot
          - expect: { announce: rpmsg-echo }
          - send: { to: rpmsg-echo, text: hello, count: 2 }
          - expect: { received: goodbye, within: 200ms }
        """

    @Test("--dump-on-failure prints the board when a step fails: state, vrings with decoded messages, the trace", .timeLimit(.minutes(1)))
    func dumps() throws {
        let scenario = try temporaryFile("dump.yaml", Self.failing)
        let (code, output) = try runBinary(["run", scenario, "--dump-on-failure"])
        #expect(code == 1)
        #expect(output.contains("board when the step failed:"), "\(output)")
        #expect(output.contains("── vrings"), "\(output)")
        #expect(output.contains("(host → remote)"), "\(output)")
        #expect(output.contains("\"hello\""), "the echoed messages, decoded: \(output)")
        #expect(output.contains("── last 20 trace events"), "\(output)")
    }

    @Test("text a terminal would obey (OSC title, CSI clear, C1, bidi override) from console, trace and service names is shown escaped by run, in JSON and in JUnit",
          .timeLimit(.minutes(2)))
    func hostileText() throws {
        let scenario = try temporaryFile("hostile.yaml", """
            firmware: hostile-text
            arch: cortex-m4
            steps:
              - boot
              - expect: { console: "hostile-text: ready" }
              - expect: { announce: "evil\\e]0;owned\\a\\e[2J" }
              - send: { to: "evil\\e]0;owned\\a\\e[2J", text: "x\\e[31my" }
              - expect: { received: never, within: 300ms }
            """)
        let junit = scenario + ".xml"
        let (code, output) = try runBinary(["run", scenario, "--dump-on-failure", "--verbose", "--junit", junit])
        #expect(code == 1, "\(output)")
        let obeyed: [Unicode.Scalar] = ["\u{1B}", "\u{07}", "\u{9B}", "\u{202E}"]
        #expect(!output.unicodeScalars.contains { obeyed.contains($0) }, "raw control characters reached the output")
        #expect(output.contains("console: title \\x1b]0;owned\\x07 clear \\x1b[2J c1 \\u{9b}31m bidi \\u{202e}dne"), "\(output)")
        #expect(output.contains("trace: trace \\x1b]0;owned\\x07 \\x1b[2J"), "\(output)")
        #expect(output.contains("\"evil\\x1b]0;owned\\x07\\x1b[2J\""), "the service name, escaped: \(output)")
        #expect(output.contains("hex 78 1b 5b 33 31 6d 79"), "the payload, in hex: \(output)")
        let junitText = try String(contentsOfFile: junit, encoding: .utf8)
        let root = try ScenarioReports.withXML { try XMLDocument(xmlString: junitText).rootElement()?.name }
        #expect(root == "testsuites")
        let (jsonCode, json) = try runBinary(["run", scenario, "--json"])
        #expect(jsonCode == 1)
        #expect(!json.unicodeScalars.contains { obeyed.contains($0) }, "raw control characters in the JSON")
        #expect((try? JSONSerialization.jsonObject(with: Data(json.utf8))) != nil, "\(json)")
    }

    @Test("--no-dump-on-failure, and the default when the output is not a terminal, print no dump", .timeLimit(.minutes(1)))
    func noDump() throws {
        let scenario = try temporaryFile("nodump.yaml", Self.failing)
        for arguments in [["run", scenario, "--no-dump-on-failure"], ["run", scenario]] {
            let (code, output) = try runBinary(arguments)
            #expect(code == 1)
            #expect(!output.contains("board when the step failed:"), "\(arguments): \(output)")
            #expect(output.contains("expected: 1 × "), "\(output)")
        }
    }
}

@Suite("rproc-sim debug")
struct CLIDebugTests {
    @Test("boots a firmware with a GDB server, prints the gdb command and what happens; --send drives it into a crash, whose board is printed",
          .timeLimit(.minutes(1)))
    func crashLive() throws {
        let core = TestScratch.path("crash.core")
        let (code, output) = try runBinary(["debug", "crash", "--arch", "rv32", "--port", "0", "--no-wait", "--for", "3s",
                                            "--send", "rpmsg-echo:x", "--repeat", "10", "--core-out", core])
        #expect(code == 0, "\(output)")
        #expect(output.contains("gdb-multiarch -q "), "\(output)")
        #expect(output.contains("service \"rpmsg-echo\" at "), "\(output)")
        #expect(output.contains("message sent 1024 → "), "\(output)")
        #expect(output.contains("the remote crashed; the board now:"), "\(output)")
        #expect(output.contains("crash: fault: read from unmapped memory, at 0xdead_beef"), "\(output)")
        #expect(output.contains("── vrings"), "\(output)")
        #expect(output.contains("■ done: state Offline"), "\(output)")
        #expect(output.contains("core dump written to \(core)") && output.contains("rproc-sim debug --core \(core) "), "\(output)")
        #expect(try CoreDumpFile.read(core).info.crash?.kind == "fault")
    }

    @Test("--core serves a dump read-only with its firmware; a truncated file, a FIFO, the firmware itself, another machine's or another build's ELF are refused (exit 2)",
          .timeLimit(.minutes(2)))
    func serveCore() throws {
        let folder = try TestScratch.directory("debug-core")
        let core = folder.appendingPathComponent("remote.core").path
        let (crashed, output) = try runBinary(["debug", "postmortem", "--arch", "cortex-m4", "--port", "0", "--no-wait", "--for", "3s",
                                               "--send", "rpmsg-postmortem:fault", "--core-out", core])
        #expect(crashed == 0 && output.contains("core dump written to"), "\(output)")
        let elf = try FirmwareBuilder.forThisPackage().build(program: "postmortem", architecture: .cortexM4).path
        let served = try runBinary(["debug", "--core", core, elf, "--port", "0", "--for", "300ms"])
        #expect(served.code == 0, "\(served.output)")
        #expect(served.output.contains("an emulated cortex-m4, fault: read from unmapped memory") && served.output.contains("(read-only)"), "\(served.output)")
        let bytes = try RegularFile.contents(of: core, limit: 16 << 20)
        let truncated = folder.appendingPathComponent("truncated.core").path
        try RegularFile.write(Array(bytes.prefix(100)), to: truncated)
        let fifo = folder.appendingPathComponent("fifo.core").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let other = try FirmwareBuilder.forThisPackage().build(program: "postmortem", architecture: .rv32).path
        let tick = try FirmwareBuilder.forThisPackage().build(program: "tick", architecture: .cortexM4).path
        let refusals: [([String], String)] = [
            (["--core", truncated], "is truncated"), (["--core", fifo], "FIFO"), (["--core", elf], "an executable: the firmware"),
            (["--core", core, other], "is RISC-V firmware"), (["--core", core, tick], "is not the firmware that ran"),
        ]
        for (arguments, message) in refusals {
            let (code, text) = try runBinary(["debug"] + arguments + ["--port", "0", "--for", "100ms"])
            #expect(code == 2, "\(arguments): \(text)")
            #expect(text.contains(message), "\(arguments): \(text)")
        }
        let allowed = try runBinary(["debug", "--core", core, tick, "--allow-mismatch", "--port", "0", "--for", "100ms"])
        #expect(allowed.code == 0 && allowed.output.contains("warning: "), "\(allowed.output)")
    }

    @Test("the core waits at reset for gdb-multiarch unless --no-wait; gdb continues it", .timeLimit(.minutes(1)))
    func waitsForDebugger() throws {
        let elf = try FirmwareBuilderForTests.echo()
        let tool = try LiveTool(["debug", elf, "--arch", "cortex-m4", "--port", "0"])
        defer { tool.finish() }
        // Each step waits (bounded) for the one before it — no race with how fast gdb or the tool starts.
        #expect(tool.waitFor("the core waits halted at reset"), "\(tool.output)")
        let listening = tool.output
        let port = try #require(listening.range(of: "127.0.0.1:[0-9]+", options: .regularExpression).map { listening[$0].split(separator: ":").last! })
        usleep(300_000)
        #expect(!tool.output.contains("console: echo: ready"), "the core waited for the debugger")
        _ = try GDBBatch.run(["-ex", "target remote 127.0.0.1:\(port)", "-ex", "detach", elf])
        #expect(tool.waitFor("console: echo: ready"), "the firmware ran once gdb let go: \(tool.output)")
        #expect(tool.interrupt() == 0, "\(tool.output)")
    }

    @Test("Ctrl-C shuts the board down cleanly", .timeLimit(.minutes(1)))
    func interrupted() throws {
        let tool = try LiveTool(["debug", "echo", "--arch", "rv32", "--port", "0", "--no-wait"])
        defer { tool.finish() }
        // Wait (bounded) for the firmware to be up, then interrupt; a process that ignores it is killed.
        _ = tool.waitFor("service \"rpmsg-echo\"")
        let status = tool.interrupt()
        #expect(status == 0, "\(tool.output)")
        #expect(tool.output.contains("■ interrupted: state Offline"), "\(tool.output)")
    }

    @Test("bad arguments are refused before anything runs")
    func refuses() throws {
        for arguments in [["debug", "echo", "--arch", "z80"], ["debug", "echo", "--for", "soon"], ["debug", "echo", "--send", "no-colon"],
                          ["debug", "echo", "--repeat", "0"], ["bench", "--round-trips", "0"], ["bench", "--messages", "-1"]] {
            #expect(throws: (any Error).self, "\(arguments)") { _ = try RprocSim.parseAsRoot(arguments) }
        }
    }
}

@Suite("rproc-sim run, runner features")
struct CLIRunnerTests {
    static let passing = "firmware: echo\narch: native\ntags: [smoke, echo]\nsteps:\n  - boot\n  - expect: { announce: rpmsg-echo }\n  - shutdown\n"
    static let failing = "name: broken\nfirmware: echo\narch: native\nsteps:\n  - boot\n  - expect: { state: stopped, within: 20ms }\n  - shutdown\n"

    /// A folder with the two scenarios above (a.yaml passes, b.yaml fails).
    func folder() throws -> String {
        let a = try temporaryFile("a.yaml", Self.passing)
        let folder = (a as NSString).deletingLastPathComponent
        try Self.failing.write(toFile: (folder as NSString).appendingPathComponent("b.yaml"), atomically: true, encoding: .utf8)
        return folder
    }

    func summary(_ output: String) throws -> [String: Any] {
        let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "no JSON line in: \(output)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("--version, and usage errors exit 2 (not 64) with the usage", .timeLimit(.minutes(1)))
    func versionAndUsage() throws {
        let (code, output) = try runBinary(["--version"])
        #expect(code == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines) == RprocSim.version)
        for arguments in [["run", "--jobs", "0", "x.yaml"], ["run", "--shard", "3/2", "x.yaml"], ["run", "--bogus"], ["load"], ["inspect"]] {
            let (code, output) = try runBinary(arguments)
            #expect(code == 2, "\(arguments): \(output)")
        }
    }

    @Test("output paths are checked before anything runs", .timeLimit(.minutes(1)))
    func outputPathsFirst() throws {
        let scenario = try temporaryFile("ok.yaml", Self.passing)
        for arguments in [["--junit", "/missing-dir/x.xml"], ["--trace", "/missing-dir/t.json"], ["--junit", NSTemporaryDirectory()]] {
            let (code, output) = try runBinary(["run", scenario] + arguments)
            #expect(code == 2, "\(arguments): \(output)")
            #expect(!output.contains("▶"), "nothing ran: \(output)")
            #expect(output.contains("error: \(arguments[0])"), "\(output)")
        }
    }

    @Test("--json: one document with every scenario and step (skipped ones too), a stable schema", .timeLimit(.minutes(1)))
    func json() throws {
        let (code, output) = try runBinary(["run", "--json", try folder()])
        #expect(code == 1)
        let document = try summary(output)
        #expect(document["schema"] as? Int == 1 && document["passed"] as? Bool == false)
        let scenarios = try #require(document["scenarios"] as? [[String: Any]])
        #expect(scenarios.map { $0["status"] as? String } == ["passed", "failed"])
        let steps = try #require(scenarios.last?["steps"] as? [[String: Any]])
        #expect(steps.map { $0["status"] as? String } == ["passed", "failed", "skipped"])
        #expect(steps[1]["line"] as? Int == 6 && (steps[1]["failure"] as? String)?.contains("expected: state stopped") == true)
        #expect(scenarios.first?["tags"] as? [String] == ["smoke", "echo"])
    }

    @Test("--shard K/N splits the sorted file list, disjoint and complete; --filter selects by name, path or tag", .timeLimit(.minutes(1)))
    func shardAndFilter() throws {
        let folder = try folder()
        var seen: [String] = []
        for k in 1...2 {
            let (_, output) = try runBinary(["run", "--json", "--shard", "\(k)/2", folder])
            seen += try #require(try summary(output)["scenarios"] as? [[String: Any]]).compactMap { $0["path"] as? String }
        }
        #expect(seen.map { ($0 as NSString).lastPathComponent }.sorted() == ["a.yaml", "b.yaml"])
        let (code, output) = try runBinary(["run", "--json", "--filter", "smoke", folder])
        #expect(code == 0, "\(output)")
        #expect(try #require(try summary(output)["scenarios"] as? [[String: Any]]).count == 1)
        let (none, message) = try runBinary(["run", "--filter", "nothing-like-this", folder])
        #expect(none == 2 && message.contains("no scenario matches"), "\(message)")
    }

    @Test("--repeat, --until-fail and --retry: every run counted; retries reported, never hidden", .timeLimit(.minutes(1)))
    func repeatAndRetry() throws {
        let folder = try folder()
        let (code, output) = try runBinary(["run", "--json", "--repeat", "3", folder + "/a.yaml"])
        #expect(code == 0)
        #expect(try #require(try summary(output)["scenarios"] as? [[String: Any]]).count == 3)
        let (_, untilFail) = try runBinary(["run", "--json", "--until-fail", "--repeat", "5", folder])
        #expect(try #require(try summary(untilFail)["scenarios"] as? [[String: Any]]).count == 2, "stopped after the first failing run")
        let (retried, retry) = try runBinary(["run", "--json", "--retry", "2", folder + "/b.yaml"])
        #expect(retried == 1)
        let scenario = try #require(try summary(retry)["scenarios"] as? [[String: Any]]).first
        #expect(scenario?["attempts"] as? Int == 3 && scenario?["status"] as? String == "failed")
    }

    @Test("--jobs 2 runs files at once and keeps each file's output together", .timeLimit(.minutes(1)))
    func jobs() throws {
        let (code, output) = try runBinary(["run", "--jobs", "2", try folder()])
        #expect(code == 1)
        let lines = output.split(separator: "\n").map(String.init)
        for name in ["▶ broken", "▶ a"] {
            let start = try #require(lines.firstIndex { $0.hasPrefix(name) }, "\(output)")
            let end = try #require(lines[start...].firstIndex { $0.hasPrefix("✓ ") || $0.hasPrefix("✗ ") })
            #expect(!lines[(start + 1)..<end].contains { $0.hasPrefix("▶") }, "a file's lines are not interleaved with another's: \(output)")
        }
    }
}

@Suite("rproc-sim run --artifacts")
struct CLIArtifactsTests {
    @Test("a failing run leaves one folder: core dump, firmware, console, trace, vrings and a README whose commands open them; JUnit references each; a passing run leaves nothing unless --artifacts-always",
          .timeLimit(.minutes(2)))
    func artifacts() throws {
        let failing = try temporaryFile("postmortem.yaml", """
            name: dies on request
            firmware: postmortem
            arch: rv32
            steps:
              - boot
              - expect: { announce: rpmsg-postmortem }
              - send: { to: rpmsg-postmortem, text: fault }
              - expect: { received: fault, within: 2s }
            """)
        let passing = try temporaryFile("fine.yaml", "name: fine\nfirmware: echo\narch: native\nsteps:\n  - boot\n  - expect: { announce: rpmsg-echo }\n  - shutdown\n")
        let out = try TestScratch.directory("artifacts").appendingPathComponent("out").path
        let junit = out + ".xml"
        #expect(try exitCode(["run", failing, passing, "--artifacts", out, "--junit", junit]) == 1)
        let folders = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(folders == ["dies-on-request"], "only the failing scenario: \(folders)")
        let folder = out + "/dies-on-request"
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
        #expect(files == ["README.txt", "remote.core", "firmware.elf", "console.log", "trace.json", "vrings.txt"], "\(files)")
        let readme = try String(contentsOfFile: folder + "/README.txt", encoding: .utf8)
        #expect(readme.contains("rproc-sim debug --core \(folder)/remote.core \(folder)/firmware.elf"), "\(readme)")
        #expect(readme.contains("core-file \(folder)/remote.core") && readme.contains("the remote crashed: fault"), "\(readme)")
        #expect(try String(contentsOfFile: folder + "/console.log", encoding: .utf8).contains("postmortem: summing"))
        #expect(try String(contentsOfFile: folder + "/vrings.txt", encoding: .utf8).contains("vring0"))
        let dump = try CoreDumpFile.read(folder + "/remote.core")
        #expect(dump.info.crash?.kind == "fault" && dump.cpu != nil)
        let image = try ELFImage.read(folder + "/firmware.elf", from: FileImageStore())
        #expect(dump.matches(image, store: FileImageStore()) == true, "the copied firmware is the one that ran")
        _ = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/trace.json")))
        let xml = try String(contentsOfFile: junit, encoding: .utf8)
        for file in files { #expect(xml.contains("[[ATTACHMENT|\(folder)/\(file)]]"), "\(file) in \(xml)") }

        let always = try TestScratch.directory("artifacts-always").path
        #expect(try exitCode(["run", passing, "--artifacts", always, "--artifacts-always", "--junit", junit]) == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: always) == ["fine"])
        #expect(try String(contentsOfFile: junit, encoding: .utf8).contains("[[ATTACHMENT|\(always)/fine/remote.core]]"))
    }

    @Test("--artifacts that is a file, or whose parent is missing, is refused before anything runs (exit 2); --artifacts-always alone is refused")
    func refusals() throws {
        let scenario = try temporaryFile("ok.yaml", "firmware: echo\narch: native\nsteps:\n  - boot\n")
        #expect(try exitCode(["run", scenario, "--artifacts", scenario]) == 2)
        #expect(try exitCode(["run", scenario, "--artifacts", "/nonexistent-parent/out"]) == 2)
        #expect(throws: (any Error).self) { _ = try RprocSim.parseAsRoot(["run", scenario, "--artifacts-always"]) }
    }

    @Test("a dump step writes the remote as it is, and the scenario goes on", .timeLimit(.minutes(1)))
    func dumpStep() throws {
        let scenario = try temporaryFile("dump.yaml", """
            firmware: echo
            arch: rv32
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - dump: before.core
              - send: { to: rpmsg-echo, text: after }
              - expect: { received: after }
              - shutdown
            """)
        #expect(try exitCode(["run", scenario]) == 0)
        let path = (scenario as NSString).deletingLastPathComponent + "/before.core"
        let dump = try CoreDumpFile.read(path)
        #expect(dump.info.reason == .snapshot && dump.cpu?.architecture == .rv32)
    }
}
