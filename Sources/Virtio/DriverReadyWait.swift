import MetalIO

/// The device role's wait for its driver — the one place it is written: until the status has
/// DRIVER_OK, acknowledging a NEEDS_RESET (by clearing the status) whenever one appears, as an
/// OpenAMP remote does before it touches its vrings.
///
/// - Parameters:
///   - changes: woken whenever the driver writes the status (a board knows every host write). Without
///     it the status is looked at every 100 µs on `clock`, as OpenAMP's remote polls the status
///     byte on hardware that cannot tell it.
///   - status: reads the status; `clearReset` writes 0; `checkStop` throws to end the wait early
///     (a stopped core). What they throw is rethrown.
/// - Returns: whether DRIVER_OK came before `deadline`.
public func waitForDriverOK<Failure: Error>(clock: any WaitClock, until deadline: ClockInstant, changes: ConditionWaiters?,
                                           status: () throws(Failure) -> VirtioStatus, clearReset: () throws(Failure) -> Void,
                                           checkStop: () throws(Failure) -> Void = {}) throws(Failure) -> Bool {
    var failure: Failure?
    func look() -> Bool {
        do throws(Failure) {
            try checkStop()
            let current = try status()
            if current.contains(.needsReset) {
                try clearReset()
                return false
            }
            return current.contains(.driverOK)
        } catch {
            failure = error
            return true
        }
    }
    var ready: Bool
    if let changes {
        ready = changes.wait(clock: clock, until: deadline, look)
    } else {
        ready = look()
        while !ready && clock.now < deadline {
            clock.sleep(for: min(.microseconds(100), deadline - clock.now))
            ready = look()
        }
    }
    if let failure { throw failure }
    return ready
}
