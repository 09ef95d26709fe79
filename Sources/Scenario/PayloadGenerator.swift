/// Payloads a scenario describes instead of spelling out: the same description always gives the
/// same bytes, so a `send` and the `expect` that checks its echo can both name it.
///
/// - `random: { size: 64, seed: 7 }`: SplitMix64 bytes from the seed (default seed 1).
/// - `counter: { size: 16, start: 250 }`: start, start+1, … modulo 256 (default start 0).
/// - `pattern: { text: "ab", size: 5 }` or `{ hex: "00ff", size: 5 }`: the pattern repeated, cut at size.
public enum PayloadGenerator: Hashable, Sendable {
    case random(size: Int, seed: UInt64)
    case counter(size: Int, start: UInt8)
    case pattern([UInt8], size: Int)

    /// The keys a generator is written under.
    public static let keys = ["random", "counter", "pattern"]

    public var bytes: [UInt8] {
        switch self {
        case let .random(size, seed):
            var state = seed
            var out: [UInt8] = []
            out.reserveCapacity(size)
            while out.count < size {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                for shift in stride(from: 0, to: 64, by: 8) where out.count < size { out.append(UInt8(truncatingIfNeeded: z >> UInt64(shift))) }
            }
            return out
        case let .counter(size, start):
            return (0..<size).map { UInt8(truncatingIfNeeded: Int(start) + $0) }
        case let .pattern(pattern, size):
            return (0..<size).map { pattern[$0 % pattern.count] }
        }
    }
}
