#if canImport(Glibc)
import Glibc
#endif

/// The one wake-up primitive of the package: a counting semaphore (POSIX `sem_t`, a futex on
/// Linux) that one thread signals and another waits on. Each ``signal()`` lets one wait return, so
/// a signal given before the wait starts is never lost. Waits with a deadline go through a
/// ``WaitClock`` (``wait(timeout:clock:)``).
public final class WakeSignal: @unchecked Sendable {
    // @unchecked: the sem_t is allocated once, never moves, and the sem_* calls are thread-safe.
    private let semaphore: UnsafeMutablePointer<sem_t>

    public init() {
        semaphore = .allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    /// Lets one wait return (now or, if nobody waits, the next one).
    public func signal() { sem_post(semaphore) }

    /// Waits for a signal up to `timeout` on `clock` (`nil`: no limit); `false` when the time ran out first.
    @discardableResult
    public func wait(timeout: Duration? = nil, clock: any WaitClock = RealTimeClock.shared) -> Bool {
        clock.wait(for: self, timeout: timeout)
    }

    /// Takes a signal given already, without waiting; `false` when there is none.
    public func tryTake() -> Bool { sem_trywait(semaphore) == 0 }

    // The blocking calls, for clock implementations.

    /// Blocks until a signal comes.
    public func waitWithoutLimit() {
        while sem_wait(semaphore) != 0 && errno == EINTR {}
    }

    /// Blocks until a signal comes or the wall clock (`CLOCK_REALTIME`) reaches `deadline`.
    public func waitUntilWallClock(_ deadline: timespec) -> Bool {
        var deadline = deadline
        while sem_timedwait(semaphore, &deadline) != 0 {
            if errno == EINTR { continue }
            return false
        }
        return true
    }
}
