import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
@testable import RemoteSim
import RPMsg
import Testing
import TestSupport

/// The `postmortem` firmware on an emulated core (exact PCs unless told), its service found; `say`
/// makes it die (or echo).
private func postmortemBoard(_ architecture: FirmwareArchitecture, exactPCs: Bool = true) throws -> (elf: URL, board: Board, processor: RemoteProcessor, replies: MetalMutex<[String]>,
                                                                           say: (String) throws -> Void) {
    let elf = try FirmwareBuilder.forThisPackage().build(program: "postmortem", architecture: architecture)
    let board = try Board(firmware: EmulatedCPU(architecture.cpu, exactPCs: exactPCs))
    let processor = try board.makeProcessor()
    try processor.configure()
    try processor.load(elf.path, from: FileImageStore())
    try processor.start()
    let rpmsg = try hostRPMsg(processor)
    #expect(waitUntil { !rpmsg.announcedServices.isEmpty })
    let service = try #require(rpmsg.announcedServices.first { $0.name == "rpmsg-postmortem" })
    let replies = MetalMutex<[String]>([])
    let endpoint = try rpmsg.createEndpoint(destination: service.address) { message in
        replies.withLock { $0.append(String(decoding: message.payload, as: UTF8.self)) }
    }
    return (elf, board, processor, replies, { try endpoint.send(Array($0.utf8), timeout: .seconds(5)) })
}

/// gdb-multiarch opening `core` itself with `elf` (no server), in batch mode.
private func gdbOnCoreFile(elf: String, core: String, commands: [String]) throws -> String {
    try GDBBatch.run(["-ex", "set pagination off", "-ex", "set osabi none", "-ex", "file \(elf)", "-ex", "core-file \(core)"]
                     + commands.flatMap { ["-ex", $0] })
}

@Suite("Core dumps", .serialized)
struct CoreDumpTests {
    @Test("a fault leaves a core dump: served read-only to gdb-multiarch, bt shows the faulting function, its locals and source line; gdb opens the file itself too; the firmware's fingerprint matches its ELF",
          .timeLimit(.minutes(3)), arguments: FirmwareArchitecture.allCases)
    func faultDump(architecture: FirmwareArchitecture) throws {
        let (elf, board, processor, _, say) = try postmortemBoard(architecture)
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
        #expect(dump.info.programCounterExact == true && cpu.isProgramCounterExact)
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

    @Test("a PANIC, a watchdog expiry and an injected crash each leave a dump with their kind, signal and the registers where the core stood",
          .timeLimit(.minutes(3)), arguments: FirmwareArchitecture.allCases)
    func otherCrashes(architecture: FirmwareArchitecture) throws {
        let cases: [(say: String?, kind: String, signal: Int, function: String?)] = [
            ("panic", "panic", 6, "check_readings"), ("hang", "watchdog", 14, "wait_forever"), (nil, "fault", 11, nil),
        ]
        for (say, kind, signal, function) in cases {
            let (elf, board, processor, _, send) = try postmortemBoard(architecture)
            defer { try? processor.shutdown() }
            if let say { try send(say) } else { try board.faults.inject(.fault(code: 0x77)) }
            #expect(waitUntil { processor.state == .crashed }, "\(kind): state \(processor.state)")
            let dump = try CoreDumpFile.decode(CoreDumpFile.encode(try board.coreDump()))
            #expect(dump.info.reason == .crash && dump.info.crash?.kind == kind && dump.info.signal == signal, "\(kind): \(dump.info)")
            if kind == "panic" { #expect(dump.info.crash?.code == 0x5EB5) }
            let cpu = try #require(dump.cpu, "\(kind)")
            #expect(cpu.programCounter < UInt32(board.layout.code.size), "\(kind): pc \(cpu.programCounter) in code")
            guard let function else { continue }
            let server = try GDBServer(core: dump)
            defer { server.shutdown() }
            let output = try runGDB(elf: elf.path, port: server.port, commands: ["bt", "detach"])
            #expect(output.contains(function), "\(kind): \(output)")
        }
    }

    @Test("native firmware's dump holds its memories and notes but no registers: the server refuses it with a typed error",
          .timeLimit(.minutes(1)))
    func nativeDump() throws {
        let (board, processor) = try startedBoard(EchoFirmware())
        defer { try? processor.shutdown() }
        try board.faults.inject(.panic(code: 0x42))
        #expect(waitUntil { processor.state == .crashed })
        let dump = try CoreDumpFile.decode(CoreDumpFile.encode(try board.coreDump()))
        #expect(dump.cpu == nil && dump.info.crash?.kind == "panic" && dump.segments.count == 3)
        #expect(throws: CoreDumpError.self) { try GDBServer(core: dump) }
    }

    @Test("without exact PCs a fault's dump says its pc is the start of a translated block: recorded in the file, and the server tells gdb",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func inexactDump(architecture: FirmwareArchitecture) throws {
        let (elf, board, processor, _, say) = try postmortemBoard(architecture, exactPCs: false)
        defer { try? processor.shutdown() }
        try say("fault")
        #expect(waitUntil { processor.state == .crashed }, "state \(processor.state)")
        let dump = try CoreDumpFile.decode(CoreDumpFile.encode(try board.coreDump()))
        #expect(dump.info.programCounterExact == false)
        #expect(dump.cpu?.isProgramCounterExact == false, "read back from the file")
        let server = try GDBServer(core: dump)
        defer { server.shutdown() }
        let output = try runGDB(elf: elf.path, port: server.port, commands: ["bt", "monitor state", "detach"])
        #expect(output.contains("start of the translated block"), "\(output)")
        #expect(output.contains("sum_readings ("), "still in the faulting function: \(output)")
    }

    @Test("a snapshot of a running core: halted for the copy (traced as a gated clock), registers where it stood (in the main loop), and it runs on and echoes",
          .timeLimit(.minutes(3)), arguments: FirmwareArchitecture.allCases)
    func liveSnapshot(architecture: FirmwareArchitecture) throws {
        let (elf, board, processor, replies, say) = try postmortemBoard(architecture)
        defer { try? processor.shutdown() }
        let dump = try board.coreDump()
        #expect(dump.info.reason == .snapshot && dump.info.signal == 5)
        #expect(processor.state == .running && !board.isSuspended, "it runs on")
        let cpu = try #require(dump.cpu)
        #expect(cpu.programCounter < UInt32(board.layout.code.size))
        #expect(dump.info.programCounterExact == true, "parked inside WAIT, at the load itself")
        let powers = board.trace.events.compactMap { if case let .power(event) = $0.kind { "\(event)" } else { nil } }
        #expect(powers.count == 2, "gated and ungated once: \(powers)")
        // Where it stood: waiting for the host, in the firmware's main loop.
        let server = try GDBServer(core: dump)
        let output = try runGDB(elf: elf.path, port: server.port, commands: ["bt", "detach"])
        server.shutdown()
        // (Parked in WAIT before rsim_rpmsg_wait_and_poll's shrink-wrapped prologue, clang's CFI
        // says the push is done: gdb then stops one frame short of main — docs/debugging.md, Limits.)
        #expect(output.contains("in main ()") || output.contains("main () at") || output.contains("rsim_rpmsg_wait_and_poll ()"), "\(output)")
        try say("still here")
        #expect(waitUntil { replies.withLock { $0 } == ["still here"] })
    }

    @Test("monitor dump FILE in a debugger halted in the firmware writes the core at the breakpoint", .timeLimit(.minutes(2)),
          arguments: FirmwareArchitecture.allCases)
    func monitorDump(architecture: FirmwareArchitecture) throws {
        let (elf, server, _, processor) = try debuggedBoard("postmortem", architecture)
        defer {
            server.shutdown()
            try? processor.shutdown()
        }
        let path = TestScratch.path("monitor.core")
        let output = try runGDB(elf: elf.path, port: server.port, commands: ["break main", "continue", "monitor dump \(path)", "detach"])
        #expect(output.contains("core dump written to \(path)"), "\(output)")
        let dump = try CoreDumpFile.read(path)
        let served = try GDBServer(core: dump)
        defer { served.shutdown() }
        let again = try runGDB(elf: elf.path, port: served.port, commands: ["info symbol $pc", "detach"])
        #expect(again.contains("main in section .text") || again.contains("main + "), "\(again)")
    }
}

@Suite("Core files from outside")
struct HostileCoreFileTests {
    /// A real core (the native echo board, crashed) to mutate.
    static func sample() throws -> [UInt8] {
        var registers = UnicornEngine.debugRegisters(.rv32).map { _ in UInt64(0) }
        registers[32] = 0x100
        let dump = CoreDump(cpu: CPUSnapshot(architecture: .rv32, values: registers),
                            segments: [CoreDump.Segment(name: "code", deviceAddress: DeviceAddress(0), bytes: [UInt8](repeating: 0x13, count: 256), flags: [.read, .execute]),
                                       CoreDump.Segment(name: "sram", deviceAddress: DeviceAddress(0x2000_0000), bytes: [UInt8](repeating: 0, count: 64), flags: [.read, .write])],
                            info: CoreDump.Info(reason: .crash, state: "x\n", console: ["hi"], trace: [], signal: 11))
        return CoreDumpFile.encode(dump)
    }

    @Test("a round trip keeps everything; truncations, flipped bytes and hostile sizes are typed errors, never a crash or a read outside the file")
    func mutations() throws {
        let bytes = try Self.sample()
        let dump = try CoreDumpFile.decode(bytes)
        #expect(dump.cpu?.programCounter == 0x100 && dump.segments.count == 2 && dump.info.console == ["hi"])
        #expect(dump.read(0x2000_0000 + 60, 4) == [0, 0, 0, 0] && dump.read(0x2000_0000 + 61, 4) == nil && dump.read(0x1000, 1) == nil)
        for length in stride(from: 0, to: bytes.count, by: 7) {
            #expect(throws: CoreDumpError.self) { try CoreDumpFile.decode(Array(bytes.prefix(length))) }
        }
        var random = SplitMix64(seed: 19)
        var refused = 0
        for _ in 0..<3000 {
            var mutated = bytes
            for _ in 0..<(1 + Int(random.next() % 4)) {
                let at = Int(random.next() % UInt64(min(mutated.count, 1200)))
                mutated[at] = random.next() % 3 == 0 ? 0xFF : UInt8(truncatingIfNeeded: random.next())
            }
            do { _ = try CoreDumpFile.decode(mutated) } catch { refused += 1 }
        }
        #expect(refused > 0)
    }

    @Test("the wrong kind of file is named for what it is: not ELF, a firmware executable, ELF64, another machine, a Linux core, a newer format, a FIFO")
    func wrongFiles() throws {
        func kind(_ bytes: [UInt8]) -> CoreDumpError.Kind? {
            do { _ = try CoreDumpFile.decode(bytes); return nil } catch { return error.kind }
        }
        let sample = try Self.sample()
        #expect({ if case .notELF = kind(Array("hello world, not an elf".utf8)) { true } else { false } }())
        let executable = ELFWriter.image(segments: [ELFWriter.Segment(address: 0, bytes: [1, 2, 3, 4])], entry: 0)
        #expect({ if case .notCore(2) = kind(executable) { true } else { false } }())
        var elf64 = sample
        elf64[4] = 2
        #expect({ if case .unsupported = kind(elf64) { true } else { false } }())
        var x86 = sample
        x86[18] = 62
        #expect({ if case .unsupported = kind(x86) { true } else { false } }())
        // A core with only a CORE note (as Linux writes).
        let linux = CoreDumpFile.encode(CoreDump(cpu: nil, segments: [], info: CoreDump.Info(reason: .crash, state: "", console: [], trace: [], signal: 11)))
            .replacingVendorNotes()
        #expect({ if case .notRprocSim = kind(linux) { true } else { false } }())
        var info = CoreDump.Info(reason: .crash, state: "", console: [], trace: [], signal: 11)
        info.format = 99
        #expect({ if case .newerFormat(99) = kind(CoreDumpFile.encode(CoreDump(cpu: nil, segments: [], info: info))) { true } else { false } }())
        let fifo = TestScratch.path("core.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(throws: CoreDumpError.self) { try CoreDumpFile.read(fifo) }
        #expect(throws: CoreDumpError.self) { try CoreDumpFile.read("/") }
    }
}

private extension Array where Element == UInt8 {
    /// The file with its RPROCSIM notes renamed (so it reads as somebody else's core).
    func replacingVendorNotes() -> [UInt8] {
        var out = self
        let name = Array("RPROCSIM".utf8)
        var i = 0
        while i + name.count <= out.count {
            if Array(out[i..<(i + name.count)]) == name { out.replaceSubrange(i..<(i + name.count), with: Array("LINUXCOR".utf8)) }
            i += 1
        }
        return out
    }
}
