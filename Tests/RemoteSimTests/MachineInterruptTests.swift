import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
@testable import RemoteSim
import RPMsg
import Synchronization
import Testing
import Virtio

/// A plain model of the machine CSRs, for trap entry without an engine.
private final class ModelCPU: MachineTrapCPU {
    var csrs: [MachineCSR: UInt32] = [:]
    func read(_ csr: MachineCSR) -> UInt32 { csrs[csr, default: 0] }
    func write(_ csr: MachineCSR, _ value: UInt32) throws(UnicornError) { csrs[csr] = value }
}

@Suite("RV32 machine-mode interrupts")
struct MachineInterruptTests {
    @Test("trap entry: mepc, mcause, mtval; MPIE takes MIE, MIE cleared, MPP = M; direct and vectored mtvec")
    func trapEntry() throws {
        let cpu = ModelCPU()
        cpu.csrs[.mtvec] = 0x100
        cpu.csrs[.mstatus] = MachineStatus.mie | 0x1800_0000
        cpu.csrs[.mtval] = 0x55
        #expect(try MachineTrap.enter(.interrupt(.timer), at: 0x1234, on: cpu) == 0x100)
        #expect(cpu.csrs[.mepc] == 0x1234)
        #expect(cpu.csrs[.mcause] == 0x8000_0007)
        #expect(cpu.csrs[.mtval] == 0)
        #expect(cpu.csrs[.mstatus] == MachineStatus.mpie | MachineStatus.mpp | 0x1800_0000, "other fields are kept")

        cpu.csrs[.mtvec] = 0x201                                      // vectored: interrupts at base + 4 × cause
        cpu.csrs[.mstatus] = 0
        #expect(try MachineTrap.enter(.interrupt(.external), at: 0x40, on: cpu) == 0x200 + 44)
        #expect(cpu.csrs[.mstatus] == MachineStatus.mpp, "MIE was clear: MPIE is clear")
        #expect(try MachineTrap.enter(.exception(.environmentCall, value: 0), at: 0x80, on: cpu) == 0x200, "exceptions go to the base")
        #expect(cpu.csrs[.mcause] == 11 && cpu.csrs[.mepc] == 0x80)
        #expect(try MachineTrap.enter(.exception(.loadAccessFault, value: 0xDEAD), at: 0x84, on: cpu) == 0x200)
        #expect(cpu.csrs[.mtval] == 0xDEAD)
    }

    @Test("trap entry without a handler (mtvec 0, or a reserved mode) is refused with the reason, the CPU untouched")
    func noHandler() {
        let cpu = ModelCPU()
        cpu.csrs[.mstatus] = MachineStatus.mie
        #expect(throws: MachineTrapError.self) { try MachineTrap.enter(.interrupt(.external), at: 4, on: cpu) }
        do { _ = try MachineTrap.enter(.interrupt(.external), at: 4, on: cpu) } catch {
            #expect("\(error)" == "machine external interrupt with no trap handler (mtvec = 0)")
        }
        cpu.csrs[.mtvec] = 0x102
        do { _ = try MachineTrap.enter(.exception(.environmentCall, value: 0), at: 4, on: cpu) } catch {
            #expect("\(error)".contains("mtvec mode 2, which is reserved"))
        }
        #expect(cpu.csrs[.mepc] == nil && cpu.csrs[.mstatus] == MachineStatus.mie)
    }

    @Test("CLINT: mtime counts the core clock; mtimecmp raises and lowers MTIP; msip is MSIP; writes of mtime and of single bytes")
    func clint() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let gate = EngineStopGate()
        let rate = try #require(CoreClockRate(hertz: 1_000_000))
        let clint = MachineInterrupts(rate: rate, mailbox: mailbox, inputs: InterruptInputs(gate: gate))
        let mtimeLow = MachineInterrupts.Register.mtimeLow.rawValue, cmpLow = MachineInterrupts.Register.mtimecmpLow.rawValue
        let cmpHigh = MachineInterrupts.Register.mtimecmpHigh.rawValue
        let t0 = clint.read(mtimeLow, size: 4)
        usleep(20_000)
        let t1 = clint.read(mtimeLow, size: 4)
        #expect(t1 - t0 >= 20_000 && t1 - t0 < 2_000_000, "1 MHz: 20 ms are at least 20,000 counts (\(t1 - t0))")
        #expect(clint.read(cmpLow, size: 4) == 0xFFFF_FFFF && clint.read(cmpHigh, size: 4) == 0xFFFF_FFFF)
        #expect(gate.pendingBits == 0)

        clint.write(cmpHigh, size: 4, 0)
        clint.write(cmpLow, size: 4, 0)                               // in the past: raised at once
        #expect(gate.pendingBits == MachineInterrupt.timer.bit)
        clint.write(cmpHigh, size: 4, 1)                               // 2³² µs away: lowered
        #expect(gate.pendingBits == 0)
        clint.write(MachineInterrupts.Register.mtimeHigh.rawValue, size: 4, 2)  // mtime jumps past it
        #expect(gate.pendingBits == MachineInterrupt.timer.bit)
        #expect(clint.read(MachineInterrupts.Register.mtimeHigh.rawValue, size: 4) == 2)
        clint.write(cmpHigh + 3, size: 1, 0x7F)                        // one byte: 0x7F00_0001
        #expect(clint.read(cmpHigh, size: 4) == 0x7F00_0001 && gate.pendingBits == 0)

        clint.write(0, size: 4, 1)
        #expect(gate.pendingBits == MachineInterrupt.software.bit && clint.read(0, size: 4) == 1)
        clint.write(0, size: 4, 0)
        #expect(gate.pendingBits == 0)

        mailbox.setExternalInterruptLine(clint.externalLine)
        mailbox.notify(NotifyID(2))
        #expect(gate.pendingBits == 0, "IRQ_ENABLE is 0 after reset: polling firmware raises nothing")
        mailbox.write(Mailbox.Register.irqEnable.rawValue, 1 << 3)
        #expect(gate.pendingBits == 0 && mailbox.read(Mailbox.Register.irqEnable.rawValue) == 1 << 3)
        mailbox.write(Mailbox.Register.irqEnable.rawValue, 1 << 2)
        #expect(gate.pendingBits == MachineInterrupt.external.bit, "PENDING & IRQ_ENABLE ≠ 0 is MEIP")
        mailbox.acknowledge(1 << 2)
        #expect(gate.pendingBits == 0, "ACK lowers it")
        mailbox.notify(NotifyID(2))
        mailbox.write(Mailbox.Register.irqEnable.rawValue, 0)
        #expect(gate.pendingBits == 0, "disabling lowers it")
        #expect(clint.read(0x20, size: 4) == 0, "unknown offsets read 0")
    }

    @Test("the deadline thread raises MTIP when mtime reaches mtimecmp, and ends when asked", .timeLimit(.minutes(1)))
    func deadline() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let gate = EngineStopGate()
        let clint = MachineInterrupts(rate: .default, mailbox: mailbox, inputs: InterruptInputs(gate: gate))
        let thread = try PlatformThread(name: "test-deadline") { clint.runDeadlines() }
        let due = clint.mtime + 100_000_000 / 50                      // 20 ms at 100 MHz
        clint.write(MachineInterrupts.Register.mtimecmpLow.rawValue, size: 4, due & 0xFFFF_FFFF)
        clint.write(MachineInterrupts.Register.mtimecmpHigh.rawValue, size: 4, due >> 32)
        #expect(gate.pendingBits == 0)
        #expect(waitUntil(.seconds(10)) { gate.pendingBits == MachineInterrupt.timer.bit })
        #expect(clint.mtime >= due)
        clint.end()
        thread.join()
    }
}
