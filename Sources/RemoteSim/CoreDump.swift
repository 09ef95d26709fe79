import Foundation
import MetalIO
import Remoteproc

/// A post-mortem image of a board's remote (docs/debugging.md): every memory of the board, the
/// CPU's registers where it halted (an emulated core), why it halted, the console and trace tails,
/// the resource table's place and the firmware's fingerprint. ``CoreDumpFile`` writes and reads it
/// as an ELF32 `ET_CORE` file; ``GDBServer/init(core:port:)`` serves it to gdb.
public struct CoreDump: Sendable {
    /// One memory of the board, as the remote sees it.
    public struct Segment: Sendable, Hashable {
        public var name: String
        public var deviceAddress: DeviceAddress
        public var bytes: [UInt8]
        public var flags: ELFSegmentFlags
        public init(name: String, deviceAddress: DeviceAddress, bytes: [UInt8], flags: ELFSegmentFlags) {
            self.name = name
            self.deviceAddress = deviceAddress
            self.bytes = bytes
            self.flags = flags
        }
    }

    /// Everything but the memories and registers (the file's `RPROCSIM` info note, as JSON).
    public struct Info: Codable, Hashable, Sendable {
        /// Why the dump was made.
        public enum Reason: String, Codable, Hashable, Sendable {
            /// The remote crashed (``crash`` says how).
            case crash
            /// The remote had halted without a crash (a stop).
            case halted
            /// A snapshot of a running remote, halted for the copy (`monitor dump`, a `dump` step).
            case snapshot
        }
        public struct Crash: Codable, Hashable, Sendable {
            /// ``CrashReport/Kind``'s name: fault, panic, watchdog, other.
            public var kind: String
            public var code: UInt64?
            public var address: UInt64?
            public var programCounter: UInt64?
            public var message: String
        }
        public struct Firmware: Codable, Hashable, Sendable {
            /// The image's path when it was loaded.
            public var path: String
            public var fingerprint: ImageFingerprint?
            /// The image's `e_flags` (the core file repeats them).
            public var elfFlags: UInt32?
        }
        public struct Table: Codable, Hashable, Sendable {
            public var address: UInt64
            public var size: Int
        }

        /// The version of this layout; a reader refuses a newer one.
        public var format = Info.currentFormat
        public static let currentFormat = 1
        public var reason: Reason
        public var crash: Crash?
        /// The board's state lines when the dump was made (life cycle, core, last halt, mailbox).
        public var state: String
        /// The last console lines, oldest first.
        public var console: [String]
        /// The last trace events, one line each.
        public var trace: [String]
        public var firmware: Firmware?
        /// Where the installed resource table is (for the vring report).
        public var resourceTable: Table?
        /// The POSIX signal a debugger shows for the stop (11 fault, 6 PANIC, 14 watchdog, 5 snapshot, 9 stop).
        public var signal: Int
        /// Whether the registers' pc is the exact instruction (``CPUSnapshot/isProgramCounterExact``); `nil` without a CPU.
        public var programCounterExact: Bool?
    }

    /// `nil` for native firmware (no CPU to dump).
    public var cpu: CPUSnapshot?
    public var segments: [Segment]
    public var info: Info

    public init(cpu: CPUSnapshot?, segments: [Segment], info: Info) {
        self.cpu = cpu
        self.segments = segments
        self.info = info
    }

    /// What `monitor state` says of a dump whose pc is the start of a translated block.
    public static let inexactPCNote = "this dump's pc is the start of the translated block the core stood in (the faulting or waiting instruction is a few after it; the other registers are those at it); run with exact PCs (EmulatedCPU(exactPCs: true), board exact-pcs: true) to have the instruction itself"

    /// How many console lines and trace events a dump keeps.
    public static let consoleTail = 50
    public static let traceTail = 200

    /// `count` bytes at device address `address`, or `nil` unless they all lie in one segment.
    public func read(_ address: UInt64, _ count: Int) -> [UInt8]? {
        guard count >= 0 else { return nil }
        for segment in segments {
            let base = segment.deviceAddress.rawValue
            guard address >= base, address - base <= UInt64(segment.bytes.count),
                  UInt64(count) <= UInt64(segment.bytes.count) - (address - base) else { continue }
            let start = Int(address - base)
            return Array(segment.bytes[start..<(start + count)])
        }
        return nil
    }

    /// Whether `fingerprint`'s bytes — read from this dump's memory — are the firmware it holds.
    /// `nil` when the dump has no fingerprint to compare with.
    public func matches(_ image: ELFImage, store: ImageStore) -> Bool? {
        guard let recorded = info.firmware?.fingerprint else { return nil }
        return ImageFingerprint.ofFile(image, store: store) == recorded
    }

    /// What `monitor` commands answer from the dump: state, vrings (decoded from the dump's
    /// shared memory), console, trace.
    public func answer(monitor command: String) -> String {
        let words = command.split(separator: " ")
        let count: Int?
        if words.count > 1 {
            guard let n = Int(words[1]), n >= 0 else { return "monitor \(words[0]): expected a count, got \"\(words[1])\"\n" }
            count = n
        } else {
            count = nil
        }
        switch words.first {
        case "state":
            var out = "core dump (\(info.reason.rawValue))\n" + info.state
            if let crash = info.crash { out += "crash: \(crash.kind): \(crash.message)\n" }
            // (Told here, not on attach: gdb spins forever on console output answering `?`.)
            if info.programCounterExact == false { out += "note: \(Self.inexactPCNote)\n" }
            return out
        case "vrings":
            guard let table = info.resourceTable else { return "no resource table was loaded\n" }
            return VringReport.render(tableAt: (DeviceAddress(table.address), table.size), read: read)
        case "trace":
            let lines = info.trace.suffix(count ?? BoardInspector.defaultCount)
            return lines.isEmpty ? "the trace was empty\n" : lines.map { visibleText($0) + "\n" }.joined()
        case "console":
            let lines = info.console.suffix(count ?? BoardInspector.defaultCount)
            return lines.isEmpty ? "there was no console output\n" : lines.map { visibleText($0) + "\n" }.joined()
        default:
            return """
                monitor commands (from the core dump):
                  state        why the dump was made, the life-cycle state, the crash
                  vrings       each vring as it was: indices, descriptors, buffers in flight
                  trace [N]    the last N board trace events (default \(BoardInspector.defaultCount))
                  console [N]  the last N console lines (default \(BoardInspector.defaultCount))

                """
        }
    }
}

extension Board {
    /// A core dump of the remote as it is now. After a crash or a stop it holds the registers
    /// where the core halted. While the core runs it is halted for the copy — held by a debugger
    /// already, or its clock gated as a forced suspension does (traced as such) — and then runs on;
    /// the watchdog and TICKS do not count that time.
    /// - Throws: ``BoardError`` when a running core cannot be halted for the copy.
    public func coreDump() throws(BoardError) -> CoreDump {
        collectTraceBuffer()
        var cpu: CPUSnapshot?
        var gatedHere = false
        var reason = CoreDump.Info.Reason.halted
        var processor: RemoteProcessor?
        // Twice at most: a core that halts while it is being gated is dumped as halted.
        for attempt in 0..<2 {
            let (running, halted, lastHalt, current) = core.withLock { ($0.running, $0.halted, $0.lastHalt, $0.processor) }
            processor = current
            guard running && !halted else {
                reason = current?.state == .crashed && current?.crashReport != nil ? .crash : .halted
                cpu = lastHalt?.cpu
                break
            }
            reason = .snapshot
            if let debugger, debugger.isHalted {
                cpu = debugger.haltedRegisters()
                break
            }
            if !mailbox.isGated {
                guard !isRemoteHeldByCurrentThread else { throw BoardError("core dump", .insideCoreInterrupt) }
                do {
                    try mailbox.suspendCore(.forced, timeout: Self.stopLimit, parkLimit: Self.stopLimit)
                } catch let error as BoardError {
                    if case .coreHalted = error.kind, attempt == 0 { continue }
                    throw BoardError("core dump", error.kind)
                } catch {
                    throw BoardError("core dump", .coreHalted)   // a forced suspension asks nothing: not reached
                }
                gatedHere = true
            }
            cpu = mailbox.parkedCPU
            break
        }
        defer { if gatedHere { mailbox.resumeCore() } }
        let segments = memories.map { memory in
            let flags: ELFSegmentFlags = memory.name == layout.code.name ? [.read, .write, .execute] : [.read, .write]
            return CoreDump.Segment(name: memory.name, deviceAddress: memory.deviceAddress,
                                    bytes: (try? memory.region.readBytes(at: 0, count: memory.size)) ?? [], flags: flags)
        }
        let report = reason == .crash ? processor?.crashReport : nil
        let crash = report.map { CoreDump.Info.Crash(kind: $0.kind.rawValue, code: $0.code, address: $0.address?.rawValue,
                                                     programCounter: $0.programCounter?.rawValue, message: $0.message) }
        let table = processor?.installedResourceTable.map { CoreDump.Info.Table(address: $0.location.device.rawValue, size: $0.table.bytes.count) }
        let image = processor?.loadedImage
        let read: (UInt64, Int) -> [UInt8]? = { address, count in
            guard let (region, offset) = self.memories.locate(address, size: count) else { return nil }
            return try? region.readBytes(at: offset, count: count)
        }
        let firmware = image.map { image in
            CoreDump.Info.Firmware(path: image.path, fingerprint: ImageFingerprint.of(image) { read($0.physicalAddress, Int(clamping: $0.fileSize)) },
                                   elfFlags: image.header.flags)
        }
        let signal = switch report?.kind {
        case .fault?: 11
        case .panic?: 6
        case .watchdog?: 14
        case .other?: 6
        case nil: reason == .snapshot ? 5 : 9
        }
        let info = CoreDump.Info(reason: reason, crash: crash, state: inspector.state(), console: Array(trace.consoleLines.suffix(CoreDump.consoleTail)),
                                 trace: trace.last(CoreDump.traceTail).map(\.description), firmware: firmware, resourceTable: table, signal: signal,
                                 programCounterExact: cpu?.isProgramCounterExact)
        return CoreDump(cpu: cpu, segments: segments, info: info)
    }

    /// Writes ``coreDump()`` to `path` as an ELF core file (``CoreDumpFile``); returns its size in bytes.
    @discardableResult
    public func writeCoreDump(to path: String) throws -> Int {
        let bytes = CoreDumpFile.encode(try coreDump())
        try RegularFile.write(bytes, to: path)
        return bytes.count
    }
}
