import MetalIO
import Remoteproc
import Synchronization
import Testing
import Virtio

/// A platform whose suspend op answers as told (a `TestPlatform` cannot suspend at all).
final class SuspendingPlatform: RemoteprocOps {
    enum Answer: Sendable { case suspend, refuse(SuspendRefusal), fail }
    let answer = MetalMutex<Answer>(.suspend)
    let calls = MetalMutex<[String]>([])
    func start(bootAddress: DeviceAddress) throws { calls.withLock { $0.append("start") } }
    func stop() throws { calls.withLock { $0.append("stop") } }
    func notify(_ id: NotifyID) throws {}
    func suspend(_ kind: SuspendKind, timeout: Duration) throws {
        calls.withLock { $0.append("suspend \(kind)") }
        switch answer.withLock({ $0 }) {
        case .suspend: return
        case let .refuse(refusal): throw refusal
        case .fail: throw TestPlatform.InjectedFailure(op: "suspend")
        }
    }
    func resume() throws { calls.withLock { $0.append("resume") } }
}

@Suite("Suspend and resume in the core")
struct SuspendLifecycleTests {
    func running(_ ops: any RemoteprocOps) throws -> RemoteProcessor {
        let processor = try RemoteProcessor(ops: ops)
        for memory in try TestPlatform().memories { processor.addMemory(memory) }
        try processor.configure()
        try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage()]))
        try processor.start()
        return processor
    }

    @Test("a platform without suspend says so with a typed error; the state stays Running")
    func unsupported() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        try processor.configure()
        try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage()]))
        try processor.start()
        let error = try #require(remoteprocError { try processor.suspend() })
        guard case .unsupported = error.kind else { Issue.record("got \(error)"); return }
        #expect(error.call == .suspend)
        #expect(processor.state == .running)
    }

    @Test("Running → Suspended → Running, observers see both; wrong states are refused naming call and state")
    func transitions() throws {
        let platform = SuspendingPlatform()
        let processor = try running(platform)
        let log = EventLog(processor)
        #expect(remoteprocError { try processor.resume() }?.wrongState == .running)
        try processor.suspend(.system)
        #expect(processor.state == .suspended)
        #expect(remoteprocError { try processor.suspend() }?.wrongState == .suspended)
        #expect(remoteprocError { try processor.start() }?.wrongState == .suspended)
        try processor.resume()
        #expect(processor.state == .running)
        #expect(log.changes.map(\.call) == [.suspend, .resume])
        #expect(log.path == [.suspended, .running])
        #expect(platform.calls.withLock { $0 } == ["start", "suspend system", "resume"])
        let statistics = processor.powerStatistics
        #expect(statistics.suspensions == 1 && statistics.resumes == 1 && statistics.refusals == 0)
    }

    @Test("a cancel is 'refused by the remote', no answer is 'busy', an op failure is an op failure: state unchanged each time",
          arguments: [0, 1, 2])
    func refusals(which: Int) throws {
        let platform = SuspendingPlatform()
        let processor = try running(platform)
        platform.answer.withLock { $0 = [.refuse(.cancelled), .refuse(.noAnswer(within: .milliseconds(5))), .fail][which] }
        let error = try #require(remoteprocError { try processor.suspend(.auto) })
        switch (which, error.kind) {
        case (0, .refusedByRemote(.auto)), (1, .busy(.auto, _)), (2, .operationFailed(op: "suspend")): break
        default: Issue.record("case \(which) gave \(error)")
        }
        #expect(error.call == .suspend)
        #expect(processor.state == .running)
        #expect(processor.powerStatistics.refusals == (which < 2 ? 1 : 0))
    }

    @Test("stop and shutdown from Suspended stop the core without resuming it; a crash report cannot arrive while suspended")
    func stopFromSuspended() throws {
        let platform = SuspendingPlatform()
        let processor = try running(platform)
        try processor.suspend()
        #expect(remoteprocError { try processor.reportCrash(CrashReport(kind: .panic, message: "x")) }?.wrongState == .suspended)
        try processor.stop()
        #expect(processor.state == .stopped)
        #expect(!platform.calls.withLock { $0 }.contains("resume"))
        let statistics = processor.powerStatistics
        #expect(statistics.suspensions == 1 && statistics.resumes == 0)
        let another = try running(platform)
        try another.suspend()
        try another.shutdown()
        #expect(another.state == .offline)
        #expect(another.powerStatistics.suspensions == 1)
    }
}
