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
            board (state, vrings, trace) is printed and a core dump is written (--core-out). \
            Ctrl-C (or --for) shuts everything down.

            With --core FILE, serves that core dump instead — read-only: registers, memory and \
            `monitor state/vrings/console/trace` as they were — for gdb-multiarch with the \
            firmware's ELF (FIRMWARE or --elf; a different build is refused). Exit status 2 when \
            the core file or the ELF cannot be used.
            """
    )

    @Argument(help: "An ELF file, or a Firmware/ program name such as 'echo' (with --core: the firmware's ELF, optional).")
    var firmware: String?

    @Option(help: "Serve this core dump (read-only) instead of running firmware.")
    var core: String?

    @Option(help: "With --core: the firmware's ELF, checked against the dump's fingerprint.")
    var elf: String?

    @Flag(help: "With --core: serve the dump even when the ELF is another build than the one that ran.")
    var allowMismatch = false

    @Option(help: "Where to write the core dump when the remote crashes (default: FIRMWARE's name with .core, in the current folder).")
    var coreOut: String?

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
        if core == nil && firmware == nil { throw ValidationError("name the FIRMWARE to run, or a core dump to serve with --core") }
        if core != nil, elf != nil, firmware != nil { throw ValidationError("--core: give the firmware's ELF once (FIRMWARE or --elf)") }
        if core == nil && (elf != nil || allowMismatch) { throw ValidationError("--elf and --allow-mismatch go with --core") }
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
        installInterruptHandler()
        defer { signal(SIGINT, SIG_DFL) }
        if let core { return try serveCore(core) }
        try runFirmware(firmware!)
    }

    private func installInterruptHandler() {
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
    }

    /// Until Ctrl-C or the end of --for.
    private func waitForTheEnd(_ clock: any WaitClock) {
        let end = duration.flatMap(ScenarioParser.duration).map { clock.now + $0 }
        while !interrupted.load(ordering: .relaxed) && end.map({ clock.now < $0 }) ?? true {
            _ = clock.wait(for: interruptSignal, until: end)
        }
    }

    /// `--core`: the dump, checked against the ELF, served until Ctrl-C.
    private func serveCore(_ path: String) throws {
        let dump: CoreDump = try fileStep { try CoreDumpFile.read(path) }
        guard let cpu = dump.cpu else {
            Terminal.error("error: \(CoreDumpError(.noRegisters, path: path))")
            throw ExitCode(2)
        }
        let elfPath = elf ?? firmware
        if let elfPath {
            let image = try fileStep { try ELFImage.read(elfPath, from: FileImageStore()) }
            let expected: ELFMachine = cpu.architecture == .cortexM4 ? .arm : .riscv
            guard image.header.machine == expected else {
                Terminal.error("error: \(elfPath) is \(image.header.machine) firmware, but the core \(path) is of an emulated \(cpu.architecture.rawValue)")
                throw ExitCode(2)
            }
            switch dump.matches(image, store: FileImageStore()) {
            case false?:
                let recorded = dump.info.firmware.map { "\($0.path)" } ?? "another image"
                let message = "\(elfPath) is not the firmware that ran: the core was written for \(recorded), whose code differs (\(dump.info.firmware?.fingerprint.map { "\($0)" } ?? ""))"
                guard allowMismatch else {
                    Terminal.error("error: " + message + "; use the ELF of that build, or --allow-mismatch to serve the dump anyway")
                    throw ExitCode(2)
                }
                Terminal.error("warning: " + message)
            case nil: Terminal.error("warning: the core holds no fingerprint of its firmware; \(elfPath) cannot be checked against it")
            case true?: break
            }
        }
        let server = try GDBServer(core: dump, port: port)
        defer { server.shutdown() }
        let why = dump.info.crash.map { "\($0.kind): \($0.message)" } ?? dump.info.reason.rawValue
        Terminal.line("▶ core dump \(path): an emulated \(cpu.architecture.rawValue), \(why), pc \(hex(UInt64(cpu.programCounter)))")
        if let firmware = dump.info.firmware { Terminal.line("  firmware when it ran: \(firmware.path)") }
        if !cpu.isProgramCounterExact { Terminal.error("warning: " + CoreDump.inexactPCNote) }
        Terminal.line("  gdb: listening on 127.0.0.1:\(server.port) (read-only)")
        Terminal.line("       gdb-multiarch -q \(elfPath ?? dump.info.firmware?.path ?? "FIRMWARE.elf") -ex 'target remote :\(server.port)'")
        Terminal.line("  Ctrl-C to stop.")
        fflush(nil)
        waitForTheEnd(RealTimeClock.shared)
        Terminal.line("■ \(interrupted.load(ordering: .relaxed) ? "interrupted" : "done")")
    }

    private func runFirmware(_ firmware: String) throws {
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
                let out = coreOut ?? ((path as NSString).lastPathComponent as NSString).deletingPathExtension + ".core"
                do {
                    let size = try board.writeCoreDump(to: out)
                    Terminal.line("  core dump written to \(out) (\(size) bytes); open it with:")
                    Terminal.line("       rproc-sim debug --core \(out) \(path)")
                } catch {
                    Terminal.error("error: the core dump could not be written: \(error)")
                }
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
