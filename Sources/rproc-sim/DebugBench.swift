import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim

/// The cost of debugging an emulated core through its GDB server, measured with the project's
/// own protocol client over loopback TCP: a single step, a register read and a 256-byte memory
/// read, each a full request → reply round trip; and emulation speed with a debugger attached,
/// without and with a watchpoint set (which snapshots the CPU before every instruction).
enum DebugBench {
    struct Result: Codable {
        var architecture: String
        var stepP50Microseconds: Double
        var stepP99Microseconds: Double
        var registersP50Microseconds: Double
        var memoryReadP50Microseconds: Double
        var attachedInstructionsPerSecond: Double
        var watchpointInstructionsPerSecond: Double
    }

    static func run(requests: Int) throws -> [Result] {
        let builder = try FirmwareBuilder.forThisPackage()
        return try FirmwareArchitecture.allCases.map { architecture in
            let cpu: CPUArchitecture = architecture == .cortexM4 ? .cortexM4 : .rv32
            let elf = try builder.build(program: "compute", architecture: architecture)

            // Round trips while halted, then the whole compute loop with the debugger attached.
            let (board, processor, server) = try boot(elf: elf, cpu: cpu)
            let client = try GDBClient(port: server.port)
            _ = try client.request("?")
            let step = try BenchHarness.time(requests) { let reply = try client.request("s"); guard reply.hasPrefix("T05") else { throw BenchError("step answered \(reply)") } }
            let registers = try BenchHarness.time(requests) { _ = try client.request("g") }
            let memory = try BenchHarness.time(requests) { _ = try client.request("m20000000,100") }
            let attachedRate = try BenchHarness.rate(EmulatedBench.computeInstructions) {
                client.post("c")
                try waitForConsole(board, "compute: done")
            }
            try processor.shutdown()
            server.shutdown()

            // One watchpoint (on memory the loop never touches) for a second of the loop, counted.
            let counter = InstructionCounter()
            let (_, watched, watchedServer) = try boot(elf: elf, cpu: cpu, counter: counter)
            let watcher = try GDBClient(port: watchedServer.port)
            _ = try watcher.request("?")
            guard try watcher.request("Z2,20000ff0,4") == "OK" else { throw BenchError("the watchpoint was refused") }
            let before = counter.value
            let watchSeconds = try BenchHarness.seconds {
                watcher.post("c")
                RealTimeClock.shared.sleep(for: .seconds(1))
                watcher.interrupt()
                _ = try watcher.reply()
            }
            let watchRate = Double(counter.value - before) / watchSeconds
            try watched.shutdown()
            watchedServer.shutdown()

            return Result(architecture: architecture.rawValue, stepP50Microseconds: step.median, stepP99Microseconds: step.p99,
                          registersP50Microseconds: registers.median, memoryReadP50Microseconds: memory.median,
                          attachedInstructionsPerSecond: attachedRate, watchpointInstructionsPerSecond: watchRate)
        }
    }

    /// `elf` on an emulated core with a GDB server, halted at reset.
    private static func boot(elf: URL, cpu: CPUArchitecture, counter: InstructionCounter? = nil) throws -> (Board, RemoteProcessor, GDBServer) {
        let server = try GDBServer(architecture: cpu, startHalted: true)
        let board = try Board(firmware: EmulatedCPU(cpu, countingInto: counter, debugger: server))
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        return (board, processor, server)
    }

    private static func waitForConsole(_ board: Board, _ prefix: String) throws {
        guard board.wait(upTo: .seconds(120), until: { board.trace.consoleLines.contains { $0.hasPrefix(prefix) } }) else {
            throw BenchError("no console line \"\(prefix)\"")
        }
    }

}
