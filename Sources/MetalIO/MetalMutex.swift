#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a lock — libmetal's `metal_mutex` — the one lock type of this package.
///
/// It is the platform's `pthread_mutex_t`, not `Synchronization.Mutex`: ThreadSanitizer
/// intercepts pthread mutexes, but on Linux `Mutex`'s contended path runs in the prebuilt,
/// uninstrumented `libswiftSynchronization`, so TSan misses the ordering it gives and reports
/// races on data only ever touched under the lock (a four-thread counter behind `Mutex` gives
/// TSan warnings, the same program behind a pthread mutex none; see docs/reliability.md).
/// Uncontended, both are one atomic instruction each way.
public final class MetalMutex<Value>: @unchecked Sendable {
    // @unchecked: `value` is only read or written inside `withLock`, under `mutex`; the mutex is
    // allocated once and never moves.
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        #if os(Linux)
        // Adaptive: a lock held for a moment by another running thread is waited for in a short
        // spin, not with a futex sleep and wake-up (glibc's PTHREAD_MUTEX_ADAPTIVE_NP) — the
        // critical sections here are a few hundred nanoseconds.
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
        #else
        pthread_mutex_init(mutex, nil)
        #endif
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    @inlinable
    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// ``withLock(_:)`` for a lock that may be held across a wait on `clock`: a thread that runs
    /// only in its turn of a ``VirtualClock`` does not block on it (the holder may be waiting for
    /// its own turn) but lets virtual time pass, 1 µs doubling to 1 ms, until it is free.
    public func withLock<Result, E: Error>(through clock: any WaitClock, _ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        guard clock.schedulesCurrentThread else { return try withLock(body) }
        var pause: Duration = .microseconds(1)
        while true {
            if pthread_mutex_trylock(mutex) == 0 {
                defer { pthread_mutex_unlock(mutex) }
                return try body(&value)
            }
            clock.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(1))
        }
    }

    /// Like ``withLock(_:)``, but returns nil at once instead of waiting when the lock is held.
    public func withLockIfAvailable<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
