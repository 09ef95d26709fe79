import Virtio
import Synchronization
import MetalIO

/// A message delivered to an endpoint's receive callback.
///
/// Its payload lies in the shared buffer until the callback returns. To keep the buffer longer
/// (zero-copy receive), call ``hold()`` inside the callback and give the returned buffer back
/// with ``RPMsgDevice/release(_:)`` (OpenAMP's `rpmsg_hold_rx_buffer` / `rpmsg_release_rx_buffer`).
public struct RPMsgMessage: Sendable {
    public let source: RPMsgAddress
    public let destination: RPMsgAddress
    /// Payload length (the header's `len`, checked against the buffer).
    public let length: Int
    let buffer: RPMsgHeldBuffer

    /// A copy of the payload.
    public var payload: [UInt8] { (try? buffer.shared.window.region.readBytes(at: buffer.payloadOffset, count: length)) ?? [] }

    /// Calls `body` with the payload in shared memory. The pointer must not escape `body`, and is
    /// valid only during the callback or while the buffer is held.
    public func withUnsafePayload<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try buffer.shared.window.region.withUnsafeMutableBytes(at: buffer.payloadOffset, count: length) { try body(UnsafeRawBufferPointer($0)) }
    }

    /// Keeps the buffer after the callback returns; release it with ``RPMsgDevice/release(_:)``.
    @discardableResult
    public func hold() -> RPMsgHeldBuffer {
        buffer.held.store(true, ordering: .relaxed)
        return buffer
    }
}

/// A received buffer kept by ``RPMsgMessage/hold()``.
public final class RPMsgHeldBuffer: Sendable {
    let token: Int
    let shared: SharedBufferWindow
    let payloadOffset: Int
    let chainLength: Int
    let held = Atomic<Bool>(false)
    let released = Atomic<Bool>(false)

    init(token: Int, window: SharedBufferWindow, payloadOffset: Int, chainLength: Int) {
        self.token = token
        self.shared = window
        self.payloadOffset = payloadOffset
        self.chainLength = chainLength
    }
}

/// A device's buffer window, held by reference: a buffer handed out per message retains this one
/// object instead of copying the window (whose region holds several references).
final class SharedBufferWindow: Sendable {
    let window: BufferWindow
    init(_ window: BufferWindow) { self.window = window }
}

/// A transmit buffer reserved for zero-copy send (`rpmsg_get_tx_payload_buffer`). Fill it with
/// ``write(_:at:)`` or ``withUnsafeMutablePayload(_:)``, then send it with
/// ``RPMsgEndpoint/send(_:length:to:)`` or give it back unsent with ``RPMsgDevice/release(_:)``.
public final class RPMsgTxBuffer: Sendable {
    let token: Int
    let shared: SharedBufferWindow
    let bufferOffset: Int
    /// How many payload bytes fit.
    public let capacity: Int
    let owned = Atomic<Bool>(true)

    init(token: Int, window: SharedBufferWindow, bufferOffset: Int, capacity: Int) {
        self.token = token
        self.shared = window
        self.bufferOffset = bufferOffset
        self.capacity = capacity
    }

    /// Writes `bytes` into the payload at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int = 0) throws(RPMsgError) {
        guard owned.load(ordering: .relaxed) else { throw RPMsgError(.bufferNotOwned) }
        guard offset >= 0, bytes.count <= capacity - offset else {
            throw RPMsgError(.payloadTooLarge(size: offset + bytes.count, capacity: capacity))
        }
        do { try shared.window.region.write(bytes, at: bufferOffset + RPMsgHeader.size + offset) } catch { throw RPMsgError(.invalidArgument("\(error)")) }
    }

    /// Calls `body` with the whole payload area. The pointer must not escape `body`.
    public func withUnsafeMutablePayload<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        guard owned.load(ordering: .relaxed) else { throw RPMsgError(.bufferNotOwned) }
        return try shared.window.region.withUnsafeMutableBytes(at: bufferOffset + RPMsgHeader.size, count: capacity, body)
    }
}

/// An RPMsg endpoint (`struct rpmsg_endpoint`): a local address, an optional service name, the
/// peer address it talks to, and callbacks for messages and for the peer's service going away.
public final class RPMsgEndpoint: Sendable {
    /// The service name ("" for none).
    public let name: String
    /// The local address.
    public let address: RPMsgAddress
    public let device: RPMsgDevice
    let onReceive: @Sendable (RPMsgMessage) -> Void
    let onUnbind: (@Sendable (RPMsgEndpoint) -> Void)?
    let state: MetalMutex<(destination: RPMsgAddress, destroyed: Bool, announced: Bool)>

    init(name: String, address: RPMsgAddress, destination: RPMsgAddress, device: RPMsgDevice,
         onReceive: @escaping @Sendable (RPMsgMessage) -> Void, onUnbind: (@Sendable (RPMsgEndpoint) -> Void)?) {
        self.name = name
        self.address = address
        self.device = device
        self.onReceive = onReceive
        self.onUnbind = onUnbind
        self.state = MetalMutex((destination, false, false))
    }

    /// The peer address, or ANY until the peer announced itself or sent to this endpoint.
    public var destination: RPMsgAddress { state.withLock { $0.destination } }
    /// Bound to a destination and not destroyed (`is_rpmsg_ept_ready`).
    public var isReady: Bool { state.withLock { !$0.destroyed && !$0.destination.isAny } }
    public var isDestroyed: Bool { state.withLock { $0.destroyed } }

    private func checkedDestination(_ explicit: RPMsgAddress?) throws(RPMsgError) -> RPMsgAddress {
        let (destination, destroyed) = state.withLock { ($0.destination, $0.destroyed) }
        guard !destroyed else { throw RPMsgError(.endpointDestroyed(address)) }
        let target = explicit ?? destination
        guard !target.isAny else { throw RPMsgError(.notBound(address)) }
        return target
    }

    /// Sends `bytes` to the destination (or `destination`), waiting up to `timeout` for a free
    /// buffer (`rpmsg_send` / `rpmsg_sendto`). A zero timeout is a try-send.
    /// - Throws: ``RPMsgError`` — no buffer in time, payload too large (nothing sent), destroyed, unbound.
    public func send(_ bytes: [UInt8], to destination: RPMsgAddress? = nil, timeout: Duration = RPMsgDevice.defaultSendTimeout) throws(RPMsgError) {
        try device.send(bytes, from: address, to: try checkedDestination(destination), timeout: timeout)
    }

    /// Sends without waiting: fails at once when no buffer is free (`rpmsg_trysend`).
    public func trySend(_ bytes: [UInt8], to destination: RPMsgAddress? = nil) throws(RPMsgError) {
        try send(bytes, to: destination, timeout: .zero)
    }

    /// Sends a filled zero-copy buffer (`rpmsg_send_nocopy`); the buffer then belongs to the peer.
    public func send(_ buffer: RPMsgTxBuffer, length: Int, to destination: RPMsgAddress? = nil) throws(RPMsgError) {
        try device.send(buffer, length: length, from: address, to: try checkedDestination(destination))
    }

    /// Destroys the endpoint (`rpmsg_destroy_ept`): a name-service destroy goes to the peer if a
    /// create was announced; later sends fail.
    public func destroy() { device.destroy(self) }
}
