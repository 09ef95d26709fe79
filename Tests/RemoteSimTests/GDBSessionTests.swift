import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import TestSupport

/// gdb-multiarch against the echo firmware while the host sends it messages: the things a
/// firmware engineer does first — arguments, globals, `next`, a watchpoint, the vrings.
@Suite("GDB sessions against the echo firmware", .serialized)
struct GDBSessionTests {
    @Test("with messages in flight: monitor vrings decodes them; break reads the arguments and a global; next steps a line; a watchpoint hits with old and new values",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func echoSession(architecture: FirmwareArchitecture) throws {
        let (elf, server, board, processor) = try debuggedBoard("echo", architecture)
        defer { server.shutdown(); try? processor.shutdown() }
        let rpmsg = try #require(try processor.makeHostRPMsg())
        let replies = MetalMutex<[[UInt8]]>([])
        let flag = URL(fileURLWithPath: TestScratch.path("rproc-gdb-flag"))
        defer { try? FileManager.default.removeItem(at: flag) }
        // The host: once the firmware announced its service and sits halted at its main loop,
        // send three messages (they stay in flight while the core is halted), then tell gdb.
        let host = Thread(block: {
            guard waitUntil(.seconds(60), { !rpmsg.announcedServices.isEmpty && server.isHalted }),
                  let address = rpmsg.announcedServices.first?.address,
                  let client = try? rpmsg.createEndpoint(destination: address, onReceive: { m in replies.withLock { $0.append(m.payload) } }) else { return }
            for text in ["hello", "second", "third"] { try? client.send(Array(text.utf8), timeout: .seconds(5)) }
            _ = FileManager.default.createFile(atPath: flag.path, contents: nil)
        })
        host.start()
        let output = try runGDB(elf: elf.path, port: server.port, commands: [
            "break rsim_rpmsg_wait_and_poll", "continue",
            "shell for i in $(seq 3000); do [ -e \(flag.path) ] && break; sleep 0.01; done",
            "monitor vrings",
            "delete", "break on_message", "continue",
            "print len", "print src", "print *(char(*)[5])data", "print echo_count",
            "next", "info symbol $pc",
            "delete", "watch echo_count", "continue",
            "print echo_count", "delete",
            "set var echo_count = 41", "print echo_count", "detach",
        ])
        // monitor vrings: the host's three messages, decoded, in flight on vring1.
        #expect(output.contains("3 in flight"), "\(output)")
        #expect(output.range(of: #"rpmsg 1024 → \d+ len 5 flags 0x0: "hello""#, options: .regularExpression) != nil, "\(output)")
        #expect(output.contains("\"second\""), "\(output)")
        // Arguments of on_message and a global.
        #expect(output.contains("Breakpoint 2, on_message ("), "\(output)")
        #expect(output.contains("$1 = 5"), "len: \(output)")
        #expect(output.contains("$2 = 1024"), "src: \(output)")
        #expect(output.contains("$3 = \"hello\""), "data: \(output)")
        #expect(output.contains("$4 = 0"), "echo_count before: \(output)")
        // next: a following source line of main.c, still in on_message.
        #expect(output.range(of: #"\n(1[6-9]|2[01])\t"#, options: .regularExpression) != nil, "next printed the next line: \(output)")
        #expect(output.contains("on_message"), "\(output)")
        // The watchpoint: the increment after the reply.
        #expect(output.contains("atchpoint 3: echo_count"), "\(output)")
        #expect(output.contains("Old value = 0"), "\(output)")
        #expect(output.contains("New value = 1"), "\(output)")
        #expect(output.contains("$5 = 1"), "\(output)")
        #expect(output.contains("$6 = 41"), "memory written through the board's map: \(output)")
        // Detached: the core runs on and answers all three.
        #expect(waitUntil { replies.withLock { $0.count } == 3 }, "replies \(replies.withLock { $0 }); \(output)")
        #expect(replies.withLock { $0 } == ["hello", "second", "third"].map { Array($0.utf8) })
        _ = board
    }

    @Test("a PANIC stops in the debugger with SIGABRT and the code; continuing ends the program and the host sees the panic",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func panic(architecture: FirmwareArchitecture) throws {
        let (elf, server, _, processor) = try debuggedBoard("panic", architecture)
        defer { server.shutdown(); try? processor.shutdown() }
        let output = try runGDB(elf: elf.path, port: server.port, commands: ["continue", "bt", "continue"])
        #expect(output.contains("SIGABRT"), "\(output)")
        #expect(output.contains("wrote PANIC 0xbad0"), "\(output)")
        #expect(output.contains("main ()"), "the backtrace reaches main: \(output)")
        #expect(output.contains("terminated with signal SIGABRT"), "\(output)")
        #expect(waitUntil(.seconds(10)) { processor.state == .crashed })
        #expect(processor.crashReport?.kind == .panic)
        #expect(processor.crashReport?.code == 0xBAD0)
    }
}

@Suite("GDB sessions: faults, kill, leaving mid-step", .serialized)
struct GDBLifecycleTests {
    @Test("continuing into an access fault stops with SIGSEGV in main; the crash follows once gdb lets go",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func accessFault(architecture: FirmwareArchitecture) throws {
        let (elf, server, _, processor) = try debuggedBoard("crash", architecture)
        defer { server.shutdown(); try? processor.shutdown() }
        let rpmsg = try #require(try processor.makeHostRPMsg())
        // The crash firmware faults after ten messages: send them once it has announced itself.
        let host = Thread(block: {
            guard waitUntil(.seconds(60), { !rpmsg.announcedServices.isEmpty }), let address = rpmsg.announcedServices.first?.address,
                  let client = try? rpmsg.createEndpoint(destination: address, onReceive: { _ in }) else { return }
            for i in 0..<10 { try? client.send([UInt8(i)], timeout: .seconds(5)) }
        })
        host.start()
        let output = try runGDB(elf: elf.path, port: server.port, commands: ["continue", "info symbol $pc", "print/x $pc", "x/i $pc", "detach"])
        #expect(output.contains("SIGSEGV"), "\(output)")
        #expect(output.contains("main + ") || output.contains("main in section"), "the PC is in main: \(output)")
        // At the faulting load itself, not at the start of its translated block.
        #expect(output.range(of: architecture == .cortexM4 ? #"=> 0x[0-9a-f]+ <main\+\d+>:\s+ldr"# : #"=> 0x[0-9a-f]+ <main\+\d+>:\s+lw"#,
                             options: .regularExpression) != nil, "\(output)")
        #expect(waitUntil(.seconds(10)) { processor.state == .crashed }, "\(output)")
        #expect(processor.crashReport?.address == DeviceAddress(0xDEAD_BEEF))
    }

    @Test("gdb's kill stops the processor through its life cycle", .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func kill(architecture: FirmwareArchitecture) throws {
        let (elf, server, board, processor) = try debuggedBoard("minimal", architecture)
        defer { server.shutdown(); try? processor.shutdown() }
        _ = try runGDB(elf: elf.path, port: server.port, commands: ["kill"])
        #expect(waitUntil(.seconds(10)) { processor.state == .stopped }, "state \(processor.state)")
        #expect(!board.isRunning)
        #expect(board.trace.events.contains { if case .stateChanged(.running, .stopped, _) = $0.kind { true } else { false } })
    }

    @Test("a client that leaves right after asking for a step leaves the core running; the next debugger attaches", .timeLimit(.minutes(1)))
    func leaveMidStep() throws {
        let (_, server, board, processor) = try debuggedBoard("minimal", .cortexM4)
        defer { server.shutdown(); try? processor.shutdown() }
        do {
            let first = try RawClient(port: server.port)
            first.send(GDBPacketReader.frame("?"))
            #expect(first.read(until: "#").contains("T05"))
            first.send(GDBPacketReader.frame("s"))
        }   // closed here, mid-step
        #expect(waitUntil(.seconds(10)) { board.trace.consoleLines.contains { $0.hasPrefix("minimal: hello") } }, "the core ran on")
        let second = try GDBClient(port: server.port)
        #expect(try second.request("?").hasPrefix("T"), "a new debugger halts the core and gets a stop reply")
        #expect(try second.request("D") == "OK")
    }
}

@Suite("GDB server across restarts", .serialized)
struct GDBRestartTests {
    @Test("only the first run waits at reset: after a crash nobody is debugging, the recovered core runs at once", .timeLimit(.minutes(1)))
    func recoveryDoesNotWait() throws {
        let (_, server, board, processor) = try debuggedBoard("panic", .cortexM4)
        defer { server.shutdown(); try? processor.shutdown() }
        do {
            let client = try GDBClient(port: server.port)
            #expect(try client.request("?").hasPrefix("T05"))
            #expect(try client.request("c").hasPrefix("T06"), "the PANIC")
            #expect(client.output.contains("PANIC 0xbad0"))
            #expect(try client.request("c") == "X06", "continuing: the program ends with SIGABRT")
        }
        #expect(waitUntil(.seconds(10)) { processor.state == .crashed })
        try processor.recover()
        #expect(waitUntil(.seconds(10)) { board.trace.consoleLines.filter { $0.hasPrefix("panic: last words") }.count == 2 }, "the recovered run did not wait")
        #expect(waitUntil(.seconds(10)) { processor.state == .crashed })
    }
}

@Suite("GDB and the watchdog", .serialized)
struct GDBWatchdogTests {
    @Test("the watchdog is frozen while the debugger holds the core, and counts again once it runs", .timeLimit(.minutes(1)))
    func watchdogFrozenWhileHalted() throws {
        let (elf, server, _, processor) = try debuggedBoard("hang", .rv32)
        defer { server.shutdown(); try? processor.shutdown() }
        let store = FileImageStore()
        let image = try ELFImage(store: store, fileSize: try store.open(elf.path), path: elf.path)
        let printf = try #require(try image.symbols(from: store).first { $0.name == "rsim_printf" })
        let client = try GDBClient(port: server.port)
        #expect(try client.request("?").hasPrefix("T05"))
        // Stop just before the spin: the 20 ms watchdog is armed and was just kicked.
        #expect(try client.request("Z0,\(String(printf.value, radix: 16)),4") == "OK")
        #expect(try client.request("c").hasPrefix("T05"))
        usleep(300_000)   // fifteen watchdog periods at the breakpoint
        #expect(processor.state == .running, "the watchdog fired while the core sat at a breakpoint")
        #expect(try client.request("z0,\(String(printf.value, radix: 16)),4") == "OK")
        #expect(try client.request("D") == "OK")
        #expect(waitUntil(.seconds(10)) { processor.state == .crashed })
        #expect(processor.crashReport?.kind == .watchdog)
    }
}
