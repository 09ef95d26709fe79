import Foundation
import MetalIO
import Virtio
import Remoteproc
import Synchronization
import Testing

/// A platform for tests: the board's memory map (mmap-backed, device ≠ physical addresses),
/// every op recorded, any op made to fail, and hooks that run inside ops.
final class TestPlatform: RemoteprocOps {
    struct InjectedFailure: Error, Equatable, CustomStringConvertible {
        var op: String
        var description: String { "injected failure in \(op)" }
    }

    static let codeDevice: UInt64 = 0x0000_0000, codePhysical: UInt64 = 0x1000_0000
    static let sramDevice: UInt64 = 0x2000_0000, sramPhysical: UInt64 = 0x1004_0000
    static let sharedDevice: UInt64 = 0x3000_0000, sharedPhysical: UInt64 = 0x9000_0000

    let code: RemoteprocMemory
    let sram: RemoteprocMemory
    let shared: RemoteprocMemory
    var memories: [RemoteprocMemory] { [code, sram, shared] }

    private struct State {
        var calls: [String] = []
        var failing: Set<String> = []
        var notified: [NotifyID] = []
        var vendor: [(VendorResource, Int)] = []
        var vendorAnswer: VendorResourceDisposition = .handled
        var hooks: [String: @Sendable () -> Void] = [:]
        var extraMemory: RemoteprocMemory?
        var mappable: RemoteprocMemory?
        var bootAddress: DeviceAddress?
    }
    private let state = MetalMutex(State())

    init(codeSize: Int = 256 << 10, sramSize: Int = 256 << 10, sharedSize: Int = 1 << 20) throws {
        func make(_ name: String, _ da: UInt64, _ pa: UInt64, _ size: Int, pool: Bool) throws -> RemoteprocMemory {
            let memory = try SharedMemory(size: size)
            let region = try IORegion(name: name, memory: memory, physicalBase: PhysicalAddress(pool ? da : pa))
            return RemoteprocMemory(name: name, physicalAddress: PhysicalAddress(pa), deviceAddress: DeviceAddress(da),
                                    region: region, isAllocationPool: pool)
        }
        code = try make("code", Self.codeDevice, Self.codePhysical, codeSize, pool: false)
        sram = try make("sram", Self.sramDevice, Self.sramPhysical, sramSize, pool: false)
        shared = try make("shared", Self.sharedDevice, Self.sharedPhysical, sharedSize, pool: true)
    }

    /// A processor with this platform's memories registered.
    func processor(notifyIDCapacity: Int = RemoteProcessor.defaultNotifyIDCapacity, host: HostPersonality = .default) throws -> RemoteProcessor {
        let processor = try RemoteProcessor(ops: self, notifyIDCapacity: notifyIDCapacity, host: host)
        for memory in memories { processor.addMemory(memory) }
        return processor
    }

    var calls: [String] { state.withLock { $0.calls } }
    var notified: [NotifyID] { state.withLock { $0.notified } }
    var vendorCalls: [(VendorResource, Int)] { state.withLock { $0.vendor } }
    var startedAt: DeviceAddress? { state.withLock { $0.bootAddress } }
    func clearCalls() { state.withLock { $0.calls = []; $0.notified = [] } }
    func fail(_ op: String, _ failing: Bool = true) {
        state.withLock { if failing { $0.failing.insert(op) } else { $0.failing.remove(op) } }
    }
    func onOp(_ op: String, _ hook: @escaping @Sendable () -> Void) { state.withLock { $0.hooks[op] = hook } }
    func answerVendor(_ answer: VendorResourceDisposition) { state.withLock { $0.vendorAnswer = answer } }
    /// A memory the `memory` (get_mem) op reports.
    func offerLookup(_ memory: RemoteprocMemory?) { state.withLock { $0.extraMemory = memory } }
    /// A memory the `map` op hands out.
    func offerMapping(_ memory: RemoteprocMemory?) { state.withLock { $0.mappable = memory } }

    private func record(_ op: String) throws {
        let (fails, hook) = state.withLock { s in
            s.calls.append(op)
            return (s.failing.contains(op), s.hooks[op])
        }
        hook?()
        if fails { throw InjectedFailure(op: op) }
    }

    func initialize() throws { try record("init") }
    func remove() throws { try record("remove") }
    func configure(data: (any Sendable)?) throws { try record("configure") }
    func start(bootAddress: DeviceAddress) throws {
        try record("start")
        state.withLock { $0.bootAddress = bootAddress }
    }
    func stop() throws { try record("stop") }
    func shutdown() throws { try record("shutdown") }
    func notify(_ id: NotifyID) throws {
        try record("notify")
        state.withLock { $0.notified.append(id) }
    }
    func handleVendorResource(_ resource: VendorResource, entryIndex: Int) throws -> VendorResourceDisposition {
        try record("vendor")
        return state.withLock { s in
            s.vendor.append((resource, entryIndex))
            return s.vendorAnswer
        }
    }
    func map(physical: PhysicalAddress?, device: DeviceAddress?, size: Int, attributes: UInt32) throws -> RemoteprocMemory? {
        try record("map")
        return state.withLock { $0.mappable }
    }
    func memory(physical: PhysicalAddress?, device: DeviceAddress?, size: Int) -> RemoteprocMemory? {
        state.withLock { $0.extraMemory }
    }

    /// Fills every memory with `byte` (a sentinel that shows what a load wrote).
    func fillAll(_ byte: UInt8) throws {
        for memory in memories { try memory.region.fill(byte, at: 0, count: memory.size) }
    }

    /// The bytes at device address `da`.
    func bytes(atDevice da: UInt64, count: Int) throws -> [UInt8] {
        for memory in memories {
            if let offset = memory.offset(ofDevice: DeviceAddress(da), size: count) {
                return try memory.region.readBytes(at: offset, count: count)
            }
        }
        throw InjectedFailure(op: "no memory at \(hex(da))")
    }
}

/// Collects a processor's events, thread-safely.
final class EventLog: Sendable {
    private let events = MetalMutex<[RemoteprocEvent]>([])
    init(_ processor: RemoteProcessor) {
        processor.addObserver { event in self.events.withLock { $0.append(event) } }
    }
    var all: [RemoteprocEvent] { events.withLock { $0 } }
    var changes: [StateChange] { all.compactMap { if case let .stateChanged(c) = $0 { c } else { nil } } }
    var path: [RemoteprocState] { changes.map(\.to) }
    var warnings: [String] { all.compactMap { if case let .warning(w) = $0 { w } else { nil } } }
    var vdevWrites: [VdevWrite] { all.compactMap { if case let .vdevWrite(w) = $0 { w } else { nil } } }
}

/// Runs `body` and returns the RemoteprocError it throws (nil when it does not throw).
func remoteprocError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> RemoteprocError? {
    do {
        try body()
        return nil
    } catch let error as RemoteprocError {
        return error
    } catch {
        Issue.record("expected a RemoteprocError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
