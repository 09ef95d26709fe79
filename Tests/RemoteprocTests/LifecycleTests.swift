import Foundation
import MetalIO
import Virtio
@testable import Remoteproc
import Synchronization
import Testing

/// A small image in memory: one code segment, one sram segment holding a resource table.
func tinyImage(table: ResourceTable? = nil) throws -> [UInt8] {
    ELFWriter.image(segments: [.init(address: 0x100, bytes: [0xAA, 0xBB, 0xCC, 0xDD], memorySize: 8)],
                         entry: 0x101, resourceTable: table.map { (0x2000_0000, $0.bytes) })
}

func readyProcessor(_ platform: TestPlatform, table: ResourceTable? = nil) throws -> RemoteProcessor {
    let processor = try platform.processor()
    try processor.configure()
    try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage(table: table)]))
    return processor
}

@Suite("Life cycle")
struct LifecycleTests {
    @Test("init runs the init op and starts Offline")
    func initialState() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        #expect(processor.state == .offline)
        #expect(platform.calls == ["init"])
    }

    @Test("a failing init op fails init")
    func initFails() throws {
        let platform = try TestPlatform()
        platform.fail("init")
        #expect(throws: RemoteprocError.self) { _ = try platform.processor() }
    }

    @Test("the full cycle: Offline → Configured → Ready → Running → Stopped → Offline")
    func fullCycle() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let log = EventLog(processor)
        try processor.configure()
        #expect(processor.state == .configured)
        try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage()]))
        #expect(processor.state == .ready)
        try processor.start()
        #expect(processor.state == .running)
        #expect(platform.startedAt == DeviceAddress(0x101))
        try processor.stop()
        #expect(processor.state == .stopped)
        try processor.shutdown()
        #expect(processor.state == .offline)
        #expect(log.path == [.configured, .ready, .running, .stopped, .offline])
        #expect(log.changes.map(\.call) == [.configure, .load, .start, .stop, .shutdown])
        #expect(platform.calls == ["init", "configure", "start", "stop", "shutdown"])
        let sequences = log.changes.map(\.sequence)
        #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)
    }

    @Test("reloading in Ready stays Ready")
    func reload() throws {
        let platform = try TestPlatform()
        let processor = try readyProcessor(platform)
        try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage()]))
        #expect(processor.state == .ready)
    }

    @Test("stop from Ready, then shutdown")
    func stopFromReady() throws {
        let platform = try TestPlatform()
        let processor = try readyProcessor(platform)
        try processor.stop()
        #expect(processor.state == .stopped)
        platform.clearCalls()
        try processor.shutdown()
        #expect(processor.state == .offline)
        #expect(platform.calls == ["shutdown"], "a stopped remote is not stopped again")
    }

    @Test("shutdown from Ready or Running passes through Stopped", arguments: [false, true])
    func shutdownPassesThroughStopped(running: Bool) throws {
        let platform = try TestPlatform()
        let processor = try readyProcessor(platform)
        if running { try processor.start() }
        let log = EventLog(processor)
        platform.clearCalls()
        try processor.shutdown()
        #expect(log.path == [.stopped, .offline])
        #expect(platform.calls == ["stop", "shutdown"])
        #expect(processor.installedResourceTable == nil && processor.loadedImage == nil)
    }

    @Test("shutdown from Configured powers off without a stop")
    func shutdownFromConfigured() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        try processor.configure()
        platform.clearCalls()
        try processor.shutdown()
        #expect(processor.state == .offline)
        #expect(platform.calls == ["shutdown"])
    }

    @Test("a crash moves Running to Crashed; stop and shutdown are accepted from Crashed")
    func crash() throws {
        let platform = try TestPlatform()
        let processor = try readyProcessor(platform)
        try processor.start()
        let log = EventLog(processor)
        let report = CrashReport(kind: .panic, code: 0xDEAD, message: "firmware panic")
        try processor.reportCrash(report)
        #expect(processor.state == .crashed)
        #expect(processor.crashReport == report)
        #expect(log.changes.last?.reason?.contains("firmware panic") == true)
        try processor.stop()
        #expect(processor.state == .stopped)
        try processor.shutdown()
        #expect(processor.state == .offline)
        #expect(processor.crashReport == nil)

        let again = try readyProcessor(platform)
        try again.start()
        try again.reportCrash(report)
        try again.shutdown()
        #expect(again.state == .offline)
    }

    @Test("recover: Crashed → Stopped → Running with the same image reloaded; a failing start leaves it Stopped")
    func recover() throws {
        let platform = try TestPlatform()
        let processor = try Self.processor(in: .crashed, platform)
        let log = EventLog(processor)
        platform.clearCalls()
        try platform.fillAll(0)
        try processor.recover()
        #expect(processor.state == .running)
        #expect(log.path == [.stopped, .running])
        #expect(log.changes.allSatisfy { $0.call == .recover })
        #expect(platform.calls == ["stop", "start"])
        #expect(try platform.bytes(atDevice: 0x100, count: 4) == [0xAA, 0xBB, 0xCC, 0xDD], "the image was loaded again")

        try processor.reportCrash(CrashReport(kind: .watchdog, message: "again"))
        platform.fail("start")
        #expect(remoteprocError { try processor.recover() } != nil)
        #expect(processor.state == .stopped)
    }

    @Test("remove works only in Offline; afterwards every call fails")
    func remove() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        try processor.configure()
        #expect(remoteprocError { try processor.remove() }?.wrongState == .configured)
        try processor.shutdown()
        try processor.remove()
        #expect(platform.calls.last == "remove")
        let error = try #require(remoteprocError { try processor.configure() })
        guard case .removed = error.kind else { Issue.record("expected .removed, got \(error)"); return }
    }

    /// Brings a processor to `state` through legal calls.
    static func processor(in state: RemoteprocState, _ platform: TestPlatform) throws -> RemoteProcessor {
        let processor = try platform.processor()
        switch state {
        case .offline: break
        case .configured: try processor.configure()
        case .ready: try processor.configure(); try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage()]))
        case .running, .stopped, .crashed:
            try processor.configure()
            try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage()]))
            try processor.start()
            if state == .stopped { try processor.stop() }
            if state == .crashed { try processor.reportCrash(CrashReport(kind: .fault, message: "test")) }
        case .suspended: Issue.record("no API reaches Suspended yet")
        }
        #expect(processor.state == state)
        return processor
    }

    static var calls: [(RemoteprocCall, Set<RemoteprocState>, (RemoteProcessor) throws -> Void)] { [
        (.configure, [.offline], { p in try p.configure() }),
        (.load, [.configured, .ready], { p in
            try p.load("tiny", from: MemoryImageStore(["tiny": (try? tinyImage()) ?? []])) }),
        (.setResourceTable, [.configured, .ready], { p in
            try p.setResourceTable(at: DeviceAddress(0x2000_0000), size: 16) }),
        (.start, [.ready], { p in try p.start() }),
        (.stop, [.ready, .running, .crashed], { p in try p.stop() }),
        (.shutdown, [.configured, .ready, .running, .stopped, .crashed], { p in try p.shutdown() }),
        (.remove, [.offline], { p in try p.remove() }),
        (.reportCrash, [.running], { p in try p.reportCrash(CrashReport(kind: .other, message: "x")) }),
        (.createVirtio, [.ready, .running], { p in _ = try p.createVirtio(index: 0, role: .driver) }),
        (.recover, [.crashed], { p in try p.recover() }),
    ] }

    @Test("every call in a wrong state fails, names the state and the call, and changes nothing",
          arguments: [RemoteprocState.offline, .configured, .ready, .running, .stopped, .crashed])
    func illegalCalls(state: RemoteprocState) throws {
        for (call, allowed, body) in Self.calls where !allowed.contains(state) {
            let platform = try TestPlatform()
            let processor = try Self.processor(in: state, platform)
            let log = EventLog(processor)
            platform.clearCalls()
            let error = try #require(remoteprocError { try body(processor) }, "\(call) was accepted in \(state)")
            #expect(error.wrongState == state, "\(call) in \(state): \(error)")
            #expect(error.call == call)
            #expect("\(error)".contains(call.rawValue) && "\(error)".contains(state.description))
            #expect(processor.state == state)
            #expect(log.changes.isEmpty)
            #expect(platform.calls.isEmpty, "\(call) in \(state) reached the platform: \(platform.calls)")
        }
    }

    @Test("a failing op leaves the state unchanged and carries the op's error",
          arguments: [("configure", RemoteprocState.offline), ("start", .ready), ("stop", .running), ("stop", .ready), ("stop", .crashed)])
    func failingOps(op: String, state: RemoteprocState) throws {
        let platform = try TestPlatform()
        let processor = try Self.processor(in: state, platform)
        platform.fail(op)
        let error: RemoteprocError?
        switch op {
        case "configure": error = remoteprocError { try processor.configure() }
        case "start": error = remoteprocError { try processor.start() }
        default: error = remoteprocError { try processor.stop() }
        }
        let failure = try #require(error)
        guard case let .operationFailed(name) = failure.kind else { Issue.record("\(failure)"); return }
        #expect(name == op)
        #expect(failure.underlying as? TestPlatform.InjectedFailure == TestPlatform.InjectedFailure(op: op))
        #expect(processor.state == state)
        platform.fail(op, false)
    }

    @Test("shutdown: a failing stop op leaves Running; a failing shutdown op leaves Stopped")
    func failingShutdown() throws {
        let platform = try TestPlatform()
        let processor = try Self.processor(in: .running, platform)
        platform.fail("stop")
        #expect(remoteprocError { try processor.shutdown() } != nil)
        #expect(processor.state == .running)
        platform.fail("stop", false)
        platform.fail("shutdown")
        #expect(remoteprocError { try processor.shutdown() } != nil)
        #expect(processor.state == .stopped)
        platform.fail("shutdown", false)
        try processor.shutdown()
        #expect(processor.state == .offline)
    }

    @Test("a failing remove op keeps the processor usable")
    func failingRemove() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        platform.fail("remove")
        #expect(remoteprocError { try processor.remove() } != nil)
        try processor.configure()
        #expect(processor.state == .configured)
    }

    @Test("an op that calls back into the processor gets an error instead of a deadlock")
    func reentrantOp() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let inner = MetalMutex<RemoteprocError?>(nil)
        platform.onOp("configure") { [weak processor] in   // the platform is the processor's
            guard let processor else { return }
            let error = remoteprocError { try processor.shutdown() }
            inner.withLock { $0 = error }
            // Lookups, accessors and notify-id allocation do not wait for the life-cycle lock.
            #expect(processor.memory(named: "code") != nil)
            #expect(processor.state == .offline, "the state changes after the op succeeds")
            #expect(processor.installedResourceTable == nil)
            #expect((try? processor.allocateNotifyID()) == NotifyID(0))
            processor.releaseNotifyID(NotifyID(0))
        }
        try processor.configure()
        #expect(processor.state == .configured)
        let error = try #require(inner.withLock { $0 })
        guard case .reentrantCall = error.kind else { Issue.record("\(error)"); return }
    }

    @Test("observers see changes in order, may call the processor, and can be removed")
    func observers() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let seen = MetalMutex<[RemoteprocState]>([])
        let token = processor.addObserver { [processor] event in
            guard case let .stateChanged(change) = event else { return }
            seen.withLock { $0.append(change.to) }
            _ = processor.state   // no deadlock: delivered after the lock is released
        }
        try processor.configure()
        try processor.shutdown()
        processor.removeObserver(token)
        try processor.configure()
        #expect(seen.withLock { $0 } == [.configured, .offline])
    }

    @Test("concurrent starts: exactly one wins, the others see Running")
    func concurrentStarts() async throws {
        let platform = try TestPlatform()
        let processor = try readyProcessor(platform)
        let results = await withTaskGroup(of: RemoteprocError?.self) { group in
            for _ in 0..<16 { group.addTask { remoteprocError { try processor.start() } } }
            return await group.reduce(into: [RemoteprocError?]()) { $0.append($1) }
        }
        #expect(results.filter { $0 == nil }.count == 1)
        #expect(results.compactMap { $0?.wrongState }.allSatisfy { $0 == .running })
        #expect(platform.calls.filter { $0 == "start" }.count == 1)
    }

    @Test("concurrent life cycles from several threads keep the state machine consistent")
    func concurrentCycles() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let log = EventLog(processor)
        let image = try tinyImage()
        let threads = 4, rounds = 50
        let done = DispatchGroup()
        for _ in 0..<threads {
            done.enter()
            Thread {
                let store = MemoryImageStore(["tiny": image])
                for _ in 0..<rounds {
                    _ = remoteprocError { try processor.configure() }
                    _ = remoteprocError { try processor.load("tiny", from: store) }
                    _ = remoteprocError { try processor.start() }
                    _ = remoteprocError { try processor.shutdown() }
                }
                done.leave()
            }.start()
        }
        #expect(done.wait(timeout: .now() + 60) == .success, "threads did not finish")
        // Every recorded change starts where the previous one ended.
        let changes = log.changes.sorted { $0.sequence < $1.sequence }
        for (previous, next) in zip(changes, changes.dropFirst()) { #expect(previous.to == next.from) }
        _ = remoteprocError { try processor.shutdown() }
        #expect(processor.state == .offline)
    }
}
