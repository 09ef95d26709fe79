#if canImport(Glibc)
import Glibc
#endif

/// A point in a ``WaitClock``'s time: how long after the clock's origin.
public struct ClockInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var sinceOrigin: Duration
    public init(sinceOrigin: Duration) { self.sinceOrigin = sinceOrigin }

    public static func < (a: ClockInstant, b: ClockInstant) -> Bool { a.sinceOrigin < b.sinceOrigin }
    public static func + (instant: ClockInstant, duration: Duration) -> ClockInstant { ClockInstant(sinceOrigin: instant.sinceOrigin + duration) }
    public static func - (instant: ClockInstant, duration: Duration) -> ClockInstant { ClockInstant(sinceOrigin: instant.sinceOrigin - duration) }
    public static func - (a: ClockInstant, b: ClockInstant) -> Duration { a.sinceOrigin - b.sinceOrigin }
    public static func += (instant: inout ClockInstant, duration: Duration) { instant.sinceOrigin += duration }
    public var description: String { "\(sinceOrigin)" }
}

/// The clock every wait of the package goes through — timeouts, deadlines, the watchdog, the
/// TICKS register, scenario `within`, fixture waits, blocking sends — and the seam through which
/// a board can be driven from another notion of time (virtual time) without touching its callers.
///
/// A wait parks on a ``WakeSignal``: whoever makes the awaited thing happen signals it, and the
/// clock decides when the deadline has come. ``RealTimeClock`` is the monotonic host clock.
public protocol WaitClock: AnyObject, Sendable {
    /// The current time.
    var now: ClockInstant { get }
    /// Blocks until `signal` is signalled (taking that signal) or `deadline` has come; `nil`
    /// waits without a limit. Returns `false` when the deadline came first.
    func wait(for signal: WakeSignal, until deadline: ClockInstant?) -> Bool
    /// Starts a thread whose waits are this clock's: under a ``VirtualClock`` it takes part in
    /// the schedule from this point on; its owner waits for its end with ``ClockThread/join()``.
    func startThread(name: String, _ body: @escaping @Sendable () -> Void) throws(ThreadError) -> ClockThread
    /// A scheduling point: under a ``VirtualClock``, the others whose turn it is run first;
    /// nothing in real time.
    func yield()
    /// Charges `duration` of busy time to the calling thread: under a ``VirtualClock`` its time
    /// passes (an emulated core's executed instructions, a host send); nothing in real time,
    /// where the work took its own time.
    func advance(by duration: Duration)
    /// The calling thread takes part in the clock's schedule (a ``VirtualClock`` runs it in
    /// lockstep with the others from now on); nothing in real time.
    func join()
    /// The calling thread stops taking part; nothing in real time.
    func leave()
    /// Whether time is virtual (``VirtualClock``): it moves only by deadlines and busy time.
    var isVirtual: Bool { get }
    /// The earliest deadline another thread of the schedule waits for: how far a busy thread may
    /// ``advance(by:)`` before someone else's wait must end (`nil`: none, or real time).
    var earliestDeadlineOfOthers: ClockInstant? { get }
    /// Whether the calling thread runs only in its turn (a ``VirtualClock`` participant): it must
    /// not block outside the clock on what another participant holds.
    var schedulesCurrentThread: Bool { get }
}

extension WaitClock {
    public func startThread(name: String, _ body: @escaping @Sendable () -> Void) throws(ThreadError) -> ClockThread {
        let ended = WakeSignal()
        let thread = try PlatformThread(name: name) {
            body()
            ended.signal()
        }
        return ClockThread(thread: thread, ended: ended, clock: self)
    }

    public func yield() {}
    public func join() {}
    public func leave() {}
    public func advance(by duration: Duration) {}
    public var isVirtual: Bool { false }
    public var earliestDeadlineOfOthers: ClockInstant? { nil }
    public var schedulesCurrentThread: Bool { false }

    /// The instant `duration` from now.
    public func deadline(after duration: Duration) -> ClockInstant { now + duration }

    /// Waits for `signal` up to `timeout` (`nil`: no limit); `false` when the time ran out first.
    @discardableResult
    public func wait(for signal: WakeSignal, timeout: Duration?) -> Bool {
        wait(for: signal, until: timeout.map { now + $0 })
    }

    /// Lets `duration` pass on this clock.
    public func sleep(for duration: Duration) { sleep(until: now + duration) }

    /// Lets time pass until `deadline`.
    public func sleep(until deadline: ClockInstant) {
        let nothing = WakeSignal()
        while wait(for: nothing, until: deadline) {}
    }
}

/// The host's monotonic clock (`CLOCK_MONOTONIC`; it does not jump with the wall clock). Its
/// origin is the host's boot, so instants from any two of its uses compare.
public final class RealTimeClock: WaitClock {
    /// The one real-time clock; everything that does not say otherwise uses it.
    public static let shared = RealTimeClock()

    private init() {}

    public var now: ClockInstant {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return ClockInstant(sinceOrigin: Duration(timespec: time))
    }

    public func wait(for signal: WakeSignal, until deadline: ClockInstant?) -> Bool {
        guard let deadline else {
            signal.waitWithoutLimit()
            return true
        }
        while true {
            let left = deadline - now
            guard left > .zero else { return signal.tryTake() }
            // sem_timedwait takes a CLOCK_REALTIME deadline: aim at the monotonic deadline's
            // equivalent and look again when it returns (a wall-clock step ends a wait early, never late
            // by more than the step).
            var wall = timespec()
            clock_gettime(CLOCK_REALTIME, &wall)
            if signal.waitUntilWallClock(timespec(Duration(timespec: wall) + left), spinLimit: left) { return true }
        }
    }
}
