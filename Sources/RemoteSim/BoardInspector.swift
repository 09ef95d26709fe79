import Foundation
import MetalIO
import Remoteproc

/// What a debugger's `monitor` commands and a failed scenario step's dump show of a board: the
/// life-cycle state, the vrings (``VringReport``), the trace and the console. Reads go through the
/// board's memories by device address, bounds-checked; nothing here changes the board.
public struct BoardInspector: Sendable {
    let memories: [RemoteprocMemory]
    let mailbox: Mailbox
    let trace: Trace
    let table: @Sendable () -> (address: DeviceAddress, size: Int)?
    let describeState: @Sendable () -> String
    /// Turns new trace-buffer text into console lines first (the board's ``Board/collectTraceBuffer()``).
    let collectTraceBuffer: @Sendable () -> Void
    /// Writes the board's core dump to a path (``Board/writeCoreDump(to:)``); returns its size.
    let writeCoreDump: @Sendable (String) throws -> Int

    /// Trace events and console lines shown when no count is given.
    public static let defaultCount = 20

    /// `count` bytes at device address `address`, or `nil` when they are not all inside one memory.
    public func read(_ address: UInt64, _ count: Int) -> [UInt8]? {
        guard count >= 0, let (region, offset) = memories.locate(address, size: count) else { return nil }
        return try? region.readBytes(at: offset, count: count)
    }

    /// Every vdev's vrings, decoded (see ``VringReport``).
    public func vrings() -> String {
        guard let table = table() else { return "no resource table is loaded\n" }
        return VringReport.render(tableAt: table, read: read)
    }

    /// The life-cycle state, the core, the crash report and the mailbox.
    public func state() -> String {
        var out = describeState()
        let pending = mailbox.pendingBits
        out += "mailbox: PENDING 0x\(String(pending, radix: 16))"
        if let code = mailbox.panicCode { out += ", PANIC 0x\(String(code, radix: 16))" }
        if mailbox.isHostStopRequested { out += ", stop requested" }
        return out + "\n"
    }

    /// The last `count` trace events, one per line.
    public func traceTail(_ count: Int = defaultCount) -> String {
        collectTraceBuffer()
        let events = trace.last(max(0, count))
        return events.isEmpty ? "the trace is empty\n" : events.map { "\($0)\n" }.joined()
    }

    /// The last `count` console lines (CONSOLE register and trace buffer).
    public func consoleTail(_ count: Int = defaultCount) -> String {
        collectTraceBuffer()
        let lines = trace.consoleLines.suffix(max(0, count))
        return lines.isEmpty ? "no console output yet\n" : lines.map { visibleText($0) + "\n" }.joined()
    }

    /// Everything at once: state, vrings, the trace's tail (what `rproc-sim run` prints when a step fails).
    public func dump(traceEvents: Int = defaultCount) -> String {
        "── state\n" + state() + "── vrings\n" + vrings() + "── last \(traceEvents) trace events\n" + traceTail(traceEvents)
    }

    /// `monitor time`: the board's kind of time, where its clock stands and the core's own time
    /// (what TICKS reads: time suspended does not count). In virtual time, time stands still
    /// while the debugger holds the core.
    public func time() -> String {
        let clock = mailbox.clock
        guard clock.isVirtual else { return "clock: real time (the host's monotonic clock)\ncore time (TICKS): \(mailbox.ticks) µs\n" }
        return "clock: virtual time (it stands still while the debugger holds the core)\nboard time: \(Self.seconds(clock.now.sinceOrigin))\n"
            + "core time (TICKS): \(mailbox.ticks) µs\n"
    }

    private static func seconds(_ d: Duration) -> String {
        let nanoseconds = d.totalNanoseconds
        return "\(nanoseconds / 1_000_000_000).\(String(format: "%09lld", nanoseconds % 1_000_000_000)) s"
    }

    /// The answer to a debugger's `monitor` command.
    public func answer(monitor command: String) -> String {
        let words = command.split(separator: " ")
        if words.first == "dump" {
            let path = command.drop { $0 == " " }.dropFirst(4).trimmingCharacters(in: .whitespaces)
            guard !path.isEmpty else { return "monitor dump: name the file to write, e.g. monitor dump remote.core\n" }
            do {
                let size = try writeCoreDump(path)
                return "core dump written to \(path) (\(size) bytes); open it with: rproc-sim debug --core \(path)\n"
            } catch {
                return "monitor dump: \(error)\n"
            }
        }
        let count: Int?
        if words.count > 1 {
            guard let n = Int(words[1]), n >= 0 else { return "monitor \(words[0]): expected a count, got \"\(words[1])\"\n" }
            count = min(n, 10_000)
        } else {
            count = nil
        }
        switch words.first {
        case "state": return state()
        case "vrings": return vrings()
        case "trace": return traceTail(count ?? Self.defaultCount)
        case "console": return consoleTail(count ?? Self.defaultCount)
        case "irq": return mailbox.interruptReport ?? "this core has no interrupt controller (native firmware, or not running)\n"
        case "time": return time()
        default:
            return """
                monitor commands:
                  state        life-cycle state, crash reason, mailbox
                  vrings       each vring: indices, descriptors, buffers in flight with RPMsg headers decoded
                  trace [N]    the last N board trace events (default \(Self.defaultCount))
                  console [N]  the last N console lines (default \(Self.defaultCount))
                  irq          interrupts: enabled, pending, active, priorities, timers
                  time         the board's clock (real or virtual time) and the core's own time (TICKS)
                  dump FILE    write a core dump of the remote as it is now (rproc-sim debug --core FILE opens it)

                """
        }
    }
}
