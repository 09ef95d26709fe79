// The README's example, exactly as written there (keep the two the same).
import RemoteprocTesting
import Testing

@Test func answersAreReturned() throws {
    try withSimulatedRemote(.scripted(ScriptedRemote().service("kv") { .reply(Array("value of ".utf8) + $0) })) { remote in
        let kv = try remote.connect(to: "kv")
        #expect(try kv.request("answer") == "value of answer")
    }
}
