import RemoteprocTesting
import Testing

/// The example's test suite: host code against the simulated board, a few lines per test.
@Suite("RequestClient against the simulated board")
struct RequestClientTests {
    @Test func answersAreReturned() throws {
        try withSimulatedRemote(.scripted(ScriptedRemote().service("kv") { .reply(Array("value of ".utf8) + $0) })) { remote in
            let client = try RequestClient(device: remote.rpmsg!, service: try remote.waitForService("kv"))
            #expect(try client.call(Array("answer".utf8)) == Array("value of answer".utf8))
        }
    }

    @Test func aLostReplyIsRetried() throws {
        let first = FirstCallDropper()
        try withSimulatedRemote(.scripted(ScriptedRemote().service("kv") { first.shouldDrop() ? .none : .reply($0) })) { remote in
            let client = try RequestClient(device: remote.rpmsg!, service: try remote.waitForService("kv"))
            #expect(try client.call([7]) == [7])
        }
    }

    @Test func aSilentServiceFailsAfterTheRetries() throws {
        try withSimulatedRemote(.scripted(ScriptedRemote().service("kv") { _ in .none })) { remote in
            let client = try RequestClient(device: remote.rpmsg!, service: try remote.waitForService("kv"), timeout: .milliseconds(20))
            #expect(throws: RequestClient.Failure(attempts: 3)) { try client.call([1]) }
        }
    }

    @Test func worksAgainstTheRealEchoFirmwareOnACortexM4() throws {
        try withSimulatedRemote(.program("echo", architecture: .cortexM4)) { remote in
            let client = try RequestClient(device: remote.rpmsg!, service: try remote.waitForService("rpmsg-echo"))
            #expect(try client.call(Array("ping".utf8)) == Array("ping".utf8))
        }
    }
}

import Synchronization
/// Drops the first reply only.
final class FirstCallDropper: Sendable {
    private let calls = Atomic<Int>(0)
    func shouldDrop() -> Bool { calls.add(1, ordering: .relaxed).oldValue == 0 }
}
