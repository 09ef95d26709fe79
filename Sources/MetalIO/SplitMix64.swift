/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator. The same seed always
/// gives the same sequence, on every platform, so a generated payload or a soak run can be named
/// by its seed and replayed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` bytes: each 64-bit output in little-endian order.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            let z = next()
            for shift in stride(from: 0, to: 64, by: 8) where out.count < count { out.append(UInt8(truncatingIfNeeded: z >> UInt64(shift))) }
        }
        return out
    }
}
