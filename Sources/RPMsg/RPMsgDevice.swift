#if canImport(Glibc)
import Glibc
#endif
import MetalIO
import Synchronization
import Virtio

/// Buffer sizes and limits of an RPMsg device.
public struct RPMsgConfiguration: Sendable {
    /// Bytes per host → remote buffer (OpenAMP's `h2r_buf_size`); payload = size − 16.
    public var hostToRemoteBufferSize = 512
    /// Bytes per remote → host buffer (`r2h_buf_size`).
    public var remoteToHostBufferSize = 512
    /// Dynamic addresses handed out from 1024; `nil`: the host's rule (Linux: up to 2³¹ − 1,
    /// OpenAMP: 128), and 128 in the device role (an OpenAMP remote's).
    public var dynamicAddressCount: Int?
    /// Driver role: features to accept at most; `nil`: what the host personality accepts (Linux:
    /// name service, indirect descriptors, event index; OpenAMP: everything offered).
    public var supportedFeatures: VirtioFeatures?
    /// How long the device role waits for DRIVER_OK.
    public var handshakeTimeout: Duration = .seconds(5)

    public init() {}
}

/// Counters of an RPMsg device, including malformed data from the peer that was dropped.
public struct RPMsgStatistics: Hashable, Sendable {
    public var messagesSent = 0
    public var messagesReceived = 0
    public var payloadBytesSent = 0
    public var payloadBytesReceived = 0
    /// Messages for an address no endpoint has.
    public var droppedNoEndpoint = 0
    /// Headers whose length exceeds their buffer, or buffers too short for a header.
    public var droppedMalformedHeader = 0
    /// Messages to 53 that are not a valid 40-byte name-service message.
    public var droppedMalformedNameService = 0
    /// Malformed vring data in the receive and transmit queues.
    public var receiveQueueErrors = VirtqueueErrorCounts()
    public var transmitQueueErrors = VirtqueueErrorCounts()
    /// Kicks this side sent on its receive and transmit queues.
    public var receiveQueueKicks = 0
    public var transmitQueueKicks = 0

    /// Every malformed item seen, of every kind.
    public var malformedTotal: Int {
        droppedMalformedHeader + droppedMalformedNameService + receiveQueueErrors.total + transmitQueueErrors.total
    }
}

/// One message through an RPMsg device, for traces.
public struct RPMsgTraffic: Sendable, Hashable {
    public enum Direction: String, Sendable, Hashable { case sent, received }
    public var direction: Direction
    public var source: RPMsgAddress
    public var destination: RPMsgAddress
    public var length: Int
    /// Up to the first 16 payload bytes.
    public var prefix: [UInt8]
}

/// An RPMsg device over a virtio transport (`struct rpmsg_virtio_device`), in either role.
///
/// Host (driver): vring 0 receives, vring 1 transmits; the host owns a buffer pool in the shared
/// window, posts every receive buffer at start, carves transmit buffers lazily, negotiates
/// features, then sets DRIVER_OK. Remote (device): vring 0 transmits into the host's receive
/// buffers, vring 1 receives; it waits for DRIVER_OK. Every header and name-service message from
/// the peer is bounds-checked; bad ones are dropped and counted in ``statistics``.
///
/// Safe to use from several threads: sends from any thread; receive callbacks run on the thread
/// that delivers the transport's notification, one at a time, and may send.
public final class RPMsgDevice: Sendable {
    /// The default blocking-send timeout (OpenAMP waits 15 s).
    public static let defaultSendTimeout: Duration = .seconds(15)

    public let role: VirtioRole
    public let configuration: RPMsgConfiguration
    /// dfeatures ∩ gfeatures.
    public let features: VirtioFeatures
    /// Driver role: what the host's driver does (from the transport's host personality).
    let profile: HostDriverProfile?
    /// Dynamic endpoint addresses from 1024.
    let dynamicAddressCount: Int
    /// Driver role: how many transmit buffers are ever carved.
    private let transmitLimit: Int
    let transport: any VirtioTransport
    let window: BufferWindow
    /// The same, for the buffers handed out per message.
    private let sharedWindow: SharedBufferWindow
    /// The two rings, in the role this end plays: no cast picks the role.
    private enum Rings {
        /// The host's: vring 0 receives (remote → host), vring 1 transmits.
        case driver(transmit: DriverQueue, receive: DriverQueue)
        /// The remote's: vring 0 transmits (remote → host), vring 1 receives.
        case device(transmit: DeviceQueue, receive: DeviceQueue)
    }
    private let rings: Rings
    private var receiveQueue: Virtqueue {
        switch rings {
        case let .driver(_, receive): receive
        case let .device(_, receive): receive
        }
    }
    private var transmitQueue: Virtqueue {
        switch rings {
        case let .driver(transmit, _): transmit
        case let .device(transmit, _): transmit
        }
    }
    /// Payload capacity of outgoing buffers (device role: known once the host offered one).
    private let transmitCapacity: Atomic<Int>
    /// Host role: the buffers carved from the pool (offsets in the window's region).
    private let receiveBuffers: [Int]
    /// Every write to the rings goes through this gate; ``close()`` shuts it, so once close has
    /// returned the device never touches shared memory again — a new device on the same rings
    /// (after a recovery) cannot be overwritten by an old one still draining.
    private let ringGate = PassageGate()
    /// Senders waiting for a transmit buffer, and what wakes them: the peer's notification that
    /// it returned buffers (host: used buffers on vring1; remote: buffers posted on vring0),
    /// asked for only while someone waits (Linux's `rpmsg_upref_sleepers`).
    private let transmitWaiters = Atomic<Int>(0)
    private let transmitReturned = WakeSignal()
    /// What the transport's outstanding-work check reaches the host's transmit queue through,
    /// while the device lives. Not a weak reference to the queue (that would give the queue a
    /// side table, and every retain of it on the send path the slow reference count), and not
    /// the queue itself: its kick leads back to the transport, a cycle that a device let go of
    /// without `close()` would never break.
    private let lifetime = DeviceLifetime()

    private final class DeviceLifetime: Sendable {
        let transmit = MetalMutex<DriverQueue?>(nil)
    }

    deinit {
        // Released after the lock: the queue's release may release the transport's device.
        let transmit = lifetime.transmit.withLock { queue in
            defer { queue = nil }
            return queue
        }
        withExtendedLifetime(transmit) {}
    }

    /// Runs `body` on the rings, or returns `nil` when the device is closed or its transport gone.
    private func withRings<T: Sendable>(_ body: () -> T) -> T? {
        ringGate.pass { () -> T? in
            guard transport.isAvailable else { return nil }
            return body()
        } ?? nil
    }

    private struct State {
        var closed = false
        var endpoints: [UInt32: RPMsgEndpoint] = [:]
        var dynamicInUse = Set<UInt32>()
        /// Host: transmit buffers carved so far, free ones, and where the pool continues.
        var transmitBuffers: [Int] = []
        var freeTransmit: [Int] = []
        var poolNext = 0
        var poolEnd = 0
        /// Device: host receive buffers taken but not used yet (released zero-copy buffers).
        var spareChains: [AvailableChain] = []
        var heldReceive: Set<Int> = []
        var statistics = RPMsgStatistics()
        var onNameService: (@Sendable (String, RPMsgAddress) -> Void)?
        var onTraffic: (@Sendable (RPMsgTraffic) -> Void)?
        var onActivity: (@Sendable () -> Void)?
        /// Services the peer announced that no local endpoint is bound to, in announcement order.
        var unboundServices: [(name: String, address: RPMsgAddress)] = []
    }
    private let state = MetalMutex(State())
    private let receiveRequests = Atomic<Int>(0)

    /// Sets up the host (driver) side over `transport`, step by step as the transport's host does
    /// (``Virtio/HostPersonality``): the status writes and features, the queues (zeroed; a Linux
    /// host publishes vring addresses now), the receive buffers carved from `pool` (a range of
    /// `window`'s region) and posted, transmit interrupts off, then DRIVER_OK — and a Linux host
    /// kicks the receive vring once, to tell the remote it may send.
    /// - Parameters:
    ///   - pool: offsets `[lowerBound, upperBound)` of the window's region the buffers come from.
    public init(host transport: any VirtioTransport, window: BufferWindow, pool: Range<Int>,
                configuration: RPMsgConfiguration = RPMsgConfiguration()) throws(RPMsgError) {
        guard transport.role == .driver else { throw RPMsgError(.invalidArgument("the host side needs a driver-role transport")) }
        try Self.checkSizes(configuration)
        let locations = transport.vringLocations
        guard locations.count >= 2 else { throw RPMsgError(.invalidArgument("RPMsg needs 2 vrings, the device has \(locations.count)")) }
        guard pool.lowerBound >= 0, pool.upperBound <= window.region.size else {
            throw RPMsgError(.invalidArgument("the buffer pool \(pool) is not inside the \(window.region.size)-byte window"))
        }
        let profile = HostDriverProfile(host: transport.host)
        self.role = .driver
        self.configuration = configuration
        self.transport = transport
        self.window = window
        self.sharedWindow = SharedBufferWindow(window)
        self.profile = profile
        self.dynamicAddressCount = configuration.dynamicAddressCount ?? profile.dynamicAddressCount
        do {
            for status in profile.statusBeforeQueues { try transport.setStatus(status) }
            let accepted = profile.acceptedFeatures.intersection(configuration.supportedFeatures ?? .all)
            features = try transport.negotiateFeatures(supported: accepted)
            try transport.prepareDriverQueue(0)
            try transport.prepareDriverQueue(1)
        } catch { throw RPMsgError(.virtio(error)) }
        let eventIndex = profile.usesEventIndex(features)
        let rx: DriverQueue, tx: DriverQueue
        do {
            rx = try DriverQueue(location: locations[0], window: window, usesEventIndex: eventIndex,
                                 kick: { [transport] () throws(VirtioError) in try transport.kick(vring: 0) })
            tx = try DriverQueue(location: locations[1], window: window, usesEventIndex: eventIndex,
                                 kick: { [transport] () throws(VirtioError) in try transport.kick(vring: 1) })
        } catch { throw RPMsgError(.virtio(error)) }
        rings = .driver(transmit: tx, receive: rx)
        let size = configuration.remoteToHostBufferSize
        let count = profile.receiveBufferCount(vringCount: locations[0].count)
        guard pool.count >= count * size else {
            throw RPMsgError(.invalidArgument("the \(pool.count)-byte pool cannot hold \(count) receive buffers of \(size) bytes"))
        }
        receiveBuffers = (0..<count).map { pool.lowerBound + $0 * size }
        transmitLimit = profile.transmitBufferLimit(receiveVringCount: locations[0].count, transmitVringCount: locations[1].count)
        transmitCapacity = Atomic(configuration.hostToRemoteBufferSize - RPMsgHeader.size)
        state.withLock { s in
            s.poolNext = pool.lowerBound + count * size
            s.poolEnd = pool.upperBound
        }
        for (token, offset) in receiveBuffers.enumerated() {
            do {
                try window.region.fill(0, at: offset, count: size)
                try rx.add(readable: [], writable: [VirtqueueBuffer(address: window.address(of: offset), length: size)], token: token)
            } catch let error as VirtioError { throw RPMsgError(.virtio(error)) } catch { throw RPMsgError(.invalidArgument("\(error)")) }
        }
        tx.disableInterrupts()
        rx.enableInterrupts()
        installHandlers()
        // Linux decides before DRIVER_OK whether the remote wants the kick, and sends it after.
        let kickReceive = profile.kicksReceiveQueueWhenReady && rx.kickPrepare()
        do {
            try transport.setStatus(profile.readyStatus)
            if kickReceive { try rx.notify() }
        } catch { throw RPMsgError(.virtio(error)) }
    }

    /// Sets up the remote (device) side over `transport`: waits for DRIVER_OK (acknowledging
    /// NEEDS_RESET requests meanwhile), then uses the vrings the host laid out.
    /// - Parameter window: the shared memory the host's buffers lie in.
    public init(remote transport: any VirtioTransport, window: BufferWindow,
                configuration: RPMsgConfiguration = RPMsgConfiguration()) throws(RPMsgError) {
        guard transport.role == .device else { throw RPMsgError(.invalidArgument("the remote side needs a device-role transport")) }
        try Self.checkSizes(configuration)
        let locations = transport.vringLocations
        guard locations.count >= 2 else { throw RPMsgError(.invalidArgument("RPMsg needs 2 vrings, the device has \(locations.count)")) }
        self.role = .device
        self.configuration = configuration
        self.transport = transport
        self.window = window
        self.sharedWindow = SharedBufferWindow(window)
        self.profile = nil
        self.dynamicAddressCount = configuration.dynamicAddressCount ?? 128
        self.transmitLimit = 0
        let ready: Bool
        do {
            ready = try transport.waitForDriverOK(timeout: configuration.handshakeTimeout)
            features = ready ? try transport.deviceFeatures().intersection(try transport.driverFeatures()) : []
        } catch { throw RPMsgError(.virtio(error)) }
        guard ready else { throw RPMsgError(.handshakeTimedOut(configuration.handshakeTimeout)) }
        let eventIndex = features.contains(.ringEventIndex)
        let tx: DeviceQueue, rx: DeviceQueue
        do {
            tx = try DeviceQueue(location: locations[0], window: window, usesEventIndex: eventIndex,
                                 kick: { [transport] () throws(VirtioError) in try transport.kick(vring: 0) })
            rx = try DeviceQueue(location: locations[1], window: window, usesEventIndex: eventIndex,
                                 kick: { [transport] () throws(VirtioError) in try transport.kick(vring: 1) })
        } catch { throw RPMsgError(.virtio(error)) }
        rings = .device(transmit: tx, receive: rx)
        receiveBuffers = []
        transmitCapacity = Atomic(0)
        tx.disableNotifications()
        rx.enableNotifications()
        installHandlers()
        // Messages the host queued before we were ready.
        handleNotification()
    }

    /// Payload bytes a buffer of `length` bytes offered by the host can carry: the header's 16-bit
    /// `len` field caps it, however large a buffer the other side offers.
    static func payloadCapacity(_ length: Int) -> Int { min(length - RPMsgHeader.size, Int(UInt16.max)) }

    private static func checkSizes(_ c: RPMsgConfiguration) throws(RPMsgError) {
        for size in [c.hostToRemoteBufferSize, c.remoteToHostBufferSize] where size <= RPMsgHeader.size || size > 65536 {
            throw RPMsgError(.invalidArgument("buffer size \(size) must be between 17 and 65536 bytes"))
        }
        if let count = c.dynamicAddressCount, count <= 0 || count > Int(Int32.max) - Int(RPMsgAddress.firstDynamic.rawValue) + 1 {
            throw RPMsgError(.invalidArgument("dynamic address count \(count) is out of range"))
        }
    }

    private func installHandlers() {
        let receiveVring = role == .driver ? 0 : 1
        transport.setNotificationHandler(forVring: receiveVring) { [weak self] in self?.handleNotification() }
        transport.setNotificationHandler(forVring: 1 - receiveVring) { [weak self] in
            guard let self, transmitWaiters.load(ordering: .acquiring) > 0 else { return }
            transmitReturned.signal()
        }
        // A device that goes away (its remote stopped or crashed) takes this RPMsg with it, as
        // Linux removes the rpmsg bus of a stopped remote: endpoints, whose handlers usually
        // capture this device, are dropped.
        transport.setRemovalHandler { [weak self] in self?.close() }
        // Messages sent and not yet taken by the remote keep it from counting as idle.
        if case let .driver(transmit, _) = rings {
            let lifetime = self.lifetime
            lifetime.transmit.withLock { $0 = transmit }
            transport.setOutstandingWork { (lifetime.transmit.withLock { $0 }?.unreturnedCount ?? 0) > 0 }
        }
    }

    /// Asks the peer to notify when transmit buffers come back (`enable`) or not.
    private func requestTransmitNotifications(_ enable: Bool) {
        _ = withRings {
            switch rings {
            case let .driver(queue, _): if enable { _ = queue.enableInterrupts() } else { queue.disableInterrupts() }
            case let .device(queue, _): if enable { _ = queue.enableNotifications() } else { queue.disableNotifications() }
            }
        }
    }

    /// Whether the name service was negotiated (`VIRTIO_RPMSG_F_NS` in both feature words).
    public var usesNameService: Bool { features.contains(.rpmsgNameService) }

    /// Payload bytes an outgoing message may hold (`rpmsg_get_tx_payload_buffer` capacity). In the
    /// device role it is known once the host has offered a buffer; 0 before.
    public var transmitPayloadSize: Int {
        if case let .device(queue, _) = rings, transmitCapacity.load(ordering: .relaxed) == 0, let chain = queue.takeAvailable() {
            spare(chain)
        }
        return transmitCapacity.load(ordering: .relaxed)
    }

    /// Payload bytes an incoming message may hold.
    public var receivePayloadSize: Int {
        (role == .driver ? configuration.remoteToHostBufferSize : configuration.hostToRemoteBufferSize) - RPMsgHeader.size
    }

    /// Counters, including every malformed item the peer produced.
    public var statistics: RPMsgStatistics {
        var result = state.withLock { $0.statistics }
        let (rx, tx) = (receiveQueue.errorCounts, transmitQueue.errorCounts)
        result.receiveQueueErrors = rx
        result.transmitQueueErrors = tx
        result.receiveQueueKicks = receiveQueue.kickCount
        result.transmitQueueKicks = transmitQueue.kickCount
        return result
    }

    /// What runs when the peer announces a name no local endpoint is bound to (`ns_bind_cb`).
    /// Services announced before the handler was set (the remote announces as soon as the host
    /// sets DRIVER_OK) are passed to it at once, in order.
    public func onNameServiceAnnouncement(_ handler: (@Sendable (String, RPMsgAddress) -> Void)?) {
        let earlier = state.withLock { s in
            s.onNameService = handler
            return s.unboundServices
        }
        if let handler { for service in earlier { handler(service.name, service.address) } }
    }

    /// Services the peer announced that no local endpoint is bound to (nor destroyed since).
    public var announcedServices: [(name: String, address: RPMsgAddress)] { state.withLock { $0.unboundServices } }

    /// Sets what is told about every message sent or received (for traces). It runs on the
    /// sending or receiving thread; keep it short.
    public func setTrafficObserver(_ observer: (@Sendable (RPMsgTraffic) -> Void)?) {
        state.withLock { $0.onTraffic = observer }
    }

    /// Sets what runs after each batch of received messages has been handled — after the
    /// endpoints' callbacks returned — so a thread waiting for what they record can look again.
    public func setActivityObserver(_ observer: (@Sendable () -> Void)?) {
        state.withLock { $0.onActivity = observer }
    }

    private func observe(_ observer: @Sendable (RPMsgTraffic) -> Void, _ direction: RPMsgTraffic.Direction, _ header: RPMsgHeader, payloadOffset: Int) {
        let prefix = (try? window.region.readBytes(at: payloadOffset, count: min(16, Int(header.length)))) ?? []
        observer(RPMsgTraffic(direction: direction, source: header.source, destination: header.destination, length: Int(header.length), prefix: prefix))
    }

    /// Stops the device: later sends fail with ``RPMsgError/Kind/deviceClosed``, blocked senders
    /// wake with it, and notifications are ignored.
    public func close() {
        // What the device let go of is released after its locks: an endpoint's handler may hold
        // the last reference to something whose deinit comes back here (a remoteproc instance
        // whose devices go away closes this device again).
        let released = state.withLock { s in
            defer {
                s.closed = true
                s.endpoints.removeAll()
                s.onActivity = nil
                s.onTraffic = nil
            }
            return (s.endpoints, s.onActivity, s.onTraffic)
        }
        // Waits for a ring operation in progress on another thread; none starts after.
        ringGate.close()
        transmitReturned.signal()   // a waiting sender looks again and finds the device closed
        transport.setNotificationHandler(forVring: role == .driver ? 0 : 1, nil)
        if role == .driver { transport.setOutstandingWork(nil) }
        withExtendedLifetime(released) {}
    }

    /// Closed, or its transport is gone (the remote crashed or stopped).
    public var isClosed: Bool { state.withLock { $0.closed } || !transport.isAvailable }

    // MARK: Endpoints

    /// Creates an endpoint (`rpmsg_create_ept`). With a name, the name service on and no
    /// destination, the endpoint is announced to the peer.
    /// - Parameters:
    ///   - address: a fixed local address, or ANY for the lowest free dynamic one (from 1024).
    ///   - destination: the peer address, or ANY to learn it from the peer.
    /// - Throws: ``RPMsgError`` — address in use, no dynamic address left, closed, or the
    ///   announcement could not be sent.
    public func createEndpoint(name: String = "", address: RPMsgAddress = .any, destination: RPMsgAddress = .any,
                               onUnbind: (@Sendable (RPMsgEndpoint) -> Void)? = nil,
                               onReceive: @escaping @Sendable (RPMsgMessage) -> Void) throws(RPMsgError) -> RPMsgEndpoint {
        guard name.utf8.count <= NameServiceMessage.nameSize else {
            throw RPMsgError(.invalidArgument("service name '\(name)' is longer than \(NameServiceMessage.nameSize) bytes"))
        }
        let endpoint = try state.withLock { (s) throws(RPMsgError) -> RPMsgEndpoint in
            guard !s.closed else { throw RPMsgError(.deviceClosed) }
            let chosen: RPMsgAddress
            if address.isAny {
                let first = RPMsgAddress.firstDynamic.rawValue
                guard let free = (first..<(first + UInt32(dynamicAddressCount))).first(where: { s.endpoints[$0] == nil }) else {
                    throw RPMsgError(.addressesExhausted(capacity: dynamicAddressCount))
                }
                chosen = RPMsgAddress(free)
            } else {
                guard s.endpoints[address.rawValue] == nil, !(address == .nameService && usesNameService) else {
                    throw RPMsgError(.addressInUse(address))
                }
                chosen = address
            }
            let endpoint = RPMsgEndpoint(name: name, address: chosen, destination: destination, device: self,
                                         onReceive: onReceive, onUnbind: onUnbind)
            s.endpoints[chosen.rawValue] = endpoint
            if !destination.isAny { s.unboundServices.removeAll { $0.address == destination } }
            return endpoint
        }
        let announce = profile?.announces(name: name, fixedAddress: !address.isAny, destination: destination)
            ?? (!name.isEmpty && destination.isAny)
        if announce && usesNameService {
            do {
                try send(NameServiceMessage(name: name, address: endpoint.address, action: .create).bytes,
                         from: endpoint.address, to: .nameService, timeout: Self.defaultSendTimeout)
                endpoint.state.withLock { $0.announced = true }
            } catch {
                _ = state.withLock { $0.endpoints.removeValue(forKey: endpoint.address.rawValue) }
                endpoint.state.withLock { $0.destroyed = true }
                throw error
            }
        }
        return endpoint
    }

    /// The endpoint at `address`, if any.
    public func endpoint(at address: RPMsgAddress) -> RPMsgEndpoint? { state.withLock { $0.endpoints[address.rawValue] } }

    func destroy(_ endpoint: RPMsgEndpoint) {
        let announced: Bool = endpoint.state.withLock { e in
            guard !e.destroyed else { return false }
            e.destroyed = true
            return e.announced
        }
        if announced {
            try? send(NameServiceMessage(name: endpoint.name, address: endpoint.address, action: .destroy).bytes,
                      from: endpoint.address, to: .nameService, timeout: .seconds(1))
        }
        state.withLock { s in
            if s.endpoints[endpoint.address.rawValue] === endpoint { s.endpoints.removeValue(forKey: endpoint.address.rawValue) }
        }
    }

    // MARK: Sending

    /// Sends `bytes` from `source` to `destination` (`rpmsg_send_offchannel_raw`), waiting up to
    /// `timeout` for a buffer (zero: fail at once).
    public func send(_ bytes: [UInt8], from source: RPMsgAddress, to destination: RPMsgAddress,
                     timeout: Duration = RPMsgDevice.defaultSendTimeout) throws(RPMsgError) {
        guard !destination.isAny, !source.isAny else { throw RPMsgError(.invalidArgument("source and destination must be addresses, not ANY")) }
        if role == .driver, bytes.count > transmitCapacity.load(ordering: .relaxed) {
            throw RPMsgError(.payloadTooLarge(size: bytes.count, capacity: transmitCapacity.load(ordering: .relaxed)))
        }
        let buffer = try reserveBuffer(timeout: timeout)
        guard bytes.count <= buffer.capacity else {
            try? release(buffer)
            throw RPMsgError(.payloadTooLarge(size: bytes.count, capacity: buffer.capacity))
        }
        do { try window.region.write(bytes, at: buffer.bufferOffset + RPMsgHeader.size) } catch {
            try? release(buffer)
            throw RPMsgError(.invalidArgument("\(error)"))
        }
        try send(buffer, length: bytes.count, from: source, to: destination)
    }

    /// Reserves a transmit buffer for zero-copy send (`rpmsg_get_tx_payload_buffer`), waiting up
    /// to `timeout` for one to be free.
    ///
    /// While it waits it asks the peer for a notification when buffers come back, looks at the
    /// ring in one bounded spin (a peer draining a full ring returns buffers as it goes but
    /// notifies once per batch), then sleeps until a notification arrives — or, since a peer may
    /// not notify (or nobody dispatches its notifications, as on a remote's own thread), until
    /// the next look at the ring: 20 µs, doubling to 1 ms.
    public func reserveBuffer(timeout: Duration = RPMsgDevice.defaultSendTimeout) throws(RPMsgError) -> RPMsgTxBuffer {
        if let buffer = try takeTransmitBuffer() { return buffer }
        guard timeout > .zero else { throw RPMsgError(.noBuffer(waited: .zero)) }
        guard !transport.isPeerHeldByCurrentThread else { throw RPMsgError(.noBufferInInterruptHandler) }
        let clock = transport.clock
        let deadline = clock.now + timeout
        if transmitWaiters.add(1, ordering: .acquiringAndReleasing).newValue == 1 { requestTransmitNotifications(true) }
        defer {
            if transmitWaiters.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { requestTransmitNotifications(false) }
        }
        var pause: Duration = .microseconds(20)
        // A peer draining a full ring returns buffers one by one but notifies once, at the end
        // of its batch (as OpenAMP's and this project's firmware do): before the first park the
        // ring is looked at in a bounded spin, so the sender refills as buffers come back and the
        // peer never runs dry and parks. (Not in virtual time: spinning lets no time pass.)
        var spin = !clock.isVirtual
        while true {
            // Looked at after asking for the notification: a return in between is not missed.
            if let buffer = try takeTransmitBuffer() { return buffer }
            let left = deadline - clock.now
            guard left > .zero else { throw RPMsgError(.noBuffer(waited: timeout)) }
            if spin {
                spin = false
                if let buffer = try transmitReturned.spin(for: left, lookingFor: { () throws(RPMsgError) in try takeTransmitBuffer() }) {
                    return buffer
                }
                continue    // the time left, and the ring once more, before the park
            }
            _ = clock.wait(for: transmitReturned, timeout: min(pause, left))
            pause = min(pause * 2, .milliseconds(1))
        }
    }

    private func takeTransmitBuffer() throws(RPMsgError) -> RPMsgTxBuffer? {
        let taken: Result<RPMsgTxBuffer?, RPMsgError>? = withRings { Result { () throws(RPMsgError) in try takeTransmitBufferOnRings() } }
        guard let taken else { throw RPMsgError(.deviceClosed) }
        return try taken.get()
    }

    private func takeTransmitBufferOnRings() throws(RPMsgError) -> RPMsgTxBuffer? {
        switch rings {
        case let .driver(queue, _): try takeTransmitBuffer(from: queue)
        case let .device(queue, _): try takeTransmitBuffer(from: queue)
        }
    }

    /// The host's: a free buffer of its pool (carving a new one while the pool lasts).
    private func takeTransmitBuffer(from queue: DriverQueue) throws(RPMsgError) -> RPMsgTxBuffer? {
        return try state.withLock { (s) throws(RPMsgError) -> RPMsgTxBuffer? in
            guard !s.closed else { throw RPMsgError(.deviceClosed) }
            queue.takeAllUsed { s.freeTransmit.append($0.token) }
            let size = configuration.hostToRemoteBufferSize
            if s.freeTransmit.isEmpty, s.transmitBuffers.count < transmitLimit, s.poolNext + size <= s.poolEnd {
                s.transmitBuffers.append(s.poolNext)
                s.freeTransmit.append(s.transmitBuffers.count - 1)
                s.poolNext += size
            }
            guard let token = s.freeTransmit.popLast() else { return nil }
            return RPMsgTxBuffer(token: token, window: sharedWindow, bufferOffset: s.transmitBuffers[token], capacity: size - RPMsgHeader.size)
        }
    }

    /// The remote's: a buffer the host made available on its receive ring.
    private func takeTransmitBuffer(from queue: DeviceQueue) throws(RPMsgError) -> RPMsgTxBuffer? {
        return try state.withLock { (s) throws(RPMsgError) -> RPMsgTxBuffer? in
            guard !s.closed else { throw RPMsgError(.deviceClosed) }
            while true {
                guard let chain = s.spareChains.popLast() ?? queue.takeAvailable() else { return nil }
                // The host's receive buffer: one writable segment that holds at least a header.
                guard chain.segments.count == 1, let segment = chain.segments.first, segment.isWritable,
                      segment.length > RPMsgHeader.size else {
                    s.statistics.droppedMalformedHeader += 1
                    try? queue.returnUsed(chain.head, length: 0)
                    _ = try? queue.notifyIfNeeded()   // the host gets it back and posts a good one
                    continue
                }
                transmitCapacity.store(Self.payloadCapacity(segment.length), ordering: .relaxed)
                return RPMsgTxBuffer(token: chain.head, window: sharedWindow, bufferOffset: segment.offset, capacity: Self.payloadCapacity(segment.length))
            }
        }
    }

    private func spare(_ chain: AvailableChain) {
        state.withLock { $0.spareChains.append(chain) }
        if let segment = chain.segments.first, chain.segments.count == 1, segment.isWritable, segment.length > RPMsgHeader.size {
            transmitCapacity.store(Self.payloadCapacity(segment.length), ordering: .relaxed)
        }
    }

    /// Sends a filled zero-copy buffer of `length` payload bytes (`rpmsg_send_offchannel_nocopy`).
    public func send(_ buffer: RPMsgTxBuffer, length: Int, from source: RPMsgAddress, to destination: RPMsgAddress) throws(RPMsgError) {
        guard length >= 0, length <= buffer.capacity else { throw RPMsgError(.payloadTooLarge(size: length, capacity: buffer.capacity)) }
        guard buffer.owned.exchange(false, ordering: .acquiringAndReleasing) else { throw RPMsgError(.bufferNotOwned) }
        let header = RPMsgHeader(source: source, destination: destination, length: UInt16(length))
        do { try header.write(to: window.region, at: buffer.bufferOffset) } catch { throw RPMsgError(.invalidArgument("\(error)")) }
        let total = profile?.sentLength(payload: length, bufferSize: configuration.hostToRemoteBufferSize) ?? RPMsgHeader.size + length
        do {
            let (closed, observer) = state.withLock { s in
                s.statistics.messagesSent += 1
                s.statistics.payloadBytesSent += length
                return (s.closed, s.onTraffic)
            }
            guard !closed else { throw RPMsgError(.deviceClosed) }
            if let observer { observe(observer, .sent, header, payloadOffset: buffer.bufferOffset + RPMsgHeader.size) }
            let outcome: Result<Void, VirtioError>? = withRings {
                Result { () throws(VirtioError) in
                    switch rings {
                    case let .driver(queue, _):
                        if try queue.addPreparingKick(readable: [VirtqueueBuffer(address: window.address(of: buffer.bufferOffset), length: total)],
                                                      writable: [], token: buffer.token) {
                            try queue.notify()      // the kick is traffic, and resumes a remote suspended for idleness
                        } else {
                            // Not kicked for (the remote asked for no kicks while it polls): still a
                            // request. Noted after it is published, so an autosuspend deciding
                            // meanwhile either sees it outstanding or is seen here and undone.
                            transport.noteDriverActivity()
                        }
                    case let .device(queue, _):
                        try queue.returnUsed(buffer.token, length: total)
                        try queue.notifyIfNeeded()
                    }
                }
            }
            guard let outcome else { throw RPMsgError(.deviceClosed) }
            if case let .failure(error) = outcome { throw RPMsgError(.virtio(error)) }
        }
    }

    /// Gives back a reserved transmit buffer unsent (`rpmsg_release_tx_buffer`).
    /// - Throws: ``RPMsgError/Kind/bufferNotOwned`` when it was already sent or released.
    public func release(_ buffer: RPMsgTxBuffer) throws(RPMsgError) {
        guard buffer.owned.exchange(false, ordering: .acquiringAndReleasing) else { throw RPMsgError(.bufferNotOwned) }
        state.withLock { s in
            if role == .driver { s.freeTransmit.append(buffer.token) } else {
                let segment = ChainSegment(offset: buffer.bufferOffset, length: buffer.capacity + RPMsgHeader.size, isWritable: true)
                s.spareChains.append(AvailableChain(head: buffer.token, segments: [segment]))
            }
        }
    }

    // MARK: Receiving

    /// Gives back a received buffer kept with ``RPMsgMessage/hold()`` (`rpmsg_release_rx_buffer`).
    /// - Throws: ``RPMsgError/Kind/bufferNotOwned`` when it was already released.
    public func release(_ buffer: RPMsgHeldBuffer) throws(RPMsgError) {
        guard !buffer.released.exchange(true, ordering: .acquiringAndReleasing) else { throw RPMsgError(.bufferNotOwned) }
        state.withLock { _ = $0.heldReceive.remove(buffer.token) }
        recycle(token: buffer.token, chainLength: buffer.chainLength)
        flushReceiveKicks()
    }

    /// Processes everything the peer queued for us (the transport's notification for our receive
    /// vring runs this). Concurrent and re-entrant calls fold into the running one.
    public func handleNotification() {
        guard receiveRequests.add(1, ordering: .acquiringAndReleasing).oldValue == 0 else { return }
        var seen = 1
        while true {
            drainReceiveQueue()
            state.withLock { $0.onActivity }?()
            let (exchanged, current) = receiveRequests.compareExchange(expected: seen, desired: 0, ordering: .acquiringAndReleasing)
            if exchanged { return }
            seen = current
        }
    }

    private func drainReceiveQueue() {
        while true {
            while let (token, offset, capacity, chainLength) = withRings({ nextReceived() }) ?? nil {
                deliver(token: token, offset: offset, capacity: capacity, chainLength: chainLength)
                if profile?.kicksEachRepostedBuffer == true { flushReceiveKicks() }
            }
            flushReceiveKicks()
            // Work that appeared while re-enabling is taken in another pass (a corrupt index
            // is not reported as work, so it cannot keep us here).
            let pending = withRings {
                switch rings {
                case let .driver(_, queue): queue.enableInterrupts()
                case let .device(_, queue): queue.enableNotifications()
                }
            }
            if pending != true { return }
        }
    }

    /// The next received buffer: token, offset, usable bytes and the length to return it with.
    private func nextReceived() -> (Int, Int, Int, Int)? {
        switch rings {
        case let .driver(_, queue): nextReceived(from: queue)
        case let .device(_, queue): nextReceived(from: queue)
        }
    }

    /// The host's: the next used buffer the remote filled.
    private func nextReceived(from queue: DriverQueue) -> (Int, Int, Int, Int)? {
        while let used = queue.takeUsed() {
            let offset = receiveBuffers[used.token]
            guard let length = used.length else {
                recycleOnRings(token: used.token, chainLength: 0)
                continue
            }
            return (used.token, offset, length, 0)
        }
        return nil
    }

    /// The remote's: the next buffer the host made available, when it is well-formed.
    private func nextReceived(from queue: DeviceQueue) -> (Int, Int, Int, Int)? {
        while let chain = queue.takeAvailable() {
            guard chain.segments.count == 1, let segment = chain.segments.first, !segment.isWritable else {
                state.withLock { $0.statistics.droppedMalformedHeader += 1 }
                try? queue.returnUsed(chain.head, length: 0)
                continue
            }
            return (chain.head, segment.offset, segment.length, segment.length)
        }
        return nil
    }

    private func deliver(token: Int, offset: Int, capacity: Int, chainLength: Int) {
        guard capacity >= RPMsgHeader.size, let header = try? RPMsgHeader(from: window.region, at: offset),
              Int(header.length) <= capacity - RPMsgHeader.size else {
            state.withLock { $0.statistics.droppedMalformedHeader += 1 }
            recycle(token: token, chainLength: chainLength)
            return
        }
        // One pass under the device lock per message (this is the receive hot path): the endpoint,
        // the counters and the traffic observer.
        let isNameService = header.destination == .nameService && usesNameService
        let (endpoint, observer) = state.withLock { s -> (RPMsgEndpoint?, (@Sendable (RPMsgTraffic) -> Void)?) in
            guard !isNameService else { return (nil, s.onTraffic) }
            let endpoint = s.endpoints[header.destination.rawValue]
            if endpoint != nil {
                s.statistics.messagesReceived += 1
                s.statistics.payloadBytesReceived += Int(header.length)
            } else {
                s.statistics.droppedNoEndpoint += 1
            }
            return (endpoint, s.onTraffic)
        }
        if let observer { observe(observer, .received, header, payloadOffset: offset + RPMsgHeader.size) }
        let buffer = RPMsgHeldBuffer(token: token, window: sharedWindow, payloadOffset: offset + RPMsgHeader.size, chainLength: chainLength)
        let message = RPMsgMessage(source: header.source, destination: header.destination, length: Int(header.length), buffer: buffer)
        if isNameService {
            handleNameService(message)
        } else if let endpoint {
            endpoint.state.withLock { if $0.destination.isAny { $0.destination = header.source } }
            endpoint.onReceive(message)
        }
        if buffer.held.load(ordering: .relaxed) {
            state.withLock { _ = $0.heldReceive.insert(token) }
        } else {
            buffer.released.store(true, ordering: .relaxed)
            recycle(token: token, chainLength: chainLength)
        }
    }

    private func handleNameService(_ message: RPMsgMessage) {
        guard let ns = NameServiceMessage(bytes: message.payload) else {
            state.withLock { $0.statistics.droppedMalformedNameService += 1 }
            return
        }
        // Finding the endpoint, recording an unbound service and reading the handler happen in one
        // critical section, so a handler set concurrently either sees the service in the replay
        // or is called here — never neither.
        let (endpoint, bind): (RPMsgEndpoint?, (@Sendable (String, RPMsgAddress) -> Void)?) = state.withLock { s in
            let endpoint = s.endpoints.values.first { e in e.name == ns.name && (e.destination == ns.address || e.destination.isAny) }
            if endpoint == nil && ns.action == .create { s.unboundServices.append((ns.name, ns.address)) }
            return (endpoint, s.onNameService)
        }
        switch ns.action {
        case .create:
            if let endpoint { endpoint.state.withLock { $0.destination = ns.address } } else {
                bind?(ns.name, ns.address)
            }
        case .destroy:
            state.withLock { $0.unboundServices.removeAll { $0.name == ns.name && $0.address == ns.address } }
            guard let endpoint, endpoint.destination == ns.address else { return }
            endpoint.state.withLock { $0.destination = .any }
            endpoint.onUnbind?(endpoint)
        }
    }

    /// Returns a receive buffer to the peer: the host reposts it, the remote returns it used.
    private func recycle(token: Int, chainLength: Int) {
        _ = withRings { recycleOnRings(token: token, chainLength: chainLength) }
    }

    private func recycleOnRings(token: Int, chainLength: Int) {
        switch rings {
        case let .driver(_, queue):
            let size = configuration.remoteToHostBufferSize
            try? queue.add(readable: [], writable: [VirtqueueBuffer(address: window.address(of: receiveBuffers[token]), length: size)], token: token)
        case let .device(_, queue):
            try? queue.returnUsed(token, length: chainLength)
        }
    }

    private func flushReceiveKicks() {
        _ = withRings {
            switch rings {
            case let .driver(_, queue): _ = try? queue.kickIfNeeded()
            case let .device(_, queue): _ = try? queue.notifyIfNeeded()
            }
        }
    }
}
