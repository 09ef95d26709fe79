import FirmwareKit
import Foundation
import Remoteproc
import RemoteSim
import Testing

/// Runs gdb-multiarch in batch mode with `commands` against 127.0.0.1:`port`; returns its output.
func runGDB(elf: String, port: UInt16, commands: [String], timeout: TimeInterval = 60) throws -> String {
    let gdb = ["/usr/bin/gdb-multiarch", "/usr/local/bin/gdb-multiarch"].first { FileManager.default.isExecutableFile(atPath: $0) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try #require(gdb, "gdb-multiarch is not installed (.ci/run installs it)"))
    process.arguments = ["-q", "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", "target remote 127.0.0.1:\(port)"]
        + commands.flatMap { ["-ex", $0] } + [elf]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning { process.terminate() }
    return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
}

@Suite("GDB server", .serialized)
struct GDBServerTests {
    @Test("gdb-multiarch attaches to a core halted at reset, breaks in main, reads registers and steps",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func breakInMain(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "minimal", architecture: architecture)
        let cpu: CPUArchitecture = architecture == .cortexM4 ? .cortexM4 : .rv32
        let server = try GDBServer(architecture: cpu, startHalted: true)
        defer { server.shutdown() }
        let board = try Board(firmware: EmulatedCPU(cpu, debugger: server))
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        let output = try runGDB(elf: elf.path, port: server.port, commands: [
            "info registers pc", "break main", "continue", "info symbol $pc", "stepi", "info registers pc", "monitor vrings", "detach",
        ])
        #expect(output.contains("Breakpoint 1, main ()"), "\(output)")
        #expect(output.contains(architecture == .cortexM4 ? "<reset_handler>" : "<_start>"), "halted before the first instruction: \(output)")
        #expect(output.range(of: "main( \\+ [0-9]+)? in section \\.text", options: .regularExpression) != nil, "\(output)")
        #expect(output.contains("vring0 @ 0x3000_"), "monitor vrings: \(output)")
        // Detached: the core runs on and prints.
        let deadline = ContinuousClock.now + .seconds(10)
        while !board.trace.consoleLines.contains(where: { $0.hasPrefix("minimal: hello") }) && ContinuousClock.now < deadline { usleep(1000) }
        #expect(board.trace.consoleLines.contains { $0.hasPrefix("minimal: hello") }, "\(output)")
        try processor.shutdown()
    }
}
