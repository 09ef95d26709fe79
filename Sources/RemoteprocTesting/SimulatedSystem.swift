import Foundation
import Synchronization
import MetalIO
import RemoteSim
import Remoteproc

/// Several remote processors and one host: each remote its own board and firmware, all on one
/// clock — virtual by default, so the whole system runs in lockstep with the test's thread and
/// repeats exactly (docs/virtual-time.md). Address the remotes by name.
///
/// ```swift
/// let system = try SimulatedSystem(["m4": .program("echo", architecture: .cortexM4),
///                                   "rv": .program("echo", architecture: .rv32)])
/// defer { system.close() }
/// #expect(try system["m4"].connect(to: "rpmsg-echo").request("hi") == "hi")
/// ```
public final class SimulatedSystem: Sendable {
    /// The remotes, in the order given.
    public let remotes: [(name: String, remote: SimulatedRemote)]
    /// The system's clock, shared by every board.
    public var clock: any WaitClock { testClock.clock }
    private let testClock: TestClock
    private let closed = Atomic<Bool>(false)

    /// Boots every remote, in order (configure, load, start, RPMsg on the first vdev), on one
    /// clock of `clock`'s kind. In virtual time the calling thread takes part in the schedule
    /// until ``close()``: use the system from that thread.
    public init(_ processors: KeyValuePairs<String, TestFirmware>, clock: BoardClock = .virtual, timeout: Duration = .seconds(10),
                host: HostPersonality = .default) throws {
        precondition(!processors.isEmpty, "a system has at least one processor")
        precondition(Set(processors.map(\.key)).count == processors.count, "each processor has its own name")
        let time = TestClock(clock)
        var made: [(name: String, remote: SimulatedRemote)] = []
        do {
            for (name, firmware) in processors {
                made.append((name, try SimulatedRemote(firmware, timeout: timeout, pollMode: false, host: host, debug: nil, exactPCs: false, on: time.clock)))
            }
        } catch {
            for (_, remote) in made.reversed() { remote.close() }
            time.end()
            throw error
        }
        remotes = made
        testClock = time
    }

    deinit { close() }

    /// The remote called `name`.
    public subscript(name: String) -> SimulatedRemote {
        guard let remote = remotes.first(where: { $0.name == name })?.remote else {
            preconditionFailure("no processor '\(name)' (processors: \(remotes.map(\.name).joined(separator: ", ")))")
        }
        return remote
    }

    /// Every board's trace in time order, each event with the name of its processor.
    public var trace: [(processor: String, event: TraceEvent)] {
        Trace.merged(remotes.map(\.remote.board.trace.events)).map { (processor: remotes[$0.board].name, event: $0.event) }
    }

    /// Shuts every remote down and leaves the clock. Safe to call twice.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for (_, remote) in remotes.reversed() { remote.close() }
        testClock.end()
    }
}
