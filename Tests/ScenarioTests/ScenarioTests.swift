import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import FirmwareKit
import RemoteSim
@testable import Scenario
import RPMsg
import Synchronization
import Testing
import TestSupport
import Virtio
import MetalIO

func temporaryScenarioFile(_ name: String, contents: Data) throws -> String {
    let directory = try TestScratch.directory("scenario")
    let path = directory.appendingPathComponent(name).path
    try contents.write(to: URL(fileURLWithPath: path))
    return path
}

/// A loopback port that is free now: the kernel's pick for a GDB listener that is then closed.
func freePort() throws -> UInt16 {
    let probe = try GDBServer(architecture: .rv32)
    defer { probe.shutdown() }
    return probe.port
}

func parseError(_ yaml: String) -> ScenarioError? {
    do {
        _ = try ScenarioParser.parse(yaml, path: "test.yaml")
        return nil
    } catch {
        return error
    }
}

@Suite("Scenario parser")
struct ScenarioParserTests {
    @Test("the ELF decides its architecture: arch may be left out; a wrong one is refused naming both; a non-ELF or a directory is refused")
    func elfArchitecture() throws {
        let rv32 = try FirmwareBuilder.forThisPackage().build(program: "echo", architecture: .rv32).path
        let m4 = try FirmwareBuilder.forThisPackage().build(program: "echo", architecture: .cortexM4).path
        let derived = try ScenarioParser.parse("elf: \(rv32)\nsteps: [boot]", path: "/tmp/a.yaml")
        #expect(derived.processor.firmware == .elf(path: rv32, architecture: "rv32"))
        #expect(try ScenarioParser.parse("elf: \(m4)\nsteps: [boot]", path: "/tmp/a.yaml").processor.firmware == .elf(path: m4, architecture: "cortex-m4"))
        let wrong = try #require(parseError("elf: \(rv32)\narch: cortex-m4\nsteps: [boot]"))
        #expect(wrong.message.contains("arch is cortex-m4 but") && wrong.message.contains("built for rv32"), "\(wrong.message)")
        #expect(wrong.location.line == 2)
        let text = try #require(parseError("elf: /etc/hostname\nsteps: [boot]"))
        #expect(text.message.contains("is not a loadable ELF"), "\(text.message)")
        let directory = try #require(parseError("elf: /tmp\nsteps: [boot]"))
        #expect(directory.message.contains("not a regular file"), "\(directory.message)")
    }

    @Test("suspend, resume, power-replies and board.autosuspend parse; bad kinds, outcomes and durations are refused at their line")
    func powerSteps() throws {
        let base = "firmware: echo\narch: native\nsteps:\n  - boot\n"
        let file = try ScenarioParser.parse("firmware: echo\narch: native\nboard: { autosuspend: 50ms }\nsteps:\n  - boot\n  - suspend\n  - resume\n"
                                            + "  - suspend: auto\n  - suspend: { kind: system, timeout: 200ms, expect: refused }\n"
                                            + "  - power-replies: ignore\n  - power-replies: normal\n  - expect: { state: suspended }\n", path: "p.yaml")
        #expect(file.processor.autosuspend == .milliseconds(50))
        #expect(file.steps.map(\.step.title) == ["boot", "suspend forced", "resume", "suspend auto", "suspend system (expect refused)",
                                                  "power replies ignore", "power replies normal", "expect state suspended"])
        for (yaml, message) in [
            ("  - suspend: sideways\n", "suspend kind must be one of forced, auto, system, not 'sideways'"),
            ("  - suspend: { kind: auto, expect: maybe }\n", "suspend expect must be one of suspended, refused, busy, not 'maybe'"),
            ("  - suspend: { kind: auto, timeout: soon }\n", nil),
            ("  - suspend: { kind: auto, wait: 1s }\n", nil),
            ("  - power-replies: loud\n", "power-replies must be cancel, ignore or normal, not 'loud'"),
            ("  - resme\n", nil),
        ] {
            let error = try #require(parseError(base + yaml), "\(yaml) is refused")
            #expect(error.location.line == 5, "\(yaml): \(error)")
            if let message { #expect(error.message == message) }
        }
        #expect(parseError(base + "  - resme\n")?.message.contains("did you mean 'resume'") == true)
        #expect(parseError("firmware: echo\narch: native\nboard: { autosuspend: later }\nsteps: [boot]\n")?.location.line == 3)
        #expect(parseError("firmware: echo\narch: native\nboard: { autosuspend: 0ms }\nsteps: [boot]\n")?.message.contains("at least 1ms") == true)
    }

    @Test("board.core-clock: frequencies with units from 1kHz to 1GHz; anything else refused at its line")
    func coreClock() throws {
        for (text, hertz) in [("100MHz", 100_000_000), ("48 MHz", 48_000_000), ("32768Hz", 32_768), ("12.5MHz", 12_500_000), ("1GHz", 1_000_000_000), ("1kHz", 1_000)] {
            let file = try ScenarioParser.parse("firmware: echo\narch: rv32\nboard: { core-clock: \(text) }\nsteps: [boot]\n", path: "c.yaml")
            #expect(file.processor.coreClock?.hertz == UInt64(hertz), "\(text)")
        }
        for bad in ["fast", "100", "0MHz", "2GHz", "999Hz", "-5MHz", "1.5Hz", "nanMHz"] {
            let error = parseError("firmware: echo\narch: rv32\nboard: { core-clock: \(bad) }\nsteps: [boot]\n")
            #expect(error?.location.line == 3 && error?.message.contains("board.core-clock must be a frequency") == true, "\(bad): \(String(describing: error))")
        }
        #expect(try ScenarioParser.parse("firmware: echo\narch: rv32\nsteps: [boot]\n", path: "c.yaml").processor.coreClock == nil)
    }

    @Test("board.exact-pcs: a boolean for an emulated CPU; refused for native firmware at its line; a dump step turns it on")
    func exactPCs() throws {
        #expect(try ScenarioParser.parse("firmware: echo\narch: rv32\nboard: { exact-pcs: true }\nsteps: [boot]\n", path: "x.yaml").processor.exactPCs)
        #expect(try !ScenarioParser.parse("firmware: echo\narch: cortex-m4\nsteps: [boot]\n", path: "x.yaml").processor.exactPCs)
        let native = parseError("firmware: echo\narch: native\nboard: { exact-pcs: true }\nsteps: [boot]\n")
        #expect(native?.location.line == 3 && native?.message.contains("emulated CPU") == true, "\(String(describing: native))")
        #expect(parseError("firmware: echo\narch: rv32\nboard: { exact-pcs: maybe }\nsteps: [boot]\n")?.location.line == 3)
    }

    @Test("strict: conflicting fields refused at their line; misspelt keys and steps named with the closest valid one; count with file repeats it")
    func strictness() throws {
        let base = "firmware: echo\narch: native\nsteps:\n  - boot\n"
        let both = try #require(parseError(base + "  - send: { to: s, text: a, hex: \"00\" }\n"))
        #expect(both.message == "give one of text, hex, file, random, counter or pattern, not both text and hex" && both.location.line == 5)
        let matchers = try #require(parseError(base + "  - expect: { received: a, prefix: b }\n"))
        #expect(matchers.message == "give one of received, hex, prefix, regex, random, counter or pattern, not both received and prefix")
        let misspelt = try #require(parseError(base + "  - expect: { anounce: rpmsg-echo }\n"))
        #expect(misspelt.message.hasPrefix("unknown expectation 'anounce' — did you mean 'announce'?"), "\(misspelt.message)")
        let step = try #require(parseError(base + "  - bot\n"))
        #expect(step.message.hasPrefix("unknown step 'bot' — did you mean 'boot'?"), "\(step.message)")
        let mapStep = try #require(parseError(base + "  - sned: { to: x, text: y }\n"))
        #expect(mapStep.message.hasPrefix("unknown step 'sned' — did you mean 'send'?"), "\(mapStep.message)")
        #expect(step.message.contains(ScenarioParser.stepNames.joined(separator: ", ")) && mapStep.message.contains(ScenarioParser.stepNames.joined(separator: ", ")),
                "one list of steps everywhere")
        let field = try #require(parseError(base + "  - send: { to: s, txt: a }\n"))
        #expect(field.message.contains("unknown field 'txt' in send — did you mean 'text'?"), "\(field.message)")
        let blob = try temporaryScenarioFile("blob.bin", contents: Data((0..<1000).map { UInt8($0 & 0xFF) }))
        let file = try ScenarioParser.parse(base + "  - send: { to: s, file: \(blob), count: 3 }\n", path: "/tmp/f.yaml")
        guard case let .sendFile(_, chunks, _, count) = file.steps[1].step else { Issue.record("\(file.steps)"); return }
        #expect(chunks.count == 3 && count == 3)
        #expect(file.steps[1].step.title.contains("× 3"))
    }

    @Test("host: chooses the host personality (default linux); anything else is refused, naming the choices")
    func hostField() throws {
        let base = "firmware: echo\narch: native\n"
        #expect(try ScenarioParser.parse(base + "steps: [boot]", path: "h.yaml").host == .linux)
        #expect(try ScenarioParser.parse(base + "host: openamp\nsteps: [boot]", path: "h.yaml").host == .openamp)
        #expect(try ScenarioParser.parse(base + "host: linux\nsteps: [boot]", path: "h.yaml").host == .linux)
        let error = try #require(parseError(base + "host: windows\nsteps: [boot]"))
        #expect(error.message == "host must be one of linux, openamp, not 'windows'")
        #expect(error.location.line == 3)
    }

    @Test("board.host-interrupts: inline (default) or thread; the same echo scenario passes under both; poll, anything else, or either with poll: true is refused at its line")
    func hostInterrupts() throws {
        let base = "firmware: echo\narch: native\n"
        let steps = "steps:\n  - boot\n  - send: { to: rpmsg-echo, text: hello, count: 200 }\n  - expect: { received: hello, from: rpmsg-echo, count: 200, within: 5s }\n"
        #expect(try ScenarioParser.parse(base + steps, path: "i.yaml").processor.hostInterrupts == .inline)
        for delivery in [InterruptDelivery.inline, .thread] {
            let file = try ScenarioParser.parse(base + "board: { host-interrupts: \(delivery.rawValue) }\n" + steps, path: "i.yaml")
            #expect(file.processor.hostInterrupts == delivery)
            let result = try ScenarioRunner(file).run()
            #expect(result.passed, "\(delivery): \(result.steps.compactMap(\.failure))")
        }
        for bad in ["poll", "fast"] {
            let error = try #require(parseError(base + "board: { host-interrupts: \(bad) }\nsteps: [boot]"))
            #expect(error.location.line == 3 && error.message.contains("board.host-interrupts must be inline"), "\(error)")
        }
        let both = try #require(parseError(base + "board: { poll: true, host-interrupts: thread }\nsteps: [boot]"))
        #expect(both.location.line == 3 && both.message.contains("cannot be set with poll: true"), "\(both)")
    }

    @Test("a scenario under openamp: an OpenAMP host refuses the linkwait vendor table at load, naming itself and the rule")
    func openampRefusesInAScenario() throws {
        let file = try ScenarioParser.parse("""
            firmware: linkwait
            arch: cortex-m4
            host: openamp
            steps:
              - boot
            """, path: "openamp.yaml")
        let result = try ScenarioRunner(file).run()
        #expect(!result.passed)
        let failure = try #require(result.steps.first?.failure)
        #expect(failure.contains("host: openamp") && failure.contains("notify id 0 is already the vdev's"), "\(failure)")
    }

    @Test("a full scenario parses into its steps with their locations")
    func parses() throws {
        let file = try ScenarioParser.parse("""
            name: demo
            firmware: echo
            arch: native
            board: { poll: true, shared: 2M, sram: 128K }
            steps:
              - boot
              - expect: { announce: rpmsg-echo, within: 200ms }
              - send: { to: rpmsg-echo, text: hi, count: 3 }
              - send: { to: rpmsg-echo, hex: "00 ff" }
              - expect: { prefix: h, count: 3, within: 2s }
              - expect: { console: "ready" }
              - wait: 500us
              - expect: { crash: any }
              - recover
              - shutdown
            """, path: "demo.yaml")
        #expect(file.name == "demo")
        #expect(file.processor.firmware == .native(name: "echo"))
        #expect(file.processor.pollMode)
        #expect(file.processor.sharedSize == 2 << 20 && file.processor.sramSize == 128 << 10 && file.processor.codeSize == nil)
        #expect(parseError("firmware: echo\nboard: { code: 3K }\nsteps: [boot]\n")?.message.contains("multiple of 4K") == true)
        #expect(file.steps.count == 10)
        #expect(file.steps[1].step == .expectAnnounce("rpmsg-echo", within: .milliseconds(200)))
        #expect(file.steps[2].step == .send(to: "rpmsg-echo", payload: Array("hi".utf8), count: 3))
        #expect(file.steps[3].step == .send(to: "rpmsg-echo", payload: [0, 0xFF], count: 1))
        #expect(file.steps[4].step == .expectReceived(from: nil, match: .prefix(Array("h".utf8)), count: 3, within: .seconds(2)))
        #expect(file.steps[6].step == .wait(.microseconds(500)))
        #expect(file.steps[7].step == .expectCrash(kind: nil, within: .seconds(5)))
        #expect(file.steps[1].location.line == 7)
    }

    @Test("errors name the file, line and column and what was expected", arguments: [
        ("name: x\nfirmware: echo\narch: native\nsteps:\n  - boot\n  - explode\n", 6, 5, "unknown step 'explode'"),
        ("name: x\nfirmware: echo\narch: native\nsteps:\n  - send: { to: a, text: b, colour: red }\n", 5, 29, "unknown field 'colour'"),
        ("name: x\nfirmware: echo\narch: native\nsteps:\n  - send: { to: a, text: b, count: many }\n", 5, 36, "count must be a whole number"),
        ("name: x\nfirmware: echo\narch: native\nsteps:\n  - expect: { state: flying }\n", 5, 22, "state must be one of"),
        ("name: x\nfirmware: echo\narch: native\nsteps:\n  - wait: soon\n", 5, 11, "must be a duration"),
        ("name: x\nfirmware: nosuch\narch: native\nsteps: [boot]\n", 2, 11, "no native firmware 'nosuch'"),
        ("name: x\nfirmware: nosuch\narch: cortex-m4\nsteps: [boot]\n", 2, 11, "no Firmware/ program 'nosuch'"),
        ("name: x\nfirmware: echo\narch: z80\nsteps: [boot]\n", 3, 7, "arch must be one of"),
        ("name: x\nelf: missing.elf\narch: rv32\nsteps: [boot]\n", 2, 6, "missing.elf: no such file"),
        ("name: x\nfirmware: echo\narch: native\nsteps: [boot, stop\n", 5, 1, "invalid YAML"),
        ("name: x\nfirmware: echo\narch: native\ncolor: blue\nsteps: [boot]\n", 4, 1, "unknown field 'color'"),
        ("name: x\nfirmware: echo\narch: native\n", 1, 1, "missing 'steps'"),
        ("name: x\nfirmware: echo\narch: native\ndebug: 3333\nsteps: [boot]\n", 4, 8, "debug serves GDB for an emulated CPU"),
        ("name: x\nfirmware: echo\narch: rv32\ndebug: 70000\nsteps: [boot]\n", 4, 8, "debug must be"),
        ("name: x\nfirmware: echo\narch: rv32\ndebug: { wait: false }\nsteps: [boot]\n", 4, 8, "debug needs a 'port'"),
        ("name: x\nfirmware: echo\narch: rv32\ndebug: { port: 3333, halt: yes }\nsteps: [boot]\n", 4, 22, "unknown field 'halt'"),
        ("name: x\nfirmware: echo\narch: rv32\ndebug: { port: 3333, wait: maybe }\nsteps: [boot]\n", 4, 28, "debug.wait"),
        ("name: x\nfirmware: echo\narch: native\nboard: { clock: fast }\nsteps: [boot]\n", 4, 17, "board.clock must be real-time"),
        ("name: x\nfirmware: echo\narch: native\nboard: { host-interrupts: thread, clock: virtual }\nsteps: [boot]\n", 4, 27,
         "host-interrupts: thread needs real time"),
        ("name: x\nclock: virtual\nprocessors:\n  a: { firmware: echo }\n  b: { firmware: echo }\nsteps:\n  - boot\n", 7, 5, "boot: which processor? add on:"),
        ("name: x\nprocessors:\n  a: { firmware: echo }\nsteps:\n  - boot: { on: zz }\n", 5, 5, "on: no processor 'zz' (processors: a)"),
        ("name: x\nfirmware: echo\narch: native\nsteps:\n  - boot: { on: a }\n", 5, 5, "names a processor, and this file has one"),
        ("name: x\nfirmware: echo\nprocessors:\n  a: { firmware: echo }\nsteps: [boot]\n", 2, 11, "firmware belongs inside each entry of processors:"),
        ("name: x\nprocessors:\n  a: { firmware: echo, board: { clock: virtual } }\nsteps: [boot]\n", 3, 40, "the clock is the system's"),
        ("name: x\nfirmware: echo\nclock: virtual\nsteps: [boot]\n", 3, 8, "clock: at the top is for a file with processors:"),
        ("name: x\nfirmware: echo\narch: rv32\nboard: { clock: virtual }\nsteps:\n  - boot\n  - debug\n", 7, 5, "a debug step waits for gdb in real time"),
        ("name: x\nprocessors:\n  a: { firmware: echo }\ndebug: 3333\nsteps: [boot]\n", 4, 8, "debug serves the core of a file with one processor"),
    ])
    func errors(yaml: String, line: Int, column: Int, message: String) throws {
        let error = try #require(parseError(yaml), "accepted:\n\(yaml)")
        #expect(error.location.file == "test.yaml")
        #expect(error.location.line == line, "\(error)")
        #expect(error.location.column == column, "\(error)")
        #expect(error.message.contains(message), "\(error)")
    }

    @Test("fault-injection steps parse")
    func faultSteps() throws {
        let file = try ScenarioParser.parse("""
            firmware: echo
            steps:
              - inject: { crash: panic, code: 0xBAD }
              - drop-kicks: { to: remote, count: 2 }
              - delay-kicks: { to: host, by: 5ms }
              - corrupt: { vring: 1, field: avail-idx, value: 999 }
              - corrupt: { table: 24, value: 0 }
              - expect: { malformed: 1 }
              - expect: { trace: "kick" }
            """, path: "faults.yaml")
        #expect(file.steps.map(\.step) == [.inject(.panic(code: 0xBAD)), .dropKicks(.toRemote, count: 2),
                                            .delayKicks(.toHost, by: .milliseconds(5)), .corruptVring(index: 1, field: .availIndex, value: 999),
                                            .corruptTable(offset: 24, value: 0), .expectMalformed(atLeast: 1, within: .seconds(5)),
                                            .expectTrace(regex: "kick", within: .seconds(5))])
        #expect(parseError("firmware: echo\nsteps:\n  - corrupt: { vring: 1, field: colour, value: 1 }\n")?.message.contains("field must be one of") == true)
        #expect(parseError("firmware: echo\nsteps:\n  - inject: { crash: meteor }\n")?.message.contains("fault or panic") == true)
        // Regular expressions: invalid ones and ones over 256 characters (Foundation leaks above that) are refused at their line.
        #expect(parseError("firmware: echo\nsteps:\n  - expect: { trace: \"a(b\" }\n")?.message == "invalid regular expression")
        let long = String(repeating: "a", count: 257)
        for step in ["expect: { trace: \(long) }", "expect: { console: \(long) }", "expect: { regex: \(long) }"] {
            let error = parseError("firmware: echo\nsteps:\n  - \(step)\n")
            #expect(error?.message == "regular expression too long (257 characters; at most 256)" && error?.location.line == 3, "\(step): \(String(describing: error))")
        }
        #expect(parseError("firmware: echo\nsteps:\n  - expect: { trace: \(String(repeating: "a", count: 256)) }\n") == nil)
    }

    @Test("send for a duration or a file's bytes in 496-byte chunks")
    func sendVariants() throws {
        let directory = try TestScratch.directory("scenario")
        try Data((0..<1000).map { UInt8($0 & 0xFF) }).write(to: directory.appendingPathComponent("blob.bin"))
        let file = try ScenarioParser.parse("""
            firmware: sink
            steps:
              - send: { to: s, text: x, for: 2s }
              - send: { to: s, file: blob.bin }
            """, path: directory.appendingPathComponent("s.yaml").path)
        #expect(file.steps[0].step == .sendFor(to: "s", payload: [0x78], duration: .seconds(2)))
        guard case let .sendFile(_, chunks, _, _) = file.steps[1].step else { Issue.record("\(file.steps[1].step)"); return }
        #expect(chunks.map(\.count) == [496, 496, 8])
        #expect(chunks.flatMap { $0 } == (0..<1000).map { UInt8($0 & 0xFF) })
        #expect(parseError("firmware: sink\nsteps:\n  - send: { to: s, text: x, count: 2, for: 1s }\n")?.message.contains("either count or for") == true)
        #expect(parseError("firmware: sink\nsteps:\n  - send: { to: s, file: nope.bin }\n")?.message.contains("nope.bin: no such file") == true)
    }

    @Test("durations")
    func durations() {
        #expect(ScenarioParser.duration("200ms") == .milliseconds(200))
        #expect(ScenarioParser.duration("2s") == .seconds(2))
        #expect(ScenarioParser.duration("1.5s") == .milliseconds(1500))
        #expect(ScenarioParser.duration("500us") == .microseconds(500))
        #expect(ScenarioParser.duration("soon") == nil)
        // Minutes, as `rproc-sim soak --for 10m` says; at most an hour in any unit.
        #expect(ScenarioParser.duration("10m") == .seconds(600))
        #expect(ScenarioParser.duration("60m") == .seconds(3600) && ScenarioParser.duration("61m") == nil && ScenarioParser.duration("3601s") == nil)
        #expect(ScenarioParser.duration("-1s") == nil)
        #expect(ScenarioParser.duration("2h") == nil)
    }
}

@Suite("Scenario runner")
struct ScenarioRunnerTests {
    func run(_ yaml: String) throws -> ScenarioResult {
        try ScenarioRunner(try ScenarioParser.parse(yaml, path: "semantics.yaml")).run()
    }

    @Test("an expectation takes exactly the messages it matched, in order; the rest wait for the next (40 × a, then 30 × medium, five times)",
          .timeLimit(.minutes(1)))
    func expectationsTakeWhatTheyMatch() throws {
        for _ in 0..<5 {
            let result = try run("""
                firmware: echo
                arch: native
                leftovers: fail
                steps:
                  - boot
                  - expect: { announce: rpmsg-echo }
                  - send: { to: rpmsg-echo, text: a, count: 40 }
                  - send: { to: rpmsg-echo, text: medium, count: 30 }
                  - expect: { received: a, count: 40 }
                  - expect: { received: medium, count: 30 }
                  - expect: { none: any, for: 20ms }
                  - shutdown
                """)
            #expect(result.passed, "\(result.steps.map { $0.failure ?? $0.detail })")
        }
    }

    @Test("the queue's scan from a sequence number finds every later message when earlier ones were taken from the middle (gaps)")
    func scanAcrossGaps() {
        let inbox = Inbox()
        for i in 0..<20 { inbox.append(source: RPMsgAddress(UInt32(1024 + i % 2)), payload: [UInt8(i)]) }
        inbox.take(stride(from: 0, to: 20, by: 2).map { $0 })                 // every other one: ten gaps
        #expect(inbox.pending(from: 0).map(\.sequence) == Array(stride(from: 1, to: 20, by: 2)))
        for i in 20..<40 { inbox.append(source: RPMsgAddress(1025), payload: [UInt8(i)]) }
        #expect(inbox.pending(from: 20).map(\.sequence) == Array(20..<40), "nothing after the gaps is skipped")
        #expect(inbox.pending(from: 6).first?.sequence == 7)
        #expect(inbox.pending(from: 40).isEmpty)
    }

    @Test("messages not taken stay queued: the later expectation finds them; leftovers: fail names what is left", .timeLimit(.minutes(1)))
    func leftovers() throws {
        let result = try run("""
            firmware: echo
            arch: native
            leftovers: fail
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - send: { to: rpmsg-echo, text: first, count: 2 }
              - send: { to: rpmsg-echo, hex: "00 ff 1b", count: 1 }
              - expect: { received: first, count: 1 }
              - expect: { hex: "00ff1b" }
              - shutdown
            """)
        #expect(!result.passed)
        let last = try #require(result.steps.last)
        #expect(last.title == "nothing left over" && !last.passed)
        #expect(last.failure?.contains("1 left: \"first\"") == true, "\(last.failure ?? "")")
        #expect(result.steps.dropLast().allSatisfy { $0.passed })
    }

    @Test("negative checks: none fails on a waiting or arriving match, naming it in hex when binary; no-crash fails at the crash", .timeLimit(.minutes(1)))
    func negativeChecks() throws {
        let none = try run("""
            firmware: echo
            arch: native
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - send: { to: rpmsg-echo, text: fine }
              - expect: { none: { prefix: err }, for: 30ms }
              - send: { to: rpmsg-echo, hex: "01 02 ff" }
              - expect: { none: { hex: "0102ff" }, for: 2s }
            """)
        #expect(none.steps.count == 6 && none.steps[3].passed)
        #expect(none.steps[5].failure?.contains("saw:      hex 01 02 ff") == true, "\(none.steps.map { $0.failure ?? "" })")
        #expect(none.steps[5].title == "expect no hex 01 02 ff for 2s")

        let crash = try run("""
            firmware: crash
            arch: native
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - expect: { no-crash: true, for: 20ms }
              - send: { to: rpmsg-echo, text: x, count: 10 }
              - expect: { no-crash: true, for: 30s }
            """)
        #expect(crash.steps[2].passed)
        let failed = try #require(crash.steps.last)
        #expect(!failed.passed && failed.failure?.contains("crash:") == true, "\(failed.failure ?? "")")
        #expect(failed.duration < .seconds(20), "ended at the crash, not after 30 s")
    }

    @Test("a wait ends at once when the remote crashes, with the crash report, instead of waiting out its time", .timeLimit(.minutes(1)))
    func waitsEndAtACrash() throws {
        let result = try run("""
            firmware: crash
            arch: native
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - send: { to: rpmsg-echo, text: x, count: 10 }
              - expect: { received: x, count: 20, within: 30s }
            """)
        let failed = try #require(result.failure)
        #expect(failed.title == "expect 20 × \"x\"")
        #expect(failed.failure?.contains("the remote crashed while waiting") == true, "\(failed.failure ?? "")")
        #expect(failed.failure?.contains("0xdead_beef") == true || failed.failure?.contains("0xDEAD_BEEF") == true || failed.failure?.contains("dead") == true,
                "\(failed.failure ?? "")")
        #expect(failed.duration < .seconds(20))
    }

    @Test("a passing scenario passes every step and reports state changes", .timeLimit(.minutes(1)))
    func passes() throws {
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: native
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - send: { to: rpmsg-echo, text: hello, count: 50 }
              - expect: { received: hello, count: 50 }
              - expect: { state: running }
              - shutdown
              - expect: { state: offline }
            """, path: "pass.yaml")
        let result = try ScenarioRunner(file).run()
        #expect(result.passed, "\(result.steps.map { $0.failure ?? "ok" })")
        #expect(result.steps.count == 7)
        #expect(result.steps[0].detail.contains("Offline → Running"))
        #expect(!result.trace.isEmpty)
    }

    @Test("a failing expectation stops the run with what was expected and what came instead", .timeLimit(.minutes(1)))
    func fails() throws {
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: native
            steps:
              - boot
              - expect: { announce: no-such-service, within: 100ms }
              - shutdown
            """, path: "fail.yaml")
        let result = try ScenarioRunner(file).run()
        #expect(!result.passed)
        #expect(result.steps.count == 2, "the run stops at the first failure")
        let failure = try #require(result.failure)
        #expect(failure.location.line == 5)
        #expect(failure.failure?.contains("expected: name-service announcement \"no-such-service\"") == true)
        #expect(failure.failure?.contains("rpmsg-echo") == true, "what was announced instead")
        // The board as it was when the step failed: the announcement sits decoded in vring0's used ring.
        let dump = try #require(failure.dump)
        #expect(dump.contains("life cycle: Running"), "\(dump)")
        #expect(dump.contains("vring0 @ 0x3000_0000 num "), "\(dump)")
        #expect(dump.contains("name service create \"rpmsg-echo\""), "\(dump)")
        #expect(dump.contains("── last 20 trace events"), "\(dump)")
        #expect(ScenarioReports.junit([result]).contains("<system-out>── state"), "the JUnit report carries the dump")
    }

    @Test("debug: a port alone waits for the debugger; wait: false lets the core run at once")
    func debugOption() throws {
        let short = try ScenarioParser.parse("firmware: echo\narch: rv32\ndebug: 3333\nsteps: [boot]\n", path: "d.yaml")
        #expect(short.debug == DebuggerOptions(port: 3333, waitForDebugger: true))
        let full = try ScenarioParser.parse("firmware: echo\narch: cortex-m4\ndebug: { port: 4444, wait: false }\nsteps: [boot]\n", path: "d.yaml")
        #expect(full.debug == DebuggerOptions(port: 4444, waitForDebugger: false))
        #expect(try ScenarioParser.parse("firmware: echo\narch: rv32\nsteps: [boot]\n", path: "d.yaml").debug == nil)
    }

    @Test("firmware that panics right after boot: boot passes and the crash is expected, whichever side wins the race", .timeLimit(.minutes(1)))
    func crashDuringBoot() throws {
        let file = try ScenarioParser.parse("firmware: panic\narch: native\nsteps: [boot, {expect: {crash: panic}}]\n", path: "p.yaml")
        for _ in 0..<20 {
            let result = try ScenarioRunner(file).run()
            #expect(result.passed, "\(result.steps.map { "\($0.title): \($0.failure ?? $0.detail)" })")
        }
    }

    @Test("crash expectations see the crash kind; the JUnit report has a failure per failed step", .timeLimit(.minutes(1)))
    func crashAndJUnit() throws {
        let file = try ScenarioParser.parse("""
            name: panicking
            firmware: panic
            arch: native
            steps:
              - boot
              - expect: { crash: panic }
              - expect: { crash: watchdog, within: 50ms }
            """, path: "crash.yaml")
        let result = try ScenarioRunner(file).run()
        try #require(result.steps.count == 3, "\(result.steps.map { "\($0.title): \($0.failure ?? "passed")" })")
        #expect(result.steps[1].passed)
        #expect(!result.steps[2].passed)
        let junit = ScenarioReports.junit([result])
        let (suite, lastCase) = try ScenarioReports.withXML {
            let xml = try XMLDocument(xmlString: junit)
            let suite = xml.rootElement()?.elements(forName: "testsuite").first
            let failure = suite?.elements(forName: "testcase").last?.elements(forName: "failure").first
            return (["name", "tests", "failures"].map { suite?.attribute(forName: $0)?.stringValue },
                    failure?.attribute(forName: "message")?.stringValue)
        }
        #expect(suite == ["panicking", "3", "1"])
        #expect(lastCase?.hasPrefix("expected: a crash (watchdog) within") == true)
        let trace = try JSONSerialization.jsonObject(with: try ScenarioReports.chromeTrace([result])) as? [String: Any]
        let events = try #require(trace?["traceEvents"] as? [[String: Any]])
        #expect(events.contains { ($0["ph"] as? String) == "X" && ($0["name"] as? String) == "boot" })
        #expect(events.contains { ($0["ph"] as? String) == "i" && (($0["name"] as? String) ?? "").contains("crash") })
    }

    @Test("suspensions are slices on the Perfetto timeline's power track; a suspend step that expected a refusal fails saying what happened",
          .timeLimit(.minutes(1)))
    func powerTimeline() throws {
        let file = try ScenarioParser.parse("""
            name: power
            firmware: echo
            arch: native
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - suspend
              - wait: 20ms
              - resume
              - suspend: { kind: auto, expect: refused }
            """, path: "power.yaml")
        let result = try ScenarioRunner(file).run()
        try #require(result.steps.count == 6)
        #expect(result.steps[2].passed && result.steps[4].passed)
        #expect(!result.steps[5].passed)
        #expect(result.steps[5].failure?.contains("saw:      the remote suspended") == true, "\(result.steps[5].failure ?? "")")
        let trace = try JSONSerialization.jsonObject(with: try ScenarioReports.chromeTrace([result])) as? [String: Any]
        let events = try #require(trace?["traceEvents"] as? [[String: Any]])
        let slices = events.filter { ($0["name"] as? String) == "suspended" && ($0["ph"] as? String) == "X" && ($0["tid"] as? Int) == 5 }
        #expect(slices.count == 2, "the forced one (ended by resume) and the last one (still suspended at the end)")
        #expect(slices.first.flatMap { $0["dur"] as? Double }.map { $0 >= 20_000 } == true)
        #expect(events.contains { ($0["name"] as? String) == "thread_name" && (($0["args"] as? [String: Any])?["name"] as? String) == "power" })
    }

    @Test("JUnit is well-formed whatever a firmware sent: random binary payloads, control bytes in names and failures; names are stable; steps not run are skipped",
          .timeLimit(.minutes(1)))
    func junitWithBinaryPayloads() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<5 {
            let payload = (0..<Int.random(in: 1...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let hexText = payload.map { String(format: "%02x", $0) }.joined(separator: " ")
            let result = try run("""
                name: "binary \\x1b[2J \\x00 round \(round)"
                firmware: echo
                arch: native
                steps:
                  - boot
                  - expect: { announce: rpmsg-echo }
                  - send: { to: rpmsg-echo, hex: "\(hexText)" }
                  - expect: { received: "never", within: 100ms }
                  - send: { to: rpmsg-echo, text: after }
                  - shutdown
                """)
            // A failure text and a dump with raw control bytes in them too.
            var hostile = result
            hostile.steps[3].failure! += "\u{1B}]0;title\u{07}\u{0}\u{FFFE}"
            let xml = ScenarioReports.junit([hostile])
            // Plain values out of the parsed tree; no XML node outlives the lock (nor reaches an
            // expectation, which may keep what it is given).
            struct Case { var name: String; var skipped: Bool; var failure: String?; var properties: [String] }
            let cases = try ScenarioReports.withXML {
                let document = try XMLDocument(xmlString: xml)
                return (document.rootElement()?.elements(forName: "testsuite").first?.elements(forName: "testcase") ?? []).map { element in
                    Case(name: element.attribute(forName: "name")?.stringValue ?? "",
                         skipped: !element.elements(forName: "skipped").isEmpty,
                         failure: element.elements(forName: "failure").first?.stringValue,
                         properties: (element.elements(forName: "properties").first?.elements(forName: "property") ?? []).map {
                             $0.attribute(forName: "name")?.stringValue ?? ""
                         })
                }
            }
            try #require(cases.count == 6)
            #expect(cases.last?.name.hasSuffix(" / shutdown") == true)
            #expect(cases.suffix(2).allSatisfy { $0.skipped }, "the steps after the failure are skipped")
            let failure = try #require(cases[3].failure)
            #expect(failure.contains("hex ") || failure.contains("\""), "the payload shown as text or hex: \(failure)")
            #expect(failure.contains("\\x1B]0;title\\x07\\x00\\u{FFFE}"), "\(failure)")
            #expect(cases[3].properties.contains("line"))
        }
    }

    @Test("every scenario in Scenarios/ passes", .timeLimit(.minutes(3)))
    func shippedScenarios() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Scenarios")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 4)
        for name in files {
            let result = try ScenarioRunner(try ScenarioParser.parse(file: folder.appendingPathComponent(name).path)).run()
            #expect(result.passed, "\(name): \(result.failure.map { "\($0.title): \($0.failure ?? "")" } ?? "")")
        }
    }
}

/// Two threads that spin until stopped: a loaded machine, for tests that must not care.
private final class CPUHogs: Sendable {
    private let running = Atomic<Bool>(true)
    private let done = WakeSignal()
    private let count: Int
    init(_ count: Int = 2) throws {
        self.count = count
        for _ in 0..<count {
            try PlatformThread(name: "hog") { [self] in spin() }.detach()
        }
    }
    private func spin() {
        var x: UInt64 = 1
        while running.load(ordering: .relaxed) { x = x &* 6364136223846793005 &+ 1 }
        if x == 42 { print(x) }
        done.signal()
    }
    func stop() {
        running.store(false, ordering: .relaxed)
        for _ in 0..<count { _ = done.wait(timeout: .seconds(10)) }
    }
}

@Suite("Scenarios with several processors")
struct MultiProcessorScenarioTests {
    @Test("processors: each its own firmware, core and board; on: addresses one, word steps take it as boot: { on: … }; wait needs none")
    func parse() throws {
        let file = try ScenarioParser.parse("""
            name: two
            clock: virtual
            host: openamp
            processors:
              m4: { firmware: echo, arch: cortex-m4, board: { core-clock: 48MHz } }
              nat: { firmware: sink, host: linux }
            steps:
              - boot: { on: m4 }
              - send: { on: nat, to: rpmsg-sink, text: hi, count: 2 }
              - wait: 1ms
            """, path: "two.yaml")
        #expect(file.processors.map(\.name) == ["m4", "nat"])
        #expect(file.processors[0].config.architecture == "cortex-m4")
        #expect(file.processors[0].config.coreClock == CoreClockRate(hertz: 48_000_000))
        #expect(file.processors[1].config.host == .linux)
        #expect(file.clock == .virtual)
        #expect(file.steps.map(\.on) == ["m4", "nat", nil])
        #expect(file.steps.map(\.step) == [.boot, .send(to: "rpmsg-sink", payload: Array("hi".utf8), count: 2), .wait(.milliseconds(1))])
        #expect(file.steps[1].location.line == 9)
        // A processor's own host is its alone; the others keep the file's.
        #expect(file.host == .openamp)
        #expect(file.alone("nat")?.processor.host == .linux)
        #expect(file.alone("m4")?.processor.host == nil)
    }

    @Test("a step built in code for a processor the file does not have fails saying so; it does not run on another")
    func unknownProcessorInCode() throws {
        var file = try ScenarioParser.parse("""
            name: one of two
            clock: virtual
            processors:
              a: { firmware: echo }
              b: { firmware: echo }
            steps:
              - boot: { on: a }
              - boot: { on: b }
            """, path: "code.yaml")
        file.steps[1].on = "zz"
        let result = try ScenarioRunner(file).run()
        #expect(result.steps.map(\.passed) == [true, false])
        #expect(result.steps[1].failure == "no processor 'zz' (processors: a, b)")
    }

    @Test("two processors under one virtual clock: each step on its own board, one merged trace in time order, a Perfetto track set per processor",
          .timeLimit(.minutes(1)))
    func run() throws {
        let file = try ScenarioParser.parse(file: VirtualTimeScenarioTests.folder.appendingPathComponent("two-remotes-virtual.yaml").path)
        let result = try ScenarioRunner(file).run()
        #expect(result.passed, "\(result.failure.map { "\($0.title): \($0.failure ?? "")" } ?? "")")
        #expect(result.processorTraces.map(\.name) == ["m4", "rv"])
        #expect(result.processorTraces.allSatisfy { !$0.trace.isEmpty })
        #expect(result.trace.count == result.processorTraces.reduce(0) { $0 + $1.trace.count })
        #expect(zip(result.trace, result.trace.dropFirst()).allSatisfy { $0.time <= $1.time }, "merged in time order")
        // The RV32 was suspended while the M4 echoed: its trace has the suspension, the M4's has none.
        let suspended = result.processorTraces.map { t in t.trace.contains { if case .power = $0.kind { true } else { false } } }
        #expect(suspended == [false, true])
        let timeline = try JSONSerialization.jsonObject(with: try ScenarioReports.chromeTrace([result])) as? [String: Any]
        let names = (timeline?["traceEvents"] as? [[String: Any]] ?? []).compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
        #expect(names.contains("m4 · remote core") && names.contains("rv · remote core"), "\(names)")
        #expect(result.steps.first?.title == "m4: boot")
    }
}

@Suite("Virtual time: scenarios repeat exactly")
struct VirtualTimeScenarioTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Scenarios")

    /// Everything a run reports, as bytes: the Perfetto timeline, the JUnit report, and each
    /// step's title, outcome, detail and (virtual) duration.
    static func outputs(_ result: ScenarioResult) throws -> (timeline: Data, junit: String, steps: [String]) {
        (try ScenarioReports.chromeTrace([result]), ScenarioReports.junit([result]),
         result.steps.map { "\($0.title) \($0.passed) \($0.duration) \($0.detail) \($0.failure ?? "")" })
    }

    /// Runs `file` in virtual time twice — the second time with two CPU hogs beside it — and
    /// expects the same bytes from both.
    static func expectRepeats(_ file: ScenarioFile, _ name: String) throws {
        var file = file
        file.clock = .virtual
        let quiet = try ScenarioRunner(file).run()
        #expect(quiet.passed, "\(name): \(quiet.failure.map { "\($0.title): \($0.failure ?? "")" } ?? "")")
        let hogs = try CPUHogs(2)
        let loaded = try ScenarioRunner(file).run()
        hogs.stop()
        let (a, b) = (try outputs(quiet), try outputs(loaded))
        #expect(a.steps == b.steps, "\(name): the steps differ")
        #expect(a.junit == b.junit, "\(name): the JUnit reports differ")
        #expect(a.timeline == b.timeline, "\(name): the timelines differ (\(a.timeline.count) and \(b.timeline.count) bytes)")
        #expect(quiet.trace.map { "\($0.time) \($0)" } == loaded.trace.map { "\($0.time) \($0)" }, "\(name): the traces differ")
    }

    @Test("every scenario in Scenarios/, in virtual time, twice (once beside two CPU hogs): byte-identical timelines, reports and traces",
          .timeLimit(.minutes(5)))
    func shippedScenariosRepeat() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 10)
        for name in files {
            try Self.expectRepeats(try ScenarioParser.parse(file: Self.folder.appendingPathComponent(name).path), name)
        }
    }

    @Test("a seeded fault-injection scenario (random payloads, lost and delayed kicks, a corrupt vring, a crash and recovery) repeats exactly in virtual time",
          .timeLimit(.minutes(2)))
    func seededFaultsRepeat() throws {
        let file = try ScenarioParser.parse("""
            name: seeded faults
            firmware: echo
            arch: rv32
            vars: { seed: 2026 }
            steps:
              - boot
              - expect: { announce: rpmsg-echo, within: 1s }
              - repeat:
                  for: size
                  in: [16, 200, 496]
                  steps:
                    - send: { to: rpmsg-echo, random: { size: "${size}", seed: "${seed}" } }
                    - expect: { random: { size: "${size}", seed: "${seed}" }, within: 1s }
              - delay-kicks: { to: host, by: 3ms }
              - send: { to: rpmsg-echo, text: slow, count: 20 }
              - expect: { received: slow, count: 20, within: 2s }
              - delay-kicks: { to: host, by: 0ms }
              - drop-kicks: { to: remote, count: 1 }
              - send: { to: rpmsg-echo, text: lost }
              - send: { to: rpmsg-echo, text: found }
              - expect: { received: found, within: 1s }
              - corrupt: { vring: 0, field: desc-len, value: 8 }
              - send: { to: rpmsg-echo, text: into-garbage }
              - expect: { malformed: 1, within: 1s }
              - inject: { crash: panic, code: 0xBAD }
              - expect: { crash: panic, within: 1s }
              - recover
              - expect: { announce: rpmsg-echo, within: 1s }
              - send: { to: rpmsg-echo, text: back }
              - expect: { received: back, within: 1s }
              - shutdown
            """, path: "seeded-faults.yaml")
        try Self.expectRepeats(file, "seeded faults")
    }
}

@Suite("Scenario with a debugger", .serialized)
struct ScenarioDebuggerTests {
    @Test("a scenario's debug option serves GDB on its port; with wait: false the steps run without a debugger", .timeLimit(.minutes(1)))
    func debugOptionServes() throws {
        let port = try freePort()
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: rv32
            debug: { port: \(port), wait: false }
            steps:
              - boot
              - expect: { announce: rpmsg-echo, within: 5s }
              - send: { to: rpmsg-echo, text: hi }
              - expect: { received: hi, within: 5s }
              - shutdown
            """, path: "debug-option.yaml")
        let runner = try ScenarioRunner(file)
        #expect(runner.gdb?.port == port)
        #expect(runner.gdb?.waitsForDebugger == false)
        let result = runner.run()
        #expect(result.passed, "\(result.failure.map { $0.failure ?? "" } ?? "")")
    }

    @Test("a send step waits out a breakpoint: time halted does not count against its buffer wait", .timeLimit(.minutes(1)))
    func sendWhileHalted() throws {
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: rv32
            steps:
              - boot
              - expect: { announce: rpmsg-echo, within: 5s }
              - send: { to: rpmsg-echo, text: hello, count: 40 }
              - expect: { received: hello, count: 40, within: 5s }
              - shutdown
            """, path: "send-halted.yaml")
        let runner = try ScenarioRunner(file, gdbPort: 0)
        let port = try #require(runner.gdb?.port)
        let elf = runner.imagePath
        // gdb stops the core at the first message and holds it 6 s — longer than a send may wait
        // for a buffer (5 s) — while the other 39 fill the 16-entry ring.
        let debugger = Thread {
            _ = try? GDBBatch.run(["-ex", "target remote 127.0.0.1:\(port)", "-ex", "break on_message", "-ex", "continue",
                                   "-ex", "shell sleep 6", "-ex", "delete", "-ex", "detach", elf])
        }
        debugger.start()
        let result = runner.run()
        #expect(result.passed, "\(result.failure.map { "\($0.title): \($0.failure ?? "")" } ?? "")")
        #expect(result.steps[2].duration > .seconds(5), "the sends waited for the debugger to let go")
    }

    @Test("time halted in the debugger does not count against a wait", .timeLimit(.minutes(1)))
    func haltedTimeDoesNotCount() throws {
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: rv32
            steps:
              - boot
              - expect: { announce: rpmsg-echo, within: 1s }
              - shutdown
            """, path: "debug.yaml")
        let runner = try ScenarioRunner(file, gdbPort: 0)
        let port = try #require(runner.gdb?.port)
        let elf = try ScenarioFirmware.resolve(file.processor.firmware).path
        // The core stays halted 2 s — twice the wait — before a debugger attaches and detaches.
        let debugger = Thread {
            usleep(2_000_000)
            _ = try? GDBBatch.run(["-ex", "target remote 127.0.0.1:\(port)", "-ex", "detach", elf])
        }
        debugger.start()
        let result = runner.run()
        #expect(result.passed, "\(result.failure.map { $0.failure ?? "" } ?? "")")
        #expect(result.steps[1].duration > .seconds(1), "the announcement came only after the debugger let the core go")
    }
}

@Suite("Scenario debug step", .serialized)
struct ScenarioDebugStepTests {
    @Test("a debug step halts the core where the scenario stands and goes on when the debugger lets go", .timeLimit(.minutes(1)))
    func haltsForTheDebugger() throws {
        let port = try freePort()
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: rv32
            debug: { port: \(port), wait: false }
            steps:
              - boot
              - expect: { announce: rpmsg-echo, within: 5s }
              - debug
              - send: { to: rpmsg-echo, text: after }
              - expect: { received: after, within: 5s }
              - shutdown
            """, path: "debug-step.yaml")
        let runner = try ScenarioRunner(file)
        let server = try #require(runner.gdb)
        let notices = MetalMutex<[String]>([])
        runner.onNotice = { text in notices.withLock { $0.append(text) } }
        // The "user": once the step has halted the core, attach, look, wait a little, detach.
        let replies = MetalMutex<[String]>([])
        let userDone = DispatchSemaphore(value: 0)
        let user = Thread {
            defer { userDone.signal() }
            let deadline = ContinuousClock.now + .seconds(20)
            while !server.isHalted && ContinuousClock.now < deadline { usleep(1000) }
            guard let client = try? GDBClient(port: port) else { return }
            let stop = (try? client.request("?")) ?? "none"
            let registers = (try? client.request("g")) ?? "none"
            usleep(300_000)
            let detached = (try? client.request("D")) ?? "none"
            replies.withLock { $0 = [stop, registers, detached] }
        }
        user.start()
        let result = runner.run()
        // The detach lets the scenario finish, possibly before the "user" has stored the replies
        // it got (a race that failed this test under load): wait for the thread to end.
        #expect(userDone.wait(timeout: .now() + 20) == .success, "the debugger thread did not finish")
        #expect(result.passed, "\(result.failure.map { "\($0.title): \($0.failure ?? "")" } ?? "")")
        let seen = replies.withLock { $0 }
        #expect(seen.first?.hasPrefix("T02") == true, "the debugger found the core halted: \(seen)")
        // g: x0–x31, pc and the eight machine CSRs, 8 hex digits each.
        #expect(seen.count == 3 && seen[1].count == 41 * 8 && seen[2] == "OK", "\(seen)")
        #expect(result.steps[2].title == "debug (halt for gdb)" && result.steps[2].duration >= .milliseconds(300))
        #expect(notices.withLock { $0 }.contains { $0.contains("target remote :\(port)") })
    }

    @Test("a debug step with no debugger coming fails after attach-within (30 s by default), not after its whole within", .timeLimit(.minutes(1)))
    func debugStepWithoutDebugger() throws {
        let port = try freePort()
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: rv32
            debug: { port: \(port), wait: false }
            steps:
              - boot
              - expect: { announce: rpmsg-echo }
              - debug: { attach-within: 200ms }
              - shutdown
            """, path: "nodebugger.yaml")
        #expect(file.steps[2].step == .debug(attachWithin: .milliseconds(200), within: ScenarioParser.defaultDebugWithin))
        let result = try ScenarioRunner(file).run()
        let failed = try #require(result.failure)
        #expect(failed.title == "debug (halt for gdb)")
        #expect(failed.failure?.contains("a debugger to connect") == true && failed.failure?.contains("within 200ms") == true, "\(failed.failure ?? "")")
        #expect(failed.duration < .seconds(20))
        #expect(ScenarioParser.defaultDebugAttachWithin == .seconds(30))
    }

    @Test("a debug step on a native model is refused at its line; its options are checked")
    func refused() {
        #expect(parseError("firmware: echo\narch: native\nsteps:\n  - boot\n  - debug\n")?.message.contains("debug halts an emulated CPU") == true)
        #expect(parseError("firmware: echo\narch: rv32\nsteps:\n  - debug: { within: soon }\n")?.message.contains("within must be a duration") == true)
        #expect(parseError("firmware: echo\narch: rv32\nsteps:\n  - debug: { port: 1 }\n")?.message.contains("unknown field 'port'") == true)
    }
}


@Suite("Scenario language: variables, repeat, include, generators, bad input")
struct ScenarioLanguageTests {
    @Test("every payload size 1…496, generated, sent and checked byte-exact, from a four-line loop with variables", .timeLimit(.minutes(2)))
    func everySize() throws {
        let file = try ScenarioParser.parse("""
            firmware: echo
            arch: native
            leftovers: fail
            vars: { service: rpmsg-echo, seed: 7 }
            steps:
              - boot
              - expect: { announce: "${service}" }
              - repeat:
                  for: size
                  in: 1..496
                  steps:
                    - send: { to: "${service}", random: { size: "${size}", seed: "${seed}" } }
                    - expect: { random: { size: "${size}", seed: "${seed}" } }
              - repeat: { times: 3, steps: [ { send: { to: "${service}", counter: { size: 300, start: 250 } } } ] }
              - expect: { counter: { size: 300, start: 250 }, count: 3 }
              - send: { to: "${service}", pattern: { text: ab, size: 5 } }
              - expect: { received: ababa }
              - shutdown
            """, path: "sizes.yaml")
        #expect(file.steps.count == 2 + 2 * 496 + 3 + 4)
        #expect(file.steps[2].location.line == 12, "an unrolled step keeps its line")
        let result = try ScenarioRunner(file).run()
        #expect(result.passed, "\(result.failure.map { "\($0.title): \($0.failure ?? "")" } ?? "")")
        #expect(PayloadGenerator.random(size: 5, seed: 7).bytes == PayloadGenerator.random(size: 5, seed: 7).bytes)
        #expect(PayloadGenerator.random(size: 5, seed: 7).bytes != PayloadGenerator.random(size: 5, seed: 8).bytes)
        #expect(PayloadGenerator.counter(size: 3, start: 255).bytes == [255, 0, 1])
    }

    @Test("include: shared steps from another file, at their own lines; includes that loop or are missing are refused")
    func include() throws {
        let setup = try temporaryScenarioFile("setup.yaml", contents: Data("- boot\n- expect: { announce: \"${service}\" }\n".utf8))
        let folder = (setup as NSString).deletingLastPathComponent
        let main = (folder as NSString).appendingPathComponent("main.yaml")
        try "firmware: echo\narch: native\nvars: { service: rpmsg-echo }\nsteps:\n  - include: setup.yaml\n  - shutdown\n".write(toFile: main, atomically: true, encoding: .utf8)
        let file = try ScenarioParser.parse(file: main)
        #expect(file.steps.map(\.step.title) == ["boot", "expect announce rpmsg-echo", "shutdown"])
        #expect(file.steps[1].location.file == setup && file.steps[1].location.line == 2)
        #expect(try ScenarioRunner(file).run().passed)

        let loop = (folder as NSString).appendingPathComponent("loop.yaml")
        try "- include: loop.yaml\n".write(toFile: loop, atomically: true, encoding: .utf8)
        let looping = try #require(parseError("firmware: echo\narch: native\nsteps:\n  - include: \(loop)\n"))
        #expect(looping.message.contains("includes itself"), "\(looping.message)")
        let missing = try #require(parseError("firmware: echo\narch: native\nsteps:\n  - include: /nowhere/x.yaml\n"))
        #expect(missing.message.contains("no such file") && missing.location.line == 4, "\(missing)")
    }

    @Test("variables and loops refuse what makes no sense, at the line: unknown names, bad ranges, runaway expansion")
    func refusals() {
        let base = "firmware: echo\narch: native\nsteps:\n"
        #expect(parseError(base + "  - send: { to: \"${nope}\", text: x }\n")?.message == "unknown variable 'nope' (define it under vars:)")
        #expect(parseError(base + "  - repeat: { for: x, in: 5..1, steps: [boot] }\n")?.message.contains("in must be a range") == true)
        #expect(parseError(base + "  - repeat: { times: 3, for: x, in: 1..2, steps: [boot] }\n")?.message.contains("not both") == true)
        let runaway = base + "  - repeat: { times: 1000, steps: [ { repeat: { times: 1000, steps: [boot] } } ] }\n"
        #expect(parseError(runaway)?.message.contains("more than 100000 steps") == true)
        // Loops that make no steps are bounded too (they would spin 100000² times).
        let empty = base + "  - repeat: { times: 100000, steps: [ { repeat: { times: 100000, steps: [] } } ] }\n"
        #expect(parseError(empty)?.message.contains("repeats run more than 1000000 times") == true, "\(String(describing: parseError(empty)))")
        #expect(parseError(base + "  - send: { to: s, text: x, count: 99999999999 }\n")?.message.contains("count must be a whole number") == true)
        #expect(parseError(base + "  - send: { to: s, random: { size: 100000 } }\n")?.message.contains("random.size") == true)
        #expect(parseError(base + "  - send: { to: s, random: { size: 497 } }\n")?.message.contains("at most 496") == true)
    }

    @Test("hostile files: an alias bomb, deep nesting, non-UTF-8, a FIFO — a clear error with a location, never a hang or a crash", .timeLimit(.minutes(1)))
    func hostileFiles() throws {
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...12 { bomb += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        bomb += "firmware: echo\nsteps: [boot]\n"
        #expect(parseError(bomb)?.message.contains("more than 200000 values") == true)
        let deep = "firmware: echo\nsteps: " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n"
        #expect(parseError(deep)?.message.contains("nested deeper than 64 levels") == true)
        let dashes = "firmware: echo\nsteps:\n" + String(repeating: "- ", count: 5_000) + "boot\n"
        #expect(parseError(dashes)?.message.contains("nested deeper than 256 columns") == true)

        let binary = try temporaryScenarioFile("binary.yaml", contents: Data([0x66, 0x69, 0xFF, 0xFE, 0x00, 0x0A]))
        #expect(throws: ScenarioError.self) { try ScenarioParser.parse(file: binary) }
        do { _ = try ScenarioParser.parse(file: binary) } catch { #expect(error.message.contains("not UTF-8 text (byte 2)"), "\(error)") }

        let fifo = TestScratch.path("scenario-fifo.yaml")
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        do { _ = try ScenarioParser.parse(file: fifo); Issue.record("a FIFO was read") } catch {
            #expect(error.message.contains("is a FIFO, not a regular file"), "\(error)")
        }
    }

    @Test("the queue of received messages is bounded by count and bytes: the oldest go first, counted; sequence numbers survive drops")
    func boundedInbox() {
        let inbox = Inbox()
        for i in 0..<(Inbox.maximumCount + 100) { inbox.append(source: RPMsgAddress(1), payload: [UInt8(i & 0xFF)]) }
        #expect(inbox.count == Inbox.maximumCount)
        #expect(inbox.dropped == 100)
        #expect(inbox.pending().first?.sequence == 100)
        #expect(inbox.pending(from: 50).first?.sequence == 100, "a scan from a dropped message starts at the oldest kept")
        #expect(inbox.pending(from: Inbox.maximumCount + 99).map(\.sequence) == [Inbox.maximumCount + 99])
        inbox.take([100, 102, 7])
        #expect(inbox.pending().prefix(2).map(\.sequence) == [101, 103])

        let big = Inbox()
        let megabyte = [UInt8](repeating: 0xAB, count: 1 << 20)
        for _ in 0..<40 { big.append(source: RPMsgAddress(1), payload: megabyte) }
        #expect(big.count == Inbox.maximumBytes >> 20)
        #expect(big.dropped == 40 - Inbox.maximumBytes >> 20)
        big.take(big.pending().map(\.sequence))
        #expect(big.count == 0)
        for _ in 0..<(Inbox.maximumBytes >> 20) { big.append(source: RPMsgAddress(1), payload: megabyte) }
        #expect(big.dropped == 40 - Inbox.maximumBytes >> 20, "taking frees the bytes: a full queue's worth fits again")
    }

    @Test("a FIFO, a device, a folder or /proc named as firmware, payload file, scenario or include: refused for what it is, at once", .timeLimit(.minutes(1)))
    func specialPaths() throws {
        let fifo = TestScratch.path("special-fifo")
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let cases: [(path: String, says: String)] = [
            (fifo, "is a FIFO, not a regular file"), ("/dev/zero", "is a character device, not a regular file"),
            ("/", "is a directory, not a regular file"), ("/no/such/file", "no such file"),
        ]
        for (path, says) in cases {
            #expect(parseError("elf: \(path)\nsteps: [boot]\n")?.message.contains(says) == true, "elf: \(path)")
            #expect(parseError("firmware: echo\narch: native\nsteps:\n  - send: { to: s, file: \(path) }\n")?.message.contains(says) == true, "file: \(path)")
            #expect(parseError("firmware: echo\narch: native\nsteps:\n  - include: \(path)\n")?.message.contains(says) == true, "include: \(path)")
            do { _ = try ScenarioParser.parse(file: path); Issue.record("\(path) was read as a scenario") } catch {
                #expect(error.message.contains(says), "\(error)")
            }
        }
        // /proc files say they are empty: a payload from one is refused as empty, not "not found".
        #expect(parseError("firmware: echo\narch: native\nsteps:\n  - send: { to: s, file: /proc/self/mem }\n")?.message.contains("is empty") == true)
    }
}
