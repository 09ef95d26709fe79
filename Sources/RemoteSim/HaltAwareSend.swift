import RPMsg

extension Board {
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
