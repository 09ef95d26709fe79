#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import RPMsg
import Synchronization
import Virtio

enum RPMsgBench {
    struct StreamResult: Codable {
        var payload: Int
        var messages: Int
        var messagesPerSecond: Double
        var megabytesPerSecond: Double
        var kicksPerMessage: Double
    }

    struct EchoResult: Codable {
        var payload: Int
        var roundTrips: Int
        var roundTripsPerSecond: Double
        var p50Microseconds: Double
        var p99Microseconds: Double
        var kicksPerRoundTrip: Double
    }


    /// Host → remote, `count` messages of `payload` bytes, as fast as the sender can go.
    static func stream(payload: Int, count: Int) throws -> StreamResult {
        let pair = try RPMsgLoopback()
        defer { pair.shutdown() }
        let received = Atomic<Int>(0)
        let done = WakeSignal()
        _ = try pair.remote.createEndpoint(address: RPMsgAddress(100)) { _ in
            if received.add(1, ordering: .relaxed).newValue == count { done.signal() }
        }
        let sender = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in }
        let bytes = [UInt8](repeating: 0x5A, count: payload)
        let rate = try BenchHarness.rate(count) {
            for _ in 0..<count { try sender.send(bytes, timeout: .seconds(10)) }
            guard done.wait(timeout: .seconds(60)) else { throw BenchError("stream: only \(received.load(ordering: .relaxed)) of \(count) arrived") }
        }
        let kicks = pair.host.statistics.transmitQueueKicks + pair.remote.statistics.receiveQueueKicks
        return StreamResult(payload: payload, messages: count, messagesPerSecond: rate,
                            megabytesPerSecond: rate * Double(payload) / 1e6, kicksPerMessage: Double(kicks) / Double(count))
    }

    /// One message to a remote echo endpoint, wait for the reply, repeat.
    static func echo(payload: Int, count: Int) throws -> EchoResult {
        let pair = try RPMsgLoopback()
        defer { pair.shutdown() }
        let remote = pair.remote
        _ = try remote.createEndpoint(address: RPMsgAddress(100)) { message in
            try? remote.send(message.payload, from: RPMsgAddress(100), to: message.source, timeout: .seconds(10))
        }
        let reply = WakeSignal()
        let client = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in reply.signal() }
        let trips = try BenchHarness.echo(client, payload: [UInt8](repeating: 0xA5, count: payload), reply: reply, count: count)
        let kicks = pair.host.statistics.transmitQueueKicks + pair.host.statistics.receiveQueueKicks
            + pair.remote.statistics.transmitQueueKicks + pair.remote.statistics.receiveQueueKicks
        return EchoResult(payload: payload, roundTrips: count, roundTripsPerSecond: trips.perSecond,
                          p50Microseconds: trips.latency.median, p99Microseconds: trips.latency.p99,
                          kicksPerRoundTrip: Double(kicks) / Double(count))
    }
}
