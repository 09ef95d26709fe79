#if canImport(Glibc)
import Glibc
#endif
import RPMsg
import Remoteproc

/// How a wait for something only a live remote can bring ended.
public enum LiveWaitOutcome: Equatable, Sendable {
    case met
    case timedOut
    /// The remote crashed, was stopped or shut down first (the state it left in).
    case remoteEnded(RemoteprocState)
}

/// Waits on a board that do not count the time its core spends halted in a debugger: stepping
/// through firmware must not fail a scenario or a test that waits for it.
extension Board {
    /// Polls `condition` (delivering the remote's kicks first, for poll mode) until it holds or
    /// `timeout` of time not halted in a debugger has passed; checks every `interval`.
    /// ``wait(upTo:checkingEvery:until:)`` for a condition only a live remote can make true (an
    /// announcement, a reply, a console line): it ends at once when the processor leaves Running
    /// or Suspended instead of waiting out `timeout` for what can no longer come.
    public func waitWhileLive(upTo timeout: Duration, checkingEvery interval: Duration = .microseconds(200),
                              until condition: () -> Bool) -> LiveWaitOutcome {
        var ended: RemoteprocState?
        let met = wait(upTo: timeout, checkingEvery: interval) {
            if condition() { return true }
            if let state = currentProcessor?.state, !state.isLive { ended = state }
            return ended != nil
        }
        // What the remote did just before it ended still counts.
        if let ended, !condition() { return .remoteEnded(ended) }
        return met ? .met : .timedOut
    }

    public func wait(upTo timeout: Duration, checkingEvery interval: Duration = .microseconds(200), until condition: () -> Bool) -> Bool {
        let clock = ContinuousClock()
        var deadline = clock.now + timeout
        var last = clock.now
        let pause = UInt32(clamping: interval.components.attoseconds / 1_000_000_000_000 + interval.components.seconds * 1_000_000)
        while true {
            poll()
            if condition() { return true }
            let now = clock.now
            if isHaltedInDebugger { deadline += now - last }
            last = now
            if now >= deadline { return false }
            usleep(pause)
        }
    }

    /// Sends `bytes` through `endpoint`, waiting up to `timeout` for a transmit buffer — time the
    /// core spends halted in a debugger does not count (a halted remote frees no buffers, and a
    /// breakpoint must not fail the send).
    /// - Throws: ``RPMsg/RPMsgError`` as ``RPMsg/RPMsgEndpoint/send(_:to:timeout:)`` does.
    public func send(_ bytes: [UInt8], through endpoint: RPMsgEndpoint, timeout: Duration) throws(RPMsgError) {
        var waited: Duration = .zero
        while true {
            let slice = min(.milliseconds(100), max(.milliseconds(1), timeout - waited))
            let started = ContinuousClock.now
            do {
                try endpoint.send(bytes, timeout: slice)
                return
            } catch {
                guard case .noBuffer = error.kind else { throw error }
                if !isHaltedInDebugger { waited += ContinuousClock.now - started }
                if waited >= timeout { throw RPMsgError(.noBuffer(waited: waited)) }
            }
        }
    }
}
