import FirmwareKit
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import Testing
import TestSupport

/// Runs gdb-multiarch in batch mode with `commands` against 127.0.0.1:`port`; returns its output.
func runGDB(elf: String, port: UInt16, commands: [String], timeout: TimeInterval = 60) throws -> String {
    try GDBBatch.run(["-ex", "set pagination off", "-ex", "set confirm off", "-ex", "target remote 127.0.0.1:\(port)"]
                     + commands.flatMap { ["-ex", $0] } + [elf], timeout: timeout)
}

/// `Firmware/programs/PROGRAM` on an emulated core of `architecture` with a GDB server, halted
/// at reset, loaded and started through the real core.
func debuggedBoard(_ program: String, _ architecture: FirmwareArchitecture) throws -> (elf: URL, server: GDBServer, board: Board, processor: RemoteProcessor) {
    let elf = try FirmwareBuilder.forThisPackage().build(program: program, architecture: architecture)
    let cpu: CPUArchitecture = architecture == .cortexM4 ? .cortexM4 : .rv32
    let server = try GDBServer(architecture: cpu, startHalted: true)
    let board = try Board(firmware: EmulatedCPU(cpu, debugger: server))
    let processor = try board.makeProcessor()
    try processor.configure()
    try processor.load(elf.path, from: FileImageStore())
    try processor.start()
    return (elf, server, board, processor)
}

@Suite("GDB server", .serialized)
struct GDBServerTests {
    @Test("gdb-multiarch attaches to a core halted at reset, breaks in main, reads registers and steps",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func breakInMain(architecture: FirmwareArchitecture) throws {
        let (elf, server, board, processor) = try debuggedBoard("minimal", architecture)
        defer { server.shutdown() }
        let output = try runGDB(elf: elf.path, port: server.port, commands: [
            "info registers pc", "break main", "continue", "info symbol $pc", "stepi", "info registers pc", "monitor vrings", "detach",
        ])
        #expect(output.contains("Breakpoint 1, main ()"), "\(output)")
        #expect(output.contains(architecture == .cortexM4 ? "<reset_handler>" : "<_start>"), "halted before the first instruction: \(output)")
        #expect(output.range(of: "main( \\+ [0-9]+)? in section \\.text", options: .regularExpression) != nil, "\(output)")
        // No host driver was started, and a Linux host (the default) writes the vring addresses only then.
        #expect(output.contains("vdev entry 1 (rpmsg)") && output.contains("vring0: not placed yet"), "monitor vrings: \(output)")
        // Detached: the core runs on and prints.
        let deadline = ContinuousClock.now + .seconds(10)
        while !board.trace.consoleLines.contains(where: { $0.hasPrefix("minimal: hello") }) && ContinuousClock.now < deadline { usleep(1000) }
        #expect(board.trace.consoleLines.contains { $0.hasPrefix("minimal: hello") }, "\(output)")
        try processor.shutdown()
    }
}

@Suite("GDB server faults", .serialized)
struct GDBServerFaultTests {
    @Test("continuing into an undefined instruction stops with SIGILL at it; the crash follows once the debugger lets go",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func illegal(architecture: FirmwareArchitecture) throws {
        let (elf, server, _, processor) = try debuggedBoard("illegal", architecture)
        defer { server.shutdown() }
        let output = try runGDB(elf: elf.path, port: server.port, commands: ["continue", "info symbol $pc", "detach"])
        #expect(output.contains("SIGILL"), "\(output)")
        #expect(output.contains("execute_illegal in section .text") || output.contains("execute_illegal + "), "\(output)")
        let deadline = ContinuousClock.now + .seconds(10)
        while processor.state != .crashed && ContinuousClock.now < deadline { usleep(1000) }
        #expect(processor.crashReport?.kind == .fault)
        try processor.shutdown()
    }
}

/// A raw TCP client for protocol-level tests.
final class RawClient {
    /// The connection, or -1 once ``disconnect()`` closed it: a descriptor is closed exactly once
    /// (closing it twice closes whatever another test thread opened under the same number since).
    private(set) var fd: Int32
    init(port: UInt16) throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw GDBConnectionError(.socket(errno: errno)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard result == 0 else {
            let code = errno
            close(socketFD)
            throw GDBConnectionError(.connect(port: port, errno: code))
        }
        var noDelay: Int32 = 1
        setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        fd = socketFD
    }
    /// Leaves: closes the connection now (deinit then has nothing to close).
    func disconnect() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }
    deinit { disconnect() }
    func send(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    /// Reads until `marker` appears or `timeout` passes.
    func read(until marker: String, timeout: Duration = .seconds(20)) -> String {
        var text = ""
        let deadline = ContinuousClock.now + timeout
        while !text.contains(marker) && ContinuousClock.now < deadline {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 50) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            text += String(decoding: buffer.prefix(n), as: UTF8.self)
        }
        return text
    }
}

@Suite("GDB server robustness", .serialized)
struct GDBServerRobustnessTests {
    func halted(_ program: String = "minimal") throws -> (GDBServer, RemoteProcessor, Board) {
        let (_, server, board, processor) = try debuggedBoard(program, .cortexM4)
        return (server, processor, board)
    }

    @Test("bad checksums are nacked, garbage skipped, oversize packets refused, unknown commands answered empty", .timeLimit(.minutes(1)))
    func malformed() throws {
        let (server, processor, _) = try halted()
        defer { server.shutdown(); try? processor.shutdown() }
        let client = try RawClient(port: server.port)
        client.send("$g#00")
        #expect(client.read(until: "-").contains("-"))
        client.send("garbage!!")
        client.send(GDBPacketReader.frame("?"))
        #expect(client.read(until: "#").contains("$T05"))
        client.send(GDBPacketReader.frame(String(repeating: "m", count: 20_000)))
        #expect(client.read(until: "-").contains("-"))
        client.send(GDBPacketReader.frame("vFrobnicate"))
        #expect(client.read(until: "$#00").contains("$#00"), "an unknown command gets the empty reply")
        client.send(GDBPacketReader.frame("m0,4"))
        #expect(client.read(until: "#").contains("$00000420"), "the initial stack pointer at 0 (0x20040000, little-endian)")
        client.send(GDBPacketReader.frame("mffffff00,10"))
        #expect(client.read(until: "E14").contains("E14"), "unmapped memory is an error, not a crash")
        client.send(GDBPacketReader.frame("m0"))
        #expect(client.read(until: "E01").contains("E01"))
        for hostile in ["m0,-1", "qXfer:features:read:target.xml:-5,10", "qXfer:features:read:target.xml:0,-1", "p-1", "P-1=00000000"] {
            client.send(GDBPacketReader.frame(hostile))
            #expect(client.read(until: "E01").contains("E01"), "\(hostile) is refused, not trapped on")
        }
    }

    @Test("a second debugger is refused with a clear message; a client that leaves mid-run lets the core run on", .timeLimit(.minutes(1)))
    func connections() throws {
        let (server, processor, board) = try halted()
        defer { server.shutdown(); try? processor.shutdown() }
        let first = try RawClient(port: server.port)
        first.send(GDBPacketReader.frame("?"))
        #expect(first.read(until: "#").contains("T05"))
        let second = try RawClient(port: server.port)
        #expect(second.read(until: "already attached").contains("already attached"))
        first.send(GDBPacketReader.frame("c"))
        usleep(50_000)
        first.disconnect()   // the first client leaves while the core runs
        let deadline = ContinuousClock.now + .seconds(10)
        while !board.trace.consoleLines.contains(where: { $0.hasPrefix("minimal: hello") }) && ContinuousClock.now < deadline { usleep(1000) }
        #expect(board.trace.consoleLines.contains { $0.hasPrefix("minimal: hello") })
    }
}

/// The console output (`O` packets, hex-decoded) in raw protocol text.
func consoleOutput(_ text: String) -> String {
    var out = ""
    var rest = Substring(text)
    while let start = rest.range(of: "$O") {
        guard let end = rest[start.upperBound...].firstIndex(of: "#") else { break }
        out += String(decoding: bytes(fromHex: rest[start.upperBound..<end]) ?? [], as: UTF8.self)
        rest = rest[end...]
    }
    return out
}

func monitorPacket(_ command: String) -> [UInt8] { GDBPacketReader.frame("qRcmd," + hexString(Array(command.utf8))) }

@Suite("GDB server protocol", .serialized)
struct GDBServerProtocolTests {
    @Test("watchpoint packets: Z2/Z3/Z4 set and clear, bad lengths refused, at most 8, unknown types answered empty; at most 4096 breakpoints", .timeLimit(.minutes(1)))
    func watchpointPackets() throws {
        let (_, server, _, processor) = try debuggedBoard("minimal", .cortexM4)
        defer { server.shutdown(); try? processor.shutdown() }
        let client = try RawClient(port: server.port)
        func ask(_ packet: String, expect reply: String) {
            client.send(GDBPacketReader.frame(packet))
            let text = client.read(until: "#")
            #expect(text.contains("$" + reply + "#"), "\(packet) → \(text)")
        }
        for type in 2...4 { ask("Z\(type),20000000,4", expect: "OK"); ask("z\(type),20000000,4", expect: "OK") }
        for bad in ["Z2,20000000,0", "Z2,20000000", "Z2,zz,4", "Z3,20000000,20000", "Z4,ffffffffffffffff,8"] { ask(bad, expect: "E01") }
        ask("Z5,0,4", expect: "")
        for k in 0..<8 { ask("Z2,\(String(0x2000_0000 + 16 * k, radix: 16)),4", expect: "OK") }
        ask("Z2,20001000,4", expect: "E01")
        for k in 0..<4096 { client.send(GDBPacketReader.frame("Z0,\(String(0x1000 + 2 * k, radix: 16)),2")); _ = client.read(until: "#") }
        ask("Z0,4000,2", expect: "E01")
        ask("Z0,1000,2", expect: "OK")   // setting one that exists is fine
        ask("C05;1000", expect: "E01")
        ask("M20000000,4:0102", expect: "E01")       // fewer bytes than declared
        ask("M20000000,2:01020304", expect: "E01")   // more
        ask("M20000000,2:0102", expect: "OK")
        ask("c1000", expect: "E01")
    }

    @Test("monitor state, trace N, console N and help; a bad count is explained", .timeLimit(.minutes(1)))
    func monitorCommands() throws {
        let (_, server, board, processor) = try debuggedBoard("minimal", .rv32)
        defer { server.shutdown(); try? processor.shutdown() }
        board.trace.record(.console("a line before the debugger", fromTraceBuffer: false))
        let client = try RawClient(port: server.port)
        func monitor(_ command: String) -> String {
            client.send(monitorPacket(command))
            return consoleOutput(client.read(until: "$OK#"))
        }
        let state = monitor("state")
        #expect(state.contains("life cycle: Running"), "\(state)")
        #expect(state.contains("core: halted in the debugger"), "\(state)")
        #expect(state.contains("mailbox: PENDING"), "\(state)")
        let trace = monitor("trace 2")
        #expect(trace.split(separator: "\n").count == 2, "\(trace)")
        #expect(trace.contains("console: a line before the debugger"), "\(trace)")
        #expect(monitor("console").contains("a line before the debugger"))
        #expect(monitor("trace many").contains("expected a count"))
        // A long answer comes in several console packets, in order.
        for i in 0..<300 { board.trace.record(.console("line \(i) of a long console", fromTraceBuffer: false)) }
        let long = monitor("console 300").split(separator: "\n")
        #expect(long.count == 300 && long.first == "line 0 of a long console" && long.last == "line 299 of a long console", "\(long.count) lines")
        #expect(monitor("frobnicate").contains("monitor commands:"))
        client.send(GDBPacketReader.frame("qRcmd,zz"))
        #expect(client.read(until: "E01").contains("E01"), "a command that is not hex is refused")
    }

    @Test("Ctrl-C halts a core busy in a compute loop; registers can be read and written there", .timeLimit(.minutes(1)))
    func interruptBusyCore() throws {
        let (_, server, _, processor) = try debuggedBoard("compute", .rv32)
        defer { server.shutdown(); try? processor.shutdown() }
        let client = try GDBClient(port: server.port)
        #expect(try client.request("?").hasPrefix("T05"))
        client.post("c")
        usleep(200_000)
        client.interrupt()
        #expect(try client.reply(timeout: .seconds(5)).hasPrefix("T02"))
        #expect(try client.request("P5=78563412") == "OK", "t0 written")
        #expect(try client.request("p5") == "78563412")
        #expect(try client.request("D") == "OK")
    }

    @Test("Ctrl-C halts a running core with SIGINT; after the host stops the core, the debugger hears the program is gone", .timeLimit(.minutes(1)))
    func interruptAndEnd() throws {
        let (_, server, _, processor) = try debuggedBoard("minimal", .cortexM4)
        defer { server.shutdown(); try? processor.shutdown() }
        let client = try RawClient(port: server.port)
        client.send(GDBPacketReader.frame("c"))
        usleep(100_000)
        client.send([0x03])
        #expect(client.read(until: "#").contains("$T02"), "Ctrl-C stops with SIGINT")
        try processor.stop()
        client.send(GDBPacketReader.frame("?"))
        #expect(client.read(until: "#").contains("$X09"), "the run ended: killed by the host")
        let clock = ContinuousClock()
        let started = clock.now
        client.send(GDBPacketReader.frame("g"))
        #expect(client.read(until: "E01").contains("E01"))
        #expect(clock.now - started < .seconds(2), "answered at once, not after a timeout")
    }
}

@Suite("GDB server stepping onto wfi", .serialized)
struct GDBStepWFITests {
    @Test("a single step onto wfi completes when the core wakes: not before, and then at the next instruction",
          .timeLimit(.minutes(1)), arguments: FirmwareArchitecture.allCases)
    func stepOverWFI(architecture: FirmwareArchitecture) throws {
        let (_, server, board, processor) = try debuggedBoard("minimal", architecture)
        defer { server.shutdown(); try? processor.shutdown() }
        let client = try GDBClient(port: server.port)
        #expect(try client.request("?").hasPrefix("T05"))
        let pcRegister = architecture == .cortexM4 ? "f" : "20"
        let pcBytes = try #require(bytes(fromHex: Substring(try client.request("p" + pcRegister))))
        let pc = pcBytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        // Put a wfi where the core stands (Thumb 0xbf30; RISC-V 0x10500073).
        let wfi = architecture == .cortexM4 ? "30bf" : "73005010"
        #expect(try client.request("M\(String(pc, radix: 16)),\(wfi.count / 2):\(wfi)") == "OK")
        client.post("s")
        #expect(throws: (any Error).self, "no stop while the core sleeps in wfi") { _ = try client.reply(timeout: .milliseconds(300)) }
        board.mailbox.notify(1)
        #expect(try client.reply(timeout: .seconds(20)).hasPrefix("T05"))
        let after = try #require(bytes(fromHex: Substring(try client.request("p" + pcRegister))))
        let next = after.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        #expect(next == pc + UInt64(wfi.count / 2), "stopped right after the wfi")
        #expect(try client.request("D") == "OK")
        // Right after the detach: the stop reaches the core whatever it is doing (it was lost once).
        try processor.shutdown()
    }
}

@Suite("Stopping an emulated core", .serialized)
struct EmulatedStopRaceTests {
    @Test("a stop is never lost, whenever it lands: before, between or during runs, with or without a debugger's hooks",
          .timeLimit(.minutes(2)), arguments: [false, true])
    func stopNeverLost(withDebugger: Bool) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "minimal", architecture: .rv32)
        for round in 0..<60 {
            let server = withDebugger ? try GDBServer(architecture: .rv32) : nil
            defer { server?.shutdown() }
            let board = try Board(firmware: EmulatedCPU(.rv32, debugger: server))
            let processor = try board.makeProcessor()
            try processor.configure()
            try processor.load(elf.path, from: FileImageStore())
            try processor.start()
            usleep(UInt32(round % 12) * 50)
            try processor.stop()
            #expect(processor.state == .stopped)
            try processor.shutdown()
        }
    }
}

@Suite("GDB server fuzzing", .serialized)
struct GDBServerFuzzTests {
    @Test("5,000 random packets and raw noise: every one answered or refused, the server and the board keep working",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func randomPackets(architecture: FirmwareArchitecture) throws {
        let (_, server, _, processor) = try debuggedBoard("minimal", architecture)
        defer { server.shutdown(); try? processor.shutdown() }
        let client = try GDBClient(port: server.port)
        #expect(try client.request("?").hasPrefix("T05"))
        var random = SystemRandomNumberGenerator()
        func number() -> String {
            switch Int.random(in: 0..<6, using: &random) {
            case 0: "-" + String(UInt32.random(in: 0...UInt32.max, using: &random), radix: 16)
            case 1: String(UInt64.random(in: 0...UInt64.max, using: &random), radix: 16)
            case 2: "zz"
            case 3: ""
            default: String(UInt32.random(in: 0...0x4000_0100, using: &random), radix: 16)
            }
        }
        func hexBytes() -> String { (0..<Int.random(in: 0..<40, using: &random)).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &random)) }.joined() }
        // Everything but what resumes, detaches or kills the core.
        let makers: [() -> String] = [
            { "g" }, { "p" + number() }, { "P" + number() + "=" + hexBytes() }, { "m" + number() + "," + number() },
            { "M" + number() + "," + number() + ":" + hexBytes() }, { "Z" + number() + "," + number() + "," + number() },
            { "z" + number() + "," + number() + "," + number() }, { "qXfer:features:read:target.xml:" + number() + "," + number() },
            { "qRcmd," + hexBytes() }, { "qRcmd," + hexString(Array(["vrings", "state", "trace 5", "console"].randomElement(using: &random)!.utf8)) },
            { "qSupported:multiprocess+" }, { "vCont?" }, { "X" + number() + "," + number() + ":" + hexBytes() },
            { "H" + number() }, { "?" }, { String(UnicodeScalar(UInt8.random(in: 0x41...0x7A, using: &random))) + hexBytes() },
        ]
        var history: [(String, String)] = []
        for round in 0..<5000 {
            let packet = makers[Int.random(in: 0..<makers.count, using: &random)]()
            guard !["c", "C", "s", "S", "D", "k", "R", "r", "!", "i", "I"].contains(packet.first.map(String.init) ?? "") else { continue }
            if round % 50 == 0 {
                // Raw garbage between packets: skipped, never fatal.
                client.sendRaw((0..<32).map { _ in UInt8.random(in: 0x20...0x7E, using: &random) }.filter { !"$#+-".utf8.contains($0) })
            }
            do {
                let reply = try client.request(packet, timeout: .seconds(10))
                history.append((packet, reply))
            } catch {
                Issue.record("round \(round): \(packet) → \(error); before: \(history.suffix(4))")
                return
            }
        }
        // Still answering, still halted, and the core still obeys.
        let stop = try client.request("?")
        #expect(stop.hasPrefix("T"), "\(stop); before: \(history.suffix(4))")
        #expect(try client.request("D") == "OK")
        try processor.stop()
        #expect(processor.state == .stopped)
    }
}
