/// Little-endian reads from a byte array that fail cleanly when short (swift-nio's
/// `getInteger(at:)` idea): every field of a resource table or ELF image passes through here.
public struct ByteReader {
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The integer at `offset`, or `nil` when fewer than its size bytes remain.
    public func integer<T: FixedWidthInteger & UnsignedInteger>(at offset: Int, as: T.Type = T.self) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= bytes.count, size <= bytes.count - offset else { return nil }
        var value: T = 0
        for i in (0..<size).reversed() { value = value << 8 | T(bytes[offset + i]) }
        return value
    }

    /// A NUL-padded string field of `length` bytes, or `nil` when short.
    public func string(at offset: Int, length: Int) -> String? {
        guard offset >= 0, length >= 0, offset <= bytes.count, length <= bytes.count - offset else { return nil }
        let field = bytes[offset..<(offset + length)]
        let text = field.prefix { $0 != 0 }
        return String(decoding: text, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    /// Stores `value` little-endian at `offset`. The caller has checked the bounds.
    public mutating func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        var v = value
        for i in 0..<MemoryLayout<T>.size {
            self[offset + i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
        }
    }

    /// Appends `value` little-endian (one append of its bytes).
    public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// Appends `text` as a NUL-padded field of `length` bytes (truncated to `length`).
    public mutating func appendPadded(_ text: String, length: Int) {
        let utf8 = Array(text.utf8.prefix(length))
        append(contentsOf: utf8)
        append(contentsOf: repeatElement(0, count: length - utf8.count))
    }
}
