import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import Testing

/// gdb-multiarch inside an interrupt handler: the backtrace through the exception frame, the
/// registers interrupts are about, `monitor irq`.
@Suite("GDB inside interrupt handlers", .serialized)
struct GDBInterruptTests {
    @Test("a breakpoint in the mailbox ISR: bt shows the interrupted code below the exception frame; xPSR/IPSR, MSP, PSP, PRIMASK, CONTROL (Cortex-M4) or mcause, mepc, mstatus (RV32); monitor irq lists the mailbox interrupt",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func insideTheMailboxInterrupt(architecture: FirmwareArchitecture) throws {
        let (elf, server, _, processor) = try debuggedBoard("irq-echo", architecture)
        defer { server.shutdown(); try? processor.shutdown() }
        let rpmsg = try #require(try processor.makeHostRPMsg())
        // Once the firmware announced its service and sleeps, a message makes the mailbox interrupt.
        let host = Thread(block: {
            guard waitUntil(.seconds(60), { !rpmsg.announcedServices.isEmpty }), let address = rpmsg.announcedServices.first?.address,
                  let client = try? rpmsg.createEndpoint(destination: address, onReceive: { _ in }) else { return }
            usleep(100_000)
            try? client.send(Array("wake".utf8), timeout: .seconds(5))
        })
        host.start()
        let registers = architecture == .cortexM4 ? "info registers xpsr msp psp primask basepri faultmask control"
                                                  : "info registers mcause mepc mstatus mie mip mtvec"
        let output = try runGDB(elf: elf.path, port: server.port, commands: [
            "break rsim_irq_on_mailbox", "continue", "bt", registers, "monitor irq", "delete", "detach",
        ])
        #expect(output.range(of: #"Breakpoint 1(\.\d)?, rsim_irq_on_mailbox \(pending=\d+\)"#, options: .regularExpression) != nil, "\(output)")
        #expect(output.contains("main ("), "bt reaches the interrupted main loop: \(output)")
        switch architecture {
        case .cortexM4:
            #expect(output.contains("<signal handler called>"), "gdb unwinds the exception frame: \(output)")
            #expect(output.range(of: #"xpsr\s+0x[0-9a-f]*10\s"#, options: .regularExpression) != nil, "IPSR 16, IRQ 0: \(output)")
            #expect(output.range(of: #"msp\s+0x2"#, options: .regularExpression) != nil, "\(output)")
            #expect(output.contains("primask") && output.contains("control"), "\(output)")
            #expect(output.range(of: #"IRQ 0 \(mailbox\)\s+yes\s+\w+\s+yes"#, options: .regularExpression) != nil, "enabled, active: \(output)")
        case .rv32:
            #expect(output.range(of: #"mcause\s+0x8000000b"#, options: .regularExpression) != nil, "machine external interrupt: \(output)")
            #expect(output.contains("mepc") && output.contains("mstatus"), "\(output)")
            #expect(output.contains("RV32 machine-mode interrupts"), "\(output)")
        }
    }
}
