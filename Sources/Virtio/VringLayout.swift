/// Where the parts of a split virtqueue lie, from its start (virtio 1.x §2.7, OpenAMP `vring_init`).
public struct VringLayout: Hashable, Sendable {
    /// Descriptor count, a power of two up to 32768.
    public let count: Int
    /// Alignment of the used ring.
    public let alignment: Int

    /// - Throws: ``VirtioError`` when `count` is not a power of two in 1…32768 or `alignment` is not a power of two.
    public init(count: Int, alignment: Int) throws(VirtioError) {
        guard count > 0, count <= 32768, count & (count - 1) == 0 else {
            throw VirtioError(.invalidRing("descriptor count \(count) is not a power of two from 1 to 32768"))
        }
        guard alignment > 0, alignment <= 1 << 16, alignment & (alignment - 1) == 0 else {
            throw VirtioError(.invalidRing("alignment \(alignment) is not a power of two"))
        }
        self.count = count
        self.alignment = alignment
    }

    /// Descriptor `i`: addr (8), len (4), flags (2), next (2).
    public func descriptor(_ i: Int) -> Int { 16 * i }
    public var availFlags: Int { 16 * count }
    public var availIndex: Int { 16 * count + 2 }
    public func availRing(_ slot: Int) -> Int { 16 * count + 4 + 2 * slot }
    /// `used_event`, written by the driver.
    public var usedEvent: Int { 16 * count + 4 + 2 * count }
    public var usedFlags: Int { (18 * count + 6 + alignment - 1) / alignment * alignment }
    public var usedIndex: Int { usedFlags + 2 }
    /// Used element `slot`: id (4), len (4).
    public func usedRing(_ slot: Int) -> Int { usedFlags + 4 + 8 * slot }
    /// `avail_event`, written by the device.
    public var availEvent: Int { usedFlags + 4 + 8 * count }
    /// Total bytes: `align_up(18·num + 6, align) + 8·num + 6`.
    public var byteSize: Int { usedFlags + 8 * count + 6 }

    /// Descriptor flags.
    public static let next: UInt16 = 1
    public static let write: UInt16 = 2
    public static let indirect: UInt16 = 4
    /// `VRING_AVAIL_F_NO_INTERRUPT` / `VRING_USED_F_NO_NOTIFY`.
    public static let noInterrupt: UInt16 = 1
    public static let noNotify: UInt16 = 1

    /// Whether an event index asks for a notification: `(new − event − 1) mod 2¹⁶ < (new − old) mod 2¹⁶`.
    public static func needsEvent(event: UInt16, new: UInt16, old: UInt16) -> Bool {
        new &- event &- 1 < new &- old
    }
}
