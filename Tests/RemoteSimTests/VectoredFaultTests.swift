import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
@testable import RemoteSim
import RPMsg
import Testing

/// `faults: vectored`: the fault-handler program's own handlers on both cores.
@Suite("Vectored faults")
struct VectoredFaultTests {
    /// The fault-handler program on a board with vectored faults, and a client of its "fault" service.
    private func faultBoard(_ architecture: FirmwareArchitecture) throws -> (Board, RemoteProcessor, EchoClient) {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "fault-handler", architecture: architecture)
        let board = try Board(firmware: EmulatedCPU(architecture.cpu, faults: .vectored))
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        return (board, processor, try EchoClient(board: board, processor: processor, service: "fault"))
    }

    private func ask(_ client: EchoClient, _ text: String) throws -> String {
        String(decoding: try client.ask(Array(text.utf8)) ?? [], as: UTF8.self)
    }

    @Test("the handler sees what the hardware recorded and recovers: a bus error (CFSR PRECISERR, BFAR; mcause 5, mtval), an undefined instruction (UNDEFINSTR; mcause 2), a disabled BusFault escalated to HardFault (HFSR.FORCED); the firmware keeps serving",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func recovered(architecture: FirmwareArchitecture) throws {
        let (board, processor, client) = try faultBoard(architecture)
        defer { try? processor.shutdown() }
        switch architecture {
        case .cortexM4:
            #expect(try ask(client, "read") == "read busfault cfsr 0x8200 bfar 0xdeadbeef")
            #expect(try ask(client, "undef") == "undef usagefault cfsr 0x10000")
            #expect(try ask(client, "forced") == "forced hardfault hfsr 0x40000000 cfsr 0x8200")
            #expect(try ask(client, "read") == "read busfault cfsr 0x8200 bfar 0xdeadbeef", "CFSR was cleared by the handler")
        case .rv32:
            #expect(try ask(client, "read") == "read mcause 5 mtval 0xdeadbeef")
            #expect(try ask(client, "undef") == "undef mcause 2 mtval 0x0")
            #expect(try ask(client, "read") == "read mcause 5 mtval 0xdeadbeef")
        }
        #expect(processor.state == .running)
        let traps = board.trace.events.compactMap { if case let .trap(entry) = $0.kind { entry.name } else { nil } }
        let first = try #require(traps.first { $0.contains("unmapped") || $0.contains("access fault") })
        #expect(architecture == .rv32 ? first == "load access fault" : first.hasPrefix("BusFault (read from unmapped memory at"), "\(traps)")
        // The trace has the handlers' returns.
        let returns = board.trace.events.compactMap { if case let .trapReturn(exit) = $0.kind { exit.cause } else { nil } }
        #expect(returns.contains(architecture == .rv32 ? "load access fault" : "BusFault"), "\(returns)")
    }

    @Test("a handler that gives up is a crash naming the original fault: it PANICs, resets through AIRCR, never returns (1 s of core time), or faults itself (a lockup); a corrupt EXC_RETURN is a UsageFault",
          .timeLimit(.minutes(3)), arguments: FirmwareArchitecture.allCases)
    func givingUp(architecture: FirmwareArchitecture) throws {
        var cases: [(String, CrashReport.Kind, String)] = [
            ("panic", .panic, "firmware panic, in the firmware's handler of: "),
            ("hang", .fault, "the firmware's fault handler did not return within 1.0 seconds of core time after: "),
            ("lockup", .fault, "lockup: "),
        ]
        if architecture == .cortexM4 {
            cases.append(("reset", .fault, "the firmware requested a system reset (AIRCR.SYSRESETREQ), in the firmware's handler of: "))
            cases.append(("badreturn", .panic, "firmware panic, in the firmware's handler of: bad exception return from IRQ 1: EXC_RETURN 0xffff_ffe5"))
        }
        for (action, kind, message) in cases {
            let (board, processor, client) = try faultBoard(architecture)
            defer { try? processor.shutdown() }
            try client.sendOnly(Array(action.utf8))
            #expect(waitUntil(.seconds(20)) { processor.state == .crashed }, "\(action): \(processor.state)")
            let report = try #require(processor.crashReport, "\(action)")
            #expect(report.kind == kind, "\(action): \(report)")
            #expect(report.message.hasPrefix(message), "\(action): \(report.message)")
            if action != "badreturn" {
                #expect(report.message.contains("0xdead_beef") || report.message.contains("0xdeadbeef"), "\(action) names the load: \(report.message)")
            }
            if action == "panic" || action == "badreturn" { #expect(report.code == 0xFA17) }
            // The core dump of a vectored fault that ended in a crash says so, with the registers where the core stood.
            let dump = try board.coreDump()
            #expect(dump.info.crash?.message == report.message && dump.info.crash?.kind == kind.rawValue, "\(action)")
            #expect(dump.cpu.map { UInt64($0.programCounter) < UInt64(board.layout.code.size) } == true, "\(action)")
        }
    }
}
