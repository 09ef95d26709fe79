import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import Virtio

extension FirmwareArchitecture {
    var cpu: CPUArchitecture { self == .cortexM4 ? .cortexM4 : .rv32 }
}

/// A board running the ELF of `Firmware/programs/NAME` on an emulated CPU, loaded and started.
func emulatedBoard(_ program: String, _ architecture: FirmwareArchitecture, pollMode: Bool = false) throws -> (Board, RemoteProcessor) {
    let elf = try FirmwareBuilder.forThisPackage().build(program: program, architecture: architecture)
    let board = try Board(firmware: EmulatedCPU(architecture.cpu), pollMode: pollMode)
    let processor = try board.makeProcessor()
    try processor.configure()
    try processor.load(elf.path, from: FileImageStore())
    try processor.start()
    return (board, processor)
}

func waitUntil(_ timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now > deadline { return false }
        usleep(500)
    }
    return true
}

@Suite("Emulated CPU")
struct EmulatedCPUTests {
    @Test("minimal firmware boots on the emulated core, prints, answers a kick, and stops while waiting",
          .timeLimit(.minutes(2)), arguments: FirmwareArchitecture.allCases)
    func minimal(architecture: FirmwareArchitecture) throws {
        let (board, processor) = try emulatedBoard("minimal", architecture)
        #expect(waitUntil { board.trace.consoleLines.contains("minimal: hello from \(architecture.rawValue)") },
                "console: \(board.trace.consoleLines), halt: \(String(describing: board.lastHalt))")
        // A host kick wakes the firmware, which kicks back on id 0.
        try board.notify(NotifyID(3))
        #expect(waitUntil { board.trace.events.contains { $0.kind == .kickToHost(0) } })
        let clock = ContinuousClock()
        let start = clock.now
        try processor.stop()
        #expect(clock.now - start < .seconds(2))
        #expect(board.lastHalt?.reason == .stopped)
        // The trace buffer the firmware filled reaches the trace too.
        #expect(board.trace.events.contains { if case let .console(line, true) = $0.kind { line.contains("minimal") } else { false } })
        try processor.shutdown()
        // Restart after stop: configure, load, start again on the same board.
        try processor.configure()
        try processor.load(try FirmwareBuilder.forThisPackage().build(program: "minimal", architecture: architecture).path, from: FileImageStore())
        try processor.start()
        #expect(waitUntil { board.trace.consoleLines.filter { $0.hasPrefix("minimal: hello") }.count >= 2 })
        try processor.shutdown()
    }
}

@Suite("Emulated firmware programs")
struct EmulatedProgramTests {
    /// Boots `program`, puts the host's RPMsg on its vdev and waits for `service` to be announced.
    func boot(_ program: String, _ architecture: FirmwareArchitecture, service: String = "rpmsg-echo") throws
        -> (Board, RemoteProcessor, RPMsgDevice, RPMsgAddress) {
        let (board, processor) = try emulatedBoard(program, architecture)
        let rpmsg = try hostRPMsg(processor)
        let found = waitUntil { rpmsg.announcedServices.contains { $0.name == service } }
        let address = try #require(found ? rpmsg.announcedServices.first { $0.name == service }?.address : nil,
                                   "no announcement of \(service); console \(board.trace.consoleLines), halt \(String(describing: board.lastHalt)), state \(processor.state)")
        return (board, processor, rpmsg, address)
    }

    @Test("echo: 10,000 messages with content checked through the real core and the emulated CPU", .timeLimit(.minutes(3)),
          arguments: FirmwareArchitecture.allCases)
    func echo(architecture: FirmwareArchitecture) throws {
        let (_, processor, rpmsg, service) = try boot("echo", architecture)
        let reply = Mutex<[UInt8]?>(nil)
        let got = WakeSignal()
        let client = try rpmsg.createEndpoint(destination: service) { m in
            reply.withLock { $0 = m.payload }
            got.signal()
        }
        var ok = 0
        for i in 0..<10_000 {
            let payload = Array("emulated \(i) ".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: i % 300)
            try client.send(payload, timeout: .seconds(5))
            guard got.wait(timeout: .seconds(5)) else { Issue.record("no reply to \(i)"); break }
            guard reply.withLock({ $0 }) == payload else { Issue.record("reply \(i) differs"); break }
            ok += 1
        }
        #expect(ok == 10_000)
        try processor.stop()
        try processor.shutdown()
    }
}
