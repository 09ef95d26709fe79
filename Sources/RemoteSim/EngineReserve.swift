import MetalIO
import Remoteproc

/// An emulated CPU's engine opened ahead of its run, when the board is powered: opening one
/// (Unicorn sets its machine up and its translated-code buffer at the first mapping) and mapping
/// the board's memories takes a few hundred microseconds that would otherwise lie between the
/// host's start and the firmware's first instruction. It holds at most one engine, with the
/// memories it mapped; a run takes it only for the same memories, else opens its own.
final class EngineReserve: Sendable {
    /// What an engine mapped: each memory (kept alive by the engine, so its identity cannot be
    /// reused while the engine is held), the part of it and where.
    struct MappedMemory: Equatable {
        let memory: ObjectIdentifier
        let offset: Int
        let size: Int
        let address: UInt64

        init(_ memory: RemoteprocMemory) {
            self.memory = ObjectIdentifier(memory.region.memory)
            offset = memory.region.memoryOffset
            size = memory.size
            address = memory.deviceAddress.rawValue
        }
    }

    // @unchecked: the engine is used by one thread at a time — the thread that opened it puts it
    // here and the core's thread takes it out, both under the reserve's mutex, and it is not
    // touched while it lies here (Unicorn's engines keep no per-thread state).
    private struct Prepared: @unchecked Sendable {
        let engine: UnicornEngine
        let architecture: CPUArchitecture
        let mapped: [MappedMemory]

        func isFor(_ architecture: CPUArchitecture, _ mapped: [MappedMemory]) -> Bool {
            self.architecture == architecture && self.mapped == mapped
        }
    }

    private let slot = MetalMutex<Prepared?>(nil)

    init() {}

    /// Opens an engine for `architecture` with `memories` mapped, unless one is held for them.
    /// A failure is not reported here: the run opens its own engine and reports it there.
    func prepare(_ architecture: CPUArchitecture, memories: [RemoteprocMemory]) {
        let mapped = memories.map(MappedMemory.init)
        if slot.withLock({ $0?.isFor(architecture, mapped) == true }) { return }
        guard let engine = try? Self.open(architecture, memories: memories) else { return }
        let replaced = slot.withLock { held in
            defer { held = Prepared(engine: engine, architecture: architecture, mapped: mapped) }
            return held
        }
        _ = replaced                    // an engine for other memories, closed here, outside the lock
    }

    /// Whether an engine is held for `architecture` and exactly `memories`.
    func holds(_ architecture: CPUArchitecture, memories: [RemoteprocMemory]) -> Bool {
        let mapped = memories.map(MappedMemory.init)
        return slot.withLock { $0?.isFor(architecture, mapped) == true }
    }

    /// The engine held for `architecture` and exactly `memories`, taken out of the reserve; nil
    /// when there is none for them (it is then left for the memories it was opened for).
    func take(_ architecture: CPUArchitecture, memories: [RemoteprocMemory]) -> UnicornEngine? {
        let mapped = memories.map(MappedMemory.init)
        return slot.withLock { held in
            guard let prepared = held, prepared.isFor(architecture, mapped) else { return nil }
            held = nil
            return prepared.engine
        }
    }

    /// A new engine for `architecture` with `memories` mapped at their device addresses.
    static func open(_ architecture: CPUArchitecture, memories: [RemoteprocMemory]) throws(UnicornError) -> UnicornEngine {
        let engine = try UnicornEngine(architecture: architecture)
        for memory in memories {
            try engine.map(memory.region.memory, offset: memory.region.memoryOffset, size: memory.size, at: memory.deviceAddress.rawValue)
        }
        return engine
    }
}
