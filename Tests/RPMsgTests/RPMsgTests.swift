import Foundation
import MetalIO
@testable import RPMsg
import Synchronization
import Testing
import Virtio

@Suite("RPMsg between a host and a remote in one process")
struct RPMsgTests {
    @Test("handshake: features negotiated, DRIVER_OK set, receive buffers posted; payload sizes as configured")
    func handshake() throws {
        var configuration = RPMsgConfiguration()
        configuration.hostToRemoteBufferSize = 256
        let pair = try RPMsgPair(interruptThreads: false, configuration: configuration)
        defer { pair.shutdown() }
        #expect(pair.host.features == [.rpmsgNameService, .ringEventIndex])
        #expect(pair.remote.features == pair.host.features)
        #expect(try pair.hostTransport.status().contains(.driverOK))
        #expect(pair.host.transmitPayloadSize == 240)
        #expect(pair.host.receivePayloadSize == 496)
        #expect(pair.remote.transmitPayloadSize == 496, "the host's receive buffers are 512 bytes")
        #expect(pair.remote.receivePayloadSize == 240)
    }

    @Test("the remote waits for DRIVER_OK with a timeout, and acknowledges NEEDS_RESET")
    func remoteHandshakeTimeout() throws {
        let memory = try SharedMemory(size: 1 << 16)
        let region = try IORegion(memory: memory, physicalBase: PhysicalAddress(0x3000_0000))
        let window = BufferWindow(region: region, deviceBase: DeviceAddress(0x3000_0000))
        let vrings = (0..<2).map { VringLocation(index: $0, notifyID: NotifyID(UInt32($0)), deviceAddress: DeviceAddress(0x3000_0000 + UInt64($0 * 0x1000)), region: region,
                                                 offset: $0 * 0x1000, count: 16, alignment: 16) }
        let (driver, transport) = try LoopbackTransport.makePair(vrings: vrings, features: [.rpmsgNameService], interruptThreads: false)
        try driver.setStatus(.needsReset)
        var configuration = RPMsgConfiguration()
        configuration.handshakeTimeout = .milliseconds(50)
        let error = try #require(rpmsgError { _ = try RPMsgDevice(remote: transport, window: window, configuration: configuration) })
        #expect(error.kind == .handshakeTimedOut(.milliseconds(50)))
        #expect(try driver.status() == [], "NEEDS_RESET was acknowledged with 0")
    }

    @Test("name service both ways: announce on create, bind, unbind on destroy")
    func nameService() throws {
        let pair = try RPMsgPair()
        defer { pair.shutdown() }
        let announced = MetalMutex<[(String, RPMsgAddress)]>([])
        pair.host.onNameServiceAnnouncement { name, address in announced.withLock { $0.append((name, address)) } }
        let echo = try pair.remote.createEndpoint(name: "rpmsg-echo") { message in
            _ = try? pair.remote.send(message.payload, from: RPMsgAddress(1024), to: message.source, timeout: .seconds(5))
        }
        #expect(echo.address == RPMsgAddress(1024))
        #expect(eventually { announced.withLock { $0.count } == 1 })
        #expect(announced.withLock { $0.first?.0 } == "rpmsg-echo")
        #expect(announced.withLock { $0.first?.1 } == RPMsgAddress(1024))

        // The host binds an endpoint to the announced service and talks to it.
        let inbox = Inbox()
        let unbound = MetalMutex(0)
        let client = try pair.host.createEndpoint(name: "rpmsg-echo", destination: RPMsgAddress(1024),
                                                  onUnbind: { _ in unbound.withLock { $0 += 1 } }) { inbox.append($0) }
        try client.send(Array("ping".utf8))
        #expect(inbox.wait(for: 1))
        #expect(inbox.all.first?.payload == Array("ping".utf8))
        #expect(inbox.all.first?.source == RPMsgAddress(1024))

        // The remote destroys its service: the host endpoint bound to it is unbound.
        echo.destroy()
        #expect(eventually { unbound.withLock { $0 } == 1 })
        #expect(client.destination == .any)
        #expect(!client.isReady)

        // And the other way: the host announces, the remote's endpoint with that name binds. A
        // Linux host announces only a channel it creates with a fixed local address.
        let remoteInbox = Inbox()
        let listener = try pair.remote.createEndpoint(name: "host-service", address: RPMsgAddress(2000), destination: .any) { remoteInbox.append($0) }
        _ = listener
        let quiet = try pair.host.createEndpoint(name: "host-quiet") { _ in }
        _ = quiet
        let service = try pair.host.createEndpoint(name: "host-service", address: RPMsgAddress(1500)) { _ in }
        #expect(eventually { listener.destination == service.address })
        // host-quiet was created first: had it been announced, that message would have arrived first.
        #expect(!pair.remote.announcedServices.contains { $0.name == "host-quiet" }, "a dynamic-address endpoint of a Linux host says nothing")
    }

    @Test("an OpenAMP host announces every named endpoint without a destination, whatever its address")
    func openampHostAnnounces() throws {
        let pair = try RPMsgPair(interruptThreads: false, host: .openamp)
        defer { pair.shutdown() }
        let dynamic = try pair.host.createEndpoint(name: "host-dynamic") { _ in }
        _ = try pair.host.createEndpoint(name: "host-bound", destination: RPMsgAddress(1024)) { _ in }
        pair.pump()
        #expect(pair.remote.announcedServices.map(\.name) == ["host-dynamic"])
        #expect(pair.remote.announcedServices.first?.address == dynamic.address)
    }

    @Test("announcements that arrive before the handler is set are replayed to it; binding an endpoint removes them")
    func announcementReplay() throws {
        let pair = try RPMsgPair(interruptThreads: false)
        defer { pair.shutdown() }
        _ = try pair.remote.createEndpoint(name: "early-a") { _ in }
        _ = try pair.remote.createEndpoint(name: "early-b") { _ in }
        pair.pump()
        #expect(pair.host.announcedServices.map(\.name) == ["early-a", "early-b"])
        let seen = MetalMutex<[String]>([])
        pair.host.onNameServiceAnnouncement { name, _ in seen.withLock { $0.append(name) } }
        #expect(seen.withLock { $0 } == ["early-a", "early-b"])
        _ = try pair.host.createEndpoint(destination: pair.host.announcedServices[0].address) { _ in }
        #expect(pair.host.announcedServices.map(\.name) == ["early-b"])
    }

    @Test("100,000 messages each way between two threads, content checked", .timeLimit(.minutes(2)))
    func stream() throws {
        let pair = try RPMsgPair()
        defer { pair.shutdown() }
        let count = 100_000
        let hostInbox = SequenceChecker(), remoteInbox = SequenceChecker()
        let remoteEndpoint = try pair.remote.createEndpoint(address: RPMsgAddress(100), destination: RPMsgAddress(200)) { remoteInbox.check($0) }
        let hostEndpoint = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { hostInbox.check($0) }
        let done = DispatchGroup()
        let failures = MetalMutex<[String]>([])
        for (endpoint, name) in [(hostEndpoint, "host"), (remoteEndpoint, "remote")] {
            done.enter()
            Thread {
                for i in 0..<count {
                    do { try endpoint.send(SequenceChecker.message(i)) } catch {
                        failures.withLock { $0.append("\(name) send \(i): \(error)") }
                        break
                    }
                }
                done.leave()
            }.start()
        }
        #expect(done.wait(timeout: .now() + 100) == .success)
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        #expect(eventually(timeout: .seconds(30)) { hostInbox.received == count && remoteInbox.received == count })
        #expect(hostInbox.errors == [] && remoteInbox.errors == [])
        let stats = pair.host.statistics
        #expect(stats.messagesSent == count && stats.messagesReceived == count)
        #expect(stats.malformedTotal == 0, "\(stats)")
        #expect(pair.remote.statistics.malformedTotal == 0, "\(pair.remote.statistics)")
    }

    @Test("event index: a busy peer is kicked once per batch it has not yet looked at, not once per message")
    func eventIndexSuppression() throws {
        // Without interrupt threads the remote handles kicks only when the test pumps, so "busy"
        // is exact: each batch of sends finds the remote caught up once, at its first message.
        let pair = try RPMsgPair(interruptThreads: false)
        defer { pair.shutdown() }
        let inbox = SequenceChecker()
        _ = try pair.remote.createEndpoint(address: RPMsgAddress(100)) { inbox.check($0) }
        let sender = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in }
        pair.pump()
        let kicksBefore = pair.host.statistics.transmitQueueKicks
        let batches = 200, perBatch = 100
        for batch in 0..<batches {
            for i in 0..<perBatch { try sender.send(SequenceChecker.message(batch * perBatch + i)) }
            pair.pump()
        }
        #expect(inbox.received == batches * perBatch)
        #expect(inbox.errors.isEmpty)
        #expect(pair.host.statistics.transmitQueueKicks - kicksBefore == batches)
    }

    @Test("without event index the flags still suppress kicks while the peer is busy")
    func flagsOnly() throws {
        let pair = try RPMsgPair(features: [.rpmsgNameService])
        defer { pair.shutdown() }
        #expect(!pair.host.features.contains(.ringEventIndex))
        let inbox = SequenceChecker()
        _ = try pair.remote.createEndpoint(address: RPMsgAddress(100)) { inbox.check($0) }
        let sender = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in }
        for i in 0..<5000 { try sender.send(SequenceChecker.message(i)) }
        #expect(eventually { inbox.received == 5000 })
        #expect(inbox.errors.isEmpty)
    }

    @Test("sends from several threads at once on one device")
    func concurrentSenders() throws {
        let pair = try RPMsgPair()
        defer { pair.shutdown() }
        let threads = 4, perThread = 5000
        let seen = MetalMutex<[Int: Int]>([:])
        let disorder = MetalMutex(0)
        _ = try pair.remote.createEndpoint(address: RPMsgAddress(100)) { message in
            let bytes = message.payload
            guard bytes.count == 8 else { disorder.withLock { $0 += 1 }; return }
            let thread = Int(bytes[0]), n = Int(bytes[4]) | Int(bytes[5]) << 8 | Int(bytes[6]) << 16
            seen.withLock { s in
                if s[thread, default: 0] != n { disorder.withLock { $0 += 1 } }
                s[thread] = n + 1
            }
        }
        let done = DispatchGroup()
        for t in 0..<threads {
            let endpoint = try pair.host.createEndpoint(address: RPMsgAddress(UInt32(300 + t)), destination: RPMsgAddress(100)) { _ in }
            done.enter()
            Thread {
                for n in 0..<perThread {
                    try? endpoint.send([UInt8(t), 0, 0, 0, UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16), 0])
                }
                done.leave()
            }.start()
        }
        #expect(done.wait(timeout: .now() + 60) == .success)
        #expect(eventually { seen.withLock { $0.values.reduce(0, +) } == threads * perThread })
        #expect(disorder.withLock { $0 } == 0)
    }

    @Test("try-send fails at once when no buffer is free; a blocking send times out with a clear error")
    func exhaustion() throws {
        let pair = try RPMsgPair(interruptThreads: false, vringCount: 16)
        defer { pair.shutdown() }
        _ = try pair.remote.createEndpoint(address: RPMsgAddress(100)) { _ in }
        let sender = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in }
        for i in 0..<16 { try sender.trySend([UInt8(i)]) }   // the remote never runs: 16 buffers in flight
        let now = try #require(rpmsgError { try sender.trySend([1]) })
        #expect(now.kind == .noBuffer(waited: .zero))
        let clock = ContinuousClock()
        let start = clock.now
        let later = try #require(rpmsgError { try sender.send([1], timeout: .milliseconds(80)) })
        #expect(later.kind == .noBuffer(waited: .milliseconds(80)))
        #expect(clock.now - start >= .milliseconds(80))
        #expect(later.code == -2002)
        // Once the remote consumes, sending works again.
        pair.pump()
        try sender.trySend([2])
    }

    @Test("a blocked sender wakes when the peer frees a buffer")
    func blockedSenderWakes() throws {
        let pair = try RPMsgPair(interruptThreads: false, vringCount: 16)
        defer { pair.shutdown() }
        let inbox = Inbox()
        _ = try pair.remote.createEndpoint(address: RPMsgAddress(100)) { inbox.append($0) }
        let sender = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in }
        for i in 0..<16 { try sender.trySend([UInt8(i)]) }
        let pumper = Thread { usleep(30_000); pair.pump() }
        pumper.start()
        try sender.send([99], timeout: .seconds(10))
        pair.pump()
        #expect(inbox.wait(for: 17, timeout: .seconds(5)))
        #expect(inbox.all.last?.payload == [99])
    }

    @Test("zero-copy send both ways; an unsent buffer goes back; double release and double send are errors")
    func zeroCopySend() throws {
        let pair = try RPMsgPair()
        defer { pair.shutdown() }
        let hostInbox = Inbox(), remoteInbox = Inbox()
        let remoteEndpoint = try pair.remote.createEndpoint(address: RPMsgAddress(100), destination: RPMsgAddress(200)) { remoteInbox.append($0) }
        let hostEndpoint = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { hostInbox.append($0) }
        for (endpoint, device, inbox) in [(hostEndpoint, pair.host, remoteInbox), (remoteEndpoint, pair.remote, hostInbox)] {
            let buffer = try device.reserveBuffer(timeout: .seconds(5))
            #expect(buffer.capacity == 496)
            try buffer.withUnsafeMutablePayload { payload in
                for i in 0..<300 { payload[i] = UInt8(i & 0xFF) }
            }
            try endpoint.send(buffer, length: 300)
            #expect(inbox.wait(for: 1))
            #expect(inbox.all.first?.payload == (0..<300).map { UInt8($0 & 0xFF) })
            #expect(rpmsgError { try endpoint.send(buffer, length: 1) }?.kind == .bufferNotOwned)
            #expect(rpmsgError { try buffer.write([1]) }?.kind == .bufferNotOwned)

            let unsent = try device.reserveBuffer(timeout: .seconds(5))
            try unsent.write(Array("never sent".utf8))
            try device.release(unsent)
            #expect(rpmsgError { try device.release(unsent) }?.kind == .bufferNotOwned)
            #expect(rpmsgError { try buffer.write(Array(repeating: 0, count: 497)) }?.kind != nil)
        }
        #expect(hostInbox.count == 1 && remoteInbox.count == 1)
    }

    @Test("zero-copy receive: a held buffer stays out until released, on both sides")
    func holdAndRelease() throws {
        let pair = try RPMsgPair(interruptThreads: false, vringCount: 16)
        defer { pair.shutdown() }
        let held = MetalMutex<[RPMsgHeldBuffer]>([])
        let payloads = MetalMutex<[[UInt8]]>([])
        _ = try pair.remote.createEndpoint(address: RPMsgAddress(100)) { message in
            held.withLock { $0.append(message.hold()) }
            payloads.withLock { $0.append(message.payload) }
        }
        let sender = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in }
        for i in 0..<16 { try sender.trySend([UInt8(i)]) }
        pair.pump()
        #expect(payloads.withLock { $0.count } == 16)
        // Every buffer is held by the remote: the host has none to send with.
        #expect(rpmsgError { try sender.trySend([0xFF]) }?.kind == .noBuffer(waited: .zero))
        for buffer in held.withLock({ $0 }) { try pair.remote.release(buffer) }
        #expect(rpmsgError { try pair.remote.release(held.withLock { $0[0] }) }?.kind == .bufferNotOwned)
        pair.pump()
        try sender.trySend([0xFF])

        // The host side holds and releases too.
        let hostHeld = MetalMutex<RPMsgHeldBuffer?>(nil)
        _ = try pair.host.createEndpoint(address: RPMsgAddress(300)) { message in hostHeld.withLock { $0 = message.hold() } }
        try pair.remote.send([7, 7], from: RPMsgAddress(100), to: RPMsgAddress(300), timeout: .seconds(1))
        pair.pump()
        let buffer = try #require(hostHeld.withLock { $0 })
        try pair.host.release(buffer)
        #expect(rpmsgError { try pair.host.release(buffer) }?.kind == .bufferNotOwned)
    }

    @Test("clear errors: oversize payload (nothing sent), address exhaustion and reuse, destroyed and unbound endpoints")
    func errors() throws {
        var configuration = RPMsgConfiguration()
        configuration.dynamicAddressCount = 3
        let pair = try RPMsgPair(interruptThreads: false, configuration: configuration)
        defer { pair.shutdown() }
        let endpoint = try pair.host.createEndpoint(destination: RPMsgAddress(100)) { _ in }
        let sent = pair.host.statistics.messagesSent
        let big = try #require(rpmsgError { try endpoint.send([UInt8](repeating: 1, count: 497)) })
        #expect(big.kind == .payloadTooLarge(size: 497, capacity: 496))
        #expect(big.code == -2005)
        #expect(pair.host.statistics.messagesSent == sent)
        let remoteBig = try #require(rpmsgError { try pair.remote.send([UInt8](repeating: 1, count: 497), from: RPMsgAddress(1), to: RPMsgAddress(2), timeout: .seconds(1)) })
        #expect(remoteBig.kind == .payloadTooLarge(size: 497, capacity: 496))

        _ = try pair.host.createEndpoint { _ in }
        _ = try pair.host.createEndpoint { _ in }
        let exhausted = try #require(rpmsgError { _ = try pair.host.createEndpoint { _ in } })
        #expect(exhausted.kind == .addressesExhausted(capacity: 3))
        endpoint.destroy()
        #expect(try pair.host.createEndpoint { _ in }.address == endpoint.address, "a destroyed endpoint's address is free again")

        _ = try pair.host.createEndpoint(address: RPMsgAddress(7)) { _ in }
        #expect(rpmsgError { _ = try pair.host.createEndpoint(address: RPMsgAddress(7)) { _ in } }?.kind == .addressInUse(RPMsgAddress(7)))
        #expect(rpmsgError { _ = try pair.host.createEndpoint(address: .nameService) { _ in } }?.kind == .addressInUse(.nameService))

        #expect(rpmsgError { try endpoint.send([1]) }?.kind == .endpointDestroyed(endpoint.address))
        let unbound = try pair.host.createEndpoint(address: RPMsgAddress(8)) { _ in }
        #expect(rpmsgError { try unbound.send([1]) }?.kind == .notBound(RPMsgAddress(8)))
        #expect(rpmsgError { _ = try pair.host.createEndpoint(name: String(repeating: "x", count: 33)) { _ in } } != nil)

        pair.host.close()
        #expect(rpmsgError { try unbound.send([1], to: RPMsgAddress(100)) }?.kind == .deviceClosed)
    }
}

/// Checks that messages carry consecutive sequence numbers and their expected pattern.
final class SequenceChecker: Sendable {
    private let state = MetalMutex<(next: Int, errors: [String])>((0, []))

    /// Message bodies depend on `i` only modulo 256: all 256 are built once (unoptimized test
    /// code spent most of a 200,000-message run building and comparing them byte by byte).
    private static let bodies: [[UInt8]] = (0..<256).map { i in (0..<496).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }

    static func message(_ i: Int) -> [UInt8] {
        let length = 8 + i % 489          // 8 … 496 bytes
        var bytes = [UInt8(i & 0xFF), UInt8(i >> 8 & 0xFF), UInt8(i >> 16 & 0xFF), UInt8(i >> 24 & 0xFF),
                     UInt8(length & 0xFF), UInt8(length >> 8), 0, 0]
        bytes.append(contentsOf: bodies[i & 0xFF][8..<length])
        return bytes
    }

    func check(_ message: RPMsgMessage) {
        let bytes = message.payload
        state.withLock { s in
            let expected = Self.message(s.next)
            let same = bytes.count == expected.count && bytes.withUnsafeBytes { a in
                expected.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
            }
            if !same, s.errors.count < 5 { s.errors.append("message \(s.next): got \(bytes.prefix(8))… (\(bytes.count) bytes)") }
            s.next += 1
        }
    }
    var received: Int { state.withLock { $0.next } }
    var errors: [String] { state.withLock { $0.errors } }
}
