import MetalIO
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
    /// What one host send costs in virtual time (``send(_:through:timeout:)``).
    public static let virtualSendTime: Duration = .microseconds(10)

    /// ``wait(upTo:until:)`` for a condition only a live remote can make true (an announcement, a
    /// reply, a console line): it ends at once when the processor leaves Running or Suspended
    /// instead of waiting out `timeout` for what can no longer come.
    public func waitWhileLive(upTo timeout: Duration, until condition: () -> Bool) -> LiveWaitOutcome {
        var ended: RemoteprocState?
        let met = wait(upTo: timeout) {
            if condition() { return true }
            if let state = currentProcessor?.state, !state.isLive { ended = state }
            return ended != nil
        }
        // What the remote did just before it ended still counts.
        if let ended, !condition() { return .remoteEnded(ended) }
        return met ? .met : .timedOut
    }

    /// Waits until `condition` holds (true) or `timeout` of board time not halted in a debugger
    /// has passed (false). It looks at the condition after every board event — a trace record, a
    /// batch of messages handled by a traced RPMsg device, a debugger halting or releasing the core
    /// — delivering the remote's kicks first in poll mode; it does not poll in between.
    ///
    /// Text the firmware writes into the resource table's trace buffer has no event of its own: it
    /// is seen at the next event (a kick, a console byte line, a WAIT, …).
    public func wait(upTo timeout: Duration, until condition: () -> Bool) -> Bool {
        var left = timeout
        var last = clock.now
        var haltedBefore = isHaltedInDebugger
        return trace.waiters.wait(clock: clock, deadline: {
            // Board time left: time the core spent halted in the debugger does not count, and
            // while it is halted there is no deadline (the debugger's release is an event).
            let now = clock.now
            let halted = isHaltedInDebugger
            if !haltedBefore { left -= now - last }
            last = now
            haltedBefore = halted
            return halted ? nil : now + max(.zero, left)
        }, until: {
            poll()
            return condition()
        })
    }

    /// Sends `bytes` through `endpoint`, waiting up to `timeout` for a transmit buffer — time the
    /// core spends halted in a debugger does not count (a halted remote frees no buffers, and a
    /// breakpoint must not fail the send).
    ///
    /// In virtual time a send takes ``virtualSendTime`` of the host's time first (host work is
    /// otherwise instantaneous there, and a loop that sends for a duration must see time pass).
    /// - Throws: ``RPMsg/RPMsgError`` as ``RPMsg/RPMsgEndpoint/send(_:to:timeout:)`` does.
    public func send(_ bytes: [UInt8], through endpoint: RPMsgEndpoint, timeout: Duration) throws(RPMsgError) {
        clock.advance(by: Self.virtualSendTime)
        var waited: Duration = .zero
        while true {
            // Slices of at most 100 ms, so time halted in the debugger is found and left out.
            let slice = min(.milliseconds(100), max(.milliseconds(1), timeout - waited))
            let started = clock.now
            do {
                try endpoint.send(bytes, timeout: slice)
                return
            } catch {
                guard case .noBuffer = error.kind else { throw error }
                if !isHaltedInDebugger { waited += clock.now - started }
                if waited >= timeout { throw RPMsgError(.noBuffer(waited: waited)) }
            }
        }
    }
}
