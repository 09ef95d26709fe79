#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The one wake-up primitive of the package: a counting semaphore (POSIX `sem_t`, a futex on
/// Linux) that one thread signals and another waits on. Each ``signal()`` lets one wait return, so
/// a signal given before the wait starts is never lost. Waits with a deadline go through a
/// ``WaitClock`` (``wait(timeout:clock:)``).
///
/// **Spin, then park.** A wait first looks for the signal in a bounded spin and only then sleeps
/// in the kernel: a signal that comes a few microseconds later (the other side of a round trip)
/// is taken without the futex sleep and wake-up, which cost more than the wait itself. The spin
/// bound is measured per signal: after each wait the signal knows how long after the wait began
/// the signal was given (``signal()`` notes the time); one given within ``maximumSpin`` sets the
/// bound to twice that time, a later one (or none) halves it, down to ``minimumSpin``. It is the
/// signal's time, not the waiter's wake-up: on a busy machine a parked thread's wake-up takes
/// tens of microseconds, which would keep the bound at its minimum however soon the signals
/// come. A signal that is mostly waited on for long (an idle core, a watchdog) spins for about a
/// microsecond before it parks, and the idle host stays at ≈ 0 % CPU; see docs/performance.md.
public final class WakeSignal: @unchecked Sendable {
    // @unchecked: the sem_t is allocated once, never moves, and the sem_* calls are thread-safe;
    // the spin bound is an atomic.
    private let semaphore: UnsafeMutablePointer<sem_t>
    /// The current spin bound in nanoseconds.
    private let spinBound = Atomic<Int64>(WakeSignal.maximumSpinNanoseconds)
    /// When the last signal was given (monotonic nanoseconds), for a parked waiter to learn from.
    private let signalledAt = Atomic<Int64>(0)

    /// The longest a wait spins before it parks.
    public static let maximumSpin: Duration = .microseconds(20)
    /// The shortest spin bound (so a signal whose wakes became prompt again is noticed).
    public static let minimumSpin: Duration = .microseconds(1)
    // The same in nanoseconds, for the wait path (no Duration arithmetic per wait).
    private static let maximumSpinNanoseconds = maximumSpin.totalNanoseconds
    private static let minimumSpinNanoseconds = minimumSpin.totalNanoseconds

    /// Whether waits spin before they park.
    public let spins: Bool
    /// A spin bound that does not learn (nanoseconds), for signals known to come back within a
    /// bound longer than ``maximumSpin`` (the turns of a ``VirtualClock``).
    private let fixedSpin: Int64?

    /// - Parameters:
    ///   - spins: `false`: every wait parks at once (the futex reference of the bench).
    ///   - fixedSpin: spin this long before parking, every time, instead of learning the bound
    ///     (at most ``maximumSpin``) from past signals.
    public init(spins: Bool = true, fixedSpin: Duration? = nil) {
        self.spins = spins
        self.fixedSpin = fixedSpin?.totalNanoseconds
        semaphore = .allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    /// Lets one wait return (now or, if nobody waits, the next one). A signal nobody sleeps on
    /// (its waiter spins, or none waits) is an atomic increment, without a system call.
    /// A stalled ``VirtualClock`` is told, so that a participant waiting for this signal runs.
    public func signal() {
        if spins, fixedSpin == nil { signalledAt.store(Self.monotonicNanoseconds(), ordering: .relaxed) }
        sem_post(semaphore)
        VirtualClock.signalGiven()
    }

    /// Waits for a signal up to `timeout` on `clock` (`nil`: no limit); `false` when the time ran out first.
    @discardableResult
    public func wait(timeout: Duration? = nil, clock: any WaitClock = RealTimeClock.shared) -> Bool {
        clock.wait(for: self, timeout: timeout)
    }

    /// Takes a signal given already, without waiting; `false` when there is none.
    public func tryTake() -> Bool { sem_trywait(semaphore) == 0 }

    // The blocking calls, for clock implementations.

    /// Blocks until a signal comes (spinning first).
    public func waitWithoutLimit() {
        let start = Self.monotonicNanoseconds()
        if spin(from: start) { return }
        while sem_wait(semaphore) != 0 && errno == EINTR {}
        learnAfterPark(since: start)
    }

    /// Blocks until a signal comes or the wall clock (`CLOCK_REALTIME`) reaches `deadline`
    /// (spinning first, never past `spinLimit`).
    public func waitUntilWallClock(_ deadline: timespec, spinLimit: Duration) -> Bool {
        let start = Self.monotonicNanoseconds()
        if spin(from: start, limit: spinLimit.totalNanoseconds) { return true }
        var deadline = deadline
        while sem_timedwait(semaphore, &deadline) != 0 {
            if errno == EINTR { continue }
            learn(signalAfter: .max)
            return false
        }
        learnAfterPark(since: start)
        return true
    }

    /// Spin before a wait whose condition can come true without a signal (a peer that returns
    /// buffers as it goes and notifies only at the end of a batch): looks at `ready` until it
    /// gives a value, a signal is given (left for the wait that follows), or `limit` (at most
    /// ``maximumSpin``) has passed. `nil` means: wait as usual. Nothing when waits do not spin.
    /// Signals left over from earlier waits are taken first (they would end the spin at once;
    /// `ready` is looked at after them, so what they announced is not missed) — so with several
    /// waiters on one signal, use it only where their waits are timed and look again, as a
    /// blocking send's are: one whose signal was taken here ends at its timeout. Only for real
    /// time: a spin does not let a ``VirtualClock``'s time pass, so the peer would not run meanwhile.
    public func spin<T, E: Error>(for limit: Duration = maximumSpin, lookingFor ready: () throws(E) -> T?) throws(E) -> T? {
        guard spins else { return nil }
        while tryTake() {}
        let bound = min(limit.totalNanoseconds, Self.maximumSpinNanoseconds)
        let start = Self.monotonicNanoseconds()
        var looks = 0
        while true {
            if let value = try ready() { return value }
            var count: Int32 = 0
            if sem_getvalue(semaphore, &count) == 0, count > 0 { return nil }
            looks += 1
            // The clock is read every 8 looks (each look above takes a lock or two).
            if looks & 7 == 0, Self.monotonicNanoseconds() - start >= bound { return nil }
        }
    }

    /// Looks for a signal until the spin bound (or `limit`) has passed since `start`.
    private func spin(from start: Int64, limit: Int64 = .max) -> Bool {
        guard spins else { return false }
        let bound = min(fixedSpin ?? spinBound.load(ordering: .relaxed), limit)
        var looks = 0
        while true {
            if sem_trywait(semaphore) == 0 {
                // Taken while spinning: the bound was long enough. It grows to twice what this
                // wake took if that is more (it only shrinks after a park).
                let wanted = Self.bound(forWakeAfter: Self.monotonicNanoseconds() - start)
                if wanted > spinBound.load(ordering: .relaxed) { spinBound.store(wanted, ordering: .relaxed) }
                return true
            }
            looks += 1
            // The clock is read every 32 looks (a vDSO call, ~20 ns).
            if looks & 31 == 0, Self.monotonicNanoseconds() - start >= bound { return false }
        }
    }

    /// After a park ended by a signal: when it was given, counted from the wait's start (the time
    /// noted by ``signal()``; a signal noted before the start — another waiter's, or one that
    /// raced the spin's last look — counts as given at once).
    func learnAfterPark(since start: Int64) {
        guard spins, fixedSpin == nil else { return }
        learn(signalAfter: max(0, signalledAt.load(ordering: .relaxed) - start))
    }

    /// After a park: a signal that a longer spin would have caught raises the bound to twice its
    /// time; a later one halves it.
    private func learn(signalAfter nanoseconds: Int64) {
        guard spins, fixedSpin == nil else { return }
        let next = nanoseconds <= Self.maximumSpinNanoseconds
            ? Self.bound(forWakeAfter: nanoseconds)
            : max(Self.minimumSpinNanoseconds, spinBound.load(ordering: .relaxed) / 2)
        spinBound.store(next, ordering: .relaxed)
    }

    /// Twice a wake's time, within the bounds.
    private static func bound(forWakeAfter nanoseconds: Int64) -> Int64 {
        min(maximumSpinNanoseconds, max(minimumSpinNanoseconds, 2 * nanoseconds))
    }

    /// The spin bound now (nanoseconds), and when the last signal was given: for tests.
    var spinBoundNanoseconds: Int64 { spinBound.load(ordering: .relaxed) }
    var lastSignalNanoseconds: Int64 { signalledAt.load(ordering: .relaxed) }

    static func monotonicNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return time.totalNanoseconds
    }
}
