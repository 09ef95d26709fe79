import MetalIO
import Synchronization

/// The Cortex-M4 core's System Control Space at 0xE000_E000 (docs/remotesim.md, "Interrupts and
/// timers"): the NVIC (32 external interrupts, IRQ 0 the mailbox), the System Control Block and
/// SysTick, as the ARMv7-M Architecture Reference Manual defines them, with 4 priority bits
/// implemented (priorities 0x00, 0x10 … 0xF0; the low bits read as zero).
///
/// Unicorn 2.0.1 has none of it and performs no M-profile exception entry, so the board keeps the
/// exception state here — enabled, pending, active, priorities — and enters and returns from
/// exceptions itself (``ArmExceptionEntry``). It publishes the priorities the engine's block hook
/// compares (``InterruptInputs/setPriorities(pending:line:active:groupMask:)``): a pending
/// exception more urgent than the execution priority (and not masked by PRIMASK, FAULTMASK or
/// BASEPRI, which the hook reads from the CPU) ends the run at the next block boundary.
final class SystemControlSpace: Sendable {
    static let base: UInt64 = 0xE000_E000
    static let size = 0x1000
    /// External interrupts (ICTR.INTLINESNUM = 0).
    static let irqCount = 32
    /// The implemented priority bits: the top four of each priority byte.
    static let implementedPriorityMask: UInt8 = 0xF0
    /// CPUID of an Arm Cortex-M4 r0p1.
    static let cpuid: UInt32 = 0x410F_C241
    /// What an execution priority is with no exception active and no mask set.
    static let threadPriority: Int32 = 256
    static let noPriority = Int32.max

    /// Word registers at fixed offsets in the window.
    enum Register: Int {
        case ictr = 0x004, actlr = 0x008
        case systCSR = 0x010, systRVR = 0x014, systCVR = 0x018, systCALIB = 0x01C
        case cpuid = 0xD00, icsr = 0xD04, vtor = 0xD08, aircr = 0xD0C, scr = 0xD10, ccr = 0xD14
        case shpr1 = 0xD18, shpr2 = 0xD1C, shpr3 = 0xD20, shcsr = 0xD24
        case cfsr = 0xD28, hfsr = 0xD2C, dfsr = 0xD30, mmfar = 0xD34, bfar = 0xD38, afsr = 0xD3C
        case cpacr = 0xD88, stir = 0xF00
    }

    /// The NVIC's register arrays (one word each for 32 interrupts; the rest of each array reads 0).
    static let iser = 0x100, icer = 0x180, ispr = 0x200, icpr = 0x280, iabr = 0x300
    static let ipr = 0x400..<0x420

    enum ICSR {
        static let nmiPendSet: UInt32 = 1 << 31
        static let pendSVSet: UInt32 = 1 << 28
        static let pendSVClear: UInt32 = 1 << 27
        static let pendSTSet: UInt32 = 1 << 26
        static let pendSTClear: UInt32 = 1 << 25
        static let isrPending: UInt32 = 1 << 22
        static let retToBase: UInt32 = 1 << 11
    }

    enum CCR {
        static let nonBaseThreadEnable: UInt32 = 1 << 0
        static let stackAlign: UInt32 = 1 << 9
        static let writable: UInt32 = 0x31B
    }

    /// SHCSR bits: where each exception's active and pended flag is, and the fault enables.
    enum SHCSR {
        static let active: [(bit: Int, exception: Int)] = [(0, 4), (1, 5), (3, 6), (7, 11), (8, 12), (10, 14), (11, 15)]
        static let pended: [(bit: Int, exception: Int)] = [(12, 6), (13, 4), (14, 5), (15, 11)]
        static let enables: UInt32 = 0x7 << 16
        static func enable(_ fault: ArmException) -> UInt32 {
            switch fault.number {
            case 4: 1 << 16
            case 5: 1 << 17
            case 6: 1 << 18
            default: 0
            }
        }
    }

    struct State {
        var enabled: UInt32 = 0
        /// Latched pending external interrupts (ISPR, STIR); IRQ 0's level adds to it.
        var pendingIRQ: UInt32 = 0
        var activeIRQ: UInt32 = 0
        var irqPriority = [UInt8](repeating: 0, count: SystemControlSpace.irqCount)
        /// Bit n: system exception n (2–15) pending / active.
        var systemPending: UInt16 = 0
        var systemActive: UInt16 = 0
        /// SHPR bytes, by exception number (4–15 used).
        var systemPriority = [UInt8](repeating: 0, count: 16)
        /// The exception whose handler runs (IPSR), 0 in Thread mode.
        var current = 0
        var vtor: UInt32
        var priorityGrouping: UInt32 = 0
        var scr: UInt32 = 0
        var ccr: UInt32 = CCR.stackAlign
        var faultEnables: UInt32 = 0
        var cfsr: UInt32 = 0, hfsr: UInt32 = 0, dfsr: UInt32 = 0, mmfar: UInt32 = 0, bfar: UInt32 = 0, afsr: UInt32 = 0
        var cpacr: UInt32 = 0, actlr: UInt32 = 0
        var sysTick = SysTick()
        /// AIRCR.SYSRESETREQ was written.
        var resetRequested = false
        /// The run ended: the deadline thread returns.
        var ended = false

        /// The group-priority bits of a priority byte (AIRCR.PRIGROUP: bits [PRIGROUP:0] are the subpriority).
        var groupMask: UInt8 { priorityGrouping >= 7 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (priorityGrouping + 1)) }

        func priority(of exception: ArmException) -> UInt8 {
            if let irq = exception.irq { return irqPriority[irq] }
            return systemPriority[exception.number]
        }

        /// The group priority `exception` preempts with.
        func groupPriority(of exception: ArmException) -> Int32 {
            exception.fixedPriority ?? Int32(priority(of: exception) & groupMask)
        }

        func isActive(_ exception: ArmException) -> Bool {
            if let irq = exception.irq { return activeIRQ & (1 << UInt32(irq)) != 0 }
            return systemActive & (1 << UInt16(exception.number)) != 0
        }

        var activeExceptions: [ArmException] {
            var result: [ArmException] = []
            for n in 1..<16 where systemActive & (1 << UInt16(n)) != 0 { result.append(ArmException(number: n)!) }
            for line in 0..<SystemControlSpace.irqCount where activeIRQ & (1 << UInt32(line)) != 0 { result.append(.irq(line)) }
            return result
        }

        /// How many exceptions are active.
        var activeCount: Int { systemActive.nonzeroBitCount + activeIRQ.nonzeroBitCount }

        /// The execution priority the active exceptions make (``SystemControlSpace/threadPriority``
        /// with none). Every run start asks (``SystemControlSpace/exceptionToTake(masks:ignoringPrimask:)``),
        /// so it walks the bit sets without building a list.
        var activePriority: Int32 {
            var lowest = SystemControlSpace.threadPriority
            var system = systemActive
            while system != 0 {
                let n = system.trailingZeroBitCount
                system &= system - 1
                lowest = min(lowest, groupPriority(of: ArmException(number: n)!))
            }
            var irqs = activeIRQ
            while irqs != 0 {
                let line = irqs.trailingZeroBitCount
                irqs &= irqs - 1
                lowest = min(lowest, groupPriority(of: .irq(line)))
            }
            return lowest
        }

        /// Whether `exception` is pending; IRQ 0 also while the mailbox's line is raised.
        func isPending(_ exception: ArmException, line: Bool) -> Bool {
            if let irq = exception.irq { return (pendingIRQ | (line ? 1 : 0)) & (1 << UInt32(irq)) != 0 }
            return systemPending & (1 << UInt16(exception.number)) != 0
        }

        /// Pending and able to be taken when its priority allows: external interrupts when
        /// enabled, system exceptions always (a pended fault too).
        func isReady(_ exception: ArmException, line: Bool) -> Bool {
            guard isPending(exception, line: line), !isActive(exception) else { return false }
            if let irq = exception.irq { return enabled & (1 << UInt32(irq)) != 0 }
            return true
        }

        /// The most urgent ready exception: group priority, then subpriority, then number.
        func mostUrgent(line: Bool, excludingLine: Bool = false) -> ArmException? {
            var best: (ArmException, Int32, UInt8)?
            func consider(_ exception: ArmException) {
                guard isReady(exception, line: line) else { return }
                let group = groupPriority(of: exception)
                let sub = exception.fixedPriority == nil ? priority(of: exception) & ~groupMask : 0
                if let b = best, (b.1, b.2) <= (group, sub) { return }
                best = (exception, group, sub)
            }
            for n in 2..<16 where systemPending & (1 << UInt16(n)) != 0 { consider(ArmException(number: n)!) }
            let irqs = pendingIRQ | (line && !excludingLine ? 1 : 0)
            for irq in 0..<SystemControlSpace.irqCount where irqs & (1 << UInt32(irq)) != 0 { consider(.irq(irq)) }
            return best?.0
        }

        /// SysTick's zeros up to `cycle`: COUNTFLAG, and the exception pended once with TICKINT.
        mutating func catchUpSysTick(at cycle: UInt64) {
            if sysTick.catchUp(at: cycle) { setPending(.sysTick, true) }
        }

        mutating func setPending(_ exception: ArmException, _ on: Bool) {
            if let irq = exception.irq {
                if on { pendingIRQ |= 1 << UInt32(irq) } else { pendingIRQ &= ~(1 << UInt32(irq)) }
            } else if on {
                systemPending |= 1 << UInt16(exception.number)
            } else {
                systemPending &= ~(1 << UInt16(exception.number))
            }
        }

        mutating func setActive(_ exception: ArmException, _ on: Bool) {
            if let irq = exception.irq {
                if on { activeIRQ |= 1 << UInt32(irq) } else { activeIRQ &= ~(1 << UInt32(irq)) }
            } else if on {
                systemActive |= 1 << UInt16(exception.number)
            } else {
                systemActive &= ~(1 << UInt16(exception.number))
            }
        }
    }

    private let state: MetalMutex<State>
    let rate: CoreClockRate
    let mailbox: Mailbox
    let inputs: InterruptInputs
    /// Ends the current run (from the core's own MMIO write: a reset request).
    private let stopper: EmulationStopper
    let faults: FaultWatch

    /// - Parameter vectorTable: VTOR's reset value (the code memory's base).
    init(rate: CoreClockRate, mailbox: Mailbox, inputs: InterruptInputs, vectorTable: UInt32, faults: FaultHandling = .crash) {
        self.rate = rate
        self.mailbox = mailbox
        self.inputs = inputs
        stopper = EmulationStopper(gate: inputs.gate)
        self.faults = FaultWatch(faults, mailbox: mailbox, stopper: stopper)
        state = MetalMutex(State(vtor: vectorTable))
        publish(State(vtor: vectorTable))
    }

    /// The mailbox's PENDING & IRQ_ENABLE ≠ 0, as IRQ 0 (a level: pending while raised).
    var externalLine: any InterruptLevelSink { inputs.line(1) }
    private var lineRaised: Bool { inputs.pendingBits & 1 != 0 }

    /// The core's cycle count now (read before any lock is taken: the mailbox has its own).
    private var cycle: UInt64 { rate.cycles(in: mailbox.coreTime) }

    /// Gives the block hook the priorities it compares (called with the state's lock held, after any change).
    private func publish(_ s: State) {
        let line = s.enabled & 1 != 0 && s.activeIRQ & 1 == 0 ? s.groupPriority(of: .irq(0)) : Self.noPriority
        let pending = s.mostUrgent(line: false).map { s.groupPriority(of: $0) } ?? Self.noPriority
        inputs.setPriorities(pending: pending, line: line, active: s.activePriority, groupMask: s.groupMask & Self.implementedPriorityMask)
    }

    /// Runs `body` on the state, then republishes the priorities.
    func withState<T>(_ body: (inout State) throws -> T) rethrows -> T {
        try state.withLock { s in
            defer { publish(s) }
            return try body(&s)
        }
    }

    /// `exception` is entered: active, no longer pending, in IPSR.
    func activate(_ exception: ArmException) {
        withState { s in
            s.setActive(exception, true)
            s.setPending(exception, false)
            s.current = exception.number
        }
    }

    /// A copy of the state (tests, the debugger's `monitor irq`).
    var snapshot: State { state.withLock { $0 } }

    // MARK: Taking exceptions

    /// The masks the CPU's special registers set, as an execution priority (threadPriority: none).
    struct Masks {
        var primask = false, faultmask = false
        var basepri: UInt8 = 0
        func priority(groupMask: UInt8) -> Int32 {
            if faultmask { return -1 }
            if primask { return 0 }
            let base = basepri & SystemControlSpace.implementedPriorityMask & groupMask
            return basepri & SystemControlSpace.implementedPriorityMask != 0 ? Int32(base) : SystemControlSpace.threadPriority
        }
    }

    /// The exception to take now: the most urgent ready one, when it preempts the execution
    /// priority (the active exceptions' and the masks'). `ignoringPrimask`: whether it would
    /// were PRIMASK clear — what wakes WFI.
    func exceptionToTake(masks: Masks, ignoringPrimask: Bool = false) -> ArmException? {
        let line = lineRaised
        let now = cycle
        return state.withLock { s in
            s.catchUpSysTick(at: now)
            defer { publish(s) }
            guard let candidate = s.mostUrgent(line: line) else { return nil }
            var m = masks
            if ignoringPrimask { m.primask = false }
            let execution = min(s.activePriority, m.priority(groupMask: s.groupMask))
            return s.groupPriority(of: candidate) < execution ? candidate : nil
        }
    }

    /// Whether the firmware asked for a system reset (AIRCR.SYSRESETREQ).
    var resetRequested: Bool { state.withLock { $0.resetRequested } }

    // MARK: SysTick's deadline

    /// The deadline thread's body: pends SysTick when the counter reaches zero with TICKINT set
    /// (a busy core sees it at its next block boundary). Sleeps until that moment, or without a
    /// limit while SysTick is off or the clock gated; looks again when woken (a SysTick write, a
    /// resume, a stop). Returns after ``end()``.
    func runDeadlines() {
        runTimerDeadlines(mailbox: mailbox, faults: faults) { [self] in
            let now = cycle
            return state.withLock { s in
                guard !s.ended else { return nil }
                defer { publish(s) }
                s.catchUpSysTick(at: now)
                guard !mailbox.isClockGated, let next = s.sysTick.nextZero(after: now) else { return .some(nil) }
                return .some(rate.duration(of: next - now))
            }
        }
    }

    /// Ends ``runDeadlines()``.
    func end() {
        state.withLock { $0.ended = true }
        mailbox.timerWake.signal()
    }

    /// When SysTick next interrupts, for a core about to idle in WFI (`nil`: not counting, or TICKINT clear).
    func timerDeadline() -> ClockInstant? {
        let now = cycle
        let instant = mailbox.clock.now
        return state.withLock { s in
            defer { publish(s) }
            s.catchUpSysTick(at: now)
            guard s.sysTick.interrupts, let next = s.sysTick.nextZero(after: now) else { return nil }
            return instant + rate.duration(of: next - now)
        }
    }

    // MARK: MMIO

    /// A guest read of `size` bytes at `offset` (unknown offsets read 0).
    func read(_ offset: Int, size: Int) -> UInt64 {
        let word = offset & ~3
        let line = lineRaised
        let now = cycle
        // SysTick first: a counter read past zero finds the exception pended (COUNTFLAG, ICSR).
        let value: UInt32 = withState { s in
            s.catchUpSysTick(at: now)
            return readWord(word, &s, line: line, cycle: now)
        }
        let shifted = UInt64(value >> (UInt32(offset & 3) * 8))
        return size >= 4 ? shifted : shifted & ((1 << (UInt64(size) * 8)) - 1)
    }

    /// A guest write (sub-word writes touch only their bytes; unknown offsets ignore it).
    func write(_ offset: Int, size: Int, _ value: UInt64) {
        let word = offset & ~3
        let shift = UInt32(offset & 3) * 8
        let mask = UInt32(truncatingIfNeeded: size >= 4 ? 0xFFFF_FFFF : (1 << (UInt64(size) * 8)) - 1) << shift
        let bits = UInt32(truncatingIfNeeded: value << UInt64(shift)) & mask
        let now = cycle
        let (timerChanged, reset) = withState { s in
            let before = s.sysTick
            writeWord(word, bits: bits, mask: mask, &s, cycle: now)
            return (s.sysTick != before, s.resetRequested)
        }
        if timerChanged { mailbox.timerWake.signal() }
        if reset { stopper.stopOnce() }
    }

    private func readWord(_ word: Int, _ s: inout State, line: Bool, cycle now: UInt64) -> UInt32 {
        func irqWord(_ bits: UInt32, _ base: Int) -> UInt32 { word == base ? bits : 0 }
        switch word {
        case Self.iser, Self.icer: return irqWord(s.enabled, word)
        case Self.ispr, Self.icpr: return irqWord(s.pendingIRQ | (line ? 1 : 0), word)
        case Self.iabr: return s.activeIRQ
        case Self.ipr:
            let first = word - Self.ipr.lowerBound
            return (0..<4).reduce(0) { $0 | UInt32(s.irqPriority[first + $1]) << (8 * UInt32($1)) }
        default: break
        }
        guard let register = Register(rawValue: word) else { return 0 }
        switch register {
        case .ictr: return 0
        case .actlr: return s.actlr
        case .systCSR:
            s.catchUpSysTick(at: now)
            return s.sysTick.readControl()
        case .systRVR: return s.sysTick.reload
        case .systCVR: return s.sysTick.value(at: now)
        case .systCALIB: return SysTick.calibration(rate)
        case .cpuid: return Self.cpuid
        case .icsr:
            var value = UInt32(s.current & 0x1FF)
            if s.isPending(.nmi, line: line) { value |= ICSR.nmiPendSet }
            if s.isPending(.pendSV, line: line) { value |= ICSR.pendSVSet }
            if s.isPending(.sysTick, line: line) { value |= ICSR.pendSTSet }
            if (s.pendingIRQ | (line ? 1 : 0)) & s.enabled != 0 { value |= ICSR.isrPending }
            if let next = s.mostUrgent(line: line) { value |= UInt32(next.number & 0x1FF) << 12 }
            if s.activeCount <= 1 { value |= ICSR.retToBase }
            return value
        case .vtor: return s.vtor
        case .aircr: return 0xFA05_0000 | (s.priorityGrouping << 8)
        case .scr: return s.scr
        case .ccr: return s.ccr
        case .shpr1, .shpr2, .shpr3:
            let first = 4 + (word - Register.shpr1.rawValue)
            return (0..<4).reduce(0) { $0 | UInt32(s.systemPriority[first + $1]) << (8 * UInt32($1)) }
        case .shcsr:
            var value = s.faultEnables
            for (bit, n) in SHCSR.active where s.systemActive & (1 << UInt16(n)) != 0 { value |= 1 << UInt32(bit) }
            for (bit, n) in SHCSR.pended where s.systemPending & (1 << UInt16(n)) != 0 { value |= 1 << UInt32(bit) }
            return value
        case .cfsr: return s.cfsr
        case .hfsr: return s.hfsr
        case .dfsr: return s.dfsr
        case .mmfar: return s.mmfar
        case .bfar: return s.bfar
        case .afsr: return s.afsr
        case .cpacr: return s.cpacr
        case .stir: return 0
        }
    }

    private func writeWord(_ word: Int, bits: UInt32, mask: UInt32, _ s: inout State, cycle now: UInt64) {
        func merged(_ old: UInt32) -> UInt32 { (old & ~mask) | bits }
        func bytes(_ array: inout [UInt8], from first: Int) {
            for i in 0..<4 where mask & (0xFF << (8 * UInt32(i))) != 0 && array.indices.contains(first + i) {
                array[first + i] = UInt8(truncatingIfNeeded: bits >> (8 * UInt32(i))) & Self.implementedPriorityMask
            }
        }
        switch word {
        case Self.iser: s.enabled |= bits
        case Self.icer: s.enabled &= ~bits
        case Self.ispr: s.pendingIRQ |= bits
        case Self.icpr: s.pendingIRQ &= ~bits
        case Self.ipr: bytes(&s.irqPriority, from: word - Self.ipr.lowerBound)
        default: break
        }
        guard let register = Register(rawValue: word) else { return }
        switch register {
        case .ictr, .cpuid, .systCALIB: break
        case .actlr: s.actlr = merged(s.actlr)
        case .systCSR:
            s.catchUpSysTick(at: now)
            s.sysTick.writeControl(merged(s.sysTick.readControl(clearing: false)), at: now)
        case .systRVR:
            s.catchUpSysTick(at: now)
            s.sysTick.writeReload(merged(s.sysTick.reload) & SysTick.valueMask, at: now)
        case .systCVR:
            s.catchUpSysTick(at: now)
            s.sysTick.clearCurrent(at: now)
        case .icsr:
            if bits & ICSR.nmiPendSet != 0 { s.setPending(.nmi, true) }
            if bits & ICSR.pendSVClear != 0 { s.setPending(.pendSV, false) }
            if bits & ICSR.pendSVSet != 0 { s.setPending(.pendSV, true) }
            if bits & ICSR.pendSTClear != 0 { s.setPending(.sysTick, false) }
            if bits & ICSR.pendSTSet != 0 { s.setPending(.sysTick, true) }
        case .vtor: s.vtor = merged(s.vtor) & 0xFFFF_FF80
        case .aircr:
            // Only a write with VECTKEY 0x05FA counts (a sub-word write cannot carry it).
            guard mask == 0xFFFF_FFFF, bits >> 16 == 0x05FA else { break }
            s.priorityGrouping = (bits >> 8) & 7
            if bits & (1 << 2) != 0 { s.resetRequested = true }
        case .scr: s.scr = merged(s.scr) & 0x16
        case .ccr: s.ccr = merged(s.ccr) & CCR.writable
        case .shpr1, .shpr2, .shpr3:
            let first = 4 + (word - Register.shpr1.rawValue)
            var priorities = s.systemPriority
            bytes(&priorities, from: first)
            for n in 4..<16 where !ArmException(number: n)!.isDefined { priorities[n] = 0 }
            s.systemPriority = priorities
        case .shcsr:
            let value = merged(readWord(word, &s, line: false, cycle: now))
            for (bit, n) in SHCSR.active { s.setActive(ArmException(number: n)!, value & (1 << UInt32(bit)) != 0) }
            for (bit, n) in SHCSR.pended { s.setPending(ArmException(number: n)!, value & (1 << UInt32(bit)) != 0) }
            s.faultEnables = value & SHCSR.enables
        case .cfsr: s.cfsr &= ~bits
        case .hfsr: s.hfsr &= ~bits
        case .dfsr: s.dfsr &= ~bits
        case .mmfar: s.mmfar = merged(s.mmfar)
        case .bfar: s.bfar = merged(s.bfar)
        case .afsr: s.afsr = merged(s.afsr)
        case .cpacr: s.cpacr = merged(s.cpacr)
        case .stir:
            let line = Int(bits & 0x1FF)
            if line < Self.irqCount { s.pendingIRQ |= 1 << UInt32(line) }
        }
    }
}

/// SysTick: a 24-bit counter that decrements at the core clock from RVR to 0, then reloads;
/// reaching 0 sets COUNTFLAG and, with TICKINT, pends the SysTick exception. Kept as where it
/// stood at an anchor cycle, so it costs nothing while it counts (CALIB.NOREF: the core clock only).
struct SysTick: Hashable {
    static let valueMask: UInt32 = 0x00FF_FFFF
    var enabled = false
    var interrupts = false
    var countFlag = false
    var reload: UInt32 = 0
    /// The counter's value at `anchor` (core cycles).
    var anchorValue: UInt32 = 0
    var anchor: UInt64 = 0
    /// Zeros reached since the anchor that were already counted.
    var zerosSeen: UInt64 = 0

    /// The cycles after the anchor at which the counter first reaches 0 (`nil`: never).
    private var firstZero: UInt64? {
        if anchorValue > 0 { return UInt64(anchorValue) }
        return reload > 0 ? UInt64(reload) + 1 : nil
    }

    /// How many times the counter reached 0 from the anchor to `cycle`.
    private func zeros(through cycle: UInt64) -> UInt64 {
        guard enabled, let first = firstZero, cycle >= anchor else { return 0 }
        let elapsed = cycle - anchor
        guard elapsed >= first else { return 0 }
        return reload == 0 ? 1 : (elapsed - first) / (UInt64(reload) + 1) + 1
    }

    /// Counts the zeros reached up to `cycle` (COUNTFLAG); true when that pends the exception (TICKINT).
    mutating func catchUp(at cycle: UInt64) -> Bool {
        let reached = zeros(through: cycle)
        guard reached > zerosSeen else { return false }
        zerosSeen = reached
        countFlag = true
        return interrupts
    }

    /// The cycle of the next zero after `cycle` (`nil`: not counting, or it never reaches one).
    func nextZero(after cycle: UInt64) -> UInt64? {
        guard enabled, let first = firstZero else { return nil }
        let n = zeros(through: cycle)
        if n == 0 { return anchor + first }
        guard reload > 0 else { return nil }
        return anchor + first + n * (UInt64(reload) + 1)
    }

    /// CVR at `cycle`.
    func value(at cycle: UInt64) -> UInt32 {
        guard enabled, cycle >= anchor else { return anchorValue }
        let elapsed = cycle - anchor
        guard let first = firstZero else { return 0 }
        if elapsed < first {
            return anchorValue > 0 ? anchorValue - UInt32(elapsed) : (elapsed == 0 ? 0 : reload - UInt32(elapsed - 1))
        }
        guard reload > 0 else { return 0 }
        let k = (elapsed - first) % (UInt64(reload) + 1)
        return k == 0 ? 0 : reload + 1 - UInt32(k)
    }

    /// CSR; a read clears COUNTFLAG.
    mutating func readControl(clearing: Bool = true) -> UInt32 {
        let value = (enabled ? 1 : 0) | (interrupts ? 2 : 0) | 4 | (countFlag ? 1 << 16 : 0)
        if clearing { countFlag = false }
        return UInt32(value)
    }

    private mutating func reanchor(at cycle: UInt64) {
        anchorValue = value(at: cycle)
        anchor = cycle
        zerosSeen = 0
    }

    mutating func writeControl(_ value: UInt32, at cycle: UInt64) {
        reanchor(at: cycle)
        enabled = value & 1 != 0
        interrupts = value & 2 != 0
    }

    /// RVR: the next reload takes it.
    mutating func writeReload(_ value: UInt32, at cycle: UInt64) {
        reanchor(at: cycle)
        reload = value
    }

    /// Any write of CVR clears it (and COUNTFLAG); the next cycle reloads.
    mutating func clearCurrent(at cycle: UInt64) {
        anchor = cycle
        anchorValue = 0
        zerosSeen = 0
        countFlag = false
    }

    /// CALIB: NOREF (no reference clock), SKEW unless 10 ms is a whole number of cycles, TENMS.
    static func calibration(_ rate: CoreClockRate) -> UInt32 {
        let tenMilliseconds = rate.hertz / 100
        guard tenMilliseconds >= 1, tenMilliseconds - 1 <= UInt64(valueMask) else { return 1 << 31 | 1 << 30 }
        return 1 << 31 | (rate.hertz % 100 == 0 ? 0 : 1 << 30) | UInt32(tenMilliseconds - 1)
    }
}
