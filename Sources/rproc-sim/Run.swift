import ArgumentParser
import Foundation
import Scenario

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run scenario files (a folder runs every .yaml in it).",
        discussion: "Exit status: 0 when every scenario passed, 1 when one failed, 2 on a usage or file error."
    )

    @Argument(help: "Scenario files or folders.")
    var paths: [String]

    @Option(help: "Write JUnit XML here.")
    var junit: String?

    @Option(help: "Write a Chrome/Perfetto trace-event JSON timeline here.")
    var trace: String?

    @Flag(help: "Print the board's trace after each scenario.")
    var verbose = false

    @Option(help: "Serve GDB on this loopback port for emulated firmware; the core waits halted at reset until gdb-multiarch continues it.")
    var gdb: UInt16?

    @Flag(inversion: .prefixedNo, help: "When a step fails, print the board's state, every vring with the messages in flight, and the last trace events (default: on when the output is a terminal).")
    var dumpOnFailure: Bool?

    func run() throws {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("error: \(path): no such file or folder\n".utf8))
                throw ExitCode(2)
            }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { (path as NSString).appendingPathComponent($0) }
            } else {
                files.append(path)
            }
        }
        // Refuse every bad file before running anything.
        var scenarios: [ScenarioFile] = []
        var refused = false
        for file in files {
            do { scenarios.append(try ScenarioParser.parse(file: file)) } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                refused = true
            }
        }
        if refused || scenarios.isEmpty {
            if scenarios.isEmpty && !refused { FileHandle.standardError.write(Data("error: no scenario files found\n".utf8)) }
            throw ExitCode(2)
        }
        let color = isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let dumpsOnFailure = dumpOnFailure ?? (isatty(STDOUT_FILENO) != 0)
        func paint(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
        var results: [ScenarioResult] = []
        for scenario in scenarios {
            print("▶ \(scenario.name)  (\(scenario.firmware.summary))")
            let runner: ScenarioRunner
            do { runner = try ScenarioRunner(scenario, gdbPort: gdb) } catch {
                FileHandle.standardError.write(Data("error: \(scenario.path): \(error)\n".utf8))
                throw ExitCode(2)
            }
            if let server = runner.gdb {
                let elf = runner.imagePath
                print("  gdb: listening on 127.0.0.1:\(server.port)\(server.waitsForDebugger ? "; the core waits halted at reset" : "")")
                print("       gdb-multiarch -q \(elf) -ex 'target remote :\(server.port)'")
                fflush(nil)
            }
            runner.onNotice = { text in
                print("    ⏸ " + text)
                fflush(nil)
            }
            if color {
                runner.onProgress = { title, fraction in
                    let width = 24, filled = Int(fraction * Double(width))
                    print("\r    \(title)  [" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "] \(Int(fraction * 100))%", terminator: "")
                    fflush(nil)
                }
            }
            let result = runner.run { step in
                if color { print("\r\u{1B}[2K", terminator: "") }
                let mark = step.passed ? paint("✓", "32") : paint("✗", "31")
                let line = "  \(mark) " + pad(step.title, 36) + pad(format(step.duration), 10) + step.detail
                print(line)
                if let failure = step.failure { print(paint("      " + failure, "31")) }
                if dumpsOnFailure, let dump = step.dump {
                    print("      board when the step failed:")
                    for line in dump.split(separator: "\n", omittingEmptySubsequences: false).dropLast() { print("        " + line) }
                }
                fflush(nil)
            }
            if let failing = result.failure {
                let console = result.trace.compactMap { if case let .console(line, _) = $0.kind { line } else { nil } }.suffix(3)
                if !console.isEmpty { print("      console:  " + console.joined(separator: " | ")) }
                let recent = result.trace.suffix(3).map(\.description)
                if !recent.isEmpty { print("      trace:    " + recent.joined(separator: " · ")) }
                print(paint("✗ \(result.steps.filter { !$0.passed }.count) of \(scenario.steps.count) steps failed (\(failing.location))", "31"))
            } else {
                print(paint("✓ \(result.steps.count) steps passed in \(format(result.duration))", "32"))
            }
            if verbose { for event in result.trace { print("    \(event)") } }
            results.append(result)
        }
        if let junit {
            try ScenarioReports.junit(results).write(toFile: junit, atomically: true, encoding: .utf8)
        }
        if let trace {
            try ScenarioReports.chromeTrace(results).write(to: URL(fileURLWithPath: trace))
        }
        let failed = results.filter { !$0.passed }.count
        print(failed == 0 ? "all \(results.count) scenario(s) passed" : "\(failed) of \(results.count) scenario(s) failed")
        if failed > 0 { throw ExitCode(1) }
    }

    func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }

    func format(_ d: Duration) -> String {
        let micros = Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12
        if micros < 1000 { return String(format: "%.0f µs", micros) }
        if micros < 1e6 { return String(format: "%.1f ms", micros / 1000) }
        return String(format: "%.2f s", micros / 1e6)
    }
}
