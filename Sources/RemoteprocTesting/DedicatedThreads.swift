import Foundation
import Testing

/// A task executor that runs every job on a thread of its own, outside Swift concurrency's
/// cooperative pool.
///
/// Tests against the simulated board block while they wait (a fixture's waits, a board's
/// threads, `gdb-multiarch` in a subprocess), and Swift Testing runs test bodies on the
/// cooperative pool, which has one thread per CPU. On a 2-CPU machine two long blocking tests
/// hold the whole pool, and every other test — its `.timeLimit` clock already running — waits
/// for a thread: under load that failed fast tests with "Time limit was exceeded". Run blocking
/// tests here (``Testing/Trait/dedicatedThreads``) and the pool stays free.
public final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    // Stateless: every job gets a new thread, which runs it and ends.
    public static let shared = DedicatedThreadExecutor()

    public init() {}

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        let thread = Thread { unowned.runSynchronously(on: executor) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// Runs a test (or every test of a suite) on ``DedicatedThreadExecutor`` threads.
public struct DedicatedThreadsTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        // Suites only pass their scope on to their tests; each test case takes its own threads.
        guard testCase != nil || !test.isSuite else { return try await function() }
        try await withTaskExecutorPreference(DedicatedThreadExecutor.shared) { try await function() }
    }
}

extension Trait where Self == DedicatedThreadsTrait {
    /// Runs the test bodies on threads of their own, not on Swift concurrency's cooperative pool:
    /// for tests that block (a ``SimulatedRemote``'s waits do), so they neither starve other tests
    /// of the pool nor are starved by them.
    public static var dedicatedThreads: Self { DedicatedThreadsTrait() }
}
