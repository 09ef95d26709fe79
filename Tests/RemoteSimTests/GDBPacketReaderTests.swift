import RemoteSim
import Testing

@Suite("GDB remote serial protocol framing")
struct GDBPacketReaderTests {
    func feed(_ text: String, limit: Int = 16 * 1024) -> [GDBInput] {
        var reader = GDBPacketReader(maximumPacketSize: limit)
        return reader.feed(Array(text.utf8))
    }

    @Test("well-formed packets, acks, nacks and Ctrl-C")
    func wellFormed() {
        #expect(feed("+$g#67") == [.ack, .packet(Array("g".utf8))])
        #expect(feed("$qSupported:multiprocess+#c6-") == [.packet(Array("qSupported:multiprocess+".utf8)), .nack])
        var reader = GDBPacketReader()
        #expect(reader.feed([0x03]) == [.interrupt])
    }

    @Test("frame escapes the special bytes and round-trips through the reader")
    func roundTrip() {
        let payload: [UInt8] = Array("a#b$c}d*e".utf8) + [0, 0xFF]
        let framed = GDBPacketReader.frame(payload)
        #expect(!framed.dropFirst().dropLast(3).contains(UInt8(ascii: "#")))
        var reader = GDBPacketReader()
        #expect(reader.feed(framed) == [.packet(payload)])
        #expect(GDBPacketReader.frame("OK") == Array("$OK#9a".utf8))
    }

    @Test("a bad checksum is rejected and the next packet still reads")
    func badChecksum() {
        let inputs = feed("$g#00$m0,4#fd")
        #expect(inputs.count == 2)
        guard case let .rejected(reason) = inputs[0] else { Issue.record("\(inputs)"); return }
        #expect(reason.contains("bad checksum"))
        #expect(inputs[1] == .packet(Array("m0,4".utf8)))
    }

    @Test("non-hex checksums, oversize and restarted packets are rejected; noise is skipped")
    func malformed() {
        #expect(feed("$g#zz").count == 1)
        if case .rejected = feed("$g#zz")[0] {} else { Issue.record("not rejected") }
        let long = String(repeating: "x", count: 100)
        let checksum = Array(long.utf8).reduce(UInt8(0)) { $0 &+ $1 }
        let oversize = feed("$\(long)#\(String(format: "%02x", checksum))", limit: 10)
        guard case let .rejected(reason) = oversize.first else { Issue.record("\(oversize)"); return }
        #expect(reason.contains("longer than 10"))
        let restarted = feed("$abc$g#67")
        #expect(restarted.count == 2 && restarted[1] == .packet(Array("g".utf8)))
        #expect(feed("hello world$g#67") == [.packet(Array("g".utf8))])
    }

    @Test("a packet split across reads is reassembled; a truncated one yields nothing")
    func split() {
        var reader = GDBPacketReader()
        #expect(reader.feed(Array("$m2000".utf8)).isEmpty)
        #expect(reader.feed(Array("0000,4#".utf8)).isEmpty)
        #expect(reader.feed(Array("4f".utf8)) == [.packet(Array("m20000000,4".utf8))])
        var truncated = GDBPacketReader()
        #expect(truncated.feed(Array("$m0,4#f".utf8)).isEmpty)
    }
}
