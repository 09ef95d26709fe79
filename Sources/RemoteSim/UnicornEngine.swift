import CUnicorn
import MetalIO
import Synchronization

/// The CPU architectures the board can emulate.
public enum CPUArchitecture: String, Sendable, Hashable, CaseIterable {
    /// Arm Cortex-M4 (Thumb-2), started from the vector table at 0.
    case cortexM4 = "cortex-m4"
    /// RISC-V RV32IMAC, started at the ELF entry point.
    case rv32
}

/// A Unicorn call that failed. The corresponding C type is `uc_err`.
public struct UnicornError: Error, Sendable, CustomStringConvertible {
    public var code: UInt32
    public var operation: String
    public var description: String { "\(operation): \(String(cString: uc_strerror(uc_err(rawValue: code)))) (uc_err \(code))" }
}

/// Why an emulated CPU stopped on its own.
public struct CPUFault: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case unmappedRead, unmappedWrite, unmappedFetch
        case protectedRead, protectedWrite, protectedFetch
        case illegalInstruction
        /// RV32 `ecall` and `ebreak`: traps the firmware handles itself when it has a trap vector.
        case environmentCall, breakpoint
        /// Cortex-M `svc`: the SVCall exception (the PC is past the instruction).
        case supervisorCall
        /// Cortex-M: a branch to an EXC_RETURN value (`address`), which the board performs.
        case exceptionReturn
        /// A CPU exception Unicorn does not deliver into the firmware (ARM: 1 UDEF, 2 SVC,
        /// 3 prefetch abort, 4 data abort, 7 BKPT, …; RISC-V: the trap cause).
        case exception(UInt32)
        /// Anything else Unicorn reported.
        case other(String)
    }
    public var kind: Kind
    /// The address accessed, for memory faults.
    public var address: UInt64?
    public var programCounter: UInt64
    /// Register name → value at the fault.
    public var registers: [String: UInt64]

    /// What went wrong, without where (the crash report gives the address and PC).
    public var summary: String {
        let what: String
        switch kind {
        case .unmappedRead: what = "read from unmapped memory"
        case .unmappedWrite: what = "write to unmapped memory"
        case .unmappedFetch: what = "instruction fetch from unmapped memory"
        case .protectedRead: what = "read from protected memory"
        case .protectedWrite: what = "write to protected memory"
        case .protectedFetch: what = "instruction fetch from protected memory"
        case .illegalInstruction: what = "illegal instruction"
        case .environmentCall: what = "environment call (ecall)"
        case .breakpoint: what = "breakpoint (ebreak)"
        case .supervisorCall: what = "supervisor call (svc)"
        case .exceptionReturn: what = "exception return"
        case let .exception(n): what = "CPU exception \(n)"
        case let .other(text): what = text
        }
        return what
    }

    public var description: String {
        summary + (address.map { " at \(hex($0))" } ?? "") + ", pc \(hex(programCounter))"
    }
}

/// A register the GDB server shows: its name and number in GDB's target description, the
/// feature it is listed in, and the engine's register id.
struct DebugRegister: Sendable, Hashable {
    let name: String
    let number: Int
    let type: String
    let feature: String
    let id: Int32
}

/// One Unicorn engine (`uc_engine`), owned by the thread that emulates with it (it may be opened
/// on another thread and handed over, see ``EngineReserve``). The only code in
/// the project that calls Unicorn. Memory is mapped over the board's own host memory
/// (`uc_mem_map_ptr`), so the emulated core and the host side share the same bytes.
final class UnicornEngine {
    private let handle: OpaquePointer
    let architecture: CPUArchitecture
    /// Objects whose memory or callbacks Unicorn uses; kept alive as long as the engine.
    private var retained: [AnyObject] = []
    private var hooks: [uc_hook] = []
    private let context = HookContext()
    /// The one way other threads reach the engine (to stop a run); closed before `uc_close`.
    private let stopGate: EngineStopGate

    /// What the hooks record, passed to them as `user_data`.
    final class HookContext {
        var memoryFault: (type: UInt32, address: UInt64, pc: UInt64)?
        var interrupt: (number: UInt32, pc: UInt64)?
        var invalidInstructionPC: UInt64?
        var pcRegister: Int32 = 0
    }

    /// Callbacks of an MMIO window.
    final class MMIO {
        let read: (UInt64, Int) -> UInt64
        let write: (UInt64, Int, UInt64) -> Void
        weak var engine: UnicornEngine?
        init(read: @escaping (UInt64, Int) -> UInt64, write: @escaping (UInt64, Int, UInt64) -> Void) {
            self.read = read
            self.write = write
        }
    }

    init(architecture: CPUArchitecture) throws(UnicornError) {
        handle = try Self.open(architecture)
        context.pcRegister = architecture == .cortexM4 ? Int32(UC_ARM_REG_PC.rawValue) : Int32(UC_RISCV_REG_PC.rawValue)
        stopGate = EngineStopGate()
        self.architecture = architecture
        try installFaultHooks()
        try installSafePoint()
    }

    deinit {
        // A stopper on another thread may still hold this engine's stop handle: after this, its
        // uc_emu_stop is not made (it would write into the closed engine's freed memory).
        stopGate.close()
        for hook in hooks + breakpointHooks.values + (everyInstructionHook.map { [$0] } ?? []) { uc_hook_del(handle, hook) }
        if let snapshot = debugHooks?.snapshot {
            uc_context_free(snapshot)
            debugHooks?.snapshot = nil
        }
        uc_close(handle)
    }

    fileprivate static func check(_ error: uc_err, _ operation: String) throws(UnicornError) {
        guard error == UC_ERR_OK else { throw UnicornError(code: error.rawValue, operation: operation) }
    }

    /// A new engine for `architecture`, its CPU model set; the caller owns (closes) it.
    fileprivate static func open(_ architecture: CPUArchitecture) throws(UnicornError) -> OpaquePointer {
        var opened: OpaquePointer?
        switch architecture {
        case .cortexM4:
            // Unicorn 2.0.1: UC_MODE_MCLASS would force a Cortex-M33; Thumb plus the model is a real M4.
            try check(uc_open(UC_ARCH_ARM, UC_MODE_THUMB, &opened), "uc_open")
            guard let engine = opened else { throw UnicornError(code: UC_ERR_NOMEM.rawValue, operation: "uc_open") }
            do { try check(swuc_ctl_set_cpu_model(engine, Int32(UC_CPU_ARM_CORTEX_M4.rawValue)), "uc_ctl(set cpu model)") } catch {
                uc_close(engine)
                throw error
            }
            return engine
        case .rv32:
            try check(uc_open(UC_ARCH_RISCV, UC_MODE_RISCV32, &opened), "uc_open")
            guard let engine = opened else { throw UnicornError(code: UC_ERR_NOMEM.rawValue, operation: "uc_open") }
            return engine
        }
    }

    /// Maps `size` bytes of `memory` from `offset` at guest address `address` (4 KiB aligned).
    /// The engine keeps `memory` alive: Unicorn keeps using its bytes.
    func map(_ memory: SharedMemory, offset: Int, size: Int, at address: UInt64) throws(UnicornError) {
        let base = memory.withUnsafeMutableBytes { $0.baseAddress! + offset }
        try Self.check(uc_mem_map_ptr(handle, address, size, UC_PROT_ALL.rawValue, base), "uc_mem_map_ptr(\(hex(address)), \(size))")
        retained.append(memory)
    }

    /// Maps an MMIO window: guest accesses call `read` / `write` with the offset in the window.
    func mapMMIO(at address: UInt64, size: Int, _ device: MMIO) throws(UnicornError) {
        device.engine = self
        let user = Unmanaged.passUnretained(device).toOpaque()
        let read: uc_cb_mmio_read_t = { _, offset, size, user in
            Unmanaged<MMIO>.fromOpaque(user!).takeUnretainedValue().read(offset, Int(size))
        }
        let write: uc_cb_mmio_write_t = { _, offset, size, value, user in
            Unmanaged<MMIO>.fromOpaque(user!).takeUnretainedValue().write(offset, Int(size), value)
        }
        try Self.check(uc_mmio_map(handle, address, size, read, user, write, user), "uc_mmio_map(\(hex(address)))")
        retained.append(device)
        debugHooks?.sideEffectRanges.append(address..<(address + UInt64(size)))
    }

    private func installFaultHooks() throws(UnicornError) {
        let user = Unmanaged.passUnretained(context).toOpaque()
        var hook: uc_hook = 0
        let memory: @convention(c) (OpaquePointer?, uc_mem_type, UInt64, Int32, Int64, UnsafeMutableRawPointer?) -> Bool = { uc, type, address, _, _, user in
            let context = Unmanaged<HookContext>.fromOpaque(user!).takeUnretainedValue()
            var pc: UInt64 = 0
            uc_reg_read(uc, context.pcRegister, &pc)
            context.memoryFault = (type.rawValue, address, pc)
            return false
        }
        try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_MEM_READ_UNMAPPED.rawValue | UC_HOOK_MEM_WRITE_UNMAPPED.rawValue | UC_HOOK_MEM_FETCH_UNMAPPED.rawValue | UC_HOOK_MEM_READ_PROT.rawValue | UC_HOOK_MEM_WRITE_PROT.rawValue | UC_HOOK_MEM_FETCH_PROT.rawValue),
                                     unsafeBitCast(memory, to: UnsafeMutableRawPointer.self), user, 1, 0), "uc_hook_add(mem invalid)")
        hooks.append(hook)
        let interrupt: @convention(c) (OpaquePointer?, UInt32, UnsafeMutableRawPointer?) -> Void = { uc, number, user in
            let context = Unmanaged<HookContext>.fromOpaque(user!).takeUnretainedValue()
            var pc: UInt64 = 0
            uc_reg_read(uc, context.pcRegister, &pc)
            context.interrupt = (number, pc)
            uc_emu_stop(uc)
        }
        try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_INTR.rawValue), unsafeBitCast(interrupt, to: UnsafeMutableRawPointer.self),
                                     user, 1, 0), "uc_hook_add(intr)")
        hooks.append(hook)
        let invalid: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Bool = { uc, user in
            let context = Unmanaged<HookContext>.fromOpaque(user!).takeUnretainedValue()
            var pc: UInt64 = 0
            uc_reg_read(uc, context.pcRegister, &pc)
            context.invalidInstructionPC = pc
            return false
        }
        try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_INSN_INVALID.rawValue), unsafeBitCast(invalid, to: UnsafeMutableRawPointer.self),
                                     user, 1, 0), "uc_hook_add(insn invalid)")
        hooks.append(hook)
    }

    /// The block hook (in C: it runs before every block) that stops a run at a block boundary
    /// when the stop gate's flag is up.
    private func installSafePoint() throws(UnicornError) {
        retained.append(stopGate)
        var hook: uc_hook = 0
        try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_BLOCK.rawValue), swuc_safepoint_block_callback(architecture == .cortexM4 ? 1 : 0), stopGate.hookData, 1, 0),
                       "uc_hook_add(block)")
        hooks.append(hook)
    }

    func readRegister(_ id: Int32) -> UInt64 {
        var value: UInt64 = 0
        uc_reg_read(handle, id, &value)
        return value
    }

    func writeRegister(_ id: Int32, _ value: UInt64) throws(UnicornError) {
        var v = value
        try Self.check(uc_reg_write(handle, id, &v), "uc_reg_write")
    }

    var programCounter: UInt64 { readRegister(context.pcRegister) }
    var pcRegisterID: Int32 { context.pcRegister }

    func setStackPointer(_ value: UInt64) throws(UnicornError) {
        try writeRegister(architecture == .cortexM4 ? Int32(UC_ARM_REG_SP.rawValue) : Int32(UC_RISCV_REG_SP.rawValue), value)
    }

    /// Every general register by name.
    var registers: [String: UInt64] {
        var result: [String: UInt64] = [:]
        switch architecture {
        case .cortexM4:
            for i in 0...12 { result["r\(i)"] = readRegister(Int32(UC_ARM_REG_R0.rawValue) + Int32(i)) }
            result["sp"] = readRegister(Int32(UC_ARM_REG_SP.rawValue))
            result["lr"] = readRegister(Int32(UC_ARM_REG_LR.rawValue))
            result["pc"] = readRegister(Int32(UC_ARM_REG_PC.rawValue))
            result["xpsr"] = readRegister(Int32(UC_ARM_REG_XPSR.rawValue))
        case .rv32:
            for i in 1...31 { result["x\(i)"] = readRegister(Int32(UC_RISCV_REG_X0.rawValue) + Int32(i)) }
            result["pc"] = readRegister(Int32(UC_RISCV_REG_PC.rawValue))
        }
        return result
    }

    /// How a run ended.
    enum Outcome {
        /// The CPU returned on its own without a fault (`wfi`) or a stop: resume at `pc`.
        case returned(pc: UInt64)
        case fault(CPUFault)
    }

    /// Runs from `pc` until `wfi`, a fault, or ``stop()``.
    func run(from pc: UInt64) -> Outcome {
        context.memoryFault = nil
        context.interrupt = nil
        context.invalidInstructionPC = nil
        let begin = architecture == .cortexM4 ? pc | 1 : pc
        stopGate.runStarts()
        let error = uc_emu_start(handle, begin, UInt64.max, 0, 0)
        if let interrupt = context.interrupt {
            // Unicorn 2.0.1 advances a RISC-V PC by 4 before the interrupt hook runs, whatever the
            // instruction's length: the trapping instruction is 4 bytes back.
            let pc = architecture == .rv32 ? interrupt.pc &- 4 : interrupt.pc
            var registers = self.registers
            registers["pc"] = pc
            // RISC-V exception codes (Unicorn reports an ecall as 8, the user-mode code, from any mode).
            // Arm: 2 SVC; 3 (prefetch abort) or 8 (exception exit, once QEMU's flags say Handler
            // mode) for a branch to an EXC_RETURN value.
            let kind: CPUFault.Kind = switch (architecture, interrupt.number) {
            case (.rv32, 2): .illegalInstruction
            case (.rv32, 3): .breakpoint
            case (.rv32, 8): .environmentCall
            case (.cortexM4, 2): .supervisorCall
            case (.cortexM4, 3), (.cortexM4, 8) where ArmExceptionReturn.range.contains(pc): .exceptionReturn
            default: .exception(interrupt.number)
            }
            return .fault(CPUFault(kind: kind, address: kind == .exceptionReturn ? pc | 1 : nil, programCounter: pc, registers: registers))
        }
        if let fault = context.memoryFault {
            let kind: CPUFault.Kind
            switch uc_mem_type(rawValue: fault.type) {
            case UC_MEM_READ_UNMAPPED: kind = .unmappedRead
            case UC_MEM_WRITE_UNMAPPED: kind = .unmappedWrite
            case UC_MEM_FETCH_UNMAPPED:
                kind = architecture == .cortexM4 && ArmExceptionReturn.range.contains(fault.address) ? .exceptionReturn : .unmappedFetch
            case UC_MEM_READ_PROT: kind = .protectedRead
            case UC_MEM_WRITE_PROT: kind = .protectedWrite
            default: kind = .protectedFetch
            }
            var registers = self.registers
            registers["pc"] = fault.pc
            let address = kind == .exceptionReturn ? fault.address | 1 : fault.address
            return .fault(CPUFault(kind: kind, address: address, programCounter: fault.pc, registers: registers))
        }
        if error == UC_ERR_INSN_INVALID || context.invalidInstructionPC != nil {
            let at = context.invalidInstructionPC ?? programCounter
            return .fault(CPUFault(kind: .illegalInstruction, address: nil, programCounter: at, registers: registers))
        }
        guard error == UC_ERR_OK else {
            return .fault(CPUFault(kind: .other(String(cString: uc_strerror(error))), address: nil, programCounter: programCounter, registers: registers))
        }
        return .returned(pc: programCounter)
    }

    /// Makes the PC of a memory fault exact: an empty code hook over every instruction (Unicorn
    /// 2.0.1 otherwise reports the start of the faulting instruction's translated block, after the
    /// instructions before it ran). Costs emulation speed (a hook call per instruction); vectored
    /// faults need it. Call before the first run.
    func makeFaultPCsExact() throws(UnicornError) {
        var hook: uc_hook = 0
        try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_CODE.rawValue), swuc_precise_pc_callback(), nil, 1, 0), "uc_hook_add(exact pc)")
        hooks.append(hook)
        hasExactPCs = true
    }

    /// Whether the PC is exact inside a run (``makeFaultPCsExact()`` was called).
    private(set) var hasExactPCs = false

    /// RV32: a trap was entered; the block hook reports its return (``takeTrapReturn()``).
    func trapEntered() { stopGate.trapEntered() }

    /// RV32: where the last run ended because a trap handler returned there (`mret`), if it did.
    func takeTrapReturn() -> UInt64? { stopGate.takeTrapReturn() }

    /// Counts every executed instruction into `counter` (a `UC_HOOK_CODE` hook: it slows
    /// emulation several times; for measurements only).
    func countInstructions(into counter: InstructionCounter) throws(UnicornError) {
        var hook: uc_hook = 0
        let callback: @convention(c) (OpaquePointer?, UInt64, UInt32, UnsafeMutableRawPointer?) -> Void = { _, _, _, user in
            Unmanaged<InstructionCounter>.fromOpaque(user!).takeUnretainedValue().count.add(1, ordering: .relaxed)
        }
        try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_CODE.rawValue), unsafeBitCast(callback, to: UnsafeMutableRawPointer.self),
                                     Unmanaged.passUnretained(counter).toOpaque(), 1, 0), "uc_hook_add(code)")
        hooks.append(hook)
        retained.append(counter)
    }

    /// Breakpoint, watchpoint and single-step state, touched only on the emulation thread (hooks run there).
    final class DebugHooks {
        /// Breakpoint addresses, and whether each was set as a hardware breakpoint (`Z1`).
        var breakpoints: [UInt64: Bool] = [:]
        var watchpoints: [Watchpoint] = []
        var stepping = false
        /// The instruction a resumed run starts at: not stopped at again.
        var skip: UInt64?
        /// Where a breakpoint, step or watchpoint stopped the last run.
        var stoppedAt: UInt64?
        /// The watchpoint an access of the current instruction hit (the run stops before the next one).
        var watchHit: (kind: Watchpoint.Kind, address: UInt64)?
        /// Where the instruction being executed starts, its CPU state before it ran, and the bytes
        /// its stores overwrote (kept only while watchpoints are set, to undo an instruction that hit one).
        var instructionStart: UInt64 = 0
        var snapshot: OpaquePointer?
        var undo: [(address: UInt64, bytes: [UInt8])] = []
        /// Guest ranges whose bytes cannot be read back without side effects (MMIO).
        var sideEffectRanges: [Range<UInt64>] = []
    }

    /// A data watchpoint (GDB's `Z2` write, `Z3` read, `Z4` access).
    struct Watchpoint: Hashable {
        enum Kind: Hashable { case write, read, access }
        var kind: Kind
        var address: UInt64
        var length: UInt64

        func matches(write: Bool, address: UInt64, size: UInt64) -> Bool {
            guard kind == .access || (kind == .write) == write else { return false }
            return address < self.address &+ length && self.address < address &+ size
        }
    }

    private var debugHooks: DebugHooks?
    /// The debugger's code hook over every instruction (while stepping or watching), and its
    /// hooks on single breakpoint addresses (otherwise): translated code calls only the hooks
    /// that exist when it is translated, so a core with a debugger attached but nothing to stop
    /// at runs at full speed, and one with breakpoints slows only where they are.
    private var everyInstructionHook: uc_hook?
    private var breakpointHooks: [UInt64: uc_hook] = [:]

    private static let debugCode: @convention(c) (OpaquePointer?, UInt64, UInt32, UnsafeMutableRawPointer?) -> Void = { uc, address, _, user in
        let state = Unmanaged<DebugHooks>.fromOpaque(user!).takeUnretainedValue()
        if state.watchHit != nil {
            // The previous instruction touched a watched address: stop before this one.
            state.stoppedAt = address
            uc_emu_stop(uc)
            return
        }
        if !state.watchpoints.isEmpty {
            state.instructionStart = address
            state.undo.removeAll(keepingCapacity: true)
            uc_context_save(uc, state.snapshot)
        }
        if state.skip == address {
            state.skip = nil
            return
        }
        state.skip = nil
        if state.stepping || state.breakpoints[address] != nil {
            state.stoppedAt = address
            uc_emu_stop(uc)
        }
    }

    /// Installs the debugger's data hook and takes its code hooks from `hooks` before each run
    /// (``syncDebugHooks()``). A watchpoint stops the core *before* the accessing instruction, as
    /// GDB expects of Arm and RISC-V (non-steppable watchpoints): the instruction runs, then is
    /// undone — CPU state restored from a snapshot taken before it, overwritten bytes put back.
    func installDebugHooks(_ hooks: DebugHooks) throws(UnicornError) {
        var snapshot: OpaquePointer?
        try Self.check(uc_context_alloc(handle, &snapshot), "uc_context_alloc")
        hooks.snapshot = snapshot
        hooks.sideEffectRanges = []
        hooks.watchHit = nil
        hooks.undo = []
        var hook: uc_hook = 0
        let data: @convention(c) (OpaquePointer?, uc_mem_type, UInt64, Int32, Int64, UnsafeMutableRawPointer?) -> Void = { uc, type, address, size, _, user in
            let state = Unmanaged<DebugHooks>.fromOpaque(user!).takeUnretainedValue()
            guard !state.watchpoints.isEmpty, size > 0 else { return }
            let write = type == UC_MEM_WRITE
            let count = UInt64(size)
            if write && !state.sideEffectRanges.contains(where: { $0.overlaps(address..<(address &+ count)) }) {
                var old = [UInt8](repeating: 0, count: Int(count))
                if old.withUnsafeMutableBytes({ uc_mem_read(uc, address, $0.baseAddress, Int(count)) }) == UC_ERR_OK {
                    state.undo.append((address, old))
                }
            }
            guard state.watchHit == nil,
                  let hit = state.watchpoints.first(where: { $0.matches(write: write, address: address, size: count) }) else { return }
            state.watchHit = (hit.kind, max(address, hit.address))
        }
        try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_MEM_READ.rawValue | UC_HOOK_MEM_WRITE.rawValue),
                                     unsafeBitCast(data, to: UnsafeMutableRawPointer.self),
                                     Unmanaged.passUnretained(hooks).toOpaque(), 1, 0), "uc_hook_add(debug data)")
        self.hooks.append(hook)
        retained.append(hooks)
        debugHooks = hooks
        try syncDebugHooks()
    }

    /// Brings the code hooks in line with the debugger's state (stepping, watchpoints,
    /// breakpoints), dropping translated code that was made without them. Call between runs.
    func syncDebugHooks() throws(UnicornError) {
        guard let hooks = debugHooks else { return }
        let user = Unmanaged.passUnretained(hooks).toOpaque()
        let callback = unsafeBitCast(Self.debugCode, to: UnsafeMutableRawPointer.self)
        let everywhere = hooks.stepping || !hooks.watchpoints.isEmpty
        var flush = false
        if everywhere, everyInstructionHook == nil {
            var hook: uc_hook = 0
            try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_CODE.rawValue), callback, user, 1, 0), "uc_hook_add(debug code)")
            everyInstructionHook = hook
            flush = true
        } else if !everywhere, let hook = everyInstructionHook {
            uc_hook_del(handle, hook)
            everyInstructionHook = nil
            flush = true
        }
        let wanted = everywhere ? [] : Set(hooks.breakpoints.keys)
        for (address, hook) in breakpointHooks where !wanted.contains(address) {
            uc_hook_del(handle, hook)
            breakpointHooks[address] = nil
            _ = swuc_ctl_remove_cache(handle, address, address + 1)
        }
        for address in wanted where breakpointHooks[address] == nil {
            var hook: uc_hook = 0
            try Self.check(swuc_hook_add(handle, &hook, Int32(UC_HOOK_CODE.rawValue), callback, user, address, address), "uc_hook_add(breakpoint)")
            breakpointHooks[address] = hook
            _ = swuc_ctl_remove_cache(handle, address, address + 1)
        }
        if flush { try Self.check(swuc_ctl_flush_tb(handle), "uc_ctl(flush translated code)") }
    }

    /// Undoes the instruction that hit a watchpoint: the CPU state from before it, the bytes it
    /// overwrote. Returns where it starts (the PC to report).
    func rewindWatchedInstruction() -> UInt64? {
        guard let hooks = debugHooks, let snapshot = hooks.snapshot else { return nil }
        guard uc_context_restore(handle, snapshot) == UC_ERR_OK else { return nil }
        for entry in hooks.undo.reversed() { _ = writeMemory(entry.address, entry.bytes) }
        hooks.undo.removeAll()
        return hooks.instructionStart
    }

    /// Reads `count` bytes of guest memory, or `nil` when any is unmapped.
    func readMemory(_ address: UInt64, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        let error = bytes.withUnsafeMutableBytes { uc_mem_read(handle, address, $0.baseAddress, count) }
        return error == UC_ERR_OK ? bytes : nil
    }

    /// Writes guest memory; `false` when any byte is unmapped.
    func writeMemory(_ address: UInt64, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { uc_mem_write(handle, address, $0.baseAddress, bytes.count) } == UC_ERR_OK
    }

    /// The debugger's register list, in GDB's numbering (``DebugRegister``).
    var debugRegisterIDs: [Int32] { Self.debugRegisters(architecture).map(\.id) }

    /// The registers a debugger sees, ordered by their GDB number: Arm r0–r12, sp, lr, pc, xpsr
    /// (25) in the m-profile feature, msp and psp (m-system), primask, basepri, faultmask and
    /// control; RISC-V x0–x31, pc and the machine CSRs (numbered 65 + the CSR's address, as GDB does).
    static func debugRegisters(_ architecture: CPUArchitecture) -> [DebugRegister] {
        func id(_ register: uc_arm_reg) -> Int32 { Int32(register.rawValue) }
        func id(_ register: uc_riscv_reg) -> Int32 { Int32(register.rawValue) }
        switch architecture {
        case .cortexM4:
            let core = "org.gnu.gdb.arm.m-profile", system = "org.gnu.gdb.arm.m-system", special = "org.rproc-sim.arm.m-special"
            return (0...12).map { DebugRegister(name: "r\($0)", number: $0, type: "uint32", feature: core, id: id(UC_ARM_REG_R0) + Int32($0)) } + [
                DebugRegister(name: "sp", number: 13, type: "data_ptr", feature: core, id: id(UC_ARM_REG_SP)),
                DebugRegister(name: "lr", number: 14, type: "uint32", feature: core, id: id(UC_ARM_REG_LR)),
                DebugRegister(name: "pc", number: 15, type: "code_ptr", feature: core, id: id(UC_ARM_REG_PC)),
                DebugRegister(name: "xpsr", number: 25, type: "uint32", feature: core, id: id(UC_ARM_REG_XPSR)),
                DebugRegister(name: "msp", number: 26, type: "data_ptr", feature: system, id: id(UC_ARM_REG_MSP)),
                DebugRegister(name: "psp", number: 27, type: "data_ptr", feature: system, id: id(UC_ARM_REG_PSP)),
                DebugRegister(name: "primask", number: 28, type: "uint32", feature: special, id: id(UC_ARM_REG_PRIMASK)),
                DebugRegister(name: "basepri", number: 29, type: "uint32", feature: special, id: id(UC_ARM_REG_BASEPRI)),
                DebugRegister(name: "faultmask", number: 30, type: "uint32", feature: special, id: id(UC_ARM_REG_FAULTMASK)),
                DebugRegister(name: "control", number: 31, type: "uint32", feature: special, id: id(UC_ARM_REG_CONTROL)),
            ]
        case .rv32:
            let cpu = "org.gnu.gdb.riscv.cpu", csr = "org.gnu.gdb.riscv.csr"
            let names = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1"] + (0...7).map { "a\($0)" } + (2...11).map { "s\($0)" } + (3...6).map { "t\($0)" }
            let csrs: [(String, Int, uc_riscv_reg)] = [("mstatus", 0x300, UC_RISCV_REG_MSTATUS), ("mie", 0x304, UC_RISCV_REG_MIE),
                                                      ("mtvec", 0x305, UC_RISCV_REG_MTVEC), ("mscratch", 0x340, UC_RISCV_REG_MSCRATCH),
                                                      ("mepc", 0x341, UC_RISCV_REG_MEPC), ("mcause", 0x342, UC_RISCV_REG_MCAUSE),
                                                      ("mtval", 0x343, UC_RISCV_REG_MTVAL), ("mip", 0x344, UC_RISCV_REG_MIP)]
            return names.enumerated().map { DebugRegister(name: $1, number: $0, type: $1 == "sp" ? "data_ptr" : "int", feature: cpu,
                                                          id: id(UC_RISCV_REG_X0) + Int32($0)) }
                + [DebugRegister(name: "pc", number: 32, type: "code_ptr", feature: cpu, id: id(UC_RISCV_REG_PC))]
                + csrs.map { DebugRegister(name: $0.0, number: 65 + $0.1, type: "int", feature: csr, id: id($0.2)) }
        }
    }

    /// A register as the debugger reads it: RV32 `mip` with the machine interrupts the board
    /// raises (Unicorn 2.0.1 keeps none of them in its own `mip`).
    func readDebugRegister(_ id: Int32) -> UInt64 {
        let value = readRegister(id)
        return architecture == .rv32 && id == Int32(UC_RISCV_REG_MIP.rawValue) ? value | UInt64(stopGate.pendingBits) : value
    }

    /// Whether the last run ended because a stop was requested or an interrupt came in (rather
    /// than at a `wfi`).
    var stoppedOnRequest: Bool { stopGate.stoppedOnRequest }

    /// A handle another thread may use to stop the run.
    var stopper: EmulationStopper { EmulationStopper(gate: stopGate) }

    /// The interrupt inputs the block hook watches (raised by devices on any thread).
    var interruptInputs: InterruptInputs { InterruptInputs(gate: stopGate) }
}

extension UnicornEngine: MachineTrapCPU {
    private static func id(_ csr: MachineCSR) -> Int32 {
        let register = switch csr {
        case .mstatus: UC_RISCV_REG_MSTATUS
        case .mie: UC_RISCV_REG_MIE
        case .mtvec: UC_RISCV_REG_MTVEC
        case .mepc: UC_RISCV_REG_MEPC
        case .mcause: UC_RISCV_REG_MCAUSE
        case .mtval: UC_RISCV_REG_MTVAL
        }
        return Int32(register.rawValue)
    }

    func read(_ csr: MachineCSR) -> UInt32 {
        precondition(architecture == .rv32, "a RISC-V CSR of a \(architecture) core")
        return UInt32(truncatingIfNeeded: readRegister(Self.id(csr)))
    }

    func write(_ csr: MachineCSR, _ value: UInt32) throws(UnicornError) {
        precondition(architecture == .rv32, "a RISC-V CSR of a \(architecture) core")
        try writeRegister(Self.id(csr), UInt64(value))
    }
}

extension UnicornEngine: ArmExceptionCPU {
    private static func id(_ register: ArmRegister) -> Int32 {
        let id = switch register {
        case .r0: UC_ARM_REG_R0
        case .r1: UC_ARM_REG_R1
        case .r2: UC_ARM_REG_R2
        case .r3: UC_ARM_REG_R3
        case .r12: UC_ARM_REG_R12
        case .lr: UC_ARM_REG_LR
        case .sp: UC_ARM_REG_SP
        case .msp: UC_ARM_REG_MSP
        case .psp: UC_ARM_REG_PSP
        case .xpsr: UC_ARM_REG_XPSR
        case .control: UC_ARM_REG_CONTROL
        case .primask: UC_ARM_REG_PRIMASK
        case .basepri: UC_ARM_REG_BASEPRI
        case .faultmask: UC_ARM_REG_FAULTMASK
        }
        return Int32(id.rawValue)
    }

    func read(_ register: ArmRegister) -> UInt32 {
        precondition(architecture == .cortexM4, "an Arm register of a \(architecture) core")
        return UInt32(truncatingIfNeeded: readRegister(Self.id(register)))
    }

    func write(_ register: ArmRegister, _ value: UInt32) throws(UnicornError) {
        precondition(architecture == .cortexM4, "an Arm register of a \(architecture) core")
        try writeRegister(Self.id(register), UInt64(value))
    }

    func load32(_ address: UInt32) -> UInt32? {
        guard let bytes = readMemory(UInt64(address), count: 4) else { return nil }
        return UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
    }

    func store32(_ address: UInt32, _ value: UInt32) -> Bool {
        writeMemory(UInt64(address), (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) })
    }
}

/// How other threads (and the engine's own MMIO callbacks) stop a run: they raise an attention
/// flag, and a block hook stops the run at the start of the next translation block, before any
/// of its instructions. A `uc_emu_stop` made anywhere else lands mid-block: Unicorn 2.0.1 checks
/// for an exit after every guest load and store and, without a code hook, rewinds the PC to the
/// start of the block — re-executing every instruction of it up to there (an MMIO store written
/// twice, a counter incremented twice). The flag outlives the engine, so a stopper kept after
/// the engine closed touches nothing of it.
final class EngineStopGate: @unchecked Sendable {
    // @unchecked: the attention block (shim.h's `struct swuc_attention`: the stop request, the
    // stopped flag, the pending interrupts) is allocated once, never moves, and is only read and
    // written with C atomics (the block hook reads it on the emulation thread).
    private let flags: UnsafeMutableRawPointer
    private let open = Atomic<Bool>(true)

    init() {
        flags = .allocate(byteCount: swuc_attention_size(), alignment: 8)
        swuc_attention_init(flags)
    }

    deinit { flags.deallocate() }

    /// Raises (`on`) or lowers interrupt lines the block hook looks at (RV32 `mip` bits; Cortex-M
    /// bit 0, IRQ 0): while one is raised, every block boundary checks the CPU's mask registers
    /// and ends the run once they let the interrupt in.
    func setPending(_ bits: UInt32, _ on: Bool) { swuc_attention_pending_set(flags, bits, on ? 1 : 0) }

    /// Cortex-M: the group priorities the block hook compares (see shim.h, `struct swuc_attention`).
    func setPriorities(pending: Int32, line: Int32, active: Int32, groupMask: UInt8) {
        swuc_attention_set_priorities(flags, pending, line, active, UInt32(groupMask))
    }

    func trapEntered() { swuc_attention_trap_entered(flags) }
    func takeTrapReturn() -> UInt64? {
        var address: UInt64 = 0
        return swuc_attention_take_return(flags, &address) != 0 ? address : nil
    }

    /// What ``setPriorities(pending:line:active:groupMask:)`` last gave the block hook.
    var priorities: (pending: Int32, line: Int32, active: Int32, groupMask: UInt8) {
        var pending: Int32 = 0, line: Int32 = 0, active: Int32 = 0, mask: UInt32 = 0
        swuc_attention_priorities(flags, &pending, &line, &active, &mask)
        return (pending, line, active, UInt8(truncatingIfNeeded: mask))
    }
    /// The raised pending bits.
    var pendingBits: UInt32 { swuc_attention_pending(flags) }

    /// Asks the run to stop at the next block boundary (nothing once the engine is closed).
    func stop() { if open.load(ordering: .acquiring) { swuc_flag_store(flags.assumingMemoryBound(to: UInt8.self), 1) } }

    /// Withdraws the request (the emulation thread, before it checks whether a run may start).
    func clear() { swuc_flag_store(flags.assumingMemoryBound(to: UInt8.self), 0) }

    /// Whether the last run ended for a request (cleared as a run starts).
    var stoppedOnRequest: Bool { swuc_flag_load(flags.assumingMemoryBound(to: UInt8.self) + 1) != 0 }
    func runStarts() { swuc_flag_store(flags.assumingMemoryBound(to: UInt8.self) + 1, 0) }

    /// What the block hook is given.
    var hookData: UnsafeMutableRawPointer { flags }

    /// Virtual time: from now on the block hook counts the instructions of the blocks it lets
    /// run, and ends a run before a block past the budget (the core thread, before its first run).
    func countInstructions() { swuc_attention_count(flags, 1) }

    /// The instructions counted since the last call; runs go on with `budget` more (at least
    /// one block each). The core thread only: between runs or in its own callbacks.
    func takeExecuted(budget: UInt64) -> UInt64 { swuc_attention_take_executed(flags, budget) }

    /// From now on ``stop()`` does nothing.
    func close() { open.store(false, ordering: .releasing) }

    /// Whether the engine is still open.
    var isOpen: Bool { open.load(ordering: .acquiring) }
}

/// Stops an engine's run, at the next block boundary (see ``EngineStopGate``). The emulation
/// thread clears the request before it checks whether a run may start (``RunFlag/enter(_:clearing:)``),
/// so a request made with its reason already visible is never lost; ``stop(while:)`` also waits
/// for the run to return.
struct EmulationStopper: Sendable {
    let gate: EngineStopGate

    /// One request without waiting (inside the engine's own callbacks, or when the caller waits
    /// for something else): the run ends before the next block.
    func stopOnce() { gate.stop() }

    /// Withdraws requests made before a run's reasons are checked (the emulation thread only).
    func clear() { gate.clear() }

    func stop(while run: RunFlag, clock: any WaitClock, limit: Duration = .seconds(5)) {
        let deadline = clock.now + limit
        run.stoppers.add(1, ordering: .sequentiallyConsistent)
        defer { run.stoppers.subtract(1, ordering: .sequentiallyConsistent) }
        while run.value.load(ordering: .sequentiallyConsistent) && clock.now < deadline {
            gate.stop()
            // Woken when the run returns; a stop that landed just before the run began is repeated.
            _ = clock.wait(for: run.returned, timeout: .microseconds(200))
        }
    }
}

/// The reference for emulated speed: Unicorn itself, with nothing of the board — one bare engine,
/// no hooks, no MMIO, no stop checks — running the compute loop of `Firmware/lib/rsim_compute.h`
/// (the same four instructions the `compute` firmware runs, as the firmware's compiler encodes
/// them: Thumb-2 16-bit forms on Cortex-M4, compressed forms on rv32imac).
public enum RawUnicornReference {
    /// `adds r0, r0, r1; eors r0, r2; subs r1, r1, #1; bne <start>`.
    static let thumbLoop: [UInt8] = [0x40, 0x18, 0x50, 0x40, 0x49, 0x1E, 0xFB, 0xD1]
    /// `c.add a0, a1; c.xor a0, a2; c.addi a1, -1; c.bnez a1, <start>`.
    static let rv32Loop: [UInt8] = [0x2E, 0x95, 0x31, 0x8D, 0xFD, 0x15, 0xED, 0xFD]

    /// Instructions per second of `iterations` passes of the loop (4 instructions each).
    public static func computeLoopRate(_ architecture: CPUArchitecture, iterations: UInt32) throws(UnicornError) -> Double {
        let registers: (counter: Int32, accumulator: Int32, mix: Int32)
        let code: [UInt8]
        switch architecture {
        case .cortexM4:
            registers = (Int32(UC_ARM_REG_R1.rawValue), Int32(UC_ARM_REG_R0.rawValue), Int32(UC_ARM_REG_R2.rawValue))
            code = thumbLoop
        case .rv32:
            registers = (Int32(UC_RISCV_REG_A1.rawValue), Int32(UC_RISCV_REG_A0.rawValue), Int32(UC_RISCV_REG_A2.rawValue))
            code = rv32Loop
        }
        let engine = try UnicornEngine.open(architecture)
        defer { uc_close(engine) }
        try UnicornEngine.check(uc_mem_map(engine, 0, 4096, UC_PROT_ALL.rawValue), "uc_mem_map")
        try UnicornEngine.check(code.withUnsafeBytes { uc_mem_write(engine, 0, $0.baseAddress, $0.count) }, "uc_mem_write")
        for (register, value) in [(registers.counter, UInt64(iterations)), (registers.accumulator, 1), (registers.mix, 0x9E37_79B9)] {
            var value = value
            try UnicornEngine.check(uc_reg_write(engine, register, &value), "uc_reg_write")
        }
        let begin: UInt64 = architecture == .cortexM4 ? 1 : 0    // Thumb: bit 0 set
        let clock = ContinuousClock()
        let start = clock.now
        try UnicornEngine.check(uc_emu_start(engine, begin, UInt64(code.count), 0, 0), "uc_emu_start")
        let seconds = (clock.now - start).inSeconds
        var left: UInt64 = 0
        try UnicornEngine.check(uc_reg_read(engine, registers.counter, &left), "uc_reg_read")
        guard left == 0 else { throw UnicornError(code: UC_ERR_EXCEPTION.rawValue, operation: "the loop ended with \(left) passes left") }
        return Double(iterations) * 4 / seconds
    }
}
