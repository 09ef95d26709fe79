import MetalIO
import Remoteproc
import Virtio

/// The power-management registers of mailbox version 2 (offsets 0x30–0x3C), their values, and
/// the suspend handshake's timing — one place for what docs/remotesim.md documents.
///
/// - `PM_CONTROL` (0x30, read/write): bit 0 set by firmware that answers suspend requests.
///   Firmware that never sets it (all version-1 firmware) is suspended by gating its clock.
/// - `PM_REQUEST` (0x34, read-only): the request the host has made and the firmware not answered:
///   0 none, 1 auto (runtime PM), 2 system. A new request wakes WAIT (and `wfi`) once, like a kick;
///   PENDING is not touched (its 32 bits are notify ids).
/// - `PM_REPLY` (0x38, write-only): 1 ACK (quiesced: the board then gates the clock at the core's
///   next instruction boundary — typically the WAIT or `wfi` that follows), 2 CANCEL (the
///   host's suspend fails, the core runs on).
/// - `PM_STATUS` (0x3C): bit 0 RESUMED, set when the core runs again after a suspension it
///   acknowledged (write 1 to clear); bit 1 REQUEST, a request is waiting for an answer. The
///   resume wakes WAIT once.
public enum PowerRegisters {
    public static let controlAnswersRequests: UInt32 = 1
    public static let requestNone: UInt32 = 0
    public static let requestAuto: UInt32 = 1
    public static let requestSystem: UInt32 = 2
    public static let replyAck: UInt32 = 1
    public static let replyCancel: UInt32 = 2
    public static let statusResumed: UInt32 = 1 << 0
    public static let statusRequest: UInt32 = 1 << 1

    /// PM_REQUEST's value for a kind (forced suspensions are never requested).
    static func code(_ kind: SuspendKind) -> UInt32 { kind == .system ? requestSystem : requestAuto }
}

/// The firmware's answer to a suspend request.
public enum SuspendAnswer: String, Sendable, Hashable, CustomStringConvertible {
    /// Quiesced: the clock may be gated (`PM_REPLY` = 1).
    case ack
    /// Not now (`PM_REPLY` = 2).
    case cancel
    public var description: String { rawValue.uppercased() }
}

/// Fault injection on the handshake: a firmware that cancels every request, or never answers.
public enum PowerReplyFault: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Every cooperative request is cancelled (as if the firmware wrote CANCEL at once).
    case cancel
    /// The firmware's answers are lost: every cooperative request runs out its timeout (busy).
    case ignore
    public var description: String { rawValue }
}

/// What the board's trace records of suspensions.
public enum PowerEvent: Sendable, Hashable, CustomStringConvertible {
    /// The host asked the firmware to suspend.
    case requested(SuspendKind)
    /// The firmware answered.
    case answered(SuspendAnswer)
    /// The request went unanswered within the timeout and was withdrawn.
    case unanswered(SuspendKind, timeout: Duration)
    /// The core's clock is gated (it parked at an instruction boundary).
    case gated(SuspendKind)
    /// The clock runs again.
    case ungated
    /// The firmware used the registers wrongly (the write is ignored).
    case misuse(String)
    /// Fault injection changed the handshake.
    case faultInjected(String)

    public var description: String {
        switch self {
        case let .requested(kind): "suspend request \(kind) to the firmware"
        case let .answered(answer): "the firmware answered \(answer)"
        case let .unanswered(kind, timeout): "the \(kind) suspend request went unanswered within \(timeout); withdrawn"
        case let .gated(kind): "core clock gated (\(kind) suspend)"
        case .ungated: "core clock running again (resume)"
        case let .misuse(text): "firmware misused the power registers: \(text)"
        case let .faultInjected(text): "fault injection: \(text)"
        }
    }
}

/// The gate and the handshake's state, inside the mailbox's state (one lock for both).
struct PowerState: Sendable {
    enum Gate: Sendable { case open, closing, closed }
    var gate = Gate.open
    var gatedSince: ClockInstant?
    var gated: Duration = .zero
    /// What the suspension in force (or being made) is.
    var kind: SuspendKind = .forced
    var control: UInt32 = 0
    var request: UInt32 = PowerRegisters.requestNone
    var reply: SuspendAnswer?
    var status: UInt32 = 0
    /// WAIT returns once for a new request and once after a cooperative resume.
    var wakeUnseen = false
    var coreEnded = false
    var replyFault: PowerReplyFault?
    /// The registers of the parked core (an emulated one), from the moment it parked until the gate opens.
    var parkedCPU: CPUSnapshot?

    /// Time with the clock gated, the current interval included.
    func gatedTime(at now: ClockInstant) -> Duration { gated + (gatedSince.map { now - $0 } ?? .zero) }

    mutating func takeWakeEvent() -> Bool {
        defer { wakeUnseen = false }
        return wakeUnseen
    }
}

extension Mailbox {
    // MARK: Registers (the firmware's side)

    func readPowerRegister(_ offset: Int) -> UInt32 {
        state.withLock { s in
            switch Register(rawValue: offset) {
            case .pmControl: s.power.control
            case .pmRequest: s.power.request
            case .pmStatus: s.power.status | (s.power.request != PowerRegisters.requestNone && s.power.reply == nil ? PowerRegisters.statusRequest : 0)
            default: 0      // PM_REPLY is write-only
            }
        }
    }

    func writePowerRegister(_ offset: Int, _ value: UInt32) {
        var events: [MailboxEvent] = []
        let answered = state.withLock { s -> Bool in
            switch Register(rawValue: offset) {
            case .pmControl:
                if value & ~PowerRegisters.controlAnswersRequests != 0 {
                    events.append(.power(.misuse("PM_CONTROL \(hex(UInt64(value))): only bit 0 is defined")))
                }
                s.power.control = value & PowerRegisters.controlAnswersRequests
            case .pmReply:
                let answer: SuspendAnswer? = switch value {
                case PowerRegisters.replyAck: .ack
                case PowerRegisters.replyCancel: .cancel
                default: nil
                }
                guard let answer else {
                    events.append(.power(.misuse("PM_REPLY \(hex(UInt64(value))) is neither ACK (1) nor CANCEL (2)")))
                    return false
                }
                guard s.power.request != PowerRegisters.requestNone else {
                    events.append(.power(.misuse("PM_REPLY \(answer) without a suspend request")))
                    return false
                }
                guard s.power.reply == nil else {
                    events.append(.power(.misuse("PM_REPLY \(answer) after the request was answered \(s.power.reply!)")))
                    return false
                }
                if s.power.replyFault == .ignore {
                    events.append(.power(.faultInjected("the firmware's \(answer) is lost")))
                    return false
                }
                s.power.reply = answer
                events.append(.power(.answered(answer)))
                return true
            case .pmStatus:
                if value & ~PowerRegisters.statusResumed != 0 {
                    events.append(.power(.misuse("PM_STATUS \(hex(UInt64(value))): only RESUMED (bit 0) clears")))
                }
                s.power.status &= ~(value & PowerRegisters.statusResumed)
            default:
                events.append(.power(.misuse("PM_REQUEST is read-only (wrote \(hex(UInt64(value))))")))
            }
            return false
        }
        for event in events { emit(event) }
        if answered { powerWake.signal() }
    }

    // MARK: The firmware's side, typed (native firmware)

    /// Native firmware takes part in the handshake (sets PM_CONTROL bit 0) or stops doing so.
    public func setAnswersSuspendRequests(_ answers: Bool) {
        writePowerRegister(Register.pmControl.rawValue, answers ? PowerRegisters.controlAnswersRequests : 0)
    }

    /// The request waiting for the firmware's answer, if any.
    public var suspendRequest: SuspendKind? {
        state.withLock { s in
            guard s.power.reply == nil else { return nil }
            return switch s.power.request {
            case PowerRegisters.requestAuto: .auto
            case PowerRegisters.requestSystem: .system
            default: nil
            }
        }
    }

    /// Writes the firmware's answer into PM_REPLY.
    public func answerSuspendRequest(_ answer: SuspendAnswer) {
        writePowerRegister(Register.pmReply.rawValue, answer == .ack ? PowerRegisters.replyAck : PowerRegisters.replyCancel)
    }

    /// Reads and clears PM_STATUS's RESUMED bit: whether the core was resumed from a suspension it acknowledged.
    public func takeResumed() -> Bool {
        state.withLock { s in
            defer { s.power.status &= ~PowerRegisters.statusResumed }
            return s.power.status & PowerRegisters.statusResumed != 0
        }
    }

    // MARK: The core's side of the gate

    /// Parks the calling core thread while the host has its clock gated: where it stands is an
    /// instruction boundary (native firmware at a board access, an emulated core between runs).
    /// Returns at once when nothing is gated; otherwise after the resume, a stop, or — with
    /// `releaseOnBreak` — a debugger's halt request. Returns how long it was parked. The time
    /// parked counts as gated (not as idle) for the watchdog and TICKS.
    /// - Parameter consumingBreak: whether a debugger's request that ends the park is taken here
    ///   (`false`: a WAIT that parked returns 0 for it).
    @discardableResult
    public func parkIfGated(releaseOnBreak: Bool = false, consumingBreak: Bool = true) -> Duration {
        guard gateRequested.load(ordering: .sequentiallyConsistent) else { return .zero }
        var parkedAt: ClockInstant?
        var wasIdle = false
        while true {
            let now = clock.now
            let (done, justParked, kind) = state.withLock { s -> (Bool, Bool, SuspendKind) in
                if s.stop || s.power.gate == .open { return (true, false, s.power.kind) }
                if releaseOnBreak && s.breakWait {
                    if consumingBreak { s.breakWait = false }
                    return (true, false, s.power.kind)
                }
                if parkedAt == nil {
                    parkedAt = now
                    // Idle time stops counting while parked (gated time is counted instead).
                    if let since = s.blockedSince {
                        s.blocked += now - since
                        s.blockedSince = nil
                        wasIdle = true
                    }
                }
                // Closing: a new suspension (also one made again before this thread woke from the last).
                guard s.power.gate == .closing else { return (false, false, s.power.kind) }
                s.power.gate = .closed
                s.power.gatedSince = now
                return (false, true, s.power.kind)
            }
            if justParked {
                let cpu = callbacks.withLock { $0.parkCapture }?()
                state.withLock { $0.power.parkedCPU = cpu }
                emit(.power(.gated(kind)))
                powerWake.signal()
            }
            if done { break }
            _ = clock.wait(for: wake, until: nil)
        }
        guard let parkedAt else { return .zero }
        let now = clock.now
        if wasIdle { state.withLock { $0.blockedSince = now } }
        return now - parkedAt
    }

    /// Whether the host has asked for the clock to be gated (or has it gated).
    public var isGateRequested: Bool { gateRequested.load(ordering: .sequentiallyConsistent) }

    /// Whether the core is parked with its clock gated.
    public var isGated: Bool { state.withLock { $0.power.gate == .closed } }

    /// Sets what runs on the host's thread when it gates the clock: an emulated core ends its
    /// run there, so it parks between two instructions.
    public func setGateListener(_ listener: (@Sendable () -> Void)?) { callbacks.withLock { $0.gateListener = listener } }

    /// Sets what the core's thread runs as it parks: a snapshot of its registers, kept as
    /// ``parkedCPU`` until the gate opens (an emulated core sets it; native firmware has no registers).
    public func setParkCapture(_ capture: (@Sendable () -> CPUSnapshot)?) { callbacks.withLock { $0.parkCapture = capture } }

    /// The parked core's registers, while its clock is gated.
    public var parkedCPU: CPUSnapshot? { state.withLock { $0.power.gate == .closed ? $0.power.parkedCPU : nil } }

    /// The core's thread has ended its firmware (a host waiting for the gate or an answer stops waiting).
    func coreEnded() {
        state.withLock { $0.power.coreEnded = true }
        powerWake.signal()
    }

    /// Makes (`fault`) or clears (`nil`) a handshake fault.
    func setPowerReplyFault(_ fault: PowerReplyFault?) { state.withLock { $0.power.replyFault = fault } }

    // MARK: The host's side

    /// Suspends the core: for a cooperative `kind`, asks firmware that takes part and waits up to
    /// `timeout` for its answer; then gates the clock and waits up to `parkLimit` for the core to
    /// park. Firmware that does not take part (PM_CONTROL bit 0 clear) has its clock gated at once.
    /// - Throws: ``SuspendRefusal`` (cancelled, no answer) or ``BoardError`` (the core halted, or
    ///   did not reach an instruction boundary in time); nothing is
    ///   gated then, and the request is withdrawn.
    func suspendCore(_ kind: SuspendKind, timeout: Duration, parkLimit: Duration) throws {
        if kind.isCooperative { try askFirmware(kind, timeout: timeout) }
        let idle = state.withLock { s -> Bool in
            s.power.gate = .closing
            s.power.kind = kind
            return s.blockedSince != nil
        }
        gateRequested.store(true, ordering: .sequentiallyConsistent)
        wake.signal()
        // A core idle in WAIT, SLEEP or wfi parks there by itself, and firmware that acknowledged
        // a request goes there next; only a busy core has its run stopped — a stop inside a run
        // may make Unicorn re-execute the block it was in (docs/remotesim.md).
        let start = clock.now
        let deadline = start + parkLimit
        var listenerCalled = false
        if !idle && !kind.isCooperative {
            callbacks.withLock { $0.gateListener }?()
            listenerCalled = true
        }
        while true {
            let (gate, ended, stop) = state.withLock { ($0.power.gate, $0.power.coreEnded, $0.stop) }
            if gate == .closed { return }
            let now = clock.now
            if ended || stop || now >= deadline {
                // Firmware that acknowledged learns the suspension is over (RESUMED), as after a resume.
                reopenGate(cooperative: true)
                throw BoardError("suspend", ended || stop ? .coreHalted : .didNotPark(within: parkLimit))
            }
            if !listenerCalled && now - start >= Self.selfParkGrace {
                // Acknowledged but still busy (or it became busy): gate it where it stands.
                callbacks.withLock { $0.gateListener }?()
                listenerCalled = true
            }
            _ = clock.wait(for: powerWake, until: listenerCalled ? deadline : min(deadline, start + Self.selfParkGrace))
        }
    }

    /// How long a core that acknowledged a request (or was idle) has to park by itself in WAIT,
    /// SLEEP or `wfi` before the board stops it where it stands.
    static let selfParkGrace: Duration = .milliseconds(50)

    private func askFirmware(_ kind: SuspendKind, timeout: Duration) throws {
        let (asked, fault) = state.withLock { s -> (Bool, PowerReplyFault?) in
            let fault = s.power.replyFault
            guard fault != .cancel, s.power.control & PowerRegisters.controlAnswersRequests != 0 else { return (false, fault) }
            s.power.request = PowerRegisters.code(kind)
            s.power.reply = nil
            s.power.wakeUnseen = true
            return (true, fault)
        }
        if fault == .cancel {
            emit(.power(.faultInjected("the \(kind) request is cancelled")))
            throw SuspendRefusal.cancelled
        }
        guard asked || fault == .ignore else { return }       // the firmware does not take part: gate it
        if asked {
            emit(.power(.requested(kind)))
            wake.signal()
        }
        let deadline = clock.now + timeout
        while true {
            let (reply, ended, stop) = state.withLock { ($0.power.reply, $0.power.coreEnded, $0.stop) }
            if ended || stop {
                withdrawRequest()
                throw BoardError("suspend", .coreHalted)
            }
            if let reply {
                if reply == .cancel {
                    withdrawRequest()
                    throw SuspendRefusal.cancelled
                }
                return
            }
            if clock.now >= deadline {
                withdrawRequest()
                emit(.power(.unanswered(kind, timeout: timeout)))
                throw SuspendRefusal.noAnswer(within: timeout)
            }
            _ = clock.wait(for: powerWake, until: deadline)
        }
    }

    private func withdrawRequest() {
        state.withLock { s in
            s.power.request = PowerRegisters.requestNone
            s.power.reply = nil
        }
    }

    /// Resumes a gated core at the instruction where it parked. After an acknowledged request the
    /// firmware finds PM_STATUS.RESUMED set and its WAIT returns once.
    func resumeCore() {
        guard state.withLock({ $0.power.gate != .open }) else { return }
        reopenGate(cooperative: true)
        emit(.power(.ungated))
    }

    private func reopenGate(cooperative: Bool) {
        let now = clock.now
        state.withLock { s in
            if let since = s.power.gatedSince { s.power.gated += now - since }
            s.power.gatedSince = nil
            s.power.gate = .open
            s.power.parkedCPU = nil
            if cooperative && s.power.reply == .ack {
                s.power.status |= PowerRegisters.statusResumed
                s.power.wakeUnseen = true
            }
            s.power.request = PowerRegisters.requestNone
            s.power.reply = nil
        }
        gateRequested.store(false, ordering: .sequentiallyConsistent)
        wake.signal()
        watchdogWake.signal()
        timerWake.signal()
    }
}
