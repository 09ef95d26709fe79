import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import RPMsg
import Synchronization
import Testing
import Virtio

/// An image for native firmware: a little code and the resource table the board's C firmware
/// carries (an RPMsg vdev with ANY vrings and a trace buffer).
func nativeImage(vringCount: UInt32 = 256) throws -> [UInt8] {
    let table = try ResourceTable(entries: [
        .vdev(VirtioDeviceResource(deviceFeatures: [.rpmsgNameService, .ringEventIndex],
                                   vrings: [VringResource(count: vringCount), VringResource(count: vringCount)])),
        .trace(TraceResource(deviceAddress: ResourceAddress(0x2000_1000), length: 1024, name: "trace")),
    ])
    return ELFWriter.image(segments: [.init(address: 0, bytes: [0x00, 0x20, 0x04, 0x20, 0x41, 0, 0, 0])], entry: 0x41,
                           resourceTable: (0x2000_0000, table.bytes))
}

/// The host side of RPMsg over a running board's first vdev.
func hostRPMsg(_ processor: RemoteProcessor) throws -> RPMsgDevice {
    let vdev = try processor.createVirtio(index: 0, role: .driver)
    let shared = try #require(processor.memory(named: "shared"))
    let pool = try processor.allocateDeviceMemory(size: 512 * 512, purpose: "rpmsg buffers")
    return try RPMsgDevice(host: vdev, window: BufferWindow(region: shared.region, deviceBase: shared.deviceAddress.rawValue),
                           pool: pool.offset..<(pool.offset + pool.size))
}

@Suite("Board")
struct BoardTests {
    @Test("native echo firmware through the real core: announce, 10,000 echoes with content checked, stop while waiting", .timeLimit(.minutes(2)))
    func echo() throws {
        let board = try Board(firmware: EchoFirmware())
        let processor = try board.makeProcessor()
        try processor.configure()
        try processor.load("echo", from: MemoryImageStore(["echo": try nativeImage()]))
        try processor.start()
        #expect(board.isRunning)
        let rpmsg = try hostRPMsg(processor)
        let announced = Mutex<RPMsgAddress?>(nil)
        let ready = WakeSignal()
        rpmsg.onNameServiceAnnouncement { name, address in
            if name == "rpmsg-echo" { announced.withLock { $0 = address }; ready.signal() }
        }
        #expect(ready.wait(timeout: .seconds(10)), "no announcement")
        let service = try #require(announced.withLock { $0 })
        let replies = Mutex<[[UInt8]]>([])
        let got = WakeSignal()
        let client = try rpmsg.createEndpoint(destination: service) { message in
            replies.withLock { $0.append(message.payload) }
            got.signal()
        }
        for i in 0..<10_000 {
            let payload = Array("echo \(i) ".utf8) + [UInt8](repeating: UInt8(i & 0xFF), count: i % 400)
            try client.send(payload, timeout: .seconds(5))
            guard got.wait(timeout: .seconds(5)) else { Issue.record("no reply to \(i)"); break }
            guard replies.withLock({ $0.last }) == payload else { Issue.record("reply \(i) differs"); break }
        }
        #expect(replies.withLock { $0.count } == 10_000)
        // The firmware waits in WAIT now: stop must halt it promptly.
        let clock = ContinuousClock()
        let start = clock.now
        try processor.stop()
        #expect(clock.now - start < .seconds(2))
        #expect(!board.isRunning)
        #expect(processor.state == .stopped)
        try processor.shutdown()
        #expect(processor.state == .offline)
    }
}
