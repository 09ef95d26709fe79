import Foundation
import MetalIO
import RemoteSim
import Remoteproc
import Virtio
import Yams

/// Where something is in a scenario file.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var description: String { "\(file):\(line):\(column)" }
}

/// A scenario file that cannot run: bad YAML, an unknown step or field, a wrong type, a missing
/// firmware. Refused before anything runs.
public struct ScenarioError: Error, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    public var description: String { "\(location): \(message)" }
}

/// How the remote is programmed.
public enum FirmwareChoice: Hashable, Sendable {
    /// A `Firmware/programs` program on an emulated CPU.
    case program(name: String, architecture: String)
    /// An ELF file on an emulated CPU.
    case elf(path: String, architecture: String)
    /// A native (Swift) firmware model.
    case native(name: String)

    public var summary: String {
        switch self {
        case let .program(name, arch): "Firmware/\(name) · \(arch)"
        case let .elf(path, arch): "\(path) · \(arch)"
        case let .native(name): "native \(name)"
        }
    }
}

/// What a received-message expectation matches.
public enum PayloadMatch: Hashable, Sendable, CustomStringConvertible {
    case exact([UInt8])
    case prefix([UInt8])
    case regex(String)
    case any

    /// As a person reads it: `"hello"`, `prefix "he"`, `hex de ad`, `/h.*o/`, `any message`.
    public var description: String {
        switch self {
        case let .exact(bytes): readablePayload(bytes)
        case let .prefix(bytes): "prefix " + readablePayload(bytes)
        case let .regex(pattern): "/\(pattern)/"
        case .any: "any message"
        }
    }
}

/// A duration as a scenario would write it: 500us, 200ms, 2s, 1.5s.
public func scenarioText(_ d: Duration) -> String {
    let micros = d.inMicroseconds
    if micros < 1000 { return "\(Int(micros))us" }
    if micros < 1e6 { return micros.truncatingRemainder(dividingBy: 1000) == 0 ? "\(Int(micros / 1000))ms" : String(format: "%.1fms", micros / 1000) }
    return (micros / 1e6).truncatingRemainder(dividingBy: 1) == 0 ? "\(Int(micros / 1e6))s" : String(format: "%.1fs", micros / 1e6)
}

/// One step of a scenario.
public enum ScenarioStep: Hashable, Sendable {
    case configure, load, start, boot, stop, shutdown, recover
    /// `suspend` / `suspend: auto` / `suspend: { kind: system, timeout: 200ms, expect: refused }`.
    case suspend(SuspendKind, timeout: Duration, expect: SuspendOutcome)
    case resume
    /// `power-replies: cancel | ignore | normal`: the firmware's handshake answers, faulted.
    case powerReplies(PowerReplyFault?)
    case wait(Duration)
    case send(to: String, payload: [UInt8], count: Int)
    /// Sends `payload` (in chunks of at most 496 bytes) again and again for `duration`.
    case sendFor(to: String, payload: [UInt8], duration: Duration)
    /// Sends a file's bytes in chunks of at most 496 bytes, `count` times.
    case sendFile(to: String, chunks: [[UInt8]], path: String, count: Int)
    case expectState(String, within: Duration)
    case expectAnnounce(String, within: Duration)
    /// Takes the first `count` received messages that match, in order, from the queue of
    /// messages not yet taken; the others stay for later expectations.
    case expectReceived(from: String?, match: PayloadMatch, count: Int, within: Duration)
    /// No message matching arrives (nor waits in the queue) for `duration`.
    case expectNone(from: String?, match: PayloadMatch, for: Duration)
    /// The remote does not crash (nor stop) for `duration`.
    case expectNoCrash(for: Duration)
    case expectConsole(regex: String, within: Duration)
    case expectCrash(kind: String?, within: Duration)
    case expectMalformed(atLeast: Int, within: Duration)
    case expectTrace(regex: String, within: Duration)
    /// Fault injection: halt the core as a fault, or make it panic with a code.
    case inject(InjectedCrash)
    case dropKicks(KickDirection, count: Int)
    case delayKicks(KickDirection, by: Duration)
    /// Write a value over a vring field (``VringField``).
    case corruptVring(index: Int, field: VringField, value: UInt32)
    /// Write a 32-bit value at a byte offset of the installed resource table in target memory.
    case corruptTable(offset: Int, value: UInt32)
    /// Halt the emulated core here for a debugger; the step ends when the debugger lets it run
    /// (continue or detach), or fails after `within`.
    case debug(attachWithin: Duration, within: Duration)
    /// Write a core dump of the remote as it is now (a running core is halted for the copy) to
    /// `path` (relative paths are from the scenario file's folder).
    case dump(path: String)

    /// A step about no processor in particular (`wait`): a file with several needs no `on:` for it.
    public var isSystemWide: Bool { if case .wait = self { true } else { false } }

    public var title: String {
        switch self {
        case .configure: "configure"
        case .load: "load"
        case .start: "start"
        case .boot: "boot"
        case .stop: "stop"
        case .shutdown: "shutdown"
        case .recover: "recover"
        case let .suspend(kind, _, expect): "suspend \(kind)" + (expect == .suspended ? "" : " (expect \(expect))")
        case .resume: "resume"
        case let .powerReplies(fault): "power replies \(fault.map(\.rawValue) ?? "normal")"
        case let .wait(d): "wait \(scenarioText(d))"
        case let .send(to, payload, count): "send \(count) × \(payload.count) B to \(to)"
        case let .sendFor(to, payload, duration): "send \(payload.count) B to \(to) for \(scenarioText(duration))"
        case let .sendFile(to, chunks, path, count): "send \((path as NSString).lastPathComponent) (\(chunks.reduce(0) { $0 + $1.count }) B)" + (count > 1 ? " × \(count)" : "") + " to \(to)"
        case let .expectState(s, _): "expect state \(s)"
        case let .expectAnnounce(n, _): "expect announce \(n)"
        case let .expectReceived(from, match, count, _): "expect \(count) × \(match)" + (from.map { " from \($0)" } ?? "")
        case let .expectNone(from, match, duration): "expect no \(match)" + (from.map { " from \($0)" } ?? "") + " for \(scenarioText(duration))"
        case let .expectNoCrash(duration): "expect no crash for \(scenarioText(duration))"
        case let .expectConsole(regex, _): "expect console /\(regex)/"
        case let .expectCrash(kind, _): "expect crash" + (kind.map { " (\($0))" } ?? "")
        case let .expectMalformed(n, _): "expect ≥ \(n) malformed item(s) counted"
        case let .expectTrace(regex, _): "expect trace /\(regex)/"
        case let .inject(crash):
            switch crash {
            case .fault: "inject fault"
            case let .panic(code): "inject panic \(hex(UInt64(code)))"
            }
        case let .dropKicks(direction, count): "drop \(count) kick(s) to the \(direction.rawValue)"
        case let .delayKicks(direction, by): "delay kicks to the \(direction.rawValue) by \(scenarioText(by))"
        case let .corruptVring(index, field, value): "corrupt vring \(index) \(field) = \(value)"
        case let .corruptTable(offset, value): "corrupt table +\(offset) = \(hex(UInt64(value)))"
        case .debug: "debug (halt for gdb)"
        case let .dump(path): "dump \((path as NSString).lastPathComponent)"
        }
    }
}

/// What a `suspend` step expects of the request.
public enum SuspendOutcome: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The remote is suspended.
    case suspended
    /// The firmware cancelled the request.
    case refused
    /// The firmware did not answer in time.
    case busy
    public var description: String { rawValue }
}

/// A parsed scenario file.
public struct ScenarioFile: Sendable {
    public var path: String
    public var name: String
    /// The processor: its firmware, core and board (the first, in a file with several).
    public var processor: Processor
    /// `board: { clock: virtual }` (`clock:` at the top of a file with several processors): the
    /// boards keep virtual time, in lockstep with the runner (default `real-time`; docs/virtual-time.md).
    public var clock: BoardClock = .realTime
    /// Serve GDB for the emulated core (the file's `debug:`; `rproc-sim run --gdb` overrides it).
    public var debug: DebuggerOptions?
    /// The host stack the processor behaves as (the file's `host:`; default Linux).
    public var host: HostPersonality = .default
    /// `leftovers: fail`: after the last step, messages received and never taken by an
    /// expectation fail the scenario.
    public var failOnLeftovers = false
    /// `tags: [smoke, m4]`: what `rproc-sim run --filter` can select the scenario by.
    public var tags: [String] = []
    /// Each step, where it is written, and the processor it addresses (`on:`; `nil` in a file
    /// with one processor, and for `wait`).
    public var steps: [(step: ScenarioStep, location: SourceLocation, on: String?)]
    /// `processors:`: the named processors of a system — each its own board and firmware, one
    /// host, one clock (``clock``) — in the file's order; empty for a file with one processor
    /// (``processor`` describes it; with several, ``processor`` is the first).
    public var processors: [(name: String, config: Processor)] = []

    /// One processor: its firmware and core, and its board (`board:`).
    public struct Processor: Sendable {
        public var firmware: FirmwareChoice
        /// `native`, `cortex-m4` or `rv32`.
        public var architecture = "native"
        /// `board: { poll: true }`: kicks reach the host only when the runner polls.
        public var pollMode = false
        /// `board: { autosuspend: 50ms }`: runtime PM suspends the idle remote after this long.
        public var autosuspend: Duration?
        /// `board: { core-clock: 48MHz }`: what an emulated core's timers count at (default 100 MHz).
        public var coreClock: CoreClockRate?
        /// `board: { faults: vectored }`: faults enter the firmware's handler (default: crash).
        public var faults: FaultHandling?
        /// `board: { exact-pcs: true }`: an emulated core keeps its PC exact (``EmulatedCPU/exactPCs``).
        public var exactPCs = false
        /// `board: { host-interrupts: thread }`: where the remote's kicks are handled (default inline,
        /// on the core's thread; `poll: true` overrides it).
        public var hostInterrupts: InterruptDelivery = .inline
        /// `board: { code: 1M, sram: …, shared: … }`: memory sizes in bytes (nil: the design's default).
        public var codeSize: Int?
        public var sramSize: Int?
        public var sharedSize: Int?
        /// Its own `host:` (else the file's).
        public var host: HostPersonality?
        public init(firmware: FirmwareChoice) { self.firmware = firmware }
    }

    /// What runs: the firmware, or each processor's by name (reports' headers).
    public var firmwareSummary: String {
        processors.isEmpty ? processor.firmware.summary : processors.map { "\($0.name): \($0.config.firmware.summary)" }.joined(separator: ", ")
    }

    /// What in this file needs real time, were it run in virtual time (`nil`: nothing): a host
    /// interrupt thread would run beside the schedule; a `debug` step's wait for gdb to attach
    /// is a wall-clock wait, while a halted core stops virtual time.
    public func virtualTimeConflict() -> (message: String, location: SourceLocation?)? {
        let boards = processors.isEmpty ? [(name: "", config: processor)] : processors
        if let threaded = boards.first(where: { $0.config.hostInterrupts == .thread }) {
            return ((threaded.name.isEmpty ? "" : "processor \(threaded.name): ") + "host-interrupts: thread needs real time", nil)
        }
        if let step = steps.first(where: { if case .debug = $0.step { true } else { false } }) {
            return ("a debug step waits for gdb in real time (a halted core stops virtual time): use real time, or --gdb", step.location)
        }
        return nil
    }

    /// The file as processor `name` of a system sees it: its firmware and board, this file's
    /// clock, host and settings, no steps.
    func alone(_ name: String) -> ScenarioFile? {
        guard let config = processors.first(where: { $0.name == name })?.config else { return nil }
        var file = self
        file.processor = config
        // A core dump step on this processor wants its PC exact, as in a file of its own.
        if steps.contains(where: { if $0.on == name, case .dump = $0.step { true } else { false } }) { file.processor.exactPCs = true }
        file.processors = []
        file.steps = []
        return file
    }
}

