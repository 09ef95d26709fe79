import MetalIO

/// The loop of a core timer's deadline thread (the CLINT's `mtimecmp`, SysTick): `next` looks at
/// the timer — raising its interrupt if it is due — and says how long until it is due again
/// (`.some(nil)`: not armed, sleep until woken; `nil`: the run ended, return). The thread sleeps
/// on the board's clock until then, or until ``Mailbox/timerWake`` is signalled (a timer
/// register written, a resume, a stop).
/// A fault handler's time limit (``FaultWatch``) is watched by the same thread.
func runTimerDeadlines(mailbox: Mailbox, faults: FaultWatch, next: () -> Duration??) {
    let clock = mailbox.clock
    while true {
        let now = clock.now
        guard let timer = next() else { return }
        let wait = [timer, faults.deadlineWait()].compactMap { $0 }.min()
        _ = clock.wait(for: mailbox.timerWake, until: wait.map { now + $0 })
    }
}
