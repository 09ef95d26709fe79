/// `text` with every character a terminal would act on instead of showing replaced by a visible
/// escape, for text that came from firmware or a file (console lines, service names, names in an
/// ELF or a resource table, scenario text echoed in a message). A terminal is an interpreter:
/// `ESC ] 0;…BEL` retitles it, `ESC [2J` clears it, a bidirectional override reorders what
/// follows.
///
/// - C0 controls and DEL become `\x1b`, `\x07`, …; a newline becomes `\n` unless
///   `keepingNewlines` (for multi-line text this program composed itself); tabs stay.
/// - C1 controls (U+0080–U+009F; U+009B is a one-byte CSI on some terminals) and the
///   bidirectional formatting characters become `\u{9b}`, `\u{202e}`, ….
public func visibleText(_ text: some StringProtocol, keepingNewlines: Bool = false) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar.value {
        case 0x0A where keepingNewlines, 0x09:
            out.unicodeScalars.append(scalar)
        case 0x0A:
            out += "\\n"
        case 0x00...0x1F, 0x7F:
            out += "\\x" + hexDigits(scalar.value, width: 2)
        case 0x80...0x9F, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
            out += "\\u{" + hexDigits(scalar.value, width: 2) + "}"
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

private func hexDigits(_ value: UInt32, width: Int) -> String {
    let digits = String(value, radix: 16)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

/// Encoded JSON as text safe on a terminal: JSON encoders escape C0 controls, but pass C1
/// controls and bidirectional formatting characters through raw; those are written as `\uXXXX`
/// escapes here (they can only occur inside JSON strings, so the document means the same).
public func terminalSafeJSON(_ encoded: some Sequence<UInt8>) -> String {
    var out = ""
    for scalar in String(decoding: Array(encoded), as: UTF8.self).unicodeScalars {
        switch scalar.value {
        case 0x7F, 0x80...0x9F, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
            out += "\\u" + hexDigits(scalar.value, width: 4)
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}
