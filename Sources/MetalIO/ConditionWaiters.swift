import Synchronization

/// Threads waiting for conditions that other threads make true — a condition variable built from
/// the one wake primitive: each waiter parks on its own ``WakeSignal``; whoever changes something
/// a condition may read calls ``changed()``, which wakes every waiter to look again. A waiter
/// registers before it first looks, so a change between its look and its wait is never missed.
public final class ConditionWaiters: Sendable {
    private let waiters = MetalMutex<[ObjectIdentifier: WakeSignal]>([:])
    /// How many are registered: a change with nobody waiting costs one atomic load.
    private let count = Atomic<Int>(0)

    public init() {}

    /// Wakes every waiter to look at its condition again.
    public func changed() {
        // The fence orders the caller's change before the look at the count (a waiter counts itself
        // before it looks at its condition): either it sees the change or this sees it.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard count.load(ordering: .relaxed) > 0 else { return }
        for signal in waiters.withLock({ Array($0.values) }) { signal.signal() }
    }

    /// Waits until `condition` holds (true) or `deadline` comes (false, unless the condition holds
    /// by then), looking again after every change.
    /// - Parameter deadline: recomputed before each wait (`nil`: no limit), so a caller can stop
    ///   its time while, say, a debugger holds the core.
    public func wait(clock: any WaitClock, deadline: () -> ClockInstant?, until condition: () -> Bool) -> Bool {
        if condition() { return true }
        let signal = WakeSignal()
        let key = ObjectIdentifier(signal)
        waiters.withLock { $0[key] = signal }
        count.add(1, ordering: .sequentiallyConsistent)
        defer {
            count.subtract(1, ordering: .releasing)
            _ = waiters.withLock { $0.removeValue(forKey: key) }
        }
        while true {
            if condition() { return true }
            // Checked after every wake, not only after a timeout: changes that keep coming (a
            // core spinning on WAIT signals one per read) must not hold a waiter past its deadline.
            // The deadline may move while this waits; only a passed one ends the wait.
            if let limit = deadline(), clock.now >= limit { return condition() }
            _ = clock.wait(for: signal, until: deadline())
        }
    }

    /// ``wait(clock:deadline:until:)`` with a fixed deadline.
    public func wait(clock: any WaitClock, until deadline: ClockInstant?, _ condition: () -> Bool) -> Bool {
        wait(clock: clock, deadline: { deadline }, until: condition)
    }
}
