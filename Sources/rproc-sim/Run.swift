import ArgumentParser
import Foundation
import MetalIO
import RemoteSim
import Scenario
import Synchronization

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run scenario files (a folder runs every .yaml in it).",
        discussion: """
            Exit status: 0 when every scenario passed (a pass on a retry counts, reported as flaky), \
            1 when one failed, 2 on a usage or file error — nothing runs then. Output paths are \
            checked before anything runs.
            """
    )

    @Argument(help: "Scenario files or folders.")
    var paths: [String]

    @Option(help: "Write JUnit XML here.")
    var junit: String?

    @Option(help: "Write a Chrome/Perfetto trace-event JSON timeline here.")
    var trace: String?

    @Flag(help: "Print a machine-readable summary (JSON, schema in docs/scenarios.md) on standard output instead of the report.")
    var json = false

    @Flag(help: "Print the board's trace after each scenario.")
    var verbose = false

    @Option(help: "Serve GDB on this loopback port for emulated firmware; the core waits halted at reset until gdb-multiarch continues it.")
    var gdb: UInt16?

    @Flag(inversion: .prefixedNo, help: "When a step fails, print the board's state, every vring with the messages in flight, and the last trace events (default: on when the output is a terminal).")
    var dumpOnFailure: Bool?

    @Option(help: "Run this many scenario files at once (each file's output is printed together when it ends).")
    var jobs = 1

    @Option(help: "Run only shard K of N (K/N, 1-based): a stable split of the sorted file list, for a CI matrix.")
    var shard: String?

    @Option(help: "Run only scenarios whose name or path matches this regular expression, or that have it as a tag.")
    var filter: String?

    @Option(name: .customLong("repeat"), help: "Run each scenario this many times.")
    var repetitions = 1

    @Flag(help: "Stop at the first failing run (with --repeat as the cap; 100 runs when --repeat is not given).")
    var untilFail = false

    @Option(help: "Run a failing scenario again, up to this many times; a later pass is reported as flaky, never hidden.")
    var retry = 0

    @Option(help: "Write a folder per failing scenario run here: core dump, firmware image, console log, trace, vrings and a README with the commands that open them (docs/debugging.md); the JUnit report references them.")
    var artifacts: String?

    @Flag(help: "With --artifacts: keep the folder of passing runs too.")
    var artifactsAlways = false

    @Option(help: "Run every scenario with this board clock, whatever its file says: real-time or virtual (lockstep, repeatable; docs/virtual-time.md).")
    var clock: BoardClock?

    func validate() throws {
        guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be from 1 to 64") }
        guard (1...100_000).contains(repetitions) else { throw ValidationError("--repeat must be from 1 to 100000") }
        guard (0...100).contains(retry) else { throw ValidationError("--retry must be from 0 to 100") }
        if let shard, Self.parseShard(shard) == nil { throw ValidationError("--shard must be K/N with 1 ≤ K ≤ N ≤ 10000, e.g. 2/4") }
        if let filter { do { _ = try ScenarioRegex(filter) } catch { throw ValidationError("--filter: '\(filter)': \(error)") } }
        if gdb != nil && jobs > 1 { throw ValidationError("--gdb serves one debugger: use it with --jobs 1") }
        if artifactsAlways && artifacts == nil { throw ValidationError("--artifacts-always goes with --artifacts DIR") }
    }

    static func parseShard(_ text: String) -> (index: Int, count: Int)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]), n >= 1, n <= 10_000, k >= 1, k <= n else { return nil }
        return (k, n)
    }

    /// Fails (exit 2) unless `path` can be written: its folder exists and is writable, and it is
    /// new or a regular file (a folder, a FIFO — whose open would block — or a device is refused).
    static func checkWritable(_ path: String, option: String) throws {
        var isDirectory: ObjCBool = false
        let folder = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { throw RunError("\(option) \(path): is a folder") }
            let type = (try? FileManager.default.attributesOfItem(atPath: (path as NSString).resolvingSymlinksInPath))?[.type] as? FileAttributeType
            guard type == .typeRegular else {
                let what = type == .typeCharacterSpecial || type == .typeBlockSpecial ? "a device" : type == .typeSocket ? "a socket" : "a FIFO or another special file"
                throw RunError("\(option) \(path): is \(what), not a regular file")
            }
        }
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw RunError("\(option) \(path): the folder \(folder) does not exist")
        }
        guard FileManager.default.isWritableFile(atPath: folder) else { throw RunError("\(option) \(path): the folder \(folder) is not writable") }
    }

    /// Fails (exit 2) unless `path` is a writable folder, or can be made as one (its parent exists).
    static func prepareFolder(_ path: String, option: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw RunError("\(option) \(path): is not a folder") }
        } else {
            do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false) } catch {
                throw RunError("\(option) \(path): the folder cannot be made (\(error.localizedDescription))")
            }
        }
        guard FileManager.default.isWritableFile(atPath: path) else { throw RunError("\(option) \(path): the folder is not writable") }
    }

    struct RunError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func run() throws {
        let scenarios: [ScenarioFile]
        do {
            for (path, option) in [(junit, "--junit"), (trace, "--trace")] { if let path { try Self.checkWritable(path, option: option) } }
            if let artifacts { try Self.prepareFolder(artifacts, option: "--artifacts") }
            scenarios = try collect()
        } catch let error as RunError {
            Terminal.error("error: \(error)")
            throw ExitCode(2)
        }
        let color = !json && isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let printer = ScenarioPrinter(color: color, dumps: dumpOnFailure ?? (isatty(STDOUT_FILENO) != 0), verbose: verbose,
                                      progress: color && jobs == 1)
        let runs = untilFail ? (repetitions > 1 ? repetitions : 100) : repetitions
        var outcomes: [ScenarioOutcome] = []
        for round in 0..<runs {
            let batch = try execute(scenarios, printer: printer)
            outcomes += batch
            if runs > 1 && !json { print("── run \(round + 1) of \(runs): \(batch.filter { !$0.passed }.count) failed") }
            if untilFail && batch.contains(where: { !$0.passed }) { break }
        }
        let results = outcomes.map(\.result)
        if let junit { try ScenarioReports.junit(results).write(toFile: junit, atomically: true, encoding: .utf8) }
        if let trace { try ScenarioReports.chromeTrace(results).write(to: URL(fileURLWithPath: trace)) }
        let failed = outcomes.filter { !$0.passed }.count
        let flaky = outcomes.filter(\.flaky).count
        if json {
            print(terminalSafeJSON(try RunSummary(outcomes).encoded()))
        } else {
            let tail = flaky > 0 ? " (\(flaky) flaky: passed on a retry)" : ""
            print((failed == 0 ? "all \(outcomes.count) scenario(s) passed" : "\(failed) of \(outcomes.count) scenario(s) failed") + tail)
        }
        if failed > 0 { throw ExitCode(1) }
    }

    /// Every scenario file named, sorted per folder, sharded, parsed (any bad file refuses the
    /// whole run) and filtered.
    private func collect() throws -> [ScenarioFile] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw RunError("\(path): no such file or folder") }
            if isDirectory.boolValue {
                guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { throw RunError("\(path): the folder cannot be read") }
                files += names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { (path as NSString).appendingPathComponent($0) }
            } else {
                files.append(path)
            }
        }
        if let shard, let (k, n) = Self.parseShard(shard) {
            files = files.enumerated().filter { $0.offset % n == k - 1 }.map(\.element)
        }
        var scenarios: [ScenarioFile] = []
        var problems: [String] = []
        for file in files {
            do { scenarios.append(try ScenarioParser.parse(file: file)) } catch { problems.append("\(error)") }
        }
        if let clock {
            for i in scenarios.indices {
                if clock == .virtual, let conflict = scenarios[i].virtualTimeConflict() {
                    let at = conflict.location.map { "\($0)" } ?? scenarios[i].path
                    problems.append("\(at): --clock virtual: \(conflict.message)")
                }
                scenarios[i].clock = clock
            }
        }
        if gdb != nil {
            for scenario in scenarios where !scenario.processors.isEmpty {
                problems.append("\(scenario.path): --gdb serves the core of a file with one processor; this one has \(scenario.processors.count)")
            }
        }
        guard problems.isEmpty else { throw RunError(problems.joined(separator: "\nerror: ")) }
        if let filter, let expression = try? ScenarioRegex(filter) {
            scenarios = scenarios.filter { expression.matches($0.name) || expression.matches($0.path) || $0.tags.contains(filter) }
        }
        guard !scenarios.isEmpty else {
            throw RunError(files.isEmpty ? "no scenario files found" + (shard.map { " (shard \($0))" } ?? "") : "no scenario matches --filter \(filter ?? "")")
        }
        return scenarios
    }

    /// Runs the scenarios, `jobs` at a time, each retried up to `retry` times while it fails.
    private func execute(_ scenarios: [ScenarioFile], printer: ScenarioPrinter) throws -> [ScenarioOutcome] {
        /// What the workers share: the next file to take, the outcomes, the first setup error, the output.
        final class Shared: Sendable {
            let outcomes = MetalMutex<[Int: ScenarioOutcome]>([:])
            let failure = MetalMutex<String?>(nil)
            let next = Atomic<Int>(0)
            let output = MetalMutex<Void>(())
        }
        let shared = Shared()
        @Sendable func work() {
            while true {
                let index = shared.next.add(1, ordering: .relaxed).oldValue
                guard index < scenarios.count else { return }
                let scenario = scenarios[index]
                var attempts: [ScenarioResult] = []
                var text = ""
                let live = jobs == 1 && !json
                func emit(_ line: String) {
                    if live { print(line); fflush(nil) } else { text += line + "\n" }
                }
                while attempts.count <= retry {
                    if !attempts.isEmpty { emit("  ↻ retry \(attempts.count) of \(retry)") }
                    let runner: ScenarioRunner
                    let postMortem: ScenarioRunner.PostMortemPolicy = artifacts == nil ? .never : artifactsAlways ? .always : .onFailure
                    do { runner = try ScenarioRunner(scenario, gdbPort: gdb, postMortem: postMortem) } catch {
                        shared.failure.withLock { $0 = "\(scenario.path): \(error)" }
                        return
                    }
                    var result = printer.run(scenario, runner: runner, emit: emit)
                    if let artifacts, !result.passed || artifactsAlways {
                        do {
                            result.attachments = try ScenarioArtifacts.write(result, into: artifacts)
                            emit("  ⇣ artifacts: \(result.attachments[0])")
                        } catch {
                            emit("  ⇣ artifacts could not be written: \(error)")
                        }
                        result.postMortem = nil   // written; not kept in memory for the rest of the run
                    }
                    attempts.append(result)
                    if attempts.last!.passed { break }
                }
                let outcome = ScenarioOutcome(file: scenario, attempts: attempts)
                if !live && !json { shared.output.withLock { _ in print(text, terminator: ""); fflush(nil) } }
                shared.outcomes.withLock { $0[index] = outcome }
            }
        }
        if jobs == 1 {
            work()
        } else {
            let workers = min(jobs, scenarios.count), finished = WakeSignal()
            for _ in 0..<workers {
                try PlatformThread(name: "rproc-run") {
                    work()
                    finished.signal()
                }.detach()
            }
            for _ in 0..<workers { finished.wait() }
        }
        if let problem = shared.failure.withLock({ $0 }) {
            Terminal.error("error: \(problem)")
            throw ExitCode(2)
        }
        return shared.outcomes.withLock { table in (0..<scenarios.count).compactMap { table[$0] } }
    }
}

/// One scenario file's runs: every attempt, the last one deciding.
struct ScenarioOutcome: Sendable {
    var file: ScenarioFile
    var attempts: [ScenarioResult]
    var result: ScenarioResult { attempts.last! }
    var passed: Bool { result.passed }
    /// Failed, then passed on a retry.
    var flaky: Bool { passed && attempts.count > 1 }
}

/// Prints a scenario's steps as they end (the human report).
struct ScenarioPrinter: Sendable {
    var color: Bool
    var dumps: Bool
    var verbose: Bool
    /// Progress bars for long steps (one scenario at a time, on a terminal).
    var progress: Bool

    func paint(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }

    func run(_ scenario: ScenarioFile, runner: ScenarioRunner, emit emitPainted: (String) -> Void) -> ScenarioResult {
        // Lines are made safe to show (Terminal.shown) before colour is added.
        func emit(_ text: String) { emitPainted(Terminal.shown(text)) }
        emit("▶ \(scenario.name)  (\(scenario.firmwareSummary) · host \(scenario.host)\(scenario.clock == .virtual ? " · virtual time" : ""))")
        if let server = runner.gdb {
            emit("  gdb: listening on 127.0.0.1:\(server.port)\(server.waitsForDebugger ? "; the core waits halted at reset" : "")")
            emit("       gdb-multiarch -q \(runner.imagePath) -ex 'target remote :\(server.port)'")
        }
        runner.onNotice = { text in
            Terminal.line("    ⏸ " + text)
            fflush(nil)
        }
        if progress {
            runner.onProgress = { title, fraction in
                let width = 24, filled = Int(fraction * Double(width))
                print("\r    \(Terminal.shown(title))  [" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "] \(Int(fraction * 100))%", terminator: "")
                fflush(nil)
            }
        }
        let result = runner.run { step in
            if progress { print("\r\u{1B}[2K", terminator: "") }
            let mark = step.passed ? paint("✓", "32") : paint("✗", "31")
            // In virtual time the step's wall-clock time follows its board time.
            let time = scenario.clock == .virtual ? pad(format(step.duration), 10) + pad("wall " + format(step.wallDuration), 15) : pad(format(step.duration), 10)
            emitPainted("  \(mark) " + Terminal.shown(pad(step.title, 36) + time + step.detail))
            if let failure = step.failure { emitPainted(paint(Terminal.shown("      " + failure), "31")) }
            if dumps, let dump = step.dump {
                emit("      board when the step failed:")
                for line in dump.split(separator: "\n", omittingEmptySubsequences: false).dropLast() { emit("        " + line) }
            }
        }
        if let failing = result.failure {
            let console = result.trace.compactMap { if case let .console(line, _) = $0.kind { line } else { nil } }.suffix(3)
            if !console.isEmpty { emit("      console:  " + console.map { visibleText($0) }.joined(separator: " | ")) }
            let recent = result.trace.suffix(3).map(\.description)
            if !recent.isEmpty { emit("      trace:    " + recent.joined(separator: " · ")) }
            emitPainted(paint(Terminal.shown("✗ \(result.steps.filter { !$0.passed }.count) of \(scenario.steps.count) steps failed (\(failing.location))"
                       + (result.notRun.isEmpty ? "" : ", \(result.notRun.count) not run")), "31"))
        } else {
            emitPainted(paint("✓ \(result.steps.count) steps passed in \(format(result.duration))"
                              + (result.clock == .virtual ? " of virtual time (wall \(format(result.wallDuration)))" : ""), "32"))
        }
        if verbose { for event in result.trace { emit("    \(event)") } }
        return result
    }

    func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }

    func format(_ d: Duration) -> String {
        let micros = d.inMicroseconds
        if micros < 1000 { return String(format: "%.0f µs", micros) }
        if micros < 1e6 { return String(format: "%.1f ms", micros / 1000) }
        return String(format: "%.2f s", micros / 1e6)
    }
}

/// `run --json`: the summary's schema (version 1), documented in docs/scenarios.md.
struct RunSummary: Encodable {
    struct Step: Encodable {
        var title: String
        var file: String
        var line: Int
        var column: Int
        /// passed, failed or skipped.
        var status: String
        var seconds: Double
        /// The host's clock: differs from `seconds` only in virtual time (and from run to run).
        var wallSeconds: Double
        var detail: String
        var failure: String?
    }
    struct Scenario: Encodable {
        var name: String
        var path: String
        var firmware: String
        var host: String
        var tags: [String]
        /// passed, failed or flaky (failed, then passed on a retry).
        var status: String
        var attempts: Int
        /// real-time or virtual.
        var clock: String
        var seconds: Double
        var wallSeconds: Double
        var steps: [Step]
    }
    var schema = 1
    var passed: Bool
    var scenarios: [Scenario]

    init(_ outcomes: [ScenarioOutcome]) {
        passed = outcomes.allSatisfy(\.passed)
        scenarios = outcomes.map { outcome in
            let r = outcome.result
            let ran = r.steps.map { s in
                Step(title: s.title, file: s.location.file, line: s.location.line, column: s.location.column, status: s.passed ? "passed" : "failed",
                     seconds: s.duration.inSeconds, wallSeconds: s.wallDuration.inSeconds, detail: s.detail, failure: s.failure)
            }
            let skipped = r.notRun.map { s in
                Step(title: s.title, file: s.location.file, line: s.location.line, column: s.location.column, status: "skipped",
                     seconds: 0, wallSeconds: 0, detail: "", failure: nil)
            }
            return Scenario(name: r.name, path: r.path, firmware: r.firmware, host: outcome.file.host.rawValue, tags: outcome.file.tags,
                            status: outcome.flaky ? "flaky" : outcome.passed ? "passed" : "failed", attempts: outcome.attempts.count,
                            clock: r.clock.rawValue, seconds: r.duration.inSeconds, wallSeconds: r.wallDuration.inSeconds, steps: ran + skipped)
        }
    }

    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }
}

extension BoardClock: ExpressibleByArgument {}
