import MetalIO
import Synchronization

/// A buffer handed to the driver side of a virtqueue: a device address and a length inside the
/// buffer window.
public struct VirtqueueBuffer: Hashable, Sendable {
    public var address: DeviceAddress
    public var length: Int
    public init(address: DeviceAddress, length: Int) {
        self.address = address
        self.length = length
    }
}

/// What the driver gets back from the used ring.
public struct UsedBuffer: Hashable, Sendable {
    /// The token given to ``DriverQueue/add(readable:writable:token:)``.
    public var token: Int
    /// Bytes the device wrote (0 for a chain with no writable part), or `nil` when the device
    /// claimed more than the writable part holds (counted as
    /// ``VirtqueueErrorCounts/lengthBeyondBuffer``; the data must be dropped).
    public var length: Int?
}

/// One part of a chain the device took from the avail ring.
public struct ChainSegment: Hashable, Sendable {
    /// Offset in the buffer window's region.
    public var offset: Int
    public var length: Int
    /// Whether the device may write it (`VRING_DESC_F_WRITE`).
    public var isWritable: Bool
    public init(offset: Int, length: Int, isWritable: Bool) {
        self.offset = offset
        self.length = length
        self.isWritable = isWritable
    }
}

/// A descriptor chain the device took from the avail ring; give it back with
/// ``DeviceQueue/returnUsed(_:length:)``.
public struct AvailableChain: Hashable, Sendable {
    public var head: Int
    public var segments: [ChainSegment]
    public init(head: Int, segments: [ChainSegment]) {
        self.head = head
        self.segments = segments
    }
}

/// What both roles of a split virtqueue share: the ring's memory and layout, the buffer
/// window, the kick, the event-index choice and the error counts.
public class Virtqueue: @unchecked Sendable {
    // Subclasses keep all mutable state in Mutexes; these properties never change after init.
    public let location: VringLocation
    public let layout: VringLayout
    public let window: BufferWindow
    /// Whether `VIRTIO_RING_F_EVENT_IDX` was negotiated.
    public let usesEventIndex: Bool
    let kick: @Sendable () throws(VirtioError) -> Void
    let errors = MetalMutex(VirtqueueErrorCounts())
    let kicks = Atomic<Int>(0)

    init(location: VringLocation, window: BufferWindow, usesEventIndex: Bool, kick: @escaping @Sendable () throws(VirtioError) -> Void) throws(VirtioError) {
        let layout = try VringLayout(count: location.count, alignment: location.alignment)
        guard location.region.contains(offset: location.offset, count: layout.byteSize) else {
            throw VirtioError(.invalidRing("the \(layout.byteSize)-byte vring at offset \(location.offset) does not fit its \(location.region.size)-byte region"))
        }
        // Ring indices are read and written atomically: the ring must be (at least) 4-byte aligned in memory.
        guard (try? location.region.readAcquiring(UInt32.self, at: location.offset)) != nil,
              (try? location.region.readAcquiring(UInt16.self, at: location.offset + layout.usedIndex)) != nil else {
            throw VirtioError(.invalidRing("the vring at offset \(location.offset) is not 4-byte aligned"))
        }
        self.location = location
        self.layout = layout
        self.window = window
        self.usesEventIndex = usesEventIndex
        self.kick = kick
    }

    /// Malformed data seen in this queue's shared memory so far.
    public var errorCounts: VirtqueueErrorCounts { errors.withLock { $0 } }
    /// Notifications this side has sent to the other.
    public var kickCount: Int { kicks.load(ordering: .relaxed) }

    func count(_ field: WritableKeyPath<VirtqueueErrorCounts, Int>) { errors.withLock { $0[keyPath: field] += 1 } }

    // Ring accesses: every offset is inside the ring (checked at init), so these cannot fail;
    // a failure would be a bug in the layout, not bad data.
    func read16(_ offset: Int) -> UInt16 { (try? location.region.read(UInt16.self, at: location.offset + offset)) ?? 0 }
    func read32(_ offset: Int) -> UInt32 { (try? location.region.read(UInt32.self, at: location.offset + offset)) ?? 0 }
    func read64(_ offset: Int) -> UInt64 { (try? location.region.read(UInt64.self, at: location.offset + offset)) ?? 0 }
    func write16(_ value: UInt16, _ offset: Int) { try? location.region.write(value, at: location.offset + offset) }
    func write32(_ value: UInt32, _ offset: Int) { try? location.region.write(value, at: location.offset + offset) }
    func write64(_ value: UInt64, _ offset: Int) { try? location.region.write(value, at: location.offset + offset) }
    func readIndex(_ offset: Int) -> UInt16 { (try? location.region.readAcquiring(UInt16.self, at: location.offset + offset)) ?? 0 }
    func publishIndex(_ value: UInt16, _ offset: Int) { try? location.region.writeReleasing(value, at: location.offset + offset) }

    /// Whether the other side wants to hear about `queued` new entries up to index `published`:
    /// its event index (EVENT_IDX) or its suppression flag decides. Callers hold their state lock.
    func peerWantsNotification(queued: Int, published: UInt16, eventOffset: Int, flagsOffset: Int, suppressFlag: UInt16) -> Bool {
        guard queued > 0 else { return false }
        atomicMemoryFence(ordering: .sequentiallyConsistent)   // our index store before the peer's event read
        if queued >= 0xFFFF { return true }   // the event window cannot tell a wrapped count apart
        if usesEventIndex {
            return VringLayout.needsEvent(event: readIndex(eventOffset), new: published, old: published &- UInt16(queued))
        }
        return readIndex(flagsOffset) & suppressFlag == 0
    }

    /// Whether a published index leaves entries to take: it moved, and by no more than the ring
    /// holds (a larger jump is corrupt and is not taken).
    static func hasWork(published: UInt16, seen: UInt16, count: Int) -> Bool {
        published != seen && Int(published &- seen) <= count
    }

    func sendKick() throws(VirtioError) {
        kicks.add(1, ordering: .relaxed)
        try kick()
    }
}

/// The driver (host) side of a split virtqueue: adds buffers to the avail ring, collects them
/// from the used ring, and kicks the device unless it asked not to be (`NO_NOTIFY`, or
/// `avail_event` with EVENT_IDX). Safe to use from several threads.
public final class DriverQueue: Virtqueue, @unchecked Sendable {
    // All mutable state is in `state` (a Mutex); the superclass's properties are immutable.
    /// A chain the device holds: the caller's token, its length in descriptors and writable bytes.
    private struct InFlight { var token: Int; var length: Int; var writable: Int }
    private struct State {
        /// Free descriptors (a stack).
        var free: [Int]
        /// By head descriptor: the chain the device holds (`nil`: none starts there).
        var inFlight: [InFlight?]
        /// The driver's own copy of each chain's links (the ring's copy is in shared memory, where
        /// the device could rewrite it): the descriptors of a returned chain are freed from this.
        var links: [Int]
        var availIndex: UInt16 = 0
        var lastUsed: UInt16 = 0
        var queued = 0
    }
    private let state: MetalMutex<State>

    /// Lays out an empty ring (the driver zeroes the vring memory, as OpenAMP's driver role does).
    public override init(location: VringLocation, window: BufferWindow, usesEventIndex: Bool, kick: @escaping @Sendable () throws(VirtioError) -> Void) throws(VirtioError) {
        state = MetalMutex(State(free: Array((0..<location.count).reversed()), inFlight: Array(repeating: nil, count: location.count),
                                 links: Array(repeating: 0, count: location.count)))
        try super.init(location: location, window: window, usesEventIndex: usesEventIndex, kick: kick)
        do { try location.region.fill(0, at: location.offset, count: layout.byteSize) } catch { throw VirtioError(.io(error)) }
    }

    /// Free descriptors.
    public var freeCount: Int { state.withLock { $0.free.count } }

    /// Chains published that the device has not marked used yet (the ring's used index against
    /// this driver's avail index): work still outstanding on the device's side. A used index the
    /// device moved beyond what was published is corrupt, not work: 0 then.
    public var unreturnedCount: Int {
        state.withLock { s in
            let used = readIndex(layout.usedIndex)
            let returnedUnseen = Int(used &- s.lastUsed), inFlight = Int(s.availIndex &- s.lastUsed)
            return returnedUnseen <= inFlight ? inFlight - returnedUnseen : 0
        }
    }

    /// Adds a chain: `readable` buffers (the device reads them), then `writable` ones (it writes
    /// them), and publishes its head in the avail ring (`virtqueue_add_buffer`).
    /// - Throws: ``VirtioError`` when the ring has too few free descriptors or a buffer lies
    ///   outside the buffer window.
    public func add(readable: [VirtqueueBuffer], writable: [VirtqueueBuffer], token: Int) throws(VirtioError) {
        _ = try add(readable: readable, writable: writable, token: token, preparingKick: false)
    }

    /// ``add(readable:writable:token:)`` and ``kickPrepare()`` under one hold of the lock (the
    /// send path): returns whether the device wants a kick now (then call ``notify()``).
    public func addPreparingKick(readable: [VirtqueueBuffer], writable: [VirtqueueBuffer], token: Int) throws(VirtioError) -> Bool {
        try add(readable: readable, writable: writable, token: token, preparingKick: true)
    }

    private func add(readable: [VirtqueueBuffer], writable: [VirtqueueBuffer], token: Int, preparingKick: Bool) throws(VirtioError) -> Bool {
        let total = readable.count + writable.count
        guard total > 0 else { throw VirtioError(.invalidArgument("a chain needs at least one buffer")) }
        func check(_ buffers: [VirtqueueBuffer]) throws(VirtioError) {
            for buffer in buffers where window.offset(of: buffer.address, length: buffer.length) == nil || buffer.length > Int(UInt32.max) {
                throw VirtioError(.bufferOutsideWindow(address: buffer.address, length: buffer.length))
            }
        }
        try check(readable)
        try check(writable)
        return try state.withLock { (s) throws(VirtioError) -> Bool in
            guard s.free.count >= total else { throw VirtioError(.ringFull(needed: total, free: s.free.count)) }
            // Descriptors are taken from the free stack one by one, each linked to the next.
            var previous: Int?
            var head = 0
            var written = 0
            func put(_ buffer: VirtqueueBuffer, writable: Bool) {
                let index = s.free.removeLast()
                if let previous {
                    s.links[previous] = index
                    write16(UInt16(index), layout.descriptor(previous) + 14)
                } else {
                    head = index
                }
                let d = layout.descriptor(index)
                write64(buffer.address.rawValue, d)
                write32(UInt32(buffer.length), d + 8)
                written += 1
                write16((written < total ? VringLayout.next : 0) | (writable ? VringLayout.write : 0), d + 12)
                if written == total { write16(0, d + 14) }
                previous = index
            }
            for buffer in readable { put(buffer, writable: false) }
            var writableBytes = 0
            for buffer in writable {
                put(buffer, writable: true)
                writableBytes += buffer.length
            }
            s.inFlight[head] = InFlight(token: token, length: total, writable: writableBytes)
            write16(UInt16(head), layout.availRing(Int(s.availIndex) & (layout.count - 1)))
            s.availIndex &+= 1
            s.queued += 1
            publishIndex(s.availIndex, layout.availIndex)
            return preparingKick && prepareKick(&s)
        }
    }

    /// Kicks the device if it wants to know about the buffers added since the last kick
    /// (`virtqueue_kick`). Returns whether it kicked.
    @discardableResult
    public func kickIfNeeded() throws(VirtioError) -> Bool {
        let needed = kickPrepare()
        if needed { try sendKick() }
        return needed
    }

    /// Whether the device wants to know about the buffers added since the last kick
    /// (`virtqueue_kick_prepare`); they count as told from here on. ``notify()`` then kicks.
    public func kickPrepare() -> Bool {
        state.withLock { s in prepareKick(&s) }
    }

    private func prepareKick(_ s: inout State) -> Bool {
        defer { s.queued = 0 }
        return peerWantsNotification(queued: s.queued, published: s.availIndex, eventOffset: layout.availEvent,
                                     flagsOffset: layout.usedFlags, suppressFlag: VringLayout.noNotify)
    }

    /// Kicks the device (`virtqueue_notify`), after ``kickPrepare()`` said it wants to know.
    public func notify() throws(VirtioError) { try sendKick() }

    /// Takes the next used buffer (`virtqueue_get_buffer`), or `nil` when there is none. Used
    /// elements naming unknown descriptors, and index jumps, are counted and skipped.
    public func takeUsed() -> UsedBuffer? {
        state.withLock { s in takeUsed(&s) }
    }

    /// Takes every used buffer there is now, under one hold of the lock, handing each to `body`
    /// (which must not use this queue). Returns how many.
    @discardableResult
    public func takeAllUsed(_ body: (UsedBuffer) -> Void) -> Int {
        state.withLock { s in
            var taken = 0
            while let used = takeUsed(&s) {
                body(used)
                taken += 1
            }
            return taken
        }
    }

    private func takeUsed(_ s: inout State) -> UsedBuffer? {
        while true {
            let published = readIndex(layout.usedIndex)
            guard published != s.lastUsed else { return nil }
            guard Int(published &- s.lastUsed) <= layout.count else {
                count(\.indexJump)
                return nil
            }
            let slot = layout.usedRing(Int(s.lastUsed) & (layout.count - 1))
            let id = read32(slot), length = read32(slot + 4)
            s.lastUsed &+= 1
            guard id < UInt32(layout.count) else { count(\.descriptorIndexOutOfRange); continue }
            guard let flight = s.inFlight[Int(id)] else { count(\.unknownUsedID); continue }
            s.inFlight[Int(id)] = nil
            var index = Int(id)
            for part in 0..<flight.length {
                s.free.append(index)
                if part + 1 < flight.length { index = s.links[index] }
            }
            // A chain with nothing writable: the length means nothing (OpenAMP remotes report
            // the buffer's size), so it is not checked.
            guard flight.writable > 0 else { return UsedBuffer(token: flight.token, length: 0) }
            guard Int(length) <= flight.writable else {
                count(\.lengthBeyondBuffer)
                return UsedBuffer(token: flight.token, length: nil)
            }
            return UsedBuffer(token: flight.token, length: Int(length))
        }
    }

    /// Asks the device not to interrupt for used buffers (`virtqueue_disable_cb`).
    public func disableInterrupts() {
        state.withLock { s in
            if usesEventIndex { write16(s.lastUsed &- UInt16(layout.count) &- 1, layout.usedEvent) } else {
                write16(VringLayout.noInterrupt, layout.availFlags)
            }
        }
    }

    /// Asks for an interrupt at the next used buffer (`virtqueue_enable_cb`). Returns whether
    /// used buffers are already waiting (check again before sleeping). An index that moved by
    /// more than the ring size is corrupt, not work: it does not count as waiting.
    @discardableResult
    public func enableInterrupts() -> Bool {
        state.withLock { s in
            if usesEventIndex { write16(s.lastUsed, layout.usedEvent) } else { write16(0, layout.availFlags) }
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            return Self.hasWork(published: readIndex(layout.usedIndex), seen: s.lastUsed, count: layout.count)
        }
    }
}

/// The device (remote) side of a split virtqueue: takes chains from the avail ring (validating
/// every index, address and length the driver wrote), returns them used, and notifies the driver
/// unless it asked not to be (`NO_INTERRUPT`, or `used_event` with EVENT_IDX).
public final class DeviceQueue: Virtqueue, @unchecked Sendable {
    // All mutable state is in `state` (a Mutex); the superclass's properties are immutable.
    private struct State {
        var lastAvail: UInt16 = 0
        var usedIndex: UInt16 = 0
        var queued = 0
        /// By head descriptor: whether the device holds that chain now.
        var taken: [Bool]
    }
    private let state: MetalMutex<State>

    /// Uses the ring the driver laid out (the device does not zero it), from its used index:
    /// buffers the driver posted before the device came up (as the host's receive buffers before
    /// DRIVER_OK) are taken first.
    public override init(location: VringLocation, window: BufferWindow, usesEventIndex: Bool, kick: @escaping @Sendable () throws(VirtioError) -> Void) throws(VirtioError) {
        state = MetalMutex(State(taken: Array(repeating: false, count: location.count)))
        try super.init(location: location, window: window, usesEventIndex: usesEventIndex, kick: kick)
        // Everything before the used index was handled by an earlier device (none on a fresh ring).
        state.withLock { s in
            s.usedIndex = readIndex(layout.usedIndex)
            s.lastAvail = s.usedIndex
        }
    }

    /// Takes the next valid chain from the avail ring (`virtqueue_get_available_buffer`), or
    /// `nil` when there is none. A malformed chain is counted, returned used with length 0 when
    /// its head is valid, and skipped.
    public func takeAvailable() -> AvailableChain? {
        state.withLock { s in
            while true {
                let published = readIndex(layout.availIndex)
                guard published != s.lastAvail else { return nil }
                guard Int(published &- s.lastAvail) <= layout.count else {
                    count(\.indexJump)
                    return nil
                }
                let head = Int(read16(layout.availRing(Int(s.lastAvail) & (layout.count - 1))))
                s.lastAvail &+= 1
                guard head < layout.count, !s.taken[head] else { count(\.descriptorIndexOutOfRange); continue }
                if let segments = walk(head) {
                    s.taken[head] = true
                    return AvailableChain(head: head, segments: segments)
                }
                publishUsed(&s, head: head, length: 0)
            }
        }
    }

    /// Reads and checks the chain starting at `head`; counts and returns `nil` when it is bad.
    private func walk(_ head: Int) -> [ChainSegment]? {
        var segments: [ChainSegment] = []
        var index = head
        while true {
            guard segments.count < layout.count else { count(\.chainTooLong); return nil }
            let d = layout.descriptor(index)
            let address = read64(d), length = Int(read32(d + 8)), flags = read16(d + 12)
            guard flags & VringLayout.indirect == 0 else { count(\.unsupportedFlags); return nil }
            guard let offset = window.offset(of: DeviceAddress(address), length: length) else { count(\.bufferOutsideWindow); return nil }
            let writable = flags & VringLayout.write != 0
            // Readable parts come first, then writable ones (virtio 1.x §2.7.4.2).
            guard writable || !(segments.last?.isWritable ?? false) else { count(\.wrongDirection); return nil }
            segments.append(ChainSegment(offset: offset, length: length, isWritable: writable))
            guard flags & VringLayout.next != 0 else { return segments }
            let next = Int(read16(d + 14))
            guard next < layout.count else { count(\.descriptorIndexOutOfRange); return nil }
            index = next
        }
    }

    private func publishUsed(_ s: inout State, head: Int, length: Int) {
        let slot = layout.usedRing(Int(s.usedIndex) & (layout.count - 1))
        write32(UInt32(head), slot)
        write32(UInt32(clamping: length), slot + 4)
        s.usedIndex &+= 1
        s.queued += 1
        publishIndex(s.usedIndex, layout.usedIndex)
    }

    /// Returns a chain to the driver with `length` bytes written (`virtqueue_add_consumed_buffer`).
    /// - Throws: when `head` was not taken from this ring.
    public func returnUsed(_ head: Int, length: Int) throws(VirtioError) {
        guard length >= 0 else { throw VirtioError(.invalidArgument("used length \(length) is negative")) }
        try state.withLock { (s) throws(VirtioError) in
            guard s.taken.indices.contains(head), s.taken[head] else { throw VirtioError(.unknownHead(head)) }
            s.taken[head] = false
            publishUsed(&s, head: head, length: length)
        }
    }

    /// Notifies the driver if it wants to know about the buffers used since the last
    /// notification. Returns whether it kicked.
    @discardableResult
    public func notifyIfNeeded() throws(VirtioError) -> Bool {
        let needed = state.withLock { s in
            defer { s.queued = 0 }
            return peerWantsNotification(queued: s.queued, published: s.usedIndex, eventOffset: layout.usedEvent,
                                         flagsOffset: layout.availFlags, suppressFlag: VringLayout.noInterrupt)
        }
        if needed { try sendKick() }
        return needed
    }

    /// Asks the driver not to kick for new buffers.
    public func disableNotifications() {
        state.withLock { s in
            if usesEventIndex { write16(s.lastAvail &- UInt16(layout.count) &- 1, layout.availEvent) } else {
                write16(VringLayout.noNotify, layout.usedFlags)
            }
        }
    }

    /// Asks for a kick at the next new buffer. Returns whether buffers are already waiting (a
    /// corrupt index that jumped by more than the ring size is not work).
    @discardableResult
    public func enableNotifications() -> Bool {
        state.withLock { s in
            if usesEventIndex { write16(s.lastAvail, layout.availEvent) } else { write16(0, layout.usedFlags) }
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            return Self.hasWork(published: readIndex(layout.availIndex), seen: s.lastAvail, count: layout.count)
        }
    }
}
