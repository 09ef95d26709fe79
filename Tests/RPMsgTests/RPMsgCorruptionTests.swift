import Foundation
import MetalIO
@testable import RPMsg
import Synchronization
import Testing
import Virtio

/// Malformed data from the peer: dropped, counted, and the traffic after it still flows.
@Suite("RPMsg with a misbehaving peer")
struct RPMsgCorruptionTests {
    /// A poll-mode pair with a receiver on each side (remote 100, host 200).
    struct Fixture {
        let pair: RPMsgPair
        let remoteInbox = Inbox()
        let hostInbox = Inbox()
        let toRemote: RPMsgEndpoint
        let toHost: RPMsgEndpoint

        init() throws {
            pair = try RPMsgPair(interruptThreads: false, vringCount: 16)
            let remoteInbox = remoteInbox, hostInbox = hostInbox
            toHost = try pair.remote.createEndpoint(address: RPMsgAddress(100), destination: RPMsgAddress(200)) { remoteInbox.append($0) }
            toRemote = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { hostInbox.append($0) }
        }

        var region: IORegion { pair.window.region }

        /// The region offset of the buffer the last chain published on `vring` points at.
        func lastAvailableBuffer(vring: Int) throws -> (descriptor: Int, buffer: Int) {
            let location = pair.hostTransport.vringLocations[vring]
            let layout = try VringLayout(count: location.count, alignment: location.alignment)
            let index = Int(try region.read(UInt16.self, at: location.offset + layout.availIndex))
            let head = Int(try region.read(UInt16.self, at: location.offset + layout.availRing((index - 1) & (layout.count - 1))))
            let descriptor = location.offset + layout.descriptor(head)
            let address = try region.read(UInt64.self, at: descriptor)
            return (descriptor, Int(address - RPMsgPair.sharedBase.rawValue))
        }

        /// The region offset of the last used element on `vring`.
        func lastUsedElement(vring: Int) throws -> Int {
            let location = pair.hostTransport.vringLocations[vring]
            let layout = try VringLayout(count: location.count, alignment: location.alignment)
            let index = Int(try region.read(UInt16.self, at: location.offset + layout.usedIndex))
            return location.offset + layout.usedRing((index - 1) & (layout.count - 1))
        }

        /// Sends one good message each way and checks both arrive.
        func expectTrafficFlows(sourceLocation: SourceLocation = #_sourceLocation) throws {
            let (remoteBefore, hostBefore) = (remoteInbox.count, hostInbox.count)
            try toRemote.send(Array("after".utf8), timeout: .seconds(1))
            pair.pump()
            try toHost.send(Array("after".utf8), timeout: .seconds(1))
            pair.pump()
            #expect(remoteInbox.count == remoteBefore + 1, sourceLocation: sourceLocation)
            #expect(hostInbox.count == hostBefore + 1, sourceLocation: sourceLocation)
            #expect(remoteInbox.all.last?.payload == Array("after".utf8), sourceLocation: sourceLocation)
            #expect(hostInbox.all.last?.payload == Array("after".utf8), sourceLocation: sourceLocation)
        }
    }

    @Test("host → remote: a header length beyond the buffer is dropped and counted")
    func oversizeHeaderToRemote() throws {
        let f = try Fixture()
        defer { f.pair.shutdown() }
        try f.toRemote.send([1, 2, 3])
        let (_, buffer) = try f.lastAvailableBuffer(vring: 1)
        try f.region.write(UInt16(0xFFFF), at: buffer + 12)
        f.pair.pump()
        #expect(f.remoteInbox.count == 0)
        #expect(f.pair.remote.statistics.droppedMalformedHeader == 1)
        try f.expectTrafficFlows()
    }

    @Test("remote → host: a header length beyond what the remote wrote is dropped and counted")
    func oversizeHeaderToHost() throws {
        let f = try Fixture()
        defer { f.pair.shutdown() }
        try f.toHost.send([1, 2, 3, 4])
        // The used element names the host receive descriptor the remote filled.
        let head = Int(try f.region.read(UInt32.self, at: try f.lastUsedElement(vring: 0)))
        let address = try f.region.read(UInt64.self, at: f.pair.hostTransport.vringLocations[0].offset + 16 * head)
        let buffer = try #require(f.pair.window.offset(of: DeviceAddress(address), length: 16))
        // The used length says 20 bytes were written; claim a 400-byte payload in the header.
        try f.region.write(UInt16(400), at: buffer + 12)
        f.pair.pump()
        #expect(f.hostInbox.count == 0)
        #expect(f.pair.host.statistics.droppedMalformedHeader == 1)
        try f.expectTrafficFlows()
    }

    @Test("remote → host: a used length beyond the receive buffer is dropped and counted")
    func usedLengthBeyondBuffer() throws {
        let f = try Fixture()
        defer { f.pair.shutdown() }
        try f.toHost.send([9])
        try f.region.write(UInt32(0x10_0000), at: try f.lastUsedElement(vring: 0) + 4)
        f.pair.pump()
        #expect(f.hostInbox.count == 0)
        #expect(f.pair.host.statistics.receiveQueueErrors.lengthBeyondBuffer == 1)
        try f.expectTrafficFlows()
    }

    @Test("host → remote: a descriptor pointing outside the shared window is dropped and counted")
    func descriptorOutsideWindow() throws {
        let f = try Fixture()
        defer { f.pair.shutdown() }
        try f.toRemote.send([5])
        let (descriptor, _) = try f.lastAvailableBuffer(vring: 1)
        try f.region.write(UInt64(0x1000), at: descriptor)
        f.pair.pump()
        #expect(f.remoteInbox.count == 0)
        #expect(f.pair.remote.statistics.receiveQueueErrors.bufferOutsideWindow == 1)
        try f.expectTrafficFlows()
        // The bad chain came back to the host, so none of its 16 transmit buffers is lost.
        for i in 0..<16 { try f.toRemote.trySend([UInt8(i)]) }
    }

    @Test("host → remote: an avail index jumping past the ring size is counted; traffic resumes once it is sane")
    func availIndexJump() throws {
        let f = try Fixture()
        defer { f.pair.shutdown() }
        try f.toRemote.send([1])
        let location = f.pair.hostTransport.vringLocations[1]
        let layout = try VringLayout(count: location.count, alignment: location.alignment)
        let good = try f.region.read(UInt16.self, at: location.offset + layout.availIndex)
        try f.region.write(good &+ 100, at: location.offset + layout.availIndex)
        f.pair.remote.handleNotification()
        #expect(f.remoteInbox.count == 0)
        #expect(f.pair.remote.statistics.receiveQueueErrors.indexJump >= 1)
        try f.region.write(good, at: location.offset + layout.availIndex)
        f.pair.pump()
        #expect(f.remoteInbox.count == 1)
        try f.expectTrafficFlows()
    }

    @Test("a malformed name-service message and a message to nobody are dropped and counted")
    func nameServiceAndUnknownEndpoint() throws {
        let f = try Fixture()
        defer { f.pair.shutdown() }
        let announced = MetalMutex(0)
        f.pair.host.onNameServiceAnnouncement { _, _ in announced.withLock { $0 += 1 } }
        try f.pair.remote.send([UInt8](repeating: 0x41, count: 39), from: RPMsgAddress(100), to: .nameService, timeout: .seconds(1))
        var bad = NameServiceMessage(name: "x", address: RPMsgAddress(100), action: .create).bytes
        bad[36] = 9
        try f.pair.remote.send(bad, from: RPMsgAddress(100), to: .nameService, timeout: .seconds(1))
        try f.pair.remote.send([1], from: RPMsgAddress(100), to: RPMsgAddress(4242), timeout: .seconds(1))
        f.pair.pump()
        let stats = f.pair.host.statistics
        #expect(stats.droppedMalformedNameService == 2)
        #expect(stats.droppedNoEndpoint == 1)
        #expect(announced.withLock { $0 } == 0)
        try f.expectTrafficFlows()
    }

    @Test("random garbage in both vrings never traps, hangs or reads outside the window")
    func garbage() throws {
        // A fresh base seed each run (more patterns over time), printed with any failure to replay it.
        let base = UInt64.random(in: 0...UInt64.max)
        for round in 0..<20 {
            let seed = base &+ UInt64(round)
            var random = SplitMix64(seed: seed)
            let f = try Fixture()
            defer { f.pair.shutdown() }
            try f.toRemote.send([UInt8(round)])
            try f.toHost.send([UInt8(round)])
            for vring in f.pair.hostTransport.vringLocations {
                let layout = try VringLayout(count: vring.count, alignment: vring.alignment)
                for _ in 0..<64 {
                    let at = vring.offset + Int.random(in: 0..<layout.byteSize, using: &random)
                    try f.region.write(UInt8.random(in: 0...255, using: &random), at: at)
                }
            }
            f.pair.pump()
            // Sending may fail (the rings are garbage) but must fail cleanly and at once.
            _ = try? f.toRemote.trySend([1])
            _ = try? f.toHost.trySend([1])
            f.pair.pump()
            // Garbage may replay buffers still in the window: a corrupt avail (or used) index
            // makes the device (or the driver) take up to a ring's worth of stale entries — never
            // more: an index that moved further is refused. So each inbox holds at most the two
            // real messages and one ring of replays.
            #expect(f.remoteInbox.count <= 16 + 2 && f.hostInbox.count <= 16 + 2,
                    "seed \(seed): \(f.remoteInbox.count) and \(f.hostInbox.count) messages")
        }
    }
}
