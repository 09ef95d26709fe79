import RPMsg

/// An example host-side component: requests over an RPMsg endpoint, each answered by one reply,
/// with a per-attempt timeout and retries. Copy this and its tests (RequestClientTests.swift)
/// as the starting point for testing your own host code against the simulated board.
public final class RequestClient: Sendable {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var attempts: Int
        public var description: String { "no reply after \(attempts) attempt(s)" }
    }

    private let endpoint: RPMsgEndpoint
    private let replies: ReplyQueue
    public let timeout: Duration
    public let attempts: Int

    /// Opens an endpoint on `device` to the remote service at `service`.
    public init(device: RPMsgDevice, service: RPMsgAddress, timeout: Duration = .milliseconds(200), attempts: Int = 3) throws {
        let replies = ReplyQueue()
        self.replies = replies
        self.timeout = timeout
        self.attempts = attempts
        endpoint = try device.createEndpoint(destination: service) { message in replies.push(message.payload) }
    }

    /// Sends `request` and returns the reply; resends up to `attempts` times when none arrives in time.
    public func call(_ request: [UInt8]) throws -> [UInt8] {
        for _ in 0..<attempts {
            replies.drain()
            try endpoint.send(request, timeout: timeout)
            if let reply = replies.pop(timeout: timeout) { return reply }
        }
        throw Failure(attempts: attempts)
    }

    deinit { endpoint.destroy() }
}

import Synchronization
import Virtio
import MetalIO

/// Replies waiting to be taken.
final class ReplyQueue: Sendable {
    private let items = MetalMutex<[[UInt8]]>([])
    private let signal = WakeSignal()
    func push(_ bytes: [UInt8]) {
        items.withLock { $0.append(bytes) }
        signal.signal()
    }
    func drain() { items.withLock { $0.removeAll() } }
    func pop(timeout: Duration) -> [UInt8]? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let first = items.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return first }
            let left = deadline - ContinuousClock.now
            guard left > .zero, signal.wait(timeout: left) else { return items.withLock { $0.isEmpty ? nil : $0.removeFirst() } }
        }
    }
}
