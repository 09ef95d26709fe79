import MetalIO
import Synchronization
import Virtio

/// What a processor counts of its suspensions (``RemoteProcessor/powerStatistics``).
public struct PowerStatistics: Hashable, Sendable, CustomStringConvertible {
    /// Running → Suspended transitions (autosuspend's included).
    public var suspensions = 0
    /// Suspended → Running transitions.
    public var resumes = 0
    /// Suspensions the autosuspend monitor made.
    public var autosuspensions = 0
    /// Requests the remote cancelled or left unanswered.
    public var refusals = 0
    /// Time spent in Suspended, on the platform's clock (the current suspension included).
    public var timeSuspended: Duration = .zero

    public var description: String {
        "\(suspensions) suspension(s) (\(autosuspensions) automatic), \(resumes) resume(s), \(refusals) refusal(s), \(timeSuspended) suspended"
    }
}

/// The power-management side of a processor: counters, the autosuspend setting and the host
/// traffic it watches. Guarded by its own lock, held briefly and never across an op.
struct PowerManagement: Sendable {
    var statistics = PowerStatistics()
    var suspendedSince: ClockInstant?
    /// The current suspension was made by the autosuspend monitor: the next host kick resumes.
    var autosuspended = false
    var autosuspendDelay: Duration?
    /// The monitor's thread runs (it ends when the delay is cleared or the processor goes).
    var monitorRunning = false
}

/// Wakes the autosuspend monitor; held strongly by its thread, which holds the processor weakly,
/// and by a host driver's kick path, which looks at `armed` before reaching the processor (a weak
/// load of it on every message cost more than the rest of the check).
final class AutosuspendWake: Sendable {
    let signal = WakeSignal()
    let processorGone = Atomic<Bool>(false)
    /// Autosuspend has been set once (it stays armed): kicks count as traffic from then on.
    let armed = Atomic<Bool>(false)
}

extension RemoteProcessor {
    /// How long ``suspend(_:timeout:)`` waits for a remote's answer by default (Linux's OMAP driver waits 1 s).
    public static let defaultSuspendTimeout: Duration = .seconds(1)

    /// Suspends the running remote: Running → Suspended (Linux's `rproc_pm_suspend` over the
    /// platform's PM ops). ``SuspendKind/forced`` stops the core's clock at once; ``SuspendKind/auto``
    /// and ``SuspendKind/system`` ask the firmware first and wait up to `timeout` for its ACK. The
    /// remote's memory, registers and pending interrupts are kept; what the host sends meanwhile
    /// waits in the vrings.
    /// - Throws: ``RemoteprocError`` — ``RemoteprocError/Kind/refusedByRemote(_:)`` when the
    ///   firmware cancelled, ``RemoteprocError/Kind/busy(_:timeout:)`` when it did not answer,
    ///   ``RemoteprocError/Kind/unsupported(_:)`` when the platform cannot suspend, a wrong state
    ///   outside Running; the state is unchanged then.
    public func suspend(_ kind: SuspendKind = .forced, timeout: Duration = RemoteProcessor.defaultSuspendTimeout) throws(RemoteprocError) {
        try suspend(kind, timeout: timeout, automatic: false)
    }

    /// Lets a suspended remote run on where it stopped: Suspended → Running.
    public func resume() throws(RemoteprocError) {
        try locked(.resume, allowed: [.suspended]) { (life) throws(RemoteprocError) in
            try resumeLocked(&life)
        }
    }

    /// The counters of suspensions, resumes and time suspended since the processor was made.
    public var powerStatistics: PowerStatistics {
        let now = ops.clock.now
        return power.withLock { p in
            var statistics = p.statistics
            if let since = p.suspendedSince { statistics.timeSuspended += now - since }
            return statistics
        }
    }

    /// Runtime PM's autosuspend: when set, a running remote that has seen no host traffic (a kick
    /// either way) for this long is suspended with ``SuspendKind/auto`` — the firmware is asked if
    /// it takes part, its clock gated otherwise — and the next kick the host sends resumes it
    /// first, transparently to the sender. A refusal is retried after another delay. `nil` (the
    /// default) turns it off: once the setter returns, no automatic suspension is under way or
    /// starts (one the monitor had begun has finished by then — a remote it suspended stays
    /// suspended until resumed). Set from the remote's own thread (an inline handler), the
    /// setter does not wait for a suspension already under way.
    public var autosuspendDelay: Duration? {
        get { power.withLock { $0.autosuspendDelay } }
        set {
            if newValue != nil { autosuspendWake.armed.store(true, ordering: .sequentiallyConsistent) }
            noteTrafficTime()       // the delay counts from now
            let start = power.withLock { p -> Bool in
                p.autosuspendDelay = newValue.map { max($0, .zero) }
                guard newValue != nil, !p.monitorRunning else { return false }
                p.monitorRunning = true
                return true
            }
            autosuspendWake.signal.signal()
            if start { startAutosuspendMonitor() }
            if newValue == nil { waitForLifecycleCalls() }
        }
    }

    /// Returns once no life-cycle call is running (an automatic suspension checks the delay
    /// inside its call, so after this none can start with the old setting). From inside a
    /// life-cycle call (an op that changes the setting) there is nothing to wait for; on the
    /// remote's own thread (a handler run inline, in the core's interrupt context) it must not
    /// wait — a call in progress may be waiting for that core — and returns at once: no new
    /// automatic suspension starts either way, one already past its check may still finish.
    private func waitForLifecycleCalls() {
        guard lockOwner.load(ordering: .relaxed) != Self.currentThreadID, !ops.isRemoteHeldByCurrentThread else { return }
        lifecycle.withLock(through: ops.clock) { _ in }
    }

    func suspend(_ kind: SuspendKind, timeout: Duration, automatic: Bool) throws(RemoteprocError) {
        let traffic = trafficCount.load(ordering: .sequentiallyConsistent)
        try locked(.suspend, allowed: [.running]) { (life) throws(RemoteprocError) in
            if automatic {
                // Traffic since the monitor decided: the remote is not idle after all; or
                // autosuspend was turned off meanwhile.
                guard trafficCount.load(ordering: .sequentiallyConsistent) == traffic,
                      power.withLock({ $0.autosuspendDelay != nil }), !hasOutstandingHostWork else { return }
            }
            do {
                try ops.suspend(kind, timeout: timeout)
            } catch let refusal as SuspendRefusal {
                switch refusal {
                case let .unsupported(why): throw RemoteprocError(.unsupported(why), call: .suspend, underlying: refusal)
                case .cancelled:
                    power.withLock { $0.statistics.refusals += 1 }
                    throw RemoteprocError(.refusedByRemote(kind), call: .suspend, underlying: refusal)
                case let .noAnswer(within):
                    power.withLock { $0.statistics.refusals += 1 }
                    throw RemoteprocError(.busy(kind, timeout: within), call: .suspend, underlying: refusal)
                }
            } catch {
                throw RemoteprocError(.operationFailed(op: "suspend"), call: .suspend, underlying: error)
            }
            let now = ops.clock.now
            power.withLock { p in
                p.statistics.suspensions += 1
                if automatic { p.statistics.autosuspensions += 1 }
                p.suspendedSince = now
                p.autosuspended = automatic
            }
            transition(&life, to: .suspended, call: .suspend, reason: automatic ? "autosuspend (\(kind))" : "\(kind)")
            guard automatic else { return }
            // A host kick that saw Running before this suspension was published resumes here; one
            // that comes later sees Suspended and resumes itself (it counts first, then looks).
            published.withLock { $0.state = .suspended }
            if trafficCount.load(ordering: .sequentiallyConsistent) != traffic { try resumeLocked(&life) }
        }
    }

    private func resumeLocked(_ life: inout Lifecycle) throws(RemoteprocError) {
        do {
            try ops.resume()
        } catch let refusal as SuspendRefusal {
            throw RemoteprocError(.unsupported(refusal.description), call: .resume, underlying: refusal)
        } catch {
            throw RemoteprocError(.operationFailed(op: "resume"), call: .resume, underlying: error)
        }
        suspensionEnded(resumed: true)
        transition(&life, to: .running, call: .resume)
    }

    /// Books the end of a suspension (a resume, or a stop or shutdown of a suspended remote).
    func suspensionEnded(resumed: Bool) {
        let now = ops.clock.now
        power.withLock { p in
            guard let since = p.suspendedSince else { return }
            p.statistics.timeSuspended += now - since
            if resumed { p.statistics.resumes += 1 }
            p.suspendedSince = nil
            p.autosuspended = false
        }
        noteTrafficTime()           // a resumed remote gets a whole delay again
        autosuspendWake.signal.signal()
    }

    /// A host driver is about to kick the remote: traffic for autosuspend, and a remote the
    /// monitor suspended is resumed first so the kick reaches a running core. (From inside a
    /// life-cycle call the resume cannot run; the kick is then latched by the platform.)
    func hostWillKick() {
        guard autosuspendWake.armed.load(ordering: .sequentiallyConsistent) else { return }
        trafficCount.add(1, ordering: .sequentiallyConsistent)
        noteTrafficTime()
        guard published.withLock({ $0.state == .suspended }), power.withLock({ $0.autosuspended }) else { return }
        do { try resume() } catch {
            if case .wrongState = error.kind { return }       // resumed (or stopped) by another thread meanwhile
            if case .reentrantCall = error.kind { return }
            deliver([.warning("autosuspend: resuming for a host kick failed: \(error)")])
        }
    }

    /// Whether a host driver has requests the remote has not given back (messages whose buffers
    /// are not yet in the used ring): such a remote is not idle, and autosuspend leaves it running.
    var hasOutstandingHostWork: Bool { virtioDevices.withLock { $0 }.contains { $0.hasOutstandingWork } }

    /// The remote kicked the host: traffic for autosuspend.
    func remoteKicked() {
        guard autosuspendWake.armed.load(ordering: .relaxed) else { return }
        trafficCount.add(1, ordering: .relaxed)
        noteTrafficTime()
    }

    /// When the last kick either way (or a resume, or a new delay) was: the monitor suspends
    /// exactly `delay` after it.
    private func noteTrafficTime() {
        lastTrafficAt.store(ops.clock.now.sinceOrigin.totalNanoseconds, ordering: .relaxed)
    }

    private func startAutosuspendMonitor() {
        let wake = autosuspendWake, clock = ops.clock
        do {
            try clock.startThread(name: "rproc-autosuspend") { [weak self] in
                var idleSince = clock.now
                while !wake.processorGone.load(ordering: .acquiring) {
                    // What to wait for is decided with the processor held; the wait itself holds
                    // only the wake (a processor nobody else holds goes away meanwhile).
                    let step: (deadline: ClockInstant?, stop: Bool) = {
                        guard let processor = self else { return (nil, true) }
                        // Off: the thread ends, in the same look that found no delay (a setter
                        // that comes after it starts a new monitor).
                        let delay = processor.power.withLock { p -> Duration? in
                            if p.autosuspendDelay == nil { p.monitorRunning = false }
                            return p.autosuspendDelay
                        }
                        guard let delay else { return (nil, true) }
                        let state = processor.state
                        idleSince = max(idleSince, ClockInstant(sinceOrigin: .nanoseconds(processor.lastTrafficAt.load(ordering: .relaxed))))
                        // Not running: wait for a transition (it signals); running: for the delay to pass.
                        guard state == .running else { return (nil, false) }
                        guard clock.now - idleSince >= delay else { return (idleSince + delay, false) }
                        // Messages the remote has not taken yet: not idle, whatever the kicks
                        // say (a core slow to get to them sent none). Look again after a delay.
                        guard !processor.hasOutstandingHostWork else {
                            // At least 1 ms apart: a remote that keeps a buffer a long while (or a
                            // delay of 0) must not turn this into a spin.
                            idleSince = clock.now
                            return (idleSince + max(delay, .milliseconds(1)), false)
                        }
                        do throws(RemoteprocError) {
                            try processor.suspend(.auto, timeout: RemoteProcessor.defaultSuspendTimeout, automatic: true)
                        } catch {
                            // A refusal or a busy remote is counted (and traced by the platform), not a warning.
                            switch error.kind {
                            case .wrongState, .refusedByRemote, .busy: break
                            default: processor.deliver([.warning("autosuspend: \(error)")])
                            }
                        }
                        idleSince = clock.now       // refused or busy: try again after another delay
                        return (clock.now, false)   // look again at once
                    }()
                    if step.stop { return }
                    if let deadline = step.deadline, deadline <= clock.now { continue }
                    _ = clock.wait(for: wake.signal, until: step.deadline)
                }
            }.detach()
        } catch {
            power.withLock { $0.monitorRunning = false }
            deliver([.warning("autosuspend cannot start its thread: \(error)")])
        }
    }
}
