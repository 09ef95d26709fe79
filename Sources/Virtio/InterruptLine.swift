import Synchronization
import MetalIO

/// What numbers an interrupt line: anything that is a 32-bit interrupt number underneath (a
/// notify id, a vring index). The line keeps raised numbers in that form — a bit per number
/// below 64, with no allocation and no generic hashing on the interrupt path.
public protocol InterruptNumber: Sendable {
    init(interruptNumber: UInt32)
    var interruptNumber: UInt32 { get }
}

extension NotifyID: InterruptNumber {
    public init(interruptNumber: UInt32) { self.init(rawValue: interruptNumber) }
    public var interruptNumber: UInt32 { rawValue }
}

extension Int: InterruptNumber {
    /// - Precondition: 0 ≤ self ≤ `UInt32.max` when used as one.
    public init(interruptNumber: UInt32) { self = Int(interruptNumber) }
    public var interruptNumber: UInt32 {
        precondition(self >= 0 && self <= Int(UInt32.max), "interrupt number \(self) is out of range")
        return UInt32(self)
    }
}

/// Interrupt numbers raised and not yet handled: numbers below 64 as bits, the rest in a set.
struct PendingInterrupts: Sendable {
    private var low: UInt64 = 0
    private var high: Set<UInt32> = []

    var isEmpty: Bool { low == 0 && high.isEmpty }

    mutating func insert(_ number: UInt32) {
        if number < 64 { low |= 1 << UInt64(number) } else { high.insert(number) }
    }

    /// Every number, ascending.
    func forEach(_ body: (UInt32) -> Void) {
        var bits = low
        while bits != 0 {
            body(UInt32(bits.trailingZeroBitCount))
            bits &= bits - 1
        }
        if !high.isEmpty { for number in high.sorted() { body(number) } }
    }

    var count: Int { low.nonzeroBitCount + high.count }
}

/// Where the handler of an ``InterruptLine`` runs.
public enum InterruptDelivery: String, Sendable, CaseIterable {
    /// On the thread that raised the interrupt, inside ``InterruptLine/raise(_:)`` — as an
    /// interrupt handler runs on the CPU it interrupts: no thread in between, one hop fewer per
    /// notification. The handler runs in ``MetalIO/InterruptContext`` of the line: what would wait
    /// for the raising side fails at once instead (see docs/performance.md).
    case inline
    /// On a dedicated interrupt thread of the line.
    case thread
    /// Nowhere until ``InterruptLine/poll()`` runs it on the calling thread (deterministic tests).
    case poll
}

/// Numbered interrupts raised by one side and handled by the other, delivered as
/// ``InterruptDelivery`` says: on the raising thread, on a dedicated thread, or in ``poll()``.
/// Raises of one number that arrive before it is handled coalesce into one, as a real interrupt
/// controller's pending bit does; none is lost. Pending numbers are handled in ascending order,
/// and one handler runs at a time: a raise while a handler runs (on any thread) is handled by
/// that running handler before it returns.
public final class InterruptLine<Number: InterruptNumber>: @unchecked Sendable {
    // Mutable state is in Mutexes and atomics; the signals are thread-safe.
    private struct Pending {
        var numbers = PendingInterrupts()
        var stop = false
        /// Inline delivery: a handler runs now (on `runner`'s thread), and takes what is raised meanwhile.
        var running = false
        /// Inline delivery: a shutdown waits for the running handler to return.
        var shutdownWaits = false
    }
    private let pending = MetalMutex(Pending())
    /// The handler, in a struct: a `Mutex` whose value *is* a closure re-wraps it in thunks on
    /// every access, so each interrupt would have called through a longer chain than the last.
    private struct Handler { var call: (@Sendable (Number) -> Void)? }
    private let handler = MetalMutex(Handler())
    private let wake = WakeSignal()
    private let stopped = WakeSignal()
    private let raised = Atomic<Int>(0)
    /// Where the handler runs.
    public let delivery: InterruptDelivery
    /// Whether a dedicated thread handles the interrupts.
    public var usesThread: Bool { delivery == .thread }

    /// - Throws: ``MetalIO/ThreadError`` when the handler thread (``InterruptDelivery/thread``) cannot be started.
    public init(delivery: InterruptDelivery) throws(ThreadError) {
        self.delivery = delivery
        guard delivery == .thread else { return }
        // The thread holds the line until ``shutdown()`` ends it.
        try PlatformThread(name: "rproc-interrupt") { self.run() }.detach()
    }

    /// - Parameter thread: `false` for poll mode.
    public convenience init(thread: Bool = true) throws(ThreadError) {
        try self.init(delivery: thread ? .thread : .poll)
    }

    /// Sets what handles an interrupt (it receives the interrupt's number).
    public func setHandler(_ handler: (@Sendable (Number) -> Void)?) { self.handler.withLock { $0.call = handler } }

    /// Raises interrupt `number`; with inline delivery its handler runs before this returns
    /// (unless a handler runs already, which then takes it).
    public func raise(_ number: Number) {
        raised.add(1, ordering: .relaxed)
        let value = number.interruptNumber
        switch delivery {
        case .poll:
            pending.withLock { $0.numbers.insert(value) }
        case .thread:
            let stop = pending.withLock { p in
                p.numbers.insert(value)
                return p.stop
            }
            if !stop { wake.signal() }
        case .inline:
            let first: PendingInterrupts? = pending.withLock { p in
                p.numbers.insert(value)
                guard !p.stop, !p.running else { return nil }
                p.running = true
                defer { p.numbers = PendingInterrupts() }
                return p.numbers
            }
            guard var numbers = first else { return }
            InterruptContext.run(for: self) {
                while true {
                    deliver(numbers)
                    let (next, wakeShutdown): (PendingInterrupts?, Bool) = pending.withLock { p in
                        guard p.stop || p.numbers.isEmpty else {
                            defer { p.numbers = PendingInterrupts() }
                            return (p.numbers, false)
                        }
                        p.running = false
                        return (nil, p.shutdownWaits)
                    }
                    guard let next else {
                        if wakeShutdown { stopped.signal() }
                        return
                    }
                    numbers = next
                }
            }
        }
    }

    /// How many times ``raise(_:)`` was called.
    public var raiseCount: Int { raised.load(ordering: .relaxed) }

    /// Whether the calling thread runs this line's handler inline now.
    public var isHandlingOnCurrentThread: Bool { InterruptContext.isRunning(self) }

    /// Handles the interrupts raised so far on the calling thread (poll mode). Returns how many.
    /// With the other deliveries it does nothing: they handle them, and only they.
    @discardableResult
    public func poll() -> Int {
        guard delivery == .poll, let numbers = take() else { return 0 }
        deliver(numbers)
        return numbers.count
    }

    /// Stops delivering, waiting up to 5 s for the handler thread or a handler running inline on
    /// another thread, and lets go of the handler (which often captures what owns the line);
    /// later raises are only recorded and never handled.
    public func shutdown() {
        let (already, running) = pending.withLock { p in
            defer { p.stop = true }
            if p.running { p.shutdownWaits = true }
            return (p.stop, p.running)
        }
        if !already {
            switch delivery {
            case .thread:
                wake.signal()
                stopped.wait(timeout: .seconds(5))
            case .inline:
                // A handler that shuts its own line down returns on its own, after this.
                if running && !isHandlingOnCurrentThread { stopped.wait(timeout: .seconds(5)) }
            case .poll:
                break
            }
        }
        let released = handler.withLock { h in
            defer { h.call = nil }
            return h.call
        }
        withExtendedLifetime(released) {}   // released here, outside the lock
    }

    /// The numbers raised so far, taken in the same lock that says whether the line was shut
    /// down (`nil`: it was; nothing is handled any more).
    private func take() -> PendingInterrupts? {
        pending.withLock { p in
            guard !p.stop else { return nil }
            defer { p.numbers = PendingInterrupts() }
            return p.numbers
        }
    }

    private func deliver(_ numbers: PendingInterrupts) {
        guard !numbers.isEmpty, let handler = handler.withLock({ $0.call }) else { return }
        numbers.forEach { handler(Number(interruptNumber: $0)) }
    }

    private func run() {
        while true {
            wake.wait()
            guard let numbers = take() else { break }
            deliver(numbers)
        }
        stopped.signal()
    }
}
