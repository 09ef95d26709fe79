/// One thing a GDB client sent, decoded from the remote serial protocol byte stream.
public enum GDBInput: Hashable, Sendable {
    /// A packet whose checksum matched: its payload, unescaped.
    case packet([UInt8])
    /// `+`: the client acknowledged our last packet.
    case ack
    /// `-`: the client asks for our last packet again.
    case nack
    /// 0x03: the client asks the running target to stop (Ctrl-C).
    case interrupt
    /// A packet that was dropped: bad checksum, oversize, or malformed; the reader answers `-`.
    case rejected(reason: String)
}

/// Turns the byte stream from a GDB client into ``GDBInput`` values, resynchronising after
/// garbage: bytes outside a packet are skipped, a bad checksum or an oversize packet is rejected
/// (the caller replies `-` so the client resends), and nothing the client sends can make it grow
/// without bound.
public struct GDBPacketReader: Sendable {
    /// The largest payload accepted (what the server advertises as `PacketSize`).
    public let maximumPacketSize: Int

    private enum Phase { case idle, payload, checksum1, checksum2 }
    private var phase = Phase.idle
    private var payload: [UInt8] = []
    private var sum: UInt8 = 0
    private var escaped = false
    private var overflow = false
    private var checksumHigh: UInt8 = 0

    public init(maximumPacketSize: Int = 16 * 1024) { self.maximumPacketSize = maximumPacketSize }

    /// Feeds bytes; returns everything they complete.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [GDBInput] {
        var out: [GDBInput] = []
        for byte in bytes { if let input = feed(byte) { out.append(input) } }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private mutating func reset() {
        phase = .idle
        payload = []
        sum = 0
        escaped = false
        overflow = false
    }

    public mutating func feed(_ byte: UInt8) -> GDBInput? {
        switch phase {
        case .idle:
            switch byte {
            case UInt8(ascii: "$"):
                reset()
                phase = .payload
            case UInt8(ascii: "+"): return .ack
            case UInt8(ascii: "-"): return .nack
            case 0x03: return .interrupt
            default: break   // noise between packets
            }
            return nil
        case .payload:
            if byte == UInt8(ascii: "#") {
                phase = .checksum1
                return nil
            }
            if byte == UInt8(ascii: "$") && !escaped {
                // A new packet started before this one ended: drop the partial one.
                let dropped = GDBInput.rejected(reason: "packet restarted before its end")
                reset()
                phase = .payload
                return dropped
            }
            sum &+= byte
            if payload.count >= maximumPacketSize { overflow = true; return nil }
            if escaped {
                payload.append(byte ^ 0x20)
                escaped = false
            } else if byte == 0x7D {
                escaped = true
            } else {
                payload.append(byte)
            }
            return nil
        case .checksum1:
            guard let high = Self.hexValue(byte) else {
                reset()
                return .rejected(reason: "checksum is not hexadecimal")
            }
            checksumHigh = high
            phase = .checksum2
            return nil
        case .checksum2:
            defer { reset() }
            guard let low = Self.hexValue(byte) else { return .rejected(reason: "checksum is not hexadecimal") }
            guard !overflow else { return .rejected(reason: "packet longer than \(maximumPacketSize) bytes") }
            guard checksumHigh << 4 | low == sum else {
                return .rejected(reason: "bad checksum (sent \(String(checksumHigh << 4 | low, radix: 16)), computed \(String(sum, radix: 16)))")
            }
            return .packet(payload)
        }
    }

    /// Frames `payload` as `$…#cs`, escaping `#`, `$`, `}` and `*`.
    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(payload.count + 4)
        for byte in payload {
            if [UInt8(ascii: "#"), UInt8(ascii: "$"), 0x7D, UInt8(ascii: "*")].contains(byte) {
                body.append(0x7D)
                body.append(byte ^ 0x20)
            } else {
                body.append(byte)
            }
        }
        let checksum = body.reduce(UInt8(0)) { $0 &+ $1 }
        let digits = Array("0123456789abcdef".utf8)
        return [UInt8(ascii: "$")] + body + [UInt8(ascii: "#"), digits[Int(checksum >> 4)], digits[Int(checksum & 0xF)]]
    }

    /// Frames a text payload.
    public static func frame(_ text: String) -> [UInt8] { frame(Array(text.utf8)) }
}
