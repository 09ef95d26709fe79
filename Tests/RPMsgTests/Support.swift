import Foundation
import MetalIO
import RPMsg
import Synchronization
import Testing
import Virtio

typealias RPMsgPair = RPMsgLoopback

/// Collects received messages thread-safely.
final class Inbox: Sendable {
    private let messages = MetalMutex<[(source: RPMsgAddress, payload: [UInt8])]>([])
    func append(_ message: RPMsgMessage) { let payload = message.payload; messages.withLock { $0.append((message.source, payload)) } }
    var all: [(source: RPMsgAddress, payload: [UInt8])] { messages.withLock { $0 } }
    var count: Int { messages.withLock { $0.count } }

    /// Waits until `count` messages arrived, up to `timeout`.
    func wait(for count: Int, timeout: Duration = .seconds(30)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while self.count < count {
            if ContinuousClock.now > deadline { return false }
            usleep(100)
        }
        return true
    }
}

/// Waits for `condition`, up to `timeout`.
func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now > deadline { return false }
        usleep(100)
    }
    return true
}

func rpmsgError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> RPMsgError? {
    do {
        try body()
        return nil
    } catch let error as RPMsgError {
        return error
    } catch {
        Issue.record("expected an RPMsgError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
