import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
@testable import RemoteSim
import RPMsg
import Testing
import TestSupport

/// The `postmortem` firmware on an emulated core, its service found; `say` makes it die (or echo).
private func postmortemBoard(_ architecture: FirmwareArchitecture) throws -> (elf: URL, board: Board, processor: RemoteProcessor, say: (String) throws -> Void) {
    let elf = try FirmwareBuilder.forThisPackage().build(program: "postmortem", architecture: architecture)
    let board = try Board(firmware: EmulatedCPU(architecture.cpu))
    let processor = try board.makeProcessor()
    try processor.configure()
    try processor.load(elf.path, from: FileImageStore())
    try processor.start()
    let rpmsg = try hostRPMsg(processor)
    #expect(waitUntil { !rpmsg.announcedServices.isEmpty })
    let service = try #require(rpmsg.announcedServices.first { $0.name == "rpmsg-postmortem" })
    let endpoint = try rpmsg.createEndpoint(destination: service.address) { _ in }
    return (elf, board, processor, { try endpoint.send(Array($0.utf8), timeout: .seconds(5)) })
}

/// gdb-multiarch opening `core` itself with `elf` (no server), in batch mode.
private func gdbOnCoreFile(elf: String, core: String, commands: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/gdb-multiarch")
    process.arguments = ["-q", "-nx", "-batch", "-ex", "set pagination off", "-ex", "set osabi none", "-ex", "file \(elf)", "-ex", "core-file \(core)"]
        + commands.flatMap { ["-ex", $0] }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning { process.terminate() }
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: output, as: UTF8.self)
}

@Suite("Core dumps", .serialized)
struct CoreDumpTests {
    @Test("a fault leaves a core dump: served read-only to gdb-multiarch, bt shows the faulting function, its locals and source line; gdb opens the file itself too; the firmware's fingerprint matches its ELF",
          .timeLimit(.minutes(3)), arguments: FirmwareArchitecture.allCases)
    func faultDump(architecture: FirmwareArchitecture) throws {
        let (elf, board, processor, say) = try postmortemBoard(architecture)
        defer { try? processor.shutdown() }
        try say("fault")
        #expect(waitUntil { processor.state == .crashed }, "state \(processor.state)")
        let report = try #require(processor.crashReport)
        #expect(report.kind == .fault)
        let path = TestScratch.path("fault.core")
        let clock = ContinuousClock()
        let start = clock.now
        let size = try board.writeCoreDump(to: path)
        let took = clock.now - start
        print("core dump (\(architecture.rawValue)): \(size) bytes written in \(took)")

        let dump = try CoreDumpFile.read(path)
        #expect(dump.info.reason == .crash && dump.info.crash?.kind == "fault" && dump.info.signal == 11)
        #expect(dump.segments.map(\.deviceAddress) == board.memories.map(\.deviceAddress))
        #expect(dump.segments.map(\.bytes.count) == board.memories.map(\.size))
        let cpu = try #require(dump.cpu)
        #expect(cpu.architecture == architecture.cpu)
        #expect(UInt64(cpu.programCounter) == report.programCounter?.rawValue, "the dump's pc is the fault's")
        #expect(dump.info.console.contains("postmortem: summing"))
        let image = try ELFImage.read(elf.path, from: FileImageStore())
        #expect(dump.matches(image, store: FileImageStore()) == true)

        // Served: bt at the faulting line with its locals; monitor answers from the dump.
        let server = try GDBServer(core: dump)
        defer { server.shutdown() }
        let served = try runGDB(elf: elf.path, port: server.port, commands: ["bt", "info locals", "monitor console", "monitor state", "info program", "detach"])
        #expect(served.contains("sum_readings ("), "\(served)")
        #expect(served.range(of: "main\\.c:[0-9]+", options: .regularExpression) != nil, "\(served)")
        #expect(served.contains("total = 31"), "\(served)")
        #expect(served.contains("index = 3"), "\(served)")
        #expect(served.contains("on_message") || served.contains("main ("), "the chain below it: \(served)")
        #expect(served.contains("postmortem: summing") && served.contains("core dump (crash)"), "\(served)")
        #expect(served.contains("SIGSEGV"), "\(served)")

        // gdb-multiarch opens the core file itself (set osabi none: the bare-metal ABI).
        let direct = try gdbOnCoreFile(elf: elf.path, core: path, commands: ["bt", "info locals"])
        #expect(direct.contains("sum_readings ("), "\(direct)")
        #expect(direct.contains("total = 31"), "\(direct)")
    }
}
