import ArgumentParser
import Foundation
@testable import rproc_sim
import Testing

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
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rproc-sim-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
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
        #expect(xml.contains("tests=\"3\" failures=\"0\""))
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
}

import FirmwareKit
enum FirmwareBuilderForTests {
    static func echo() throws -> String { try FirmwareBuilder.forThisPackage().build(program: "echo", architecture: .cortexM4).path }
}
