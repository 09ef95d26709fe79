import Foundation
import MetalIO
import RPMsg
import Synchronization
import Testing
import Virtio

@Suite("RPMsg close")
struct RPMsgCloseTests {
    @Test("once close() returns, the device never writes the rings again, even while another thread drains them",
          .timeLimit(.minutes(2)))
    func closeStopsRingWrites() throws {
        // A recovery puts a new host device on the same rings; an old one still reposting
        // receive buffers after its close would corrupt them (found as a lost re-announcement).
        let layout = try VringLayout(count: 256, alignment: 4096)
        for round in 0..<60 {
            let pair = try RPMsgLoopback(interruptThreads: false)
            defer { pair.shutdown() }
            // 200 messages wait in the host's receive ring; draining reposts each buffer.
            let sender = try pair.remote.createEndpoint(destination: RPMsgAddress(4000)) { _ in }
            for i in 0..<200 { try sender.trySend([UInt8(truncatingIfNeeded: i)]) }
            let started = Atomic<Bool>(false)
            let drained = WakeSignal()
            let drainer = Thread(block: {
                started.store(true, ordering: .releasing)
                pair.hostTransport.poll()
                drained.signal()
            })
            drainer.start()
            while !started.load(ordering: .acquiring) { usleep(10) }
            usleep(UInt32(round % 8) * 20)
            pair.host.close()
            let atClose = try pair.window.region.readBytes(at: 0, count: layout.byteSize)
            #expect(drained.wait(timeout: .seconds(10)))
            let afterDrain = try pair.window.region.readBytes(at: 0, count: layout.byteSize)
            let unchanged = atClose == afterDrain
            func availIndex(_ bytes: [UInt8]) -> Int { Int(bytes[layout.availIndex]) | Int(bytes[layout.availIndex + 1]) << 8 }
            #expect(unchanged, "round \(round): the host's receive ring changed after close() returned (avail idx \(availIndex(atClose)) → \(availIndex(afterDrain)))")
        }
    }
}
