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

/// Numbered interrupts raised by one side and handled by the other: with a dedicated thread (the
/// default) the handler runs there, as an interrupt handler would; in poll mode nothing runs until
/// ``poll()``, which makes tests deterministic. Raises of one number that arrive before it is
/// handled coalesce into one, as a real interrupt controller's pending bit does; none is lost.
/// Pending numbers are handled in ascending order.
public final class InterruptLine<Number: InterruptNumber>: @unchecked Sendable {
    // Mutable state is in Mutexes and atomics; the signals are thread-safe.
    private let pending = MetalMutex<(numbers: PendingInterrupts, stop: Bool)>((PendingInterrupts(), false))
    /// The handler, in a struct: a `Mutex` whose value *is* a closure re-wraps it in thunks on
    /// every access, so each interrupt would have called through a longer chain than the last.
    private struct Handler { var call: (@Sendable (Number) -> Void)? }
    private let handler = MetalMutex(Handler())
    private let wake = WakeSignal()
    private let stopped = WakeSignal()
    private let raised = Atomic<Int>(0)
    /// Whether a dedicated thread handles the interrupts.
    public let usesThread: Bool

    /// - Parameter thread: `false` for poll mode.
    /// - Throws: ``MetalIO/ThreadError`` when the handler thread cannot be started.
    public init(thread: Bool = true) throws(ThreadError) {
        usesThread = thread
        guard thread else { return }
        // The thread holds the line until ``shutdown()`` ends it.
        try PlatformThread(name: "rproc-interrupt") { self.run() }.detach()
    }

    /// Sets what handles an interrupt (it receives the interrupt's number).
    public func setHandler(_ handler: (@Sendable (Number) -> Void)?) { self.handler.withLock { $0.call = handler } }

    /// Raises interrupt `number`.
    public func raise(_ number: Number) {
        raised.add(1, ordering: .relaxed)
        let value = number.interruptNumber
        let stop = pending.withLock { p in
            p.numbers.insert(value)
            return p.stop
        }
        if usesThread && !stop { wake.signal() }
    }

    /// How many times ``raise(_:)`` was called.
    public var raiseCount: Int { raised.load(ordering: .relaxed) }

    /// Handles the interrupts raised so far on the calling thread (poll mode). Returns how many.
    /// With a handler thread it does nothing: that thread handles them, and only it.
    @discardableResult
    public func poll() -> Int {
        guard !usesThread, let numbers = take() else { return 0 }
        deliver(numbers)
        return numbers.count
    }

    /// Stops the handler thread, waiting up to 5 s for it, and lets go of the handler (which often
    /// captures what owns the line); later raises are only recorded and never handled.
    public func shutdown() {
        let already = pending.withLock { p in
            defer { p.stop = true }
            return p.stop
        }
        if usesThread && !already {
            wake.signal()
            stopped.wait(timeout: .seconds(5))
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
