import MetalIO
import Virtio
/// Notify-id bookkeeping (`remoteproc_allocate_id`), with a fixed capacity and errors where
/// OpenAMP wraps around: an id in use or none left is an error, never a duplicate.
struct NotifyIDAllocator: Sendable {
    let capacity: Int
    private(set) var used: Set<UInt32> = []

    init(capacity: Int) { self.capacity = capacity }

    /// Takes `id`, or the lowest free id when `id` is ANY.
    mutating func allocate(_ id: NotifyID, call: RemoteprocCall) throws(RemoteprocError) -> NotifyID {
        if id.isAny {
            for candidate in 0..<UInt32(capacity) where !used.contains(candidate) {
                used.insert(candidate)
                return NotifyID(candidate)
            }
            throw RemoteprocError(.notifyIDsExhausted(capacity: capacity), call: call)
        }
        guard id.rawValue < UInt32(capacity) else { throw RemoteprocError(.notifyIDOutOfRange(id, capacity: capacity), call: call) }
        guard used.insert(id.rawValue).inserted else { throw RemoteprocError(.notifyIDInUse(id), call: call) }
        return id
    }

    mutating func release(_ id: NotifyID) { used.remove(id.rawValue) }
    mutating func reset() { used.removeAll() }
}

/// First-fit allocation of device address ranges inside the memories marked as allocation
/// pools, avoiding every range already claimed (fixed carveouts and vrings, loaded segments).
struct DeviceRangeAllocator: Sendable {
    struct Range: Sendable, Hashable { var start: UInt64; var end: UInt64 }
    private(set) var claimed: [Range] = []

    mutating func claim(_ start: DeviceAddress, size: Int) {
        guard size > 0 else { return }
        let (end, overflow) = start.rawValue.addingReportingOverflow(UInt64(size))
        claimed.append(Range(start: start.rawValue, end: overflow ? .max : end))
    }

    mutating func allocate(size: Int, alignment: Int, in pools: [RemoteprocMemory]) -> DeviceAddress? {
        guard size > 0, alignment > 0 else { return nil }
        let align = UInt64(alignment), length = UInt64(size)
        // Rounded up to the alignment; `nil` past the top of the address space.
        func alignedUp(_ value: UInt64) -> UInt64? {
            let (bumped, overflow) = value.addingReportingOverflow(align - 1)
            return overflow ? nil : bumped / align * align
        }
        for pool in pools {
            let (poolEnd, overflow) = pool.deviceAddress.rawValue.addingReportingOverflow(UInt64(pool.size))
            guard !overflow, length <= poolEnd else { continue }
            var next = alignedUp(pool.deviceAddress.rawValue)
            while let candidate = next, candidate <= poolEnd - length {
                let end = candidate + length
                // The claimed ranges the candidate overlaps: the next candidate starts after the last of them ends.
                var blockedUntil: UInt64?
                for range in claimed where range.start < end && candidate < range.end { blockedUntil = max(blockedUntil ?? 0, range.end) }
                if let blockedUntil {
                    next = alignedUp(blockedUntil)
                    continue
                }
                claimed.append(Range(start: candidate, end: end))
                return DeviceAddress(candidate)
            }
        }
        return nil
    }

    mutating func reset() { claimed.removeAll() }
}
