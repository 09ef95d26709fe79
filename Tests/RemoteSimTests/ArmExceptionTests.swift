import Foundation
import MetalIO
@testable import RemoteSim
import Testing
import Virtio

/// A plain model of a Cortex-M CPU for exception entry and return without an engine: banked
/// stack pointers as the architecture (and Unicorn) bank them, and a word-addressed memory with
/// one mapped range.
private final class ModelArmCPU: ArmExceptionCPU {
    var registers: [ArmRegister: UInt32] = [.xpsr: 0x0100_0000]
    var memory: [UInt32: UInt32] = [:]
    var mapped: Range<UInt32> = 0x2000_0000..<0x2001_0000

    private var inHandler: Bool { registers[.xpsr, default: 0] & 0x1FF != 0 }
    private var spRegister: ArmRegister { !inHandler && registers[.control, default: 0] & 2 != 0 ? .psp : .msp }

    func read(_ register: ArmRegister) -> UInt32 { registers[register == .sp ? spRegister : register, default: 0] }
    func write(_ register: ArmRegister, _ value: UInt32) throws(UnicornError) {
        if register == .control && inHandler {
            registers[.control] = (value & ~2) | (registers[.control, default: 0] & 2)   // SPSEL ignored in Handler mode
        } else {
            registers[register == .sp ? spRegister : register] = value
        }
    }
    func load32(_ address: UInt32) -> UInt32? { mapped.contains(address) ? memory[address, default: 0] : nil }
    func store32(_ address: UInt32, _ value: UInt32) -> Bool {
        guard mapped.contains(address) else { return false }
        memory[address] = value
        return true
    }

    /// A vector table at `base` with a handler for each exception number given.
    func vectors(at base: UInt32, _ handlers: [Int: UInt32]) {
        for (number, handler) in handlers { memory[base + UInt32(number * 4)] = handler }
    }
}

/// An SCS with no mailbox traffic, its gate (what the block hook would see) and a CPU.
private func makeSCS(vtor: UInt32 = 0x2000_0000) throws -> (SystemControlSpace, EngineStopGate) {
    let mailbox = try Mailbox(hostInterrupts: .poll)
    let gate = EngineStopGate()
    let scs = SystemControlSpace(rate: .default, mailbox: mailbox, inputs: InterruptInputs(gate: gate),
                                 vectorTable: vtor)
    return (scs, gate)
}

private extension SystemControlSpace {
    func write32(_ offset: Int, _ value: UInt32) { write(offset, size: 4, UInt64(value)) }
    func read32(_ offset: Int) -> UInt32 { UInt32(read(offset, size: 4)) }
    func take(_ cpu: ModelArmCPU, ignoringPrimask: Bool = false) -> ArmException? {
        exceptionToTake(masks: ArmExceptionEntry.masks(of: cpu), ignoringPrimask: ignoringPrimask)
    }
}

@Suite("Cortex-M4 exception model")
struct ArmExceptionTests {
    @Test("entry from Thread mode on MSP: the 8-word frame 8-byte aligned with the padding in xPSR bit 9, EXC_RETURN 0xFFFFFFF9, IPSR, the handler through VTOR; the return restores every register, the IT state and SP")
    func entryAndReturnOnMainStack() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.vectors(at: 0x2000_0000, [16: 0x0000_0401])
        cpu.registers = [.r0: 10, .r1: 11, .r2: 12, .r3: 13, .r12: 112, .lr: 0x0000_0123, .msp: 0x2000_1004,
                         .xpsr: 0x6100_0400 | 0x0600_FC00 & 0x0600_0000]  // Z C flags, T, IT bits
        let xpsrBefore = cpu.registers[.xpsr]!
        scs.write32(SystemControlSpace.iser, 1)
        scs.write32(SystemControlSpace.ispr, 1)
        #expect(scs.take(cpu) == .irq(0))
        let handler = try ArmExceptionEntry.enter(.irq(0), returnAddress: 0x0000_0200, cpu: cpu, scs: scs)
        #expect(handler == 0x400)
        let frame: UInt32 = 0x2000_0FE0                                        // (0x2000_1004 − 32) with bit 2 cleared
        #expect(cpu.read(.msp) == frame)
        #expect((0..<8).map { cpu.memory[frame + UInt32($0 * 4)] } == [10, 11, 12, 13, 112, 0x123, 0x200, xpsrBefore | 0x200])
        #expect(cpu.read(.lr) == ArmExceptionReturn.threadMain.rawValue)
        #expect(cpu.read(.xpsr) == 0x6100_0010, "flags kept, IT cleared, T set, IPSR 16")
        #expect(scs.snapshot.isActive(.irq(0)) && !scs.snapshot.isPending(.irq(0), line: false))
        #expect(scs.read32(SystemControlSpace.iabr) == 1)
        #expect(scs.read32(SystemControlSpace.Register.icsr.rawValue) & 0x1FF == 16, "VECTACTIVE")

        for register in [ArmRegister.r0, .r1, .r2, .r3, .r12] { try cpu.write(register, 0xDEAD) }
        let outcome = try ArmExceptionEntry.returnFrom(ArmExceptionReturn.threadMain.rawValue, cpu: cpu, scs: scs)
        #expect(outcome == .returned(to: 0x200))
        #expect([cpu.read(.r0), cpu.read(.r1), cpu.read(.r2), cpu.read(.r3), cpu.read(.r12), cpu.read(.lr)] == [10, 11, 12, 13, 112, 0x123])
        #expect(cpu.read(.msp) == 0x2000_1004, "the padding word is taken back")
        #expect(cpu.read(.xpsr) == xpsrBefore, "IT state and flags restored")
        #expect(scs.snapshot.activeExceptions.isEmpty && scs.snapshot.current == 0)
    }

    @Test("entry from Thread mode on PSP stacks on PSP, runs the handler on MSP and returns EXC_RETURN 0xFFFFFFFD, which brings PSP back; nested entry from Handler mode returns 0xFFFFFFF1")
    func processStackAndNesting() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.vectors(at: 0x2000_0000, [15: 0x501, 16: 0x601])
        cpu.registers = [.msp: 0x2000_8000, .psp: 0x2000_4000, .control: 2, .xpsr: 0x0100_0000, .r0: 1]
        #expect(cpu.read(.sp) == 0x2000_4000)
        scs.write32(SystemControlSpace.Register.shpr3.rawValue, 0x8000_0000)  // SysTick priority 0x80
        scs.write32(SystemControlSpace.ipr.lowerBound, 0x40)                  // IRQ 0 priority 0x40
        scs.write32(SystemControlSpace.iser, 1)
        scs.write32(SystemControlSpace.Register.icsr.rawValue, SystemControlSpace.ICSR.pendSTSet)
        #expect(scs.take(cpu) == .sysTick)
        #expect(try ArmExceptionEntry.enter(.sysTick, returnAddress: 0x100, cpu: cpu, scs: scs) == 0x500)
        #expect(cpu.read(.psp) == 0x2000_3FE0 && cpu.read(.msp) == 0x2000_8000)
        #expect(cpu.read(.lr) == ArmExceptionReturn.threadProcess.rawValue)
        #expect(cpu.read(.control) & 2 == 0 && cpu.read(.sp) == 0x2000_8000, "Handler mode runs on MSP")

        // IRQ 0 (0x40) preempts SysTick (0x80).
        scs.write32(SystemControlSpace.ispr, 1)
        #expect(scs.take(cpu) == .irq(0))
        try cpu.write(.r0, 2)
        #expect(try ArmExceptionEntry.enter(.irq(0), returnAddress: 0x520, cpu: cpu, scs: scs) == 0x600)
        #expect(cpu.read(.lr) == ArmExceptionReturn.handler.rawValue)
        #expect(cpu.read(.msp) == 0x2000_7FE0)
        #expect(scs.read32(SystemControlSpace.Register.icsr.rawValue) & SystemControlSpace.ICSR.retToBase == 0, "two active")

        #expect(try ArmExceptionEntry.returnFrom(ArmExceptionReturn.handler.rawValue, cpu: cpu, scs: scs) == .returned(to: 0x520))
        #expect(cpu.read(.xpsr) & 0x1FF == 15 && cpu.read(.r0) == 2 && cpu.read(.msp) == 0x2000_8000)
        #expect(try ArmExceptionEntry.returnFrom(ArmExceptionReturn.threadProcess.rawValue, cpu: cpu, scs: scs) == .returned(to: 0x100))
        #expect(cpu.read(.psp) == 0x2000_4000 && cpu.read(.control) & 2 != 0 && cpu.read(.sp) == 0x2000_4000 && cpu.read(.r0) == 1)
    }

    @Test("priorities: a more urgent interrupt preempts, an equal one waits; subpriority orders what waits; PRIGROUP splits the byte; fixed priorities beat all")
    func priorities() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.vectors(at: 0x2000_0000, [16: 0x101, 17: 0x201, 18: 0x301, 19: 0x401, 2: 0x801])
        cpu.registers = [.msp: 0x2000_8000, .xpsr: 0x0100_0000]
        scs.write32(SystemControlSpace.iser, 0xF)
        scs.write(SystemControlSpace.ipr.lowerBound + 1, size: 1, 0x4F)          // IRQ 1: 0x4F → 0x40 (4 bits)
        scs.write(SystemControlSpace.ipr.lowerBound + 2, size: 1, 0x40)          // IRQ 2: 0x40
        scs.write(SystemControlSpace.ipr.lowerBound + 3, size: 1, 0x20)          // IRQ 3: 0x20
        #expect(scs.read32(SystemControlSpace.ipr.lowerBound) == 0x2040_4000, "the low four bits read as zero")
        scs.write32(SystemControlSpace.ispr, 1 << 2 | 1 << 1)
        #expect(scs.take(cpu) == .irq(1), "equal priority: the lower number first")
        _ = try ArmExceptionEntry.enter(.irq(1), returnAddress: 0x10, cpu: cpu, scs: scs)
        #expect(scs.take(cpu) == nil, "IRQ 2 has the same priority: it does not preempt")
        scs.write32(SystemControlSpace.ispr, 1 << 3)
        #expect(scs.take(cpu) == .irq(3), "0x20 preempts 0x40")
        scs.write32(SystemControlSpace.icpr, 1 << 3)
        #expect(scs.read32(SystemControlSpace.Register.icsr.rawValue) >> 12 & 0x1FF == 18, "VECTPENDING: IRQ 2")
        scs.write32(SystemControlSpace.Register.icsr.rawValue, SystemControlSpace.ICSR.nmiPendSet)
        #expect(scs.take(cpu) == .nmi, "NMI (−2) beats everything")
        _ = try ArmExceptionEntry.returnFrom(0xFFFF_FFF9, cpu: cpu, scs: scs)  // tail-chains into NMI
        scs.withState { s in
            s.setActive(.nmi, false)
            s.current = 0
        }

        // PRIGROUP 5: group priority bits [7:6], subpriority [5:0].
        scs.write32(SystemControlSpace.Register.aircr.rawValue, 0x05FA_0000 | 5 << 8)
        #expect(scs.read32(SystemControlSpace.Register.aircr.rawValue) == 0xFA05_0500)
        scs.write32(SystemControlSpace.icpr, 0xF)
        scs.write(SystemControlSpace.ipr.lowerBound + 1, size: 1, 0x50)          // group 0x40, sub 0x10
        scs.write(SystemControlSpace.ipr.lowerBound + 2, size: 1, 0x40)          // group 0x40, sub 0x00
        scs.write32(SystemControlSpace.ispr, 1 << 1 | 1 << 2)
        #expect(scs.take(cpu) == .irq(2), "same group: the smaller subpriority first")
        _ = try ArmExceptionEntry.enter(.irq(2), returnAddress: 0x10, cpu: cpu, scs: scs)
        #expect(scs.take(cpu) == nil, "same group priority never preempts, whatever the subpriority")
        scs.write32(0xD0C, 0x1234_0000 | 7 << 8)                                 // wrong VECTKEY: ignored
        #expect(scs.read32(SystemControlSpace.Register.aircr.rawValue) == 0xFA05_0500)
    }

    @Test("masking: PRIMASK holds everything configurable, BASEPRI what is not more urgent than it, FAULTMASK all but NMI; WFI still wakes on what PRIMASK holds; the block hook sees the same")
    func masking() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.registers = [.msp: 0x2000_8000, .xpsr: 0x0100_0000]
        scs.write32(SystemControlSpace.iser, 0x3)
        scs.write(SystemControlSpace.ipr.lowerBound, size: 1, 0x60)
        scs.write(SystemControlSpace.ipr.lowerBound + 1, size: 1, 0x20)
        scs.write32(SystemControlSpace.ispr, 1)
        cpu.registers[.primask] = 1
        #expect(scs.take(cpu) == nil)
        #expect(scs.take(cpu, ignoringPrimask: true) == .irq(0), "what wakes WFI")
        cpu.registers[.primask] = 0
        cpu.registers[.basepri] = 0x60
        #expect(scs.take(cpu) == nil, "BASEPRI 0x60 holds priority 0x60")
        scs.write32(SystemControlSpace.ispr, 2)
        #expect(scs.take(cpu) == .irq(1), "0x20 is more urgent than BASEPRI")
        cpu.registers[.basepri] = 0x65                                            // the unimplemented bits do not count
        scs.write32(SystemControlSpace.icpr, 2)
        #expect(scs.take(cpu) == nil)
        cpu.registers[.basepri] = 0
        cpu.registers[.faultmask] = 1
        #expect(scs.take(cpu) == nil)
        scs.write32(SystemControlSpace.Register.icsr.rawValue, SystemControlSpace.ICSR.nmiPendSet)
        #expect(scs.take(cpu) == .nmi)
        scs.write32(SystemControlSpace.icer, 0x3)
        scs.withState { $0.setPending(.nmi, false) }
        #expect(scs.take(cpu, ignoringPrimask: true) == nil, "a disabled interrupt wakes nothing")
    }

    @Test("the block hook's view: the most urgent pending priority, IRQ 0's line priority while enabled, the active priority, the group mask")
    func publishedPriorities() throws {
        let (scs, gate) = try makeSCS()
        #expect(gate.priorities == (.max, .max, 256, 0xF0))
        scs.write32(SystemControlSpace.iser, 1)
        scs.write(SystemControlSpace.ipr.lowerBound, size: 1, 0x30)
        #expect(gate.priorities.line == 0x30)
        scs.write32(SystemControlSpace.Register.shpr3.rawValue, 0xC000_0000)
        scs.write32(SystemControlSpace.Register.icsr.rawValue, SystemControlSpace.ICSR.pendSTSet)
        #expect(gate.priorities.pending == 0xC0)
        scs.withState { $0.setActive(.svCall, true) }
        #expect(gate.priorities.active == 0)
        scs.write32(SystemControlSpace.Register.aircr.rawValue, 0x05FA_0000 | 6 << 8)
        #expect(gate.priorities.groupMask == 0x80)
    }

    @Test("tail-chaining: a return with a pending exception that preempts what it returns to enters it on the same frame, LR unchanged; one that does not wait is left pending")
    func tailChaining() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.vectors(at: 0x2000_0000, [14: 0x701, 16: 0x101])
        cpu.registers = [.msp: 0x2000_8000, .xpsr: 0x0100_0000, .r0: 7]
        scs.write32(SystemControlSpace.iser, 1)
        scs.write32(SystemControlSpace.Register.shpr3.rawValue, 0x00F0_0000)     // PendSV lowest
        scs.write32(SystemControlSpace.ispr, 1)
        _ = try ArmExceptionEntry.enter(.irq(0), returnAddress: 0x42, cpu: cpu, scs: scs)
        scs.write32(SystemControlSpace.Register.icsr.rawValue, SystemControlSpace.ICSR.pendSVSet)
        #expect(scs.take(cpu) == nil, "PendSV (0xF0) does not preempt IRQ 0 (0x00)")
        try cpu.write(.r0, 99)
        let outcome = try ArmExceptionEntry.returnFrom(0xFFFF_FFF9, cpu: cpu, scs: scs)
        #expect(outcome == .tailChained(.pendSV, handler: 0x700))
        #expect(cpu.read(.msp) == 0x2000_7FE0, "the frame stays")
        #expect(cpu.read(.lr) == 0xFFFF_FFF9 && cpu.read(.xpsr) & 0x1FF == 14 && cpu.read(.r0) == 99)
        #expect(scs.snapshot.activeExceptions == [.pendSV])
        #expect(try ArmExceptionEntry.returnFrom(0xFFFF_FFF9, cpu: cpu, scs: scs) == .returned(to: 0x42))
        #expect(cpu.read(.r0) == 7 && cpu.read(.msp) == 0x2000_8000)
    }

    @Test("SVC is taken when its priority preempts; at or below the execution priority (or under PRIMASK) it would escalate, and says so")
    func supervisorCall() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.vectors(at: 0x2000_0000, [11: 0x301])
        cpu.registers = [.msp: 0x2000_8000, .xpsr: 0x0100_0000]
        scs.write32(SystemControlSpace.Register.shpr2.rawValue, 0x8000_0000)     // SVCall 0x80
        #expect(try ArmExceptionEntry.enterSynchronous(.svCall, returnAddress: 0x22, cpu: cpu, scs: scs) == 0x300)
        #expect(cpu.memory[0x2000_7FE0 + 24] == 0x22, "returns past the svc")
        _ = try ArmExceptionEntry.returnFrom(0xFFFF_FFF9, cpu: cpu, scs: scs)
        cpu.registers[.primask] = 1
        do {
            _ = try ArmExceptionEntry.enterSynchronous(.svCall, returnAddress: 0x22, cpu: cpu, scs: scs)
            Issue.record("SVC under PRIMASK was taken")
        } catch {
            #expect("\(error)" == "SVCall at priority 128 cannot be taken at execution priority 0 (it escalates to HardFault)")
        }
        #expect(cpu.read(.msp) == 0x2000_8000, "nothing pushed")
    }

    @Test("bad entries: no handler (vector 0), a vector without the Thumb bit, VTOR outside memory, a stack that overflows into unmapped memory — each named, the CPU untouched")
    func badEntries() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.vectors(at: 0x2000_0000, [17: 0x400])
        cpu.registers = [.msp: 0x2000_8000, .xpsr: 0x0100_0000, .lr: 0x55]
        let before = cpu.registers
        func failure(_ exception: ArmException) -> String {
            do {
                _ = try ArmExceptionEntry.enter(exception, returnAddress: 0x10, cpu: cpu, scs: scs)
                return "entered"
            } catch { return "\(error)" }
        }
        #expect(failure(.irq(0)) == "no handler for IRQ 0 (mailbox): its vector at 0x2000_0040 is 0")
        #expect(failure(.irq(1)) == "the vector of IRQ 1 at 0x2000_0044 holds 0x0000_0400, not a Thumb address (bit 0 clear)")
        scs.write32(SystemControlSpace.Register.vtor.rawValue, 0x3000_0000)
        #expect(failure(.irq(1)) == "the vector of IRQ 1 at 0x3000_0044 cannot be read (VTOR points outside memory)")
        #expect(scs.read32(SystemControlSpace.Register.vtor.rawValue) == 0x3000_0000)
        scs.write32(SystemControlSpace.Register.vtor.rawValue, 0x2000_0000)
        cpu.vectors(at: 0x2000_0000, [17: 0x401])
        cpu.registers[.msp] = 0x2000_0010                                        // the frame would start below memory
        #expect(failure(.irq(1)) == "IRQ 1 could not push its exception frame at 0x1fff_fff0 (stack overflow into unmapped memory)")
        cpu.registers[.msp] = before[.msp]
        #expect(cpu.registers == before && scs.snapshot.activeExceptions.isEmpty)
    }

    @Test("bad returns: EXC_RETURN in Thread mode, a value that is none of the three, to Handler with nothing else active, to Thread with more active, a frame in unmapped memory, a frame without the Thumb bit, a frame whose IPSR contradicts the mode")
    func badReturns() throws {
        let (scs, _) = try makeSCS()
        let cpu = ModelArmCPU()
        cpu.vectors(at: 0x2000_0000, [16: 0x101, 17: 0x201])
        cpu.registers = [.msp: 0x2000_8000, .xpsr: 0x0100_0000]
        func failure(_ value: UInt32) -> String {
            do {
                _ = try ArmExceptionEntry.returnFrom(value, cpu: cpu, scs: scs)
                return "returned"
            } catch { return "\(error)" }
        }
        #expect(failure(0xFFFF_FFF9) == "bad exception return from UsageFault: EXC_RETURN 0xffff_fff9 in Thread mode, with no exception active")
        scs.write32(SystemControlSpace.iser, 3)
        scs.write32(SystemControlSpace.ispr, 1)
        _ = try ArmExceptionEntry.enter(.irq(0), returnAddress: 0x10, cpu: cpu, scs: scs)
        #expect(failure(0xFFFF_FFE9).hasSuffix("EXC_RETURN 0xffff_ffe9 is not one of 0xFFFFFFF1, 0xFFFFFFF9, 0xFFFFFFFD"))
        #expect(failure(0xFFFF_FFF1).hasSuffix("returns to Handler mode with no other exception active"))
        #expect(failure(0xFFFF_FFFD) == "the return from IRQ 0 (mailbox) could not pop its exception frame at 0x0000_0000", "PSP 0: no frame there")
        let frame = cpu.read(.msp)
        cpu.memory[frame + 28] = 0                                               // stacked xPSR without T
        #expect(failure(0xFFFF_FFF9).contains("with the Thumb bit clear"))
        cpu.memory[frame + 28] = 0x0100_0005                                     // IPSR 5 for a Thread return
        #expect(failure(0xFFFF_FFF9).hasSuffix("returns to Thread mode but the frame's IPSR is 5"))
        cpu.memory[frame + 28] = 0x0100_0000
        scs.write32(SystemControlSpace.ipr.lowerBound + 1, 0)
        scs.write32(SystemControlSpace.ipr.lowerBound, 0x10)
        scs.write32(SystemControlSpace.ispr, 2)
        _ = try ArmExceptionEntry.enter(.irq(1), returnAddress: 0x110, cpu: cpu, scs: scs)
        #expect(failure(0xFFFF_FFF9).hasSuffix("returns to Thread mode with IRQ 0 (mailbox) still active"))
        let nested = cpu.read(.msp)
        cpu.memory[nested + 28] = 0x0100_0019                                    // IPSR 25: not active
        #expect(failure(0xFFFF_FFF1).hasSuffix("returns to Handler mode but the frame's IPSR is 25, which is not an active exception"))
        cpu.memory[nested + 28] = 0x0100_0010
        #expect(scs.snapshot.activeExceptions == [.irq(0), .irq(1)], "a refused return changes nothing")
    }

    @Test("NVIC and SCB registers: enable, pend and clear; IABR; SHPR and SHCSR; ICSR; CPUID, VTOR, CCR, CFSR write-one-to-clear, STIR, CALIB; IRQ 0 is the mailbox's level; unknown offsets read 0")
    func registers() throws {
        let mailbox = try Mailbox(hostInterrupts: .poll)
        let gate = EngineStopGate()
        let scs = SystemControlSpace(rate: .default, mailbox: mailbox, inputs: InterruptInputs(gate: gate),
                                     vectorTable: 0)
        typealias R = SystemControlSpace.Register
        #expect(scs.read32(R.cpuid.rawValue) == 0x410F_C241)
        #expect(scs.read32(R.ccr.rawValue) == 0x200, "STKALIGN out of reset")
        #expect(scs.read32(R.ictr.rawValue) == 0, "32 interrupt lines")
        scs.write32(SystemControlSpace.iser, 0x8000_0005)
        scs.write32(SystemControlSpace.iser, 0x2)
        #expect(scs.read32(SystemControlSpace.iser) == 0x8000_0007 && scs.read32(SystemControlSpace.icer) == 0x8000_0007)
        scs.write32(SystemControlSpace.icer, 0x8000_0001)
        #expect(scs.read32(SystemControlSpace.iser) == 0x6)
        scs.write(SystemControlSpace.ispr + 1, size: 1, 0x01)                    // IRQ 8, one byte
        #expect(scs.read32(SystemControlSpace.ispr) == 0x100 && scs.read32(SystemControlSpace.icpr) == 0x100)
        scs.write32(SystemControlSpace.icpr, 0x100)
        #expect(scs.read32(SystemControlSpace.ispr) == 0)
        scs.write32(R.stir.rawValue, 5)
        #expect(scs.read32(SystemControlSpace.ispr) == 1 << 5)
        scs.write32(R.stir.rawValue, 200)                                         // no such line: ignored
        #expect(scs.read32(SystemControlSpace.ispr) == 1 << 5)
        #expect(scs.read32(SystemControlSpace.iser + 4) == 0 && scs.read32(SystemControlSpace.ispr + 4) == 0, "lines 32+ do not exist")
        #expect(scs.read32(R.icsr.rawValue) & SystemControlSpace.ICSR.isrPending == 0, "IRQ 5 is pending but not enabled")

        scs.write32(R.shpr2.rawValue, 0xFFFF_FFFF)
        scs.write32(R.shpr3.rawValue, 0x8012_3456)
        #expect(scs.read32(R.shpr2.rawValue) == 0xF000_0000, "only SVCall's byte exists in SHPR2")
        #expect(scs.read32(R.shpr3.rawValue) == 0x8010_0050, "DebugMonitor, reserved 13, PendSV, SysTick")
        scs.write32(R.shcsr.rawValue, 0x7 << 16)
        #expect(scs.read32(R.shcsr.rawValue) == 0x7 << 16)
        scs.write32(R.icsr.rawValue, SystemControlSpace.ICSR.pendSVSet | SystemControlSpace.ICSR.pendSTSet)
        #expect(scs.read32(R.icsr.rawValue) & (SystemControlSpace.ICSR.pendSVSet | SystemControlSpace.ICSR.pendSTSet) != 0)
        #expect(scs.read32(R.icsr.rawValue) >> 12 & 0x1FF == 14, "PendSV (0x10) before SysTick (0x80)")
        scs.write32(R.icsr.rawValue, SystemControlSpace.ICSR.pendSVClear | SystemControlSpace.ICSR.pendSTClear)
        #expect(scs.read32(R.icsr.rawValue) & 0x1F_F000 == 0)
        #expect(scs.read32(R.icsr.rawValue) & SystemControlSpace.ICSR.retToBase != 0, "nothing active")

        scs.write32(R.vtor.rawValue, 0x0000_12FF)
        #expect(scs.read32(R.vtor.rawValue) == 0x1280, "TBLOFF: 128-byte aligned")
        scs.withState { $0.cfsr = 0x0000_8200 }
        scs.write32(R.cfsr.rawValue, 0x200)
        #expect(scs.read32(R.cfsr.rawValue) == 0x8000, "write one to clear")
        #expect(scs.read32(R.systCALIB.rawValue) == 0x8000_0000 | 999_999, "NOREF, 10 ms = 1,000,000 cycles at 100 MHz")
        #expect(scs.read32(0x0F0) == 0 && scs.read32(0xE00) == 0)

        // IRQ 0 follows the mailbox: PENDING & IRQ_ENABLE ≠ 0.
        mailbox.setExternalInterruptLine(scs.externalLine)
        mailbox.write(Mailbox.Register.irqEnable.rawValue, 0xFFFF_FFFF)
        #expect(scs.read32(SystemControlSpace.ispr) & 1 == 0)
        mailbox.notify(NotifyID(1))
        #expect(scs.read32(SystemControlSpace.ispr) & 1 == 1 && gate.pendingBits == 1)
        scs.write32(SystemControlSpace.icpr, 1)
        #expect(scs.read32(SystemControlSpace.ispr) & 1 == 1, "a level: clearing does not lower the line")
        mailbox.acknowledge(1 << 1)
        #expect(scs.read32(SystemControlSpace.ispr) & 1 == 0 && gate.pendingBits == 0, "ACK lowers it")
    }

    @Test("SysTick: counts down from RVR at the core clock, reloads, sets COUNTFLAG (cleared by reading CSR or writing CVR), pends at each zero with TICKINT; RVR 0 stops it after the next zero")
    func sysTickCounting() {
        var tick = SysTick()
        func caught(_ cycle: UInt64) -> Bool { tick.catchUp(at: cycle) }
        tick.writeReload(99, at: 0)
        tick.clearCurrent(at: 0)
        tick.writeControl(3, at: 0)
        #expect(tick.value(at: 0) == 0 && tick.value(at: 1) == 99 && tick.value(at: 50) == 50 && tick.value(at: 100) == 0)
        #expect(tick.value(at: 101) == 99)
        #expect(tick.nextZero(after: 0) == 100 && tick.nextZero(after: 100) == 200 && tick.nextZero(after: 150) == 200)
        #expect(!caught(99))
        #expect(caught(100) && tick.countFlag)
        #expect(!caught(150), "one zero counts once")
        #expect(caught(1_000), "many zeros while nobody looked pend once")
        let first = tick.readControl(), second = tick.readControl()
        #expect(first & 1 << 16 != 0 && second & 1 << 16 == 0, "a read clears COUNTFLAG")
        tick.writeControl(1, at: 1_050)                                           // TICKINT off: counts, no pend
        #expect(!caught(1_100) && tick.countFlag)
        tick.writeControl(0, at: 1_120)                                           // stopped: frozen
        #expect(tick.value(at: 5_000) == tick.value(at: 1_120) && tick.nextZero(after: 5_000) == nil)
        tick.writeReload(0, at: 6_000)
        tick.writeControl(3, at: 6_000)
        let frozen = tick.value(at: 6_000)
        #expect(tick.nextZero(after: 6_000) == 6_000 + UInt64(frozen))
        #expect(caught(6_000 + UInt64(frozen)) && tick.value(at: 9_999_999) == 0 && tick.nextZero(after: 9_999_999) == nil,
                "RVR 0: it stays at zero")
        #expect(SysTick.calibration(CoreClockRate(hertz: 1_000)!) == 0x8000_0009)
        #expect(SysTick.calibration(CoreClockRate(hertz: 1_000_000_000)!) == 0x8000_0000 | 9_999_999)
        #expect(SysTick.calibration(CoreClockRate(hertz: 32_768)!) == 0xC000_0000 | 326, "10 ms is not a whole number of cycles: SKEW")
    }

    @Test("the deadline thread pends SysTick when the counter reaches zero, and ends when asked", .timeLimit(.minutes(1)))
    func sysTickDeadline() throws {
        let (scs, gate) = try makeSCS()
        let thread = try PlatformThread(name: "test-systick") { scs.runDeadlines() }
        typealias R = SystemControlSpace.Register
        scs.write32(R.shpr3.rawValue, 0x4000_0000)
        scs.write32(R.systRVR.rawValue, 2_000_000 - 1)                            // 20 ms at 100 MHz
        scs.write32(R.systCVR.rawValue, 0)
        scs.write32(R.systCSR.rawValue, 3)
        #expect(gate.priorities.pending == .max)
        #expect(waitUntil(.seconds(10)) { gate.priorities.pending == 0x40 })
        #expect(scs.read32(R.systCSR.rawValue) & 1 << 16 != 0)
        scs.end()
        thread.join()
    }
}
