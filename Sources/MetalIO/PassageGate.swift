import Synchronization

/// A gate many threads pass through at once until it is closed for good; ``close()`` waits for
/// those inside, and nobody enters after it. It guards what must stop at a point in time (a
/// device's writes into shared memory once it is closed) without making the users of the
/// guarded thing wait for each other: entering and leaving are one atomic add each, where a
/// mutex would serialise them and hand the lock from thread to thread on a busy path.
public final class PassageGate: Sendable {
    /// Threads inside, plus ``closedFlag`` once closed.
    private let word = Atomic<Int>(0)
    private static let closedFlag = 1 << 40
    /// Signalled by the last thread to leave a closed gate.
    private let emptied = WakeSignal()

    public init() {}

    /// Runs `body` inside the gate, or returns `nil` without running it when the gate is closed.
    @inlinable
    public func pass<T>(_ body: () throws -> T) rethrows -> T? {
        guard enter() else { return nil }
        defer { leave() }
        return try body()
    }

    @usableFromInline
    func enter() -> Bool {
        let before = word.add(1, ordering: .acquiringAndReleasing).oldValue
        guard before & Self.closedFlag == 0 else {
            leave()
            return false
        }
        return true
    }

    @usableFromInline
    func leave() {
        let after = word.subtract(1, ordering: .acquiringAndReleasing).newValue
        if after == Self.closedFlag { emptied.signal() }
    }

    /// Whether ``close()`` was called.
    public var isClosed: Bool { word.load(ordering: .acquiring) & Self.closedFlag != 0 }

    /// Closes the gate and waits until everyone inside has left (not from inside it: that would
    /// wait for itself). Closing again returns at once.
    public func close() {
        let before = word.bitwiseOr(Self.closedFlag, ordering: .acquiringAndReleasing).oldValue
        guard before & Self.closedFlag == 0 else { return }
        while word.load(ordering: .acquiring) != Self.closedFlag { emptied.wait() }
    }
}
