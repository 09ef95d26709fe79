/// Bytes written as pairs of hex digits ("de ad be ef" without the spaces), or `nil` when the
/// text has an odd length or a character that is not a hex digit.
public func bytes(fromHex text: some StringProtocol) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    for i in stride(from: 0, to: digits.count, by: 2) {
        guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
        out.append(high << 4 | low)
    }
    return out
}

/// `bytes` as lower-case hex digit pairs, no separators.
public func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// A payload as a person reads it: quoted text when it is valid UTF-8 with nothing unprintable
/// in it (tabs allowed), else hex digit pairs separated by spaces; at most `limit` bytes shown,
/// with how many more follow.
public func readablePayload(_ bytes: [UInt8], limit: Int = 64) -> String {
    let shown = Array(bytes.prefix(limit))
    let more = bytes.count > limit ? " … (\(bytes.count - limit) more bytes)" : ""
    if let text = String(validating: shown, as: UTF8.self),
       text.unicodeScalars.allSatisfy({ $0 == "\t" || !($0.properties.generalCategory == .control || $0.properties.generalCategory == .format
                                                          || $0.properties.generalCategory == .unassigned || $0.properties.generalCategory == .surrogate) }) {
        var quoted = "\""
        for character in text {
            if character == "\"" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        return quoted + "\"" + more
    }
    return "hex " + shown.map { byte in let h = String(byte, radix: 16); return h.count == 1 ? "0" + h : h }.joined(separator: " ") + more
}
