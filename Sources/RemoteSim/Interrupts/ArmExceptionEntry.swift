import MetalIO

/// The ARMv7-M core registers exception entry and return read and write.
enum ArmRegister: Sendable, CaseIterable {
    case r0, r1, r2, r3, r12, lr
    /// The stack pointer in use (MSP or PSP, by mode and CONTROL.SPSEL).
    case sp
    case msp, psp, xpsr, control, primask, basepri, faultmask
}

/// A stopped Cortex-M CPU as exception entry and return see it (the Unicorn engine; a plain
/// model in tests).
protocol ArmExceptionCPU: AnyObject {
    func read(_ register: ArmRegister) -> UInt32
    func write(_ register: ArmRegister, _ value: UInt32) throws(UnicornError)
    /// A word of guest memory, `nil` when unmapped.
    func load32(_ address: UInt32) -> UInt32?
    /// `false` when unmapped.
    func store32(_ address: UInt32, _ value: UInt32) -> Bool
}

/// An exception entry or return the board cannot perform as the firmware asked.
public struct ArmExceptionError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Hashable {
        /// The 8-word frame could not be pushed (the stack overflowed into unmapped memory).
        case stacking(frame: UInt32)
        case unstacking(frame: UInt32)
        case vectorUnreadable(address: UInt32)
        /// The vector is 0 (no handler) or not a Thumb address (bit 0 clear).
        case vectorNotThumb(address: UInt32, value: UInt32)
        /// A branch to an EXC_RETURN value that does not return from anything.
        case invalidReturn(value: UInt32, why: String)
        /// The stacked xPSR a return restores has the Thumb bit clear.
        case returnNotThumb(frame: UInt32, xpsr: UInt32)
        /// A synchronous exception (SVC) at an execution priority that does not let it in.
        case escalation(priority: Int32, executionPriority: Int32)
        case register(String)
    }
    /// The exception being entered, or the one returning.
    public var exception: ArmException
    public var reason: Reason

    public var description: String {
        switch reason {
        case let .stacking(frame):
            "\(exception) could not push its exception frame at \(hex(UInt64(frame))) (stack overflow into unmapped memory)"
        case let .unstacking(frame):
            "the return from \(exception) could not pop its exception frame at \(hex(UInt64(frame)))"
        case let .vectorUnreadable(address):
            "the vector of \(exception) at \(hex(UInt64(address))) cannot be read (VTOR points outside memory)"
        case let .vectorNotThumb(address, value):
            value == 0 ? "no handler for \(exception): its vector at \(hex(UInt64(address))) is 0"
                : "the vector of \(exception) at \(hex(UInt64(address))) holds \(hex(UInt64(value))), not a Thumb address (bit 0 clear)"
        case let .invalidReturn(value, why):
            "bad exception return from \(exception): EXC_RETURN \(hex(UInt64(value))) \(why)"
        case let .returnNotThumb(frame, xpsr):
            "the return from \(exception) restores xPSR \(hex(UInt64(xpsr))) from the frame at \(hex(UInt64(frame))), with the Thumb bit clear"
        case let .escalation(priority, execution):
            "\(exception) at priority \(priority) cannot be taken at execution priority \(execution) (it escalates to HardFault)"
        case let .register(text): "\(exception): \(text)"
        }
    }
}

/// What an exception return did.
enum ArmReturnOutcome: Equatable {
    /// Back to where the frame said.
    case returned(to: UInt32)
    /// A pending exception was taken instead, on the same frame (tail-chaining).
    case tailChained(ArmException, handler: UInt32)
}

/// ARMv7-M exception entry and return, as the Architecture Reference Manual defines them
/// (B1.5.6–B1.5.8), for a core without floating-point context: the board performs them
/// between runs (Unicorn 2.0.1 does neither for M-profile).
enum ArmExceptionEntry {
    private static let xpsrFlags: UInt32 = 0xF80F_0000   // N Z C V Q, GE
    private static let thumb: UInt32 = 1 << 24
    private static let stackPadding: UInt32 = 1 << 9

    /// The masks in the CPU's special registers.
    static func masks(of cpu: some ArmExceptionCPU) -> SystemControlSpace.Masks {
        SystemControlSpace.Masks(primask: cpu.read(.primask) & 1 != 0, faultmask: cpu.read(.faultmask) & 1 != 0,
                                 basepri: UInt8(truncatingIfNeeded: cpu.read(.basepri)))
    }

    /// Enters `exception`; its handler returns to `returnAddress`. Pushes the 8-word frame
    /// (r0–r3, r12, lr, the return address, xPSR) on the stack in use, 8-byte aligned when
    /// CCR.STKALIGN is set (xPSR bit 9 records the padding); LR becomes the EXC_RETURN value;
    /// Handler mode on the main stack; IPSR the exception; the exception active, no longer
    /// pending. Returns the handler's address, read through VTOR. Nothing is changed when it throws.
    static func enter(_ exception: ArmException, returnAddress: UInt32, cpu: some ArmExceptionCPU,
                      scs: SystemControlSpace) throws(ArmExceptionError) -> UInt32 {
        let s = scs.snapshot
        let handler = try vector(of: exception, table: s.vtor, cpu: cpu)
        let xpsr = cpu.read(.xpsr)
        let control = cpu.read(.control)
        let threadMode = xpsr & 0x1FF == 0
        let onProcessStack = threadMode && control & 2 != 0
        let sp = cpu.read(.sp)
        let align = s.ccr & SystemControlSpace.CCR.stackAlign != 0
        let padded = align && sp & 4 != 0
        let frame = (sp &- 32) & (align ? ~UInt32(4) : ~UInt32(0))
        let words = [cpu.read(.r0), cpu.read(.r1), cpu.read(.r2), cpu.read(.r3), cpu.read(.r12), cpu.read(.lr),
                     returnAddress & ~1, (xpsr & ~stackPadding) | (padded ? stackPadding : 0)]
        for (i, word) in words.enumerated() where !cpu.store32(frame &+ UInt32(i * 4), word) {
            throw ArmExceptionError(exception: exception, reason: .stacking(frame: frame))
        }
        let excReturn: ArmExceptionReturn = threadMode ? (onProcessStack ? .threadProcess : .threadMain) : .handler
        do {
            try cpu.write(onProcessStack ? .psp : .msp, frame)
            try cpu.write(.control, control & ~2)           // in Thread mode still: SPSEL may change
            try cpu.write(.lr, excReturn.rawValue)
            try cpu.write(.xpsr, (xpsr & xpsrFlags) | thumb | UInt32(exception.number))
        } catch {
            throw ArmExceptionError(exception: exception, reason: .register("\(error)"))
        }
        scs.activate(exception)
        return handler & ~1
    }

    /// Enters a synchronous exception (SVC) raised by the instruction before `returnAddress`:
    /// only when its priority preempts the execution priority, else it would escalate.
    static func enterSynchronous(_ exception: ArmException, returnAddress: UInt32, cpu: some ArmExceptionCPU,
                                 scs: SystemControlSpace) throws(ArmExceptionError) -> UInt32 {
        let s = scs.snapshot
        let priority = s.groupPriority(of: exception)
        let execution = min(s.activePriority, masks(of: cpu).priority(groupMask: s.groupMask))
        guard priority < execution else {
            throw ArmExceptionError(exception: exception, reason: .escalation(priority: priority, executionPriority: execution))
        }
        return try enter(exception, returnAddress: returnAddress, cpu: cpu, scs: scs)
    }

    /// Returns from the exception in IPSR through EXC_RETURN `value` (a branch to it in Handler
    /// mode): checks it against the mode and the active exceptions, deactivates the exception
    /// (and clears FAULTMASK), then either tail-chains into a pending exception that the
    /// priority now lets in — the frame stays — or pops the frame from the stack `value` names,
    /// restoring the registers, xPSR (IT state included) and CONTROL.SPSEL.
    static func returnFrom(_ value: UInt32, cpu: some ArmExceptionCPU, scs: SystemControlSpace) throws(ArmExceptionError) -> ArmReturnOutcome {
        let xpsr = cpu.read(.xpsr)
        let s = scs.snapshot
        guard let returning = ArmException(number: Int(xpsr & 0x1FF)) else {
            throw ArmExceptionError(exception: .usageFault, reason: .invalidReturn(value: value, why: "in Thread mode, with no exception active"))
        }
        func invalid(_ why: String) -> ArmExceptionError { ArmExceptionError(exception: returning, reason: .invalidReturn(value: value, why: why)) }
        guard let kind = ArmExceptionReturn(rawValue: value) else {
            throw invalid("is not one of 0xFFFFFFF1, 0xFFFFFFF9, 0xFFFFFFFD")
        }
        guard s.isActive(returning) else { throw invalid("while \(returning) is not active") }
        let others = s.activeExceptions.filter { $0 != returning }
        if !kind.returnsToThread && others.isEmpty { throw invalid("returns to Handler mode with no other exception active") }
        if kind.returnsToThread && !others.isEmpty && s.ccr & SystemControlSpace.CCR.nonBaseThreadEnable == 0 {
            throw invalid("returns to Thread mode with \(others.map(\.description).joined(separator: ", ")) still active")
        }
        let sp = cpu.read(kind.usesProcessStack ? .psp : .msp)
        var words: [UInt32] = []
        for i in 0..<8 {
            guard let word = cpu.load32(sp &+ UInt32(i * 4)) else { throw ArmExceptionError(exception: returning, reason: .unstacking(frame: sp)) }
            words.append(word)
        }
        let stacked = words[7]
        guard stacked & thumb != 0 else { throw ArmExceptionError(exception: returning, reason: .returnNotThumb(frame: sp, xpsr: stacked)) }
        let stackedException = Int(stacked & 0x1FF)
        if kind.returnsToThread && stackedException != 0 { throw invalid("returns to Thread mode but the frame's IPSR is \(stackedException)") }
        if !kind.returnsToThread && stackedException == 0 { throw invalid("returns to Handler mode but the frame's IPSR is 0") }
        // The frame is firmware memory: a Handler-mode return must land in an exception that is active.
        if !kind.returnsToThread && !(ArmException(number: stackedException).map(others.contains) ?? false) {
            throw invalid("returns to Handler mode but the frame's IPSR is \(stackedException), which is not an active exception")
        }
        do {
            if returning != .nmi { try cpu.write(.faultmask, 0) }
        } catch {
            throw ArmExceptionError(exception: returning, reason: .register("\(error)"))
        }
        scs.withState { s in
            s.setActive(returning, false)
            s.current = stackedException
        }
        // Tail-chaining: what preempts the priority returned to is taken on the frame as it is.
        if let next = scs.exceptionToTake(masks: masks(of: cpu)) {
            let handler = try vector(of: next, table: s.vtor, cpu: cpu)
            do {
                try cpu.write(.lr, value)
                try cpu.write(.xpsr, (xpsr & ~UInt32(0x1FF)) | UInt32(next.number))
            } catch {
                throw ArmExceptionError(exception: next, reason: .register("\(error)"))
            }
            scs.activate(next)
            return .tailChained(next, handler: handler & ~1)
        }
        let padding: UInt32 = stacked & stackPadding != 0 && s.ccr & SystemControlSpace.CCR.stackAlign != 0 ? 4 : 0
        do {
            try cpu.write(kind.usesProcessStack ? .psp : .msp, sp &+ 32 &+ padding)
            try cpu.write(.r0, words[0])
            try cpu.write(.r1, words[1])
            try cpu.write(.r2, words[2])
            try cpu.write(.r3, words[3])
            try cpu.write(.r12, words[4])
            try cpu.write(.lr, words[5])
            try cpu.write(.xpsr, stacked & ~stackPadding)         // Thread mode first: then SPSEL may change
            let control = cpu.read(.control)
            try cpu.write(.control, kind.usesProcessStack ? control | 2 : control & ~2)
        } catch {
            throw ArmExceptionError(exception: returning, reason: .register("\(error)"))
        }
        return .returned(to: words[6] & ~1)
    }

    /// The handler address in `exception`'s vector (bit 0 set: Thumb).
    private static func vector(of exception: ArmException, table: UInt32, cpu: some ArmExceptionCPU) throws(ArmExceptionError) -> UInt32 {
        let address = table &+ UInt32(exception.number * 4)
        guard let handler = cpu.load32(address) else { throw ArmExceptionError(exception: exception, reason: .vectorUnreadable(address: address)) }
        guard handler & 1 != 0 else { throw ArmExceptionError(exception: exception, reason: .vectorNotThumb(address: address, value: handler)) }
        return handler
    }
}
