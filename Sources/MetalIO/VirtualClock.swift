#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Virtual time, with the threads that use it run in lockstep: a ``WaitClock`` whose time moves
/// only when something moves it, and a scheduler that lets exactly one of its *participant*
/// threads run at a time.
///
/// A participant runs until it waits on the clock (or ``yield()``s, or leaves). Then the clock
/// hands the turn on, looking at the participants in a fixed order — round robin from the one
/// that stopped, in the order they were admitted: the first that may run gets the turn (one
/// whose signal has been given, one that yielded, one whose deadline has come). When none may
/// run, time jumps to the earliest deadline and that participant's wait returns `false`. When
/// nobody has a deadline either, the clock is *stalled* until a signal comes from a thread
/// outside the schedule (a debugger, a test's own thread): nothing else could ever happen.
///
/// Time passes only two ways: by jumping to a deadline, and by ``advance(by:)`` — busy time: an
/// emulated core charges the instructions it executed, a host send and a native firmware's poll
/// a fixed cost (docs/virtual-time.md); other work takes no virtual time. Since
/// the order of turns depends only on what the participants do, never on the host machine's
/// speed or load, the same participants doing the same things give the same interleaving and
/// the same timestamps on every run.
///
/// Threads join with ``startThread(name:_:)`` (admitted by the thread that starts them, at that
/// point in the schedule), ``join()`` / ``leave()`` for a thread that exists already. A thread
/// outside the schedule may still wait on the clock: it takes part for the length of that wait
/// (its deadline is virtual), then runs on concurrently — such a thread's actions are not
/// deterministic, which is why the scenario runner and the test fixture make the host's thread
/// a participant.
///
/// A participant must not block outside the clock on something only another participant can
/// give (a lock it holds across a wait, a thread join): the other cannot run until it does.
/// ``ClockThread/join()`` waits for a participant thread's end through the clock for that reason.
public final class VirtualClock: WaitClock, @unchecked Sendable {
    // @unchecked: every mutable field is in `schedule` (a MetalMutex); `nanoseconds` is an atomic
    // copy of the schedule's time for readers that take no lock.

    /// What a participant is doing.
    private enum Activity {
        /// May run; waits for the turn (admitted, yielded).
        case ready
        /// Waits for its signal or its deadline.
        case blocked(WakeSignal, ClockInstant?)
        /// Has the turn.
        case running
    }

    private struct Participant {
        let id: Int
        /// The thread, once it entered (a thread admitted by another binds itself when it starts).
        var thread: pthread_t?
        /// Where the thread parks until it has the turn: after a fixed spin longer than a learned
        /// bound may be — a turn often comes back after another participant's run of tens of
        /// microseconds (7 December, alternating binaries: the learned bound gave RV32 virtual
        /// echo 33k–47k round trips/s, the fixed 50 µs 61k–68k).
        let turn = WakeSignal(fixedSpin: VirtualClock.turnSpin)
        var activity: Activity
        /// How its last wait ended: its signal (`true`) or its deadline.
        var signalled = false
    }

    private struct Schedule {
        var now: ClockInstant
        var participants: [Participant] = []
        var holder: Int?
        var nextID = 0
        /// Registered with the signals' stall watch (see ``signalGiven()``).
        var stalled = false
    }

    /// How long a participant spins for its turn before it parks.
    static let turnSpin: Duration = .microseconds(50)

    private let schedule: MetalMutex<Schedule>
    private let nanoseconds: Atomic<Int64>

    /// A clock at `start` (the origin by default), with no participants.
    public init(start: Duration = .zero) {
        schedule = MetalMutex(Schedule(now: ClockInstant(sinceOrigin: start)))
        nanoseconds = Atomic(start.totalNanoseconds)
    }

    public var now: ClockInstant { ClockInstant(sinceOrigin: .nanoseconds(nanoseconds.load(ordering: .acquiring))) }

    // MARK: Taking part

    /// A place in the schedule for a thread about to start (see ``enter(_:)``).
    public struct Ticket: Sendable {
        fileprivate let id: Int
    }

    /// Admits a thread that does not run yet: it is ready from this point of the schedule on,
    /// and takes its place when it calls ``enter(_:)``.
    public func admit() -> Ticket {
        schedule.withLock { s in
            let id = s.nextID
            s.nextID += 1
            s.participants.append(Participant(id: id, thread: nil, activity: .ready))
            if s.holder == nil { pickNext(&s, after: nil) }
            return Ticket(id: id)
        }
    }

    /// The admitted thread binds itself to `ticket` and waits for its first turn.
    public func enter(_ ticket: Ticket) {
        let turn: WakeSignal? = schedule.withLock { s in
            precondition(index(ofCurrentThreadIn: s) == nil, "a thread takes part in a virtual clock once")
            guard let i = s.participants.firstIndex(where: { $0.id == ticket.id }) else { return nil }
            s.participants[i].thread = pthread_self()
            return s.participants[i].turn
        }
        turn?.waitWithoutLimit()
    }

    /// The calling thread takes part from now on; returns when it has the turn. A thread takes
    /// part once: joining again is a programmer error.
    public func join() {
        let ticket = admit()
        enter(ticket)
    }

    /// The calling thread stops taking part; the turn, if it had it, goes on.
    public func leave() {
        schedule.withLock { s in
            guard let i = index(ofCurrentThreadIn: s) else { return }
            remove(&s, at: i)
        }
    }

    /// The participant that `ticket` admitted stops taking part, whichever thread calls this (an
    /// owner closing what a thread of its own joined).
    public func leave(_ ticket: Ticket) {
        schedule.withLock { s in
            guard let i = s.participants.firstIndex(where: { $0.id == ticket.id }) else { return }
            remove(&s, at: i)
        }
    }

    /// The calling thread takes part from now on (returns when it has the turn); the ticket
    /// lets anyone end its part (``leave(_:)``).
    @discardableResult
    public func joinForTicket() -> Ticket {
        let ticket = admit()
        enter(ticket)
        return ticket
    }

    /// Removes participant `i`; the turn, if it had it, goes on.
    private func remove(_ s: inout Schedule, at i: Int) {
        let id = s.participants[i].id
        s.participants.remove(at: i)
        if s.holder == id {
            s.holder = nil
            pickNext(&s, startingAt: i)
        }
    }

    /// Whether the calling thread takes part in this clock's schedule.
    public var isParticipant: Bool { schedule.withLock { index(ofCurrentThreadIn: $0) != nil } }
    public var schedulesCurrentThread: Bool { isParticipant }
    public var isVirtual: Bool { true }

    /// How many threads take part.
    public var participantCount: Int { schedule.withLock { $0.participants.count } }

    public func startThread(name: String, _ body: @escaping @Sendable () -> Void) throws(ThreadError) -> ClockThread {
        let ended = WakeSignal()
        let ticket = admit()
        do {
            let thread = try PlatformThread(name: name) { [self] in
                enter(ticket)
                body()
                ended.signal()
                leave()
            }
            return ClockThread(thread: thread, ended: ended, clock: self)
        } catch {
            leave(ticket)   // its thread never started
            throw error
        }
    }

    // MARK: Time

    public func wait(for signal: WakeSignal, until deadline: ClockInstant?) -> Bool {
        if signal.tryTake() { return true }
        let (turn, temporary): (WakeSignal, Bool) = schedule.withLock { s in
            if let i = index(ofCurrentThreadIn: s) {
                precondition(s.holder == s.participants[i].id, "a participant of a virtual clock waited without having the turn")
                s.participants[i].activity = .blocked(signal, deadline)
                s.holder = nil
                pickNext(&s, after: i)
                return (s.participants[i].turn, false)
            }
            // A thread outside the schedule: it takes part for this wait.
            let id = s.nextID
            s.nextID += 1
            s.participants.append(Participant(id: id, thread: pthread_self(), activity: .blocked(signal, deadline)))
            if s.holder == nil { pickNext(&s, after: nil) }
            return (s.participants[s.participants.count - 1].turn, true)
        }
        turn.waitWithoutLimit()
        return schedule.withLock { s in
            guard let i = index(ofCurrentThreadIn: s) else { return false }
            let signalled = s.participants[i].signalled
            if temporary { remove(&s, at: i) }
            return signalled
        }
    }

    /// Lets the others whose turn it is run first (a signal they wait for was given, their
    /// deadline has come); returns when this thread has the turn again. Nothing for a thread
    /// outside the schedule.
    public func yield() {
        let turn: WakeSignal? = schedule.withLock { s in
            guard let i = index(ofCurrentThreadIn: s), s.holder == s.participants[i].id else { return nil }
            s.participants[i].activity = .ready
            s.holder = nil
            pickNext(&s, after: i)
            return s.participants[i].turn
        }
        turn?.waitWithoutLimit()
    }

    /// Time passes by `duration` for the participant with the turn (an emulated core charging
    /// the instructions it executed): it is busy until then. Another participant whose deadline
    /// falls inside that span, or whose signal came, runs at its point in time meanwhile; a
    /// thread outside the schedule just waits that long. See ``earliestDeadlineOfOthers`` for
    /// how far a core may run before someone else's wait must end.
    public func advance(by duration: Duration) {
        guard duration > .zero else { return }
        _ = wait(for: Self.never, until: now + duration)
    }

    /// Never signalled: what ``advance(by:)`` waits on.
    private static let never = WakeSignal()

    /// The earliest deadline another participant waits for: how far the participant with the
    /// turn may advance time before someone else's wait must end.
    public var earliestDeadlineOfOthers: ClockInstant? {
        schedule.withLock { s in
            let me = index(ofCurrentThreadIn: s)
            var earliest: ClockInstant?
            for (i, p) in s.participants.enumerated() where i != me {
                if case let .blocked(_, deadline?) = p.activity, earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
            }
            return earliest
        }
    }

    // MARK: The schedule

    private func index(ofCurrentThreadIn s: Schedule) -> Int? {
        let me = pthread_self()
        return s.participants.firstIndex { $0.thread.map { pthread_equal($0, me) != 0 } ?? false }
    }

    /// Gives the turn to the next participant that may run, looking from the one after index `i`.
    private func pickNext(_ s: inout Schedule, after i: Int?) {
        pickNext(&s, startingAt: i.map { $0 + 1 } ?? 0)
    }

    /// Gives the turn to the first participant, in round-robin order from `start`, that may run;
    /// else moves time to the earliest deadline; else stalls. The holder must be `nil`.
    private func pickNext(_ s: inout Schedule, startingAt start: Int) {
        let count = s.participants.count
        guard count > 0 else { return stall(&s) }
        var earliest: (index: Int, deadline: ClockInstant)?
        for k in 0..<count {
            let i = (start + k) % count
            switch s.participants[i].activity {
            case .running:
                continue
            case .ready:
                return give(&s, to: i, signalled: true)
            case let .blocked(signal, deadline):
                if signal.tryTake() { return give(&s, to: i, signalled: true) }
                if let deadline {
                    if deadline <= s.now { return give(&s, to: i, signalled: false) }
                    if earliest.map({ deadline < $0.deadline }) ?? true { earliest = (i, deadline) }
                }
            }
        }
        guard let earliest else { return stall(&s) }
        s.now = earliest.deadline
        nanoseconds.store(s.now.sinceOrigin.totalNanoseconds, ordering: .releasing)
        give(&s, to: earliest.index, signalled: false)
    }

    private func give(_ s: inout Schedule, to i: Int, signalled: Bool) {
        if s.stalled {
            s.stalled = false
            Self.unwatch(self)
        }
        s.participants[i].activity = .running
        s.participants[i].signalled = signalled
        s.holder = s.participants[i].id
        s.participants[i].turn.signal()
    }

    /// Nobody may run and nobody has a deadline: only a signal from outside the schedule can
    /// change that. The clock watches for one (every ``WakeSignal/signal()`` looks while any
    /// clock is stalled), then looks once more for a signal given before it watched.
    private func stall(_ s: inout Schedule) {
        // With nobody taking part there is nothing to wake (and the watch would keep the clock alive).
        guard !s.participants.isEmpty else {
            if s.stalled {
                s.stalled = false
                Self.unwatch(self)
            }
            return
        }
        if !s.stalled {
            s.stalled = true
            Self.watch(self)
        }
        for i in s.participants.indices {
            if case let .blocked(signal, _) = s.participants[i].activity, signal.tryTake() { return give(&s, to: i, signalled: true) }
        }
    }

    /// A signal was given from outside the schedule while this clock was stalled.
    private func lookAgain() {
        schedule.withLock { s in
            guard s.holder == nil, s.stalled else { return }
            stall(&s)
        }
    }

    // MARK: Stall watch

    /// How many clocks are stalled: a signal looks at them only while this is not zero.
    private static let stalledCount = Atomic<Int>(0)
    private static let stalledClocks = MetalMutex<[ObjectIdentifier: VirtualClock]>([:])

    private static func watch(_ clock: VirtualClock) {
        stalledClocks.withLock { $0[ObjectIdentifier(clock)] = clock }
        stalledCount.add(1, ordering: .sequentiallyConsistent)
    }

    private static func unwatch(_ clock: VirtualClock) {
        stalledCount.subtract(1, ordering: .sequentiallyConsistent)
        _ = stalledClocks.withLock { $0.removeValue(forKey: ObjectIdentifier(clock)) }
    }

    /// Called by every ``WakeSignal/signal()`` after it posted: one atomic load while no clock
    /// is stalled. Either a stalled clock's last look saw the signal, or this sees the clock.
    static func signalGiven() {
        guard stalledCount.load(ordering: .sequentiallyConsistent) > 0 else { return }
        for clock in stalledClocks.withLock({ Array($0.values) }) { clock.lookAgain() }
    }
}

/// A thread started through a ``WaitClock`` (``WaitClock/startThread(name:_:)``): under a
/// ``VirtualClock`` it takes part in the schedule, so its owner waits for its end through the clock.
public struct ClockThread: ~Copyable {
    private let thread: PlatformThread
    private let ended: WakeSignal
    private let clock: any WaitClock

    init(thread: consuming PlatformThread, ended: WakeSignal, clock: any WaitClock) {
        self.thread = thread
        self.ended = ended
        self.clock = clock
    }

    /// Waits for the body to return (through the clock), then for the thread to end.
    public consuming func join() {
        if !thread.isCurrent { _ = clock.wait(for: ended, until: nil) }
        thread.join()
    }

    /// Lets the thread run to its end on its own.
    public consuming func detach() { thread.detach() }
}
