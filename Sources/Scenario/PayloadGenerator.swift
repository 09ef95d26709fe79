import MetalIO

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
            var generator = SplitMix64(seed: seed)
            return generator.bytes(size)
        case let .counter(size, start):
            return (0..<size).map { UInt8(truncatingIfNeeded: Int(start) + $0) }
        case let .pattern(pattern, size):
            return (0..<size).map { pattern[$0 % pattern.count] }
        }
    }
}
