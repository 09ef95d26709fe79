import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
@testable import RemoteSim
import RPMsg
import Synchronization
import Testing
import TestSupport

/// The interrupt-driven programs of Firmware/ on both emulated cores.
@Suite("Interrupt-driven firmware")
struct InterruptFirmwareTests {
    /// The timer's period as the firmware gets it — the median time between two of its
    /// interrupts in the board's trace — is within 1 % of `hertz`; and the firmware's own count
    /// (100 ticks against TICKS) agrees within 10 %. The count alone is no measure of the period
    /// on a loaded host: core time is wall time until the virtual clock, so a core thread kept
    /// off the CPU for longer than a period sees SysTick reach zero more than once, which pends
    /// the exception once, as on hardware (RV32's mtimecmp, re-armed from the last compare
    /// value, catches up instead).
    private func expectPeriod(_ board: Board, timer: String, hertz: Double, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let times = board.trace.events.compactMap { event -> Double? in
            guard case let .trap(entry) = event.kind, entry.cause == timer else { return nil }
            return event.time.inMicroseconds
        }
        let intervals = zip(times.dropFirst(), times).map { $0 - $1 }.sorted()
        #expect(intervals.count >= 80, sourceLocation: sourceLocation)
        let median = intervals.isEmpty ? 0 : intervals[intervals.count / 2]
        #expect(abs(median - 1e6 / hertz) <= 1e6 / hertz / 100, "median period \(median) µs", sourceLocation: sourceLocation)
        let line = try #require(board.trace.consoleLines.first { $0.hasPrefix("tick: 100 ticks in") }, sourceLocation: sourceLocation)
        #expect(abs((Int(line.split(separator: " ")[4]) ?? 0) - 1_000_000) <= 100_000, "\(line)", sourceLocation: sourceLocation)
    }

    @Test("irq-echo: 10,000 messages echoed byte-exact by an interrupt-driven firmware; the mailbox interrupt was taken",
          .timeLimit(.minutes(3)), arguments: FirmwareArchitecture.allCases)
    func interruptDrivenEcho(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("irq-echo", architecture)
        let echo = try EchoClient(board: board, processor: processor)
        #expect(try echo.roundTrips(10_000, tag: "irq") == 10_000, "console \(board.trace.consoleLines)")
        let answer = String(decoding: try echo.ask(Array("irq-count?".utf8)) ?? [], as: UTF8.self)
        let count = Int(answer.dropFirst("irq-count ".count)) ?? 0
        // The mailbox interrupt woke the sleeping firmware, at most once per message: the host
        // kicks only for its sends (the firmware asked not to hear of returned receive buffers),
        // and a message sent while the firmware still polls needs no interrupt at all.
        #expect(answer.hasPrefix("irq-count ") && count >= 1 && count <= 10_010, "\(answer)")
        #expect(board.trace.consoleLines.contains("irq-echo: ready"))
        try processor.stop()
        try processor.shutdown()
    }

    @Test("tick: an ecall or SVC traps and returns; the timer interrupt (mtimecmp, SysTick) comes at 100 Hz within 1 % (the median period); a stop ends the idle core at once",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func timerTicks(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("tick", architecture)
        let (call, timer) = architecture == .rv32 ? ("environment call from M-mode", "machine timer interrupt") : ("SVCall", "SysTick")
        #expect(waitUntil(.seconds(30)) { board.trace.consoleLines.contains { $0.hasPrefix("tick: 100 ticks in") } },
                "console \(board.trace.consoleLines), halt \(String(describing: board.lastHalt))")
        #expect(board.trace.consoleLines.contains("tick: ecall 1"))
        // The trace shows the traps: the ecall first, then timer interrupts, each with its handler.
        let traps = board.trace.events.compactMap { if case let .trap(entry) = $0.kind { entry } else { nil } }
        #expect(traps.first?.cause == call, "\(traps.prefix(3))")
        let ticks = traps.filter { $0.cause == timer }
        #expect(ticks.count >= 100)
        #expect(Set(ticks.map(\.handler)).count == 1, "one handler")
        // ... and each returned: an exception return the board made (Cortex-M4), an mret the board
        // saw land (RV32) — the ecall's to the instruction after it.
        let returns = board.trace.events.compactMap { if case let .trapReturn(exit) = $0.kind { exit } else { nil } }
        #expect(returns.filter { $0.cause == timer }.count >= 100, "\(returns.prefix(3))")
        #expect(returns.first?.cause == call, "the \(call) returned first: \(returns.prefix(3))")
        if let ecall = traps.first, let back = returns.first {
            #expect(back.returnAddress.rawValue == ecall.programCounter.rawValue + (architecture == .rv32 ? 4 : 0),
                    "\(call) at \(ecall.programCounter) returned to \(back.returnAddress)")
        }
        try expectPeriod(board, timer: timer, hertz: 100)
        let clock = ContinuousClock()
        let start = clock.now
        try processor.stop()
        #expect(clock.now - start < .seconds(2))
        #expect(board.lastHalt?.reason == .stopped)
        try processor.shutdown()
    }

    @Test("tick on a 10 MHz core: the firmware reads CORE_CLOCK and its 100 Hz stay 100 Hz", .timeLimit(.minutes(2)),
          arguments: FirmwareArchitecture.allCases)
    func otherCoreClock(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "tick", architecture: architecture)
        let board = try Board(firmware: EmulatedCPU(architecture.cpu, coreClock: try #require(CoreClockRate(hertz: 10_000_000))))
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        #expect(waitUntil(.seconds(30)) { board.trace.consoleLines.contains { $0.hasPrefix("tick: 100 ticks in") } },
                "console \(board.trace.consoleLines), halt \(String(describing: board.lastHalt))")
        try expectPeriod(board, timer: architecture == .rv32 ? "machine timer interrupt" : "SysTick", hertz: 100)
        #expect(board.mailbox.read(Mailbox.Register.coreClock.rawValue) == 10_000_000)
        try processor.stop()
        try processor.shutdown()
    }

    @Test("sched: three tasks preempted by the tick (PendSV; the timer trap) and yielding (SVC; ecall), each serving its own endpoint; every task's registers are intact over 100,000 switches",
          .timeLimit(.minutes(4)), arguments: FirmwareArchitecture.allCases)
    func preemptiveScheduler(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("sched", architecture)
        defer { try? processor.shutdown() }
        let rpmsg = try hostRPMsg(processor)
        #expect(waitUntil(.seconds(30)) { rpmsg.announcedServices.count == 3 }, "\(rpmsg.announcedServices)")
        let replies = MetalMutex<[String]>([])
        for service in rpmsg.announcedServices.sorted(by: { $0.name < $1.name }) {
            let client = try rpmsg.createEndpoint(destination: service.address) { message in
                replies.withLock { $0.append(String(decoding: message.payload, as: UTF8.self)) }
            }
            try client.send(Array("hello".utf8), timeout: .seconds(5))
        }
        #expect(waitUntil(.seconds(30)) { replies.withLock { $0.count } == 3 }, "\(replies.withLock { $0 })")
        #expect(Set(replies.withLock { $0 }) == ["0:hello", "1:hello", "2:hello"], "each task answers on its own endpoint")
        // The firmware reports every 10,000th switch: how many the tick forced, how many were
        // yields, and how many register checks failed. 100,000 of them; under a sanitizer, whose
        // slowness the firmware cannot make up, 10,000.
        let wanted = Sanitizer.isActive ? 10_000 : 100_000
        let milestone = try Regex("sched: \(wanted) switches in \\d+ ms: preempted (\\d+) yields (\\d+) errors (\\d+)")
        #expect(waitUntil(.seconds(200)) { board.trace.consoleLines.contains { $0.contains(milestone) } || processor.state != .running },
                "console \(board.trace.consoleLines.suffix(5)), halt \(String(describing: board.lastHalt))")
        let line = try #require(board.trace.consoleLines.first { $0.contains(milestone) })
        let match = try #require(line.firstMatch(of: milestone))
        let counts = (1...3).map { match.output[$0].substring.map { Int($0) ?? -1 } ?? -1 }
        #expect(counts[0] > 0, "the tick preempted tasks: \(line)")
        #expect(counts[1] > 0, "tasks yielded: \(line)")
        #expect(counts[2] == 0, "no register was corrupted by a switch: \(line)")
        #expect(!board.trace.consoleLines.contains { $0.contains(" holds ") }, "\(board.trace.consoleLines.filter { $0.contains(" holds ") }.prefix(3))")
        #expect(processor.state == .running)
    }

    @Test("irq-prio: the interrupt rules on the hardware itself — preemption by priority and none at equal priority, grouping and subpriority, masking (PRIMASK, BASEPRI, FAULTMASK; mstatus.MIE, mie), tail-chaining and back-to-back traps, WFI waking under a mask, nesting, the NVIC's active bits",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func interruptRules(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("irq-prio", architecture)
        defer { try? processor.shutdown() }
        // The host's RPMsg set-up ends with a Linux host's kick: the first check takes it as the
        // mailbox interrupt (IRQ 0; MEI, ordered before MSI and MTI).
        _ = try hostRPMsg(processor)
        let done = #/irq-prio: done (\d+)/(\d+)/#
        #expect(waitUntil(.seconds(60)) { board.trace.consoleLines.contains { $0.contains(done) } || processor.state != .running },
                "console \(board.trace.consoleLines), halt \(String(describing: board.lastHalt))")
        let lines = board.trace.consoleLines.filter { $0.hasPrefix("irq-prio: ") }
        let failures = lines.filter { !$0.hasSuffix(" ok") && !$0.contains(" done ") && !$0.contains(" start") }
        #expect(failures.isEmpty, "\(failures)")
        let summary = try #require(lines.last?.firstMatch(of: done), "\(lines)")
        #expect(summary.1 == summary.2 && Int(summary.2) ?? 0 >= (architecture == .cortexM4 ? 14 : 9), "\(lines)")
        #expect(processor.state == .running)
        if architecture == .cortexM4 {
            // The tail-chain check's PendSV was entered from IRQ 5's return: the trace names it
            // by its exception, as its return does, and says how it was taken.
            let traps = board.trace.events.compactMap { if case let .trap(entry) = $0.kind { entry } else { nil } }
            let chained = traps.filter { $0.detail == "tail-chained" }
            #expect(chained.contains { $0.cause == "PendSV" && $0.name == "PendSV (tail-chained)" }, "\(chained)")
        }
    }

    @Test("irq-storm: an interrupt whose handler raises it again keeps the core in the handler — the watchdog reports it, and a stop ends the storm at once",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func interruptStorm(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("irq-storm", architecture)
        defer { try? processor.shutdown() }
        #expect(waitUntil(.seconds(30)) { processor.state == .crashed }, "state \(processor.state)")
        #expect(processor.crashReport?.kind == .watchdog, "\(String(describing: processor.crashReport))")
        #expect(board.trace.consoleLines.contains("irq-storm: storming"))
        let traps = board.trace.events.filter { if case .trap = $0.kind { true } else { false } }.count
        #expect(traps > 100, "the handler ran again and again: \(traps) traps")

        // A stop in the middle of the storm, on a fresh board: it comes first or the watchdog
        // does; either way the core halts promptly.
        let (stormy, second) = try emulatedBoard("irq-storm", architecture)
        defer { try? second.shutdown() }
        #expect(waitUntil(.seconds(30)) { stormy.trace.events.filter { if case .trap = $0.kind { true } else { false } }.count > 50 })
        let clock = ContinuousClock()
        let started = clock.now
        if second.state == .running { try second.stop() }
        #expect(clock.now - started < .seconds(2))
        #expect(second.state == .stopped || second.state == .crashed)
    }
}
