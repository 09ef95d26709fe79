import MetalIO

/// The loop of a core timer's deadline thread (the CLINT's `mtimecmp`, SysTick): `next` looks at
/// the timer — raising its interrupt if it is due — and says how long until it is due again
/// (`.some(nil)`: not armed, sleep until woken; `nil`: the run ended, return). The thread sleeps
/// on the board's clock until then, or until ``Mailbox/timerWake`` is signalled (a timer
/// register written, a resume, a stop).
func runTimerDeadlines(mailbox: Mailbox, next: () -> Duration??) {
    let clock = mailbox.clock
    while true {
        let now = clock.now
        guard let wait = next() else { return }
        _ = clock.wait(for: mailbox.timerWake, until: wait.map { now + $0 })
    }
}
