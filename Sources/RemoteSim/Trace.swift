import MetalIO
import Virtio
import Remoteproc
import RPMsg
import Synchronization

/// One event of a board's trace.
public struct TraceEvent: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case stateChanged(from: RemoteprocState, to: RemoteprocState, call: RemoteprocCall)
        /// The host kicked the remote.
        case kickToRemote(NotifyID)
        /// The remote kicked the host.
        case kickToHost(NotifyID)
        /// The firmware wrote an invalid KICK value.
        case invalidKick(UInt32)
        /// A console line, from the CONSOLE register or the resource table's trace buffer.
        case console(String, fromTraceBuffer: Bool)
        case crash(CrashReport)
        case warning(String)
        /// The firmware armed (ms) or disarmed (0) its watchdog.
        case watchdog(UInt32)
        /// An RPMsg message through a traced device (``Trace/traceTraffic(of:)``).
        case message(RPMsgTraffic)
        /// The host wrote into a vdev entry: status (with the buffers made available so far),
        /// features, a vring address.
        case vdevWrite(VdevWrite)
        /// Suspend and resume on the board: requests, answers, the clock gate (``PowerEvent``).
        case power(PowerEvent)
        /// The emulated core took an interrupt or a trap.
        case trap(TrapEntry)
        /// ... and returned from its handler.
        case trapReturn(TrapReturn)
    }
    /// Time since the board was created.
    public var time: Duration
    public var kind: Kind

    public var description: String {
        let micros = time.inMicroseconds
        let stamp = micros < 1e6 ? "\(Int(micros)) µs" : "\(Double(Int(micros / 1000)) / 1000) s"
        let what: String
        switch kind {
        case let .stateChanged(from, to, call): what = "state \(from) → \(to) (\(call))"
        case let .kickToRemote(id): what = "kick host → remote id \(id)"
        case let .kickToHost(id): what = "kick remote → host id \(id)"
        case let .invalidKick(value): what = "invalid KICK value \(value) (firmware error)"
        case let .console(line, fromTraceBuffer): what = (fromTraceBuffer ? "trace: " : "console: ") + visibleText(line)
        case let .crash(report): what = "crash: \(report)"
        case let .warning(text): what = "warning: " + visibleText(text)
        case let .watchdog(ms): what = ms == 0 ? "watchdog disarmed" : "watchdog \(ms) ms"
        case let .vdevWrite(write): what = "host wrote \(write)"
        case let .power(event): what = "power: " + visibleText(event.description)
        case let .trap(entry): what = "trap: \(entry)"
        case let .trapReturn(exit): what = "trap return: \(exit)"
        case let .message(m):
            let bytes = m.prefix.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
            what = "message \(m.direction.rawValue) \(m.source) → \(m.destination), \(m.length) B: \(bytes)"
        }
        return "[\(stamp)] \(what)"
    }
}

/// A board's event trace: a bounded, thread-safe record of what happened, with timestamps.
public final class Trace: Sendable {
    /// Events kept; older ones are dropped first.
    public let capacity: Int
    /// The clock the events' times are read from.
    public let clock: any WaitClock
    private let started: ClockInstant
    private let storage = MetalMutex<(events: [TraceEvent], dropped: Int)>(([], 0))
    /// Woken after every event: waits for what the trace shows (and what the board's events
    /// change) look again then.
    public let waiters = ConditionWaiters()

    public init(capacity: Int = 100_000, clock: any WaitClock = RealTimeClock.shared) {
        self.capacity = max(1, capacity)
        self.clock = clock
        started = clock.now
    }

    public func record(_ kind: TraceEvent.Kind) {
        defer { waiters.changed() }
        storage.withLock { s in
            if s.events.count >= capacity {
                s.events.removeFirst(capacity / 10 + 1)
                s.dropped += capacity / 10 + 1
            }
            // The time is read under the lock: events are kept in the order of their times (two
            // threads recording at once could otherwise append an earlier time after a later one).
            s.events.append(TraceEvent(time: clock.now - started, kind: kind))
        }
    }

    /// Records every message `device` sends or receives, and wakes the trace's waiters after the
    /// device's endpoints have handled what arrived (a wait for a reply looks again then).
    /// The device holds the trace (strongly: the trace holds nothing of the device, so there is
    /// no cycle; a weak reference would give the trace a side table that LeakSanitizer, unable
    /// to decode Swift's packed refcount word, reports as leaked whenever a trace is still alive
    /// at process exit).
    public func traceTraffic(of device: RPMsgDevice) {
        device.setTrafficObserver { [self] traffic in record(.message(traffic)) }
        wakeWaiters(onActivityOf: device)
    }

    /// Wakes the trace's waiters after `device`'s endpoints have handled what arrived, without
    /// recording the messages.
    public func wakeWaiters(onActivityOf device: RPMsgDevice) {
        let waiters = self.waiters
        device.setActivityObserver { waiters.changed() }
    }

    /// Every event kept, oldest first.
    public var events: [TraceEvent] { storage.withLock { $0.events } }
    /// How many events were ever recorded (kept or dropped).
    public var recordedCount: Int { storage.withLock { $0.dropped + $0.events.count } }
    /// Events dropped because the trace was full.
    public var droppedCount: Int { storage.withLock { $0.dropped } }
    /// The events recorded after the first `seen` ever recorded (those still kept), and how many
    /// have been recorded in all: follows the trace without copying it whole each time.
    public func events(after seen: Int) -> (events: [TraceEvent], recorded: Int) {
        storage.withLock { s in
            let recorded = s.dropped + s.events.count
            let start = min(s.events.count, max(0, seen - s.dropped))
            return (Array(s.events[start...]), recorded)
        }
    }
    /// The last `count` events.
    public func last(_ count: Int) -> [TraceEvent] { storage.withLock { Array($0.events.suffix(count)) } }
    /// Console lines (both sources), oldest first.
    public var consoleLines: [String] {
        events.compactMap { if case let .console(line, _) = $0.kind { line } else { nil } }
    }
}

extension Trace {
    /// Several boards' events (on one clock) as one trace in time order; events at the same
    /// instant keep the boards' order, then each board's own. Each comes with its board's index.
    public static func merged(_ traces: [[TraceEvent]]) -> [(board: Int, event: TraceEvent)] {
        traces.enumerated().flatMap { board, events in events.enumerated().map { (board, $0.offset, $0.element) } }
            .sorted { ($0.2.time, $0.0, $0.1) < ($1.2.time, $1.0, $1.1) }
            .map { (board: $0.0, event: $0.2) }
    }
}
