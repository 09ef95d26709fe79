#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Synchronization

/// How to serve GDB for an emulated core: the loopback port, and whether the core waits halted
/// before its first instruction until a debugger continues it.
public struct DebuggerOptions: Hashable, Sendable {
    public var port: UInt16
    public var waitForDebugger: Bool
    public init(port: UInt16, waitForDebugger: Bool = true) {
        self.port = port
        self.waitForDebugger = waitForDebugger
    }

    /// The environment variable that asks test fixtures to serve GDB: `RPROC_SIM_GDB=PORT`.
    public static let environmentVariable = "RPROC_SIM_GDB"

    /// Options from `RPROC_SIM_GDB=PORT` (waiting for the debugger), or `nil` when it is unset or not a port.
    public static func fromEnvironment(_ environment: [String: String]) -> DebuggerOptions? {
        guard let text = environment[environmentVariable], let port = UInt16(text), port > 0 else { return nil }
        return DebuggerOptions(port: port)
    }
}

/// A GDB remote-serial-protocol server for the emulated core, on a loopback TCP port. One
/// debugger at a time; a second connection is told so and closed. Pass it to
/// ``EmulatedCPU/init(_:countingInto:debugger:)``; it serves while that core runs.
public final class GDBServer: @unchecked Sendable {
    // The listening socket is set up once; shared state is in the session (Mutexes/atomics); the
    // accept thread is set in init and taken only by the one `shutdown` that wins `closed`.
    public let port: UInt16
    let session: DebugSession
    private let listener: Int32
    let architecture: CPUArchitecture
    /// The dump this server serves instead of a live core.
    let core: CoreDump?
    /// What the core and the board hook into the server, in a struct: a `Mutex` whose value *is*
    /// a closure re-wraps it in thunks on every access.
    private struct Hooks {
        /// Answers `monitor` commands (set by the core).
        var monitor: (@Sendable (String) -> String)?
        /// Halts the core: breaks a busy run, wakes an idle core (set by the core).
        var halt: (@Sendable () -> Void)?
        /// What `kill` does after releasing the core (set by the board: stop the processor through
        /// its life cycle). Without it, `kill` only detaches.
        var kill: (@Sendable () -> Void)?
    }
    private let hooks = MetalMutex(Hooks())
    private let closed = Atomic<Bool>(false)
    /// Accepts connections; it holds the server only weakly, so dropping the server ends it.
    private var acceptThread: PlatformThread?

    var onMonitor: (@Sendable (String) -> String)? {
        get { hooks.withLock { $0.monitor } }
        set { hooks.withLock { $0.monitor = newValue } }
    }
    var onHaltRequest: (@Sendable () -> Void)? {
        get { hooks.withLock { $0.halt } }
        set { hooks.withLock { $0.halt = newValue } }
    }
    var onKill: (@Sendable () -> Void)? {
        get { hooks.withLock { $0.kill } }
        set { hooks.withLock { $0.kill = newValue } }
    }

    /// Halts the core for a debugger, whether or not one is attached yet: it stops where it is
    /// and waits (``isHalted``) until a debugger continues or detaches it.
    public func halt() { requestHalt() }

    func requestHalt() {
        session.requestHalt()
        onHaltRequest?()
    }

    /// Listens on the options' port, halting the core at reset when they say so.
    public convenience init(architecture: CPUArchitecture, options: DebuggerOptions) throws {
        try self.init(architecture: architecture, port: options.port, startHalted: options.waitForDebugger)
    }

    /// Listens on 127.0.0.1:`port` (0 picks a free port; see ``port``).
    /// - Parameter startHalted: halt the core before its first instruction until a debugger continues it.
    public convenience init(architecture: CPUArchitecture, port: UInt16 = 0, startHalted: Bool = false) throws {
        try self.init(architecture: architecture, port: port, startHalted: startHalted, core: nil)
    }

    /// Serves a core dump, read-only, on 127.0.0.1:`port` (0 picks a free port): registers and
    /// memory as the dump holds them, `monitor state/vrings/console/trace` from it. Writes,
    /// breakpoints and resuming are refused (a dump does not run).
    /// - Throws: ``CoreDumpError/Kind/noRegisters`` for a dump of native firmware (no CPU).
    public convenience init(core: CoreDump, port: UInt16 = 0) throws {
        guard let cpu = core.cpu else { throw CoreDumpError(.noRegisters) }
        try self.init(architecture: cpu.architecture, port: port, startHalted: false, core: core)
    }

    private init(architecture: CPUArchitecture, port: UInt16, startHalted: Bool, core: CoreDump?) throws {
        self.architecture = architecture
        self.core = core
        session = DebugSession(startHalted: startHalted)
        let (fd, actualPort) = try LoopbackSocket.listen(port: port)
        self.port = actualPort
        listener = fd
        do {
            acceptThread = try PlatformThread(name: "rproc-gdb") { [weak self] in
                while let client = LoopbackSocket.accept(fd) {
                    guard let self, !closed.load(ordering: .acquiring) else {
                        LoopbackSocket.close(client)
                        return
                    }
                    accepted(client)
                }
            }
        } catch {
            LoopbackSocket.close(fd)
            throw error
        }
    }

    /// Whether the core halts before its first instruction until a debugger continues it.
    public var waitsForDebugger: Bool { session.startHalted }

    /// Whether the core is halted for the debugger (waits should not count this time).
    public var isHalted: Bool { session.halted.load(ordering: .acquiring) }

    /// The registers of the core halted for the debugger (`nil` when it is not halted or does not answer).
    func haltedRegisters() -> CPUSnapshot? {
        guard isHalted, case let .registers(values) = session.perform(.readRegisters) else { return nil }
        return CPUSnapshot(architecture: architecture, values: values)
    }

    /// Whether a debugger is connected now.
    public var hasClient: Bool { session.connected.load(ordering: .acquiring) }

    /// Stops listening (a debugger already connected is served to its end).
    public func shutdown() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        LoopbackSocket.interrupt(listener)
        acceptThread.take()?.join()
        LoopbackSocket.close(listener)
    }

    deinit { shutdown() }

    private func accepted(_ client: Int32) {
        if session.attached.exchange(true, ordering: .acquiringAndReleasing) {
            send(client, GDBPacketReader.frame("E01"))
            send(client, Array("rproc-sim: a debugger is already attached to this core\n".utf8))
            LoopbackSocket.close(client)
            return
        }
        session.clientArrived()
        // Served on a thread of its own, so further connections are answered (and refused) meanwhile.
        do {
            try PlatformThread(name: "rproc-gdb-client") {
                self.serve(client)
                LoopbackSocket.close(client)
                self.session.clientLeft()
            }.detach()
        } catch {
            LoopbackSocket.close(client)
            session.clientLeft()
        }
    }

    private func send(_ fd: Int32, _ bytes: [UInt8]) { LoopbackSocket.send(fd, bytes) }
    private func send(_ fd: Int32, _ text: String) { LoopbackSocket.send(fd, Array(text.utf8)) }
    private func receive(_ fd: Int32, milliseconds: Int32) -> [UInt8]? { LoopbackSocket.receive(fd, milliseconds: milliseconds) }

    private func hex(_ bytes: [UInt8]) -> String { hexString(bytes) }
    private func fromHex(_ text: Substring) -> [UInt8]? { bytes(fromHex: text) }
    private func le32(_ value: UInt64) -> String { hex((0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }) }

    /// The target description: the architecture and each register of ``UnicornEngine/debugRegisters(_:)``, by feature.
    var targetXML: String { Self.targetXML(architecture) }

    /// The target description of `architecture`'s registers that `including` keeps (a core file
    /// describes only those it can supply).
    static func targetXML(_ architecture: CPUArchitecture, including: (DebugRegister) -> Bool = { _ in true }) -> String {
        let registers = UnicornEngine.debugRegisters(architecture).filter(including)
        var features: [String] = []
        for register in registers where !features.contains(register.feature) { features.append(register.feature) }
        let body = features.map { feature in
            "<feature name=\"\(feature)\">" + registers.filter { $0.feature == feature }.map {
                "<reg name=\"\($0.name)\" bitsize=\"32\" type=\"\($0.type)\" regnum=\"\($0.number)\"/>"
            }.joined() + "</feature>"
        }.joined()
        let name = architecture == .cortexM4 ? "arm" : "riscv:rv32"
        return "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\"><target><architecture>\(name)</architecture>\(body)</target>"
    }

    /// Maps a GDB register number to its index in the register list.
    private func registerIndex(_ number: Int) -> Int? {
        UnicornEngine.debugRegisters(architecture).firstIndex { $0.number == number }
    }

    fileprivate func serve(_ fd: Int32) {
        var reader = GDBPacketReader(maximumPacketSize: 0x4000)
        var lastStop = DebugStop.trap
        var lastReply: [UInt8] = []
        // The core must be stopped while a debugger looks at it (a dump always is).
        if let core {
            lastStop = DebugStop(signal: core.info.signal)
        } else if session.ended.load(ordering: .acquiring) {
            lastStop = session.takeExit() ?? DebugStop(signal: 9, reason: .exited)
        } else if !session.halted.load(ordering: .acquiring) {
            requestHalt()
            if let stop = session.waitForStop(timeout: .seconds(5)) { lastStop = stop }
        } else if let stop = session.waitForStop(timeout: .milliseconds(1)) { lastStop = stop }
        while let bytes = receive(fd, milliseconds: 200) {
            for input in reader.feed(bytes) {
                switch input {
                case .ack, .interrupt: continue
                case .nack: send(fd, lastReply)
                case .rejected: send(fd, [UInt8(ascii: "-")])
                case let .packet(payload):
                    send(fd, [UInt8(ascii: "+")])
                    let text = String(decoding: payload, as: UTF8.self)
                    guard let reply = handle(text, fd: fd, lastStop: &lastStop) else { return }
                    lastReply = GDBPacketReader.frame(reply)
                    send(fd, lastReply)
                }
            }
        }
        // The client went away (the thread's exit tells the core, which runs on).
    }

    /// The stop reply packet for `stop` (`T` with the stop reason, `X` when the program is gone).
    func stopReply(_ stop: DebugStop) -> String {
        let signal = hex([UInt8(truncatingIfNeeded: stop.signal)])
        switch stop.reason {
        case .signal, .panic: return "T" + signal
        case let .breakpoint(hardware): return "T" + signal + (hardware ? "hwbreak:;" : "swbreak:;")
        case let .watchpoint(kind, address):
            let name = switch kind { case .write: "watch"; case .read: "rwatch"; case .access: "awatch" }
            return "T" + signal + name + ":" + String(address, radix: 16) + ";"
        case .exited: return "X" + signal
        }
    }

    /// Console output for the debugger (an `O` packet) that explains `stop`, if it needs explaining.
    private func explanation(of stop: DebugStop) -> String? {
        switch stop.reason {
        case let .panic(code): return "rproc-sim: the firmware wrote PANIC 0x\(String(code, radix: 16)); continuing sends the core down the crash path\n"
        case .exited: return "rproc-sim: the core's run ended (\(stop.signal == 9 ? "stopped by the host" : "crashed")); see `monitor state`\n"
        default: return nil
        }
    }

    /// The reply to a packet that a core dump answers differently from a live core (`nil`: as a
    /// live core does — the queries; `""`: unsupported). Nothing here changes the dump.
    private func handleCore(_ packet: String, _ core: CoreDump, fd: Int32, lastStop: DebugStop) -> String?? {
        let body = packet.dropFirst()
        // The dump's registers, in the debugger's order (the server made sure there are some).
        let values = core.cpu?.values ?? []
        switch packet.first {
        case "g": return values.map(le32).joined()
        case "p":
            guard let number = Int(body, radix: 16), number >= 0, let index = registerIndex(number), values.indices.contains(index) else { return "E01" }
            return le32(values[index])
        case "m":
            let parts = body.split(separator: ",")
            guard parts.count == 2, let address = UInt64(parts[0], radix: 16), let count = Int(parts[1], radix: 16), (0...0x2000).contains(count) else { return "E01" }
            guard let bytes = core.read(address, count) else { return "E14" }
            return hex(bytes)
        case "P", "M", "Z": return "E01"
        case "z": return "OK"
        case "c", "s", "C", "S":
            send(fd, GDBPacketReader.frame("O" + hex(Array("rproc-sim: this is a core dump; it cannot run (inspect it: bt, info registers, x, monitor)\n".utf8))))
            return stopReply(lastStop)
        case "D":
            send(fd, GDBPacketReader.frame("OK"))
            return .some(nil)
        case "k": return .some(nil)
        case "q" where packet.hasPrefix("qRcmd,"):
            guard let command = fromHex(packet.dropFirst(6)) else { return "E01" }
            let output = Array(core.answer(monitor: String(decoding: command, as: UTF8.self)).utf8)
            for start in stride(from: 0, to: output.count, by: 2048) {
                send(fd, GDBPacketReader.frame("O" + hex(Array(output[start..<min(output.count, start + 2048)]))))
            }
            return "OK"
        default: return nil
        }
    }

    /// The reply to one packet; `nil` to close the connection.
    private func handle(_ packet: String, fd: Int32, lastStop: inout DebugStop) -> String? {
        let body = packet.dropFirst()
        if let core, let reply = handleCore(packet, core, fd: fd, lastStop: lastStop) { return reply }
        if session.ended.load(ordering: .acquiring), lastStop.reason != .exited {
            lastStop = session.takeExit() ?? DebugStop(signal: 9, reason: .exited)
        }
        switch packet.first {
        case "?": return stopReply(lastStop)
        case "g":
            guard case let .registers(values) = session.perform(.readRegisters) else { return "E01" }
            return values.map(le32).joined()
        case "p":
            guard let number = Int(body, radix: 16), number >= 0, let index = registerIndex(number) else { return "E01" }
            guard case let .registers(values) = session.perform(.readRegisters), values.indices.contains(index) else { return "E01" }
            return le32(values[index])
        case "P":
            let parts = body.split(separator: "=")
            guard parts.count == 2, let number = Int(parts[0], radix: 16), number >= 0, let index = registerIndex(number),
                  let bytes = fromHex(parts[1]), bytes.count == 4 else { return "E01" }
            let value = bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            guard case .done(true) = session.perform(.writeRegister(index, value)) else { return "E01" }
            return "OK"
        case "m":
            let parts = body.split(separator: ",")
            guard parts.count == 2, let address = UInt64(parts[0], radix: 16), let count = Int(parts[1], radix: 16), (0...0x2000).contains(count) else { return "E01" }
            guard case let .memory(bytes?) = session.perform(.readMemory(address, count)) else { return "E14" }
            return hex(bytes)
        case "M":
            let parts = body.split(separator: ":", maxSplits: 1)
            let header = parts.first?.split(separator: ",") ?? []
            guard parts.count == 2, header.count == 2, let address = UInt64(header[0], radix: 16), let length = Int(header[1], radix: 16),
                  let bytes = fromHex(parts[1]), bytes.count == length else { return "E01" }
            guard case .done(true) = session.perform(.writeMemory(address, bytes)) else { return "E14" }
            return "OK"
        case "Z", "z":
            // Z0/Z1 breakpoints (software, hardware), Z2/Z3/Z4 watchpoints (write, read, access).
            let parts = body.split(separator: ",")
            guard let type = parts.first.flatMap({ Int($0) }), (0...4).contains(type) else { return "" }
            guard parts.count >= 3, let address = UInt64(parts[1], radix: 16),
                  let length = UInt64(parts[2].prefix { $0 != ";" }, radix: 16) else { return "E01" }
            let set = packet.first == "Z"
            let command: DebugSession.Command
            switch type {
            case 0, 1: command = .breakpoint(address, hardware: type == 1, set: set)
            case 2, 3, 4:
                guard (1...0x1_0000).contains(length), address <= UInt64.max - length else { return "E01" }
                let kind: UnicornEngine.Watchpoint.Kind = type == 2 ? .write : type == 3 ? .read : .access
                command = .watchpoint(UnicornEngine.Watchpoint(kind: kind, address: address, length: length), set: set)
            default: return ""
            }
            guard case .done(true) = session.perform(command) else { return "E01" }
            return "OK"
        case "c", "s", "C", "S":
            // C/S carry a signal to deliver: the board has no signals, so they continue or step
            // as c/s do (after a fault or a PANIC, that is the crash path). A resume address is refused.
            if packet.first == "c" || packet.first == "s" ? !body.isEmpty : body.contains(";") { return "E01" }
            guard !session.ended.load(ordering: .acquiring) else { return stopReply(lastStop) }
            guard session.perform(.resume(step: packet.first == "s" || packet.first == "S")) != nil else { return "E01" }
            // Running: wait for a stop, handing Ctrl-C to the core.
            while true {
                if let stop = session.waitForStop(timeout: .milliseconds(50)) {
                    lastStop = stop
                    if let text = explanation(of: stop) { send(fd, GDBPacketReader.frame("O" + hex(Array(text.utf8)))) }
                    return stopReply(stop)
                }
                guard let bytes = receive(fd, milliseconds: 0) else { return nil }
                if bytes.contains(0x03) { requestHalt() }
            }
        case "D":
            _ = session.perform(.detach)
            send(fd, GDBPacketReader.frame("OK"))
            return nil
        case "k":
            // Kill: the core is released and stopped through the processor's life cycle (Running → Stopped).
            _ = session.perform(.detach)
            onKill?()
            return nil
        case "q":
            if packet.hasPrefix("qSupported") { return "PacketSize=4000;qXfer:features:read+;swbreak+;hwbreak+" }
            if packet.hasPrefix("qXfer:features:read:target.xml:") {
                let range = packet.split(separator: ":").last?.split(separator: ",") ?? []
                guard range.count == 2, let offset = Int(range[0], radix: 16), let length = Int(range[1], radix: 16),
                      offset >= 0, length >= 0, length <= 0x10000 else { return "E01" }
                let xml = Array(targetXML.utf8)
                guard offset <= xml.count else { return "E01" }
                let chunk = xml[offset..<min(xml.count, offset + length)]
                return (offset + length >= xml.count ? "l" : "m") + String(decoding: chunk, as: UTF8.self)
            }
            if packet == "qAttached" { return "1" }
            if packet == "qC" { return "QC1" }
            if packet == "qfThreadInfo" { return "m1" }
            if packet == "qsThreadInfo" { return "l" }
            if packet.hasPrefix("qRcmd,") {
                guard let command = fromHex(packet.dropFirst(6)) else { return "E01" }
                let output = Array((onMonitor?(String(decoding: command, as: UTF8.self)) ?? "no monitor on this core\n").utf8)
                // In console packets well inside the packet size (a vring dump can be long).
                for start in stride(from: 0, to: output.count, by: 2048) {
                    send(fd, GDBPacketReader.frame("O" + hex(Array(output[start..<min(output.count, start + 2048)]))))
                }
                return "OK"
            }
            return ""
        case "H": return "OK"
        case "T": return "OK"
        default: return ""
        }
    }
}
