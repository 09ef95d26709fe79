import FirmwareKit
import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import TestSupport
import Virtio

/// What a remote sees of the host's start-up, from the board's trace: every write into the vdev
/// entry and every kick to the remote, in order, up to the first message from the remote.
enum StartupStep: Equatable, CustomStringConvertible {
    case status(UInt8, available: [UInt16])
    case features(UInt32)
    case vringAddress(Int)
    case kick(NotifyID)

    var description: String {
        switch self {
        case let .status(s, available): "status 0x\(String(s, radix: 16)) avail \(available)"
        case let .features(f): "gfeatures 0x\(String(f, radix: 16))"
        case let .vringAddress(k): "vring\(k) da"
        case let .kick(id): "kick \(id)"
        }
    }

    static func sequence(_ trace: Trace) -> [StartupStep] {
        var steps: [StartupStep] = []
        for event in trace.events {
            switch event.kind {
            case let .vdevWrite(write):
                switch write.kind {
                case let .status(status, available): steps.append(.status(status.rawValue, available: available))
                case let .features(features): steps.append(.features(features.rawValue))
                case let .vringAddress(vring, _): steps.append(.vringAddress(vring))
                case .config: break
                }
            case let .kickToRemote(id): steps.append(.kick(id))
            case .message: return steps
            default: break
            }
        }
        return steps
    }
}

/// A native firmware image and board under `host`, started, with the host's RPMsg on it.
private func nativeBoard(_ firmware: any FirmwareProgram, host: HostPersonality, image: [UInt8]) throws -> (Board, RemoteProcessor, RPMsgDevice) {
    let board = try Board(firmware: firmware)
    let processor = try board.makeProcessor(host: host)
    try processor.configure()
    try processor.load("fw", from: MemoryImageStore(["fw": image]))
    try processor.start()
    return (board, processor, try #require(try processor.makeHostRPMsg()))
}

/// Sends `count` messages of every length from 1 to 496 bytes and checks each echo byte for byte.
private func echoes(_ rpmsg: RPMsgDevice, service: RPMsgAddress, count: Int) throws -> Int {
    let reply = MetalMutex<[UInt8]?>(nil)
    let got = WakeSignal()
    let client = try rpmsg.createEndpoint(destination: service) { m in
        reply.withLock { $0 = m.payload }
        got.signal()
    }
    defer { client.destroy() }
    var ok = 0
    for i in 0..<count {
        let length = 1 + i % 496
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
        try client.send(payload, timeout: .seconds(5))
        guard got.wait(timeout: .seconds(5)) else { Issue.record("no reply to message \(i)"); break }
        guard reply.withLock({ $0 }) == payload else { Issue.record("reply \(i) differs"); break }
        ok += 1
    }
    return ok
}

/// The `linkwait` program's ELF with its vdev's notify id patched to `id` (its table gives the
/// vdev vring 0's id, 0, which an OpenAMP host refuses).
private func linkwaitWithVdevID(_ id: UInt8, _ architecture: FirmwareArchitecture) throws -> URL {
    let elf = try FirmwareBuilder.forThisPackage().build(program: "linkwait", architecture: architecture)
    var bytes = try [UInt8](Data(contentsOf: elf))
    // The vdev entry: type 3, id 7, notifyid 0, dfeatures NS — once in the file.
    let pattern: [UInt8] = [3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    let hits = (0...(bytes.count - pattern.count)).filter { Array(bytes[$0..<($0 + pattern.count)]) == pattern }
    try #require(hits.count == 1, "the vdev entry appears \(hits.count) times")
    bytes[hits[0] + 8] = id
    let patched = URL(fileURLWithPath: TestScratch.path("linkwait-vdev\(id)-\(architecture).elf"))
    try Data(bytes).write(to: patched)
    return patched
}

@Suite("Host personalities")
struct HostPersonalityTests {
    @Test("linux: status 0 → 0x1 → 0x3, gfeatures, both vring addresses, 0x7 with 256 buffers posted, then one kick of vring 0 — no vdev kick",
          .timeLimit(.minutes(1)))
    func linuxStartup() throws {
        let (board, processor, rpmsg) = try nativeBoard(EchoFirmware(), host: .linux, image: try NativeImage.make())
        #expect(waitUntil { rpmsg.announcedServices.contains { $0.name == "rpmsg-echo" } })
        let steps = StartupStep.sequence(board.trace)
        #expect(steps == [
            .status(0x00, available: [0, 0]), .status(0x01, available: [0, 0]), .status(0x03, available: [0, 0]),
            .features(0x2000_0001), .vringAddress(0), .vringAddress(1),
            .status(0x07, available: [256, 0]),
            .kick(0),
        ], "\(steps)")
        guard case let .vdev(vdev) = processor.installedResourceTable?.table.entries[0] else { Issue.record("no vdev"); return }
        #expect(vdev.notifyID == .any && vdev.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1)])
        #expect(try echoes(rpmsg, service: try #require(rpmsg.announcedServices.first?.address), count: 300) == 300)
        try processor.shutdown()
    }

    @Test("openamp: gfeatures = every offered bit + kick of the vdev id, DRIVER_OK alone (0x4) with 256 buffers posted + kick of the vdev id; no vring kick",
          .timeLimit(.minutes(1)))
    func openampStartup() throws {
        let image = try NativeImage.make(features: .rpmsgNameService, notifyIDs: [NotifyID(3), .any, .any],
                                         vringAddresses: [ResourceAddress(0x3000_0000), ResourceAddress(0x3000_4000)])
        let (board, processor, rpmsg) = try nativeBoard(EchoFirmware(), host: .openamp, image: image)
        #expect(waitUntil { rpmsg.announcedServices.contains { $0.name == "rpmsg-echo" } })
        let steps = StartupStep.sequence(board.trace)
        #expect(steps == [.features(0x1), .kick(3), .status(0x04, available: [256, 0]), .kick(3)], "\(steps)")
        guard case let .vdev(vdev) = processor.installedResourceTable?.table.entries[0] else { Issue.record("no vdev"); return }
        // OpenAMP allocates in table order after the fixed vdev id: vring 0 takes 0, vring 1 takes 1.
        #expect(vdev.notifyID == NotifyID(3) && vdev.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1)])
        #expect(try echoes(rpmsg, service: try #require(rpmsg.announcedServices.first?.address), count: 300) == 300)
        try processor.shutdown()
    }

    @Test("openamp echoes every offered feature and warns that its own queues never use EVENT_IDX")
    func openampEventIndexWarning() throws {
        let image = try NativeImage.make(vringAddresses: [ResourceAddress(0x3000_0000), ResourceAddress(0x3000_4000)])
        let (board, processor, rpmsg) = try nativeBoard(EchoFirmware(), host: .openamp, image: image)
        #expect(rpmsg.features == [.rpmsgNameService, .ringEventIndex])
        #expect(board.trace.events.contains { if case let .warning(w) = $0.kind { w.contains("never use event indices") } else { false } })
        try processor.shutdown()
    }

    @Test("linux: 16-entry vrings get 16 receive buffers; a 512-entry receive vring gets 256 (MAX_RPMSG_NUM_BUFS / 2)", .timeLimit(.minutes(1)))
    func linuxBufferCounts() throws {
        for (count, posted) in [(UInt32(16), UInt16(16)), (512, 256)] {
            let (board, processor, rpmsg) = try nativeBoard(EchoFirmware(), host: .linux, image: try NativeImage.make(vringCount: count))
            _ = rpmsg
            let ready = StartupStep.sequence(board.trace).first { if case .status(0x07, _) = $0 { true } else { false } }
            #expect(ready == .status(0x07, available: [posted, 0]), "vring of \(count)")
            try processor.shutdown()
        }
    }

    @Test("linkwait (waits for the first kick of its transmit ring, vendor table with the vdev's id = vring 0's) links up and echoes 10,000 messages of every length under linux and the default",
          .timeLimit(.minutes(3)), arguments: FirmwareArchitecture.allCases)
    func linkwaitUnderLinux(architecture: FirmwareArchitecture) throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "linkwait", architecture: architecture)
        for host in [HostPersonality.linux, .default] {
            let board = try Board(firmware: EmulatedCPU(architecture.cpu))
            let processor = try board.makeProcessor(host: host)
            try processor.configure()
            try processor.load(elf.path, from: FileImageStore())
            try processor.start()
            let rpmsg = try #require(try processor.makeHostRPMsg())
            #expect(waitUntil { rpmsg.announcedServices.contains { $0.name == "rpmsg-echo" } },
                    "no link: \(board.trace.consoleLines)")
            #expect(board.trace.consoleLines.contains("linkwait: link up (the host kicked the transmit ring, id 0)"), "\(board.trace.consoleLines)")
            let service = try #require(rpmsg.announcedServices.first?.address)
            #expect(try echoes(rpmsg, service: service, count: 10_000) == 10_000)
            try processor.shutdown()
        }
    }

    @Test("linkwait's vendor table is refused by an OpenAMP host, naming the host and the rule")
    func linkwaitRefusedByOpenAMP() throws {
        let elf = try FirmwareBuilder.forThisPackage().build(program: "linkwait", architecture: .cortexM4)
        let board = try Board(firmware: EmulatedCPU(.cortexM4))
        let processor = try board.makeProcessor(host: .openamp)
        try processor.configure()
        let error = try #require(throws: RemoteprocError.self) { try processor.load(elf.path, from: FileImageStore()) }
        guard case let .refusedByHost(violation) = error.kind else { Issue.record("\(error)"); return }
        #expect(violation.host == .openamp && violation.rule == .notifyIDTakenTwice)
        #expect("\(error)".contains("vring 0's notify id 0 is already the vdev's") && "\(error)".contains("host: linux"), "\(error)")
        #expect(processor.state == .configured)
    }

    @Test("under openamp (no kick of the transmit ring) linkwait never links up and says why", .timeLimit(.minutes(1)),
          arguments: FirmwareArchitecture.allCases)
    func linkwaitNeverLinksUnderOpenAMP(architecture: FirmwareArchitecture) throws {
        let elf = try linkwaitWithVdevID(2, architecture)
        defer { try? FileManager.default.removeItem(at: elf) }
        let board = try Board(firmware: EmulatedCPU(architecture.cpu))
        let processor = try board.makeProcessor(host: .openamp)
        try processor.configure()
        try processor.load(elf.path, from: FileImageStore())
        try processor.start()
        let rpmsg = try #require(try processor.makeHostRPMsg())
        // The firmware reports every 100 ms; wait for a report made after the host set DRIVER_OK
        // (the host may be slow to get there on a loaded machine), then for two more.
        #expect(waitUntil(.seconds(20)) { board.trace.consoleLines.contains { $0.contains("still no link up") && $0.hasSuffix("vdev status 0x04") } },
                "\(board.trace.consoleLines)")
        let after = board.trace.consoleLines.count
        #expect(waitUntil(.seconds(20)) { board.trace.consoleLines.count >= after + 2 })
        #expect(rpmsg.announcedServices.isEmpty, "announced without the kick")
        #expect(!board.trace.consoleLines.contains { $0.hasPrefix("linkwait: link up") })
        #expect(StartupStep.sequence(board.trace) == [.features(0x1), .kick(2), .status(0x04, available: [256, 0]), .kick(2)])
        try processor.shutdown()
    }

    @Test("linux: stopping writes status 0 then 0x01 (the driver's removal) before the core stops")
    func linuxStop() throws {
        let (board, processor, rpmsg) = try nativeBoard(EchoFirmware(), host: .linux, image: try NativeImage.make())
        #expect(waitUntil { !rpmsg.announcedServices.isEmpty })
        try processor.stop()
        let last = board.trace.events.compactMap { if case let .vdevWrite(w) = $0.kind, case let .status(s, _) = w.kind { s.rawValue } else { nil } }.suffix(2)
        #expect(Array(last) == [0x00, 0x01])
        try processor.shutdown()
    }
}
