import Foundation
import MetalIO
import Remoteproc
import RPMsg
import Synchronization
import Testing
import Virtio

/// Kicks in both directions, delivered when the test pumps them, by notify id, to the other
/// side's remoteproc notification entry — as a mailbox would.
final class Mailbox: Sendable {
    private let queues = MetalMutex<(toRemote: [NotifyID], toHost: [NotifyID])>(([], []))
    func kick(toRemote: Bool, _ id: NotifyID) { queues.withLock { toRemote ? $0.toRemote.append(id) : $0.toHost.append(id) } }
    func take() -> (toRemote: [NotifyID], toHost: [NotifyID]) {
        queues.withLock { q in
            defer { q = ([], []) }
            return q
        }
    }
    let delivered = MetalMutex<[NotifyID]>([])
}

/// One side's platform: the board's memories (shared by both sides) and a mailbox.
final class MailboxPlatform: RemoteprocOps {
    let mailbox: Mailbox
    let isHost: Bool
    init(mailbox: Mailbox, isHost: Bool) {
        self.mailbox = mailbox
        self.isHost = isHost
    }
    func start(bootAddress: DeviceAddress) throws {}
    func stop() throws {}
    func notify(_ id: NotifyID) throws { mailbox.kick(toRemote: isHost, id) }
}

@Suite("Remoteproc virtio devices carry RPMsg")
struct RemoteprocRPMsgTests {
    static func memories() throws -> [RemoteprocMemory] {
        func make(_ name: String, _ da: UInt64, _ pa: UInt64, _ size: Int, pool: Bool) throws -> RemoteprocMemory {
            let memory = try SharedMemory(size: size)
            return RemoteprocMemory(name: name, physicalAddress: PhysicalAddress(pa), deviceAddress: DeviceAddress(da),
                                    region: try IORegion(name: name, memory: memory, physicalBase: PhysicalAddress(pool ? da : pa)), isAllocationPool: pool)
        }
        return [try make("code", 0, 0x1000_0000, 64 << 10, pool: false), try make("sram", 0x2000_0000, 0x1004_0000, 64 << 10, pool: false),
                try make("shared", 0x3000_0000, 0x9000_0000, 1 << 20, pool: true)]
    }

    @Test("the host's vdev from the table and the remote's view of the same entry exchange RPMsg, kicks routed by notify id")
    func endToEnd() throws {
        let memories = try Self.memories()
        let mailbox = Mailbox()
        let table = try ResourceTable(entries: [
            .vdev(VirtioDeviceResource(deviceFeatures: [.rpmsgNameService, .ringEventIndex],
                                       vrings: [VringResource(count: 16), VringResource(count: 16)])),
        ])
        let image = ELFWriter.image(segments: [.init(address: 0, bytes: [0, 0, 0, 0])], entry: 0, resourceTable: (0x2000_0000, table.bytes))

        let host = try RemoteProcessor(ops: MailboxPlatform(mailbox: mailbox, isHost: true))
        for memory in memories { host.addMemory(memory) }
        try host.configure()
        try host.load("fw", from: MemoryImageStore(["fw": image]))
        try host.start()
        let hostVdev = try host.createVirtio(index: 0, role: .driver)
        let shared = try #require(host.memory(named: "shared"))
        let window = BufferWindow(region: shared.region, deviceBase: shared.deviceAddress)
        let pool = try host.allocateDeviceMemory(size: 32 * 512, purpose: "rpmsg buffers")
        let hostRPMsg = try RPMsgDevice(host: hostVdev.transport, window: window, pool: pool.offset..<(pool.offset + pool.size))

        // The remote's own remoteproc instance attaches to the table the host completed.
        let remote = try RemoteProcessor(ops: MailboxPlatform(mailbox: mailbox, isHost: false))
        for memory in memories { remote.addMemory(memory) }
        try remote.configure()
        try remote.setResourceTable(at: DeviceAddress(0x2000_0000), size: table.bytes.count)
        let remoteVdev = try remote.createVirtio(index: 0, role: .device, driverTimeout: .seconds(1))
        #expect(remoteVdev.vrings.map(\.notifyID) == hostVdev.vrings.map(\.notifyID))
        let remoteRPMsg = try RPMsgDevice(remote: remoteVdev.transport, window: window)
        #expect(remoteRPMsg.features == [.rpmsgNameService, .ringEventIndex])

        func pump() {
            for _ in 0..<10 {
                let (toRemote, toHost) = mailbox.take()
                for id in toRemote { remote.handleNotification(id) }
                for id in toHost { host.handleNotification(id) }
                mailbox.delivered.withLock { $0 += toRemote + toHost }
            }
        }

        _ = try remoteRPMsg.createEndpoint(name: "rpmsg-echo") { message in
            try? remoteRPMsg.send(message.payload, from: message.destination, to: message.source, timeout: .seconds(1))
        }
        let announced = MetalMutex<RPMsgAddress?>(nil)
        hostRPMsg.onNameServiceAnnouncement { name, address in if name == "rpmsg-echo" { announced.withLock { $0 = address } } }
        pump()
        let service = try #require(announced.withLock { $0 })
        let replies = MetalMutex<[[UInt8]]>([])
        let client = try hostRPMsg.createEndpoint(destination: service) { message in replies.withLock { $0.append(message.payload) } }
        for i in 0..<50 {
            try client.send(Array("hello \(i)".utf8), timeout: .seconds(1))
            pump()
        }
        #expect(replies.withLock { $0 } == (0..<50).map { Array("hello \($0)".utf8) })
        // Every kick carried a vring's notify id from the table, never the vdev's own.
        let ids = Set(hostVdev.vrings.map(\.notifyID))
        #expect(mailbox.delivered.withLock { $0 }.allSatisfy { ids.contains($0) || $0 == hostVdev.notifyID })
        #expect(hostRPMsg.statistics.malformedTotal == 0 && remoteRPMsg.statistics.malformedTotal == 0)
        try host.shutdown()
    }

    @Test("a crash wakes a sender blocked for a buffer with an error, at once", .timeLimit(.minutes(1)))
    func crashWakesSender() throws {
        let memories = try Self.memories()
        let mailbox = Mailbox()
        let table = try ResourceTable(entries: [
            .vdev(VirtioDeviceResource(deviceFeatures: [.rpmsgNameService], vrings: [VringResource(count: 16), VringResource(count: 16)])),
        ])
        let image = ELFWriter.image(segments: [.init(address: 0, bytes: [0])], entry: 0, resourceTable: (0x2000_0000, table.bytes))
        let host = try RemoteProcessor(ops: MailboxPlatform(mailbox: mailbox, isHost: true))
        for memory in memories { host.addMemory(memory) }
        try host.configure()
        try host.load("fw", from: MemoryImageStore(["fw": image]))
        try host.start()
        let shared = try #require(host.memory(named: "shared"))
        let pool = try host.allocateDeviceMemory(size: 32 * 512, purpose: "rpmsg buffers")
        let rpmsg = try RPMsgDevice(host: try host.createVirtio(index: 0, role: .driver).transport,
                                    window: BufferWindow(region: shared.region, deviceBase: shared.deviceAddress),
                                    pool: pool.offset..<(pool.offset + pool.size))
        let endpoint = try rpmsg.createEndpoint(destination: RPMsgAddress(1024)) { _ in }
        for i in 0..<16 { try endpoint.trySend([UInt8(i)]) }   // nobody consumes: every buffer is out
        let crasher = Thread {
            usleep(50_000)
            try? host.reportCrash(CrashReport(kind: .fault, message: "test"))
        }
        crasher.start()
        let clock = ContinuousClock()
        let start = clock.now
        let error = try #require({ () -> RPMsgError? in
            do { try endpoint.send([99], timeout: .seconds(30)); return nil } catch { return error as? RPMsgError }
        }())
        #expect(error.kind == .deviceClosed)
        #expect(clock.now - start < .seconds(5))
        #expect(rpmsg.isClosed)
    }
}
