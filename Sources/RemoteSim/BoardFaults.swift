import MetalIO
import Remoteproc
import Virtio

/// Which way a kick goes.
public enum KickDirection: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Host → remote (the platform's notify op, the mailbox's PENDING bits).
    case toRemote = "remote"
    /// Remote → host (the mailbox's KICK register).
    case toHost = "host"
    public var description: String { self == .toRemote ? "host → remote" : "remote → host" }
}

/// A vring field fault injection can overwrite.
public enum VringField: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `avail->idx` (16 bits).
    case availIndex = "avail-idx"
    /// `used->idx` (16 bits).
    case usedIndex = "used-idx"
    /// `avail->flags` (16 bits).
    case availFlags = "avail-flags"
    /// `used->flags` (16 bits).
    case usedFlags = "used-flags"
    /// The `len` of every descriptor in the table (32 bits each).
    case descriptorLength = "desc-len"
    public var description: String { rawValue }
}

/// A crash the host makes happen in the remote.
public enum InjectedCrash: Sendable, Hashable, CustomStringConvertible {
    /// The core halts and is reported as a fault with `code`.
    case fault(code: UInt32)
    /// The firmware panics with `code`, as if it had written PANIC.
    case panic(code: UInt32)
    public var description: String {
        switch self {
        case let .fault(code): "fault \(hex(UInt64(code)))"
        case let .panic(code): "panic \(hex(UInt64(code)))"
        }
    }
}

/// Fault injection on a board: kicks lost or held back, crashes, and shared memory the remote
/// relies on overwritten. The one API the scenario runner, the test fixture and the soak use
/// (``Board/faults``).
public struct BoardFaults: Sendable {
    let board: Board

    /// Loses the next `count` kicks going `direction` (each dropped kick is traced as a warning).
    public func dropKicks(_ direction: KickDirection, count: Int = 1) {
        change(direction) { $0.drop += max(0, count) }
    }

    /// Holds every later kick going `direction` back by `delay` (zero: deliver at once again).
    public func delayKicks(_ direction: KickDirection, by delay: Duration) {
        change(direction) { $0.delay = max(.zero, delay) }
    }

    private func change(_ direction: KickDirection, _ body: (inout Board.KickFault) -> Void) {
        board.kickFaults.withLock { faults in
            body(&faults[direction, default: Board.KickFault()])
            // Armed stays set once a fault was: a drop counted down to zero costs one lock per kick.
            if faults.values.contains(where: \.isArmed) { board.kickFaultsArmed.store(true, ordering: .releasing) }
        }
    }

    /// Halts the running core and reports `report` as its crash.
    /// - Throws: ``BoardError/Kind/notRunning`` when the core is not running.
    public func crash(_ report: CrashReport) throws(BoardError) {
        guard !board.mailbox.isGateRequested else { throw BoardError("inject \(report.kind)", .suspended) }
        guard board.injectCrash(report) else { throw BoardError("inject \(report.kind)", .notRunning) }
    }

    /// Makes the running remote crash as `crash` says.
    public func inject(_ crash: InjectedCrash) throws(BoardError) {
        switch crash {
        case let .fault(code): try self.crash(CrashReport(kind: .fault, code: UInt64(code), message: "injected fault"))
        case let .panic(code):
            guard board.isRunning else { throw BoardError("inject \(crash)", .notRunning) }
            guard !board.mailbox.isGateRequested else { throw BoardError("inject \(crash)", .suspended) }
            board.mailbox.panic(code)
        }
    }

    /// Makes the firmware cancel every cooperative suspend request, or lose its answers so every
    /// request runs out its timeout; `nil` restores the firmware's own answers.
    public func powerReplies(_ fault: PowerReplyFault?) {
        board.mailbox.setPowerReplyFault(fault)
    }

    /// Writes `value` over `field` of vring `index` of the first vdev (16-bit fields take its low
    /// half), as a misbehaving peer would.
    public func corruptVring(_ index: Int, _ field: VringField, value: UInt32) throws(BoardError) {
        let operation = "corrupt vring \(index) \(field)"
        guard let processor = board.processor else { throw BoardError(operation, .noProcessor) }
        let vrings = processor.virtioDeviceList.first?.vrings ?? []
        guard vrings.indices.contains(index) else { throw BoardError(operation, .noSuchVring(index: index, available: vrings.count)) }
        let vring = vrings[index]
        let region = vring.mapping.region, base = vring.mapping.offset
        let layout: VringLayout
        do { layout = try VringLayout(count: vring.count, alignment: vring.alignment) } catch { throw BoardError(operation, .vring(error)) }
        let half = UInt16(truncatingIfNeeded: value)
        do throws(MetalIOError) {
            switch field {
            case .availIndex: try region.write(half, at: base + layout.availIndex)
            case .usedIndex: try region.write(half, at: base + layout.usedIndex)
            case .availFlags: try region.write(half, at: base + layout.availFlags)
            case .usedFlags: try region.write(half, at: base + layout.usedFlags)
            case .descriptorLength: for d in 0..<layout.count { try region.write(value, at: base + layout.descriptor(d) + 8) }
            }
        } catch {
            throw BoardError(operation, .memory(error))
        }
    }

    /// Writes a 32-bit `value` at byte `offset` of the installed resource table, in the remote's memory.
    public func corruptResourceTable(at offset: Int, value: UInt32) throws(BoardError) {
        let operation = "corrupt resource table +\(offset)"
        guard let processor = board.processor else { throw BoardError(operation, .noProcessor) }
        guard let installed = processor.installedResourceTable else { throw BoardError(operation, .noResourceTable) }
        let size = installed.table.bytes.count
        guard offset >= 0, offset <= size - 4 else { throw BoardError(operation, .outsideResourceTable(offset: offset, size: size)) }
        do { try installed.location.region.write(value, at: installed.location.offset + offset) } catch {
            throw BoardError(operation, .memory(error))
        }
    }
}
