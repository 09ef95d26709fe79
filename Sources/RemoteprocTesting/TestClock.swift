import MetalIO
import RemoteSim

/// The clock a fixture's boards keep, and the test thread's part in it. For virtual time, a fresh
/// ``MetalIO/VirtualClock`` that the creating thread joins at once — before any board's thread
/// starts, so the turns come in the same order on every run; ``end()`` leaves it, from whichever
/// thread closes the fixture (leaving twice is harmless). Real time: the shared real-time clock.
final class TestClock: Sendable {
    let clock: any WaitClock
    private let participation: (clock: VirtualClock, ticket: VirtualClock.Ticket)?

    init(_ kind: BoardClock) {
        let virtual = kind == .virtual ? VirtualClock() : nil
        clock = virtual ?? RealTimeClock.shared
        participation = virtual.map { ($0, $0.joinForTicket()) }
    }

    func end() {
        if let participation { participation.clock.leave(participation.ticket) }
    }
}
