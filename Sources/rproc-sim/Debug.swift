import ArgumentParser
import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import Virtio
import RPMsg
import Scenario
import Synchronization

/// Set by SIGINT while `rproc-sim debug` runs.
private let interrupted = Atomic<Bool>(false)
/// Posted by the SIGINT handler (`sem_post` is async-signal-safe) for the thread that relays it.
private let interruptSignal = WakeSignal()

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot one firmware on the emulated core with a GDB server and watch it live.",
        discussion: """
            FIRMWARE is an ELF file, or the name of a program in Firmware/programs (built first \
            for --arch). The core is configured, loaded and started through the real remoteproc \
            core with the host's RPMsg on its first vdev; it waits halted at reset for \
            gdb-multiarch unless --no-wait. State changes, console lines, name-service \
            announcements, messages and crashes are printed as they happen; after a crash, the \
            board (state, vrings, trace) is printed. Ctrl-C (or --for) shuts everything down.
            """
    )

    @Argument(help: "An ELF file, or a Firmware/ program name such as 'echo'.")
    var firmware: String

    @Option(help: "The emulated CPU: \(FirmwareArchitecture.allCases.map(\.rawValue).joined(separator: ", ")).")
    var arch: String = FirmwareArchitecture.cortexM4.rawValue

    @Option(help: "The host stack to boot the firmware with: \(HostPersonality.allCases.map(\.rawValue).joined(separator: ", ")) (docs/host-personalities.md).")
    var host: HostPersonality = .default

    @Option(help: "Loopback port for gdb-multiarch (0 picks a free one).")
    var port: UInt16 = 3333

    @Flag(help: "Let the core run at once instead of waiting at reset for a debugger.")
    var noWait = false

    @Option(name: .customLong("for"), help: "Stop after this long (500ms, 10s, …); default: until Ctrl-C.")
    var duration: String?

    @Option(help: "Send TEXT to SERVICE once the firmware announced it (SERVICE:TEXT; repeatable, in order).")
    var send: [String] = []

    @Option(help: "Send each --send message this many times.")
    var `repeat`: Int = 1

    @Flag(help: "Also print kicks.")
    var verbose = false

    func validate() throws {
        guard FirmwareArchitecture(rawValue: arch) != nil else {
            throw ValidationError("unknown architecture '\(arch)'; use one of \(FirmwareArchitecture.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let duration, ScenarioParser.duration(duration) == nil { throw ValidationError("--for: '\(duration)' is not a duration such as 500ms or 10s") }
        for message in send where !message.contains(":") || message.hasPrefix(":") {
            throw ValidationError("--send '\(message)': write SERVICE:TEXT, e.g. rpmsg-echo:hello")
        }
        guard (1...100_000).contains(`repeat`) else { throw ValidationError("--repeat must be from 1 to 100000") }
    }

    func run() throws {
        // Ctrl-C must reach us even if whoever started us blocked SIGINT (the mask is inherited),
        // and before the board's threads start (they inherit this thread's mask).
        var interrupt = sigset_t()
        sigemptyset(&interrupt)
        sigaddset(&interrupt, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &interrupt, nil)
        interrupted.store(false, ordering: .relaxed)
        _ = interruptSignal   // made before the handler can run
        signal(SIGINT) { _ in
            interrupted.store(true, ordering: .relaxed)
            interruptSignal.signal()
        }
        defer { signal(SIGINT, SIG_DFL) }
        let architecture = FirmwareArchitecture(rawValue: arch)!
        let cpu: CPUArchitecture = architecture == .cortexM4 ? .cortexM4 : .rv32
        let path: String = try fileStep {
            if FileManager.default.fileExists(atPath: firmware) { return firmware }
            return try FirmwareBuilder.forThisPackage().build(program: firmware, architecture: architecture).path
        }
        let server = try GDBServer(architecture: cpu, options: DebuggerOptions(port: port, waitForDebugger: !noWait))
        defer { server.shutdown() }
        let board = try Board(firmware: EmulatedCPU(cpu, debugger: server))
        let processor = try board.makeProcessor(host: host)
        try processor.configure()
        try fileStep { try processor.load(path, from: FileImageStore()) }
        try processor.start()
        let rpmsg = try processor.makeHostRPMsg()
        if let rpmsg { board.trace.traceTraffic(of: rpmsg) }
        Terminal.line("▶ \(path) on an emulated \(cpu.rawValue)")
        Terminal.line("  gdb: listening on 127.0.0.1:\(server.port)\(noWait ? "" : "; the core waits halted at reset")")
        Terminal.line("       gdb-multiarch -q \(path) -ex 'target remote :\(server.port)'")
        Terminal.line("  Ctrl-C to stop.")
        fflush(nil)

        let clock = board.clock
        let end = duration.flatMap(ScenarioParser.duration).map { clock.now + $0 }
        // Ctrl-C wakes the loop's wait through this thread (a signal handler may not take locks).
        while interruptSignal.tryTake() {}   // left from an earlier run in this process
        let relay = try PlatformThread(name: "rproc-sigint") {
            interruptSignal.wait()
            board.trace.waiters.changed()
        }
        var shown = 0, announced = 0, crashShown = false
        var outbox = send.map { entry in
            let parts = entry.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            return (service: String(parts[0]), payload: Array(parts[1].utf8))
        }
        var endpoints: [String: RPMsgEndpoint] = [:]
        while !interrupted.load(ordering: .relaxed) && end.map({ clock.now < $0 }) ?? true {
            board.collectTraceBuffer()
            let (fresh, recorded) = board.trace.events(after: shown)
            for event in fresh where verbose || !event.isKick { Terminal.line("  \(event)") }
            shown = recorded
            if let rpmsg {
                let services = rpmsg.announcedServices
                for service in services.dropFirst(announced) { Terminal.line("  service \"\(visibleText(service.name))\" at \(service.address)") }
                announced = max(announced, services.count)
                // Send what is due, in order, once its service is there.
                while let next = outbox.first {
                    guard processor.state == .running else { break }
                    if endpoints[next.service] == nil, let address = services.first(where: { $0.name == next.service })?.address {
                        endpoints[next.service] = try? rpmsg.createEndpoint(destination: address) { _ in }
                    }
                    guard let endpoint = endpoints[next.service] else { break }
                    do {
                        for _ in 0..<`repeat` { try endpoint.send(next.payload, timeout: .seconds(2)) }
                    } catch {
                        Terminal.line("  send to \(next.service) failed: \(error)")
                    }
                    outbox.removeFirst()
                }
            }
            if processor.state == .crashed && !crashShown {
                crashShown = true
                Terminal.line("  the remote crashed; the board now:")
                for line in board.inspector.dump().split(separator: "\n") { Terminal.line("    " + line) }
            }
            fflush(nil)
            // Until something happens on the board (or in its trace buffer), Ctrl-C or the end.
            _ = board.trace.waiters.wait(clock: clock, until: end) {
                board.collectTraceBuffer()
                return interrupted.load(ordering: .relaxed) || board.trace.recordedCount != shown
            }
        }
        interruptSignal.signal()
        relay.join()
        rpmsg?.close()
        if processor.state != .offline { try processor.shutdown() }
        Terminal.line("■ \(interrupted.load(ordering: .relaxed) ? "interrupted" : "done"): state \(processor.state)")
    }
}

extension TraceEvent {
    var isKick: Bool {
        switch kind {
        case .kickToHost, .kickToRemote: true
        default: false
        }
    }
}
