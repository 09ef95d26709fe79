import Virtio

/// Why an RPMsg call failed.
public struct RPMsgError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// No buffer was free (try-send), or none became free within the timeout (`RPMSG_ERR_NO_BUFF`).
        case noBuffer(waited: Duration)
        /// No buffer was free, and the caller runs the peer's notification inline on the peer's
        /// own thread (``Virtio/InterruptDelivery/inline``): only the peer frees buffers, and it
        /// cannot run until this handler returns, so the send did not wait (`RPMSG_ERR_NO_BUFF`).
        case noBufferInInterruptHandler
        /// The payload does not fit a buffer (`RPMSG_ERR_BUFF_SIZE`); nothing was sent.
        case payloadTooLarge(size: Int, capacity: Int)
        /// The address is taken (`RPMSG_ERR_ADDR`).
        case addressInUse(RPMsgAddress)
        /// Every dynamic address is taken (`RPMSG_ERR_ADDR`).
        case addressesExhausted(capacity: Int)
        /// The endpoint was destroyed.
        case endpointDestroyed(RPMsgAddress)
        /// The endpoint has no destination yet (nobody announced or sent to it).
        case notBound(RPMsgAddress)
        /// The device was closed, or its remote crashed or stopped.
        case deviceClosed
        /// The peer did not finish the virtio handshake in time.
        case handshakeTimedOut(Duration)
        /// A buffer was released or sent twice, or does not belong to this device.
        case bufferNotOwned
        case invalidArgument(String)
        /// The vrings or the transport under them (status, features, a kick) failed; a transport's
        /// own error is kept inside (``Virtio/VirtioError/Kind/transport(operation:underlying:)``).
        case virtio(VirtioError)
    }
    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    /// The OpenAMP error number this corresponds to.
    public var code: Int32 {
        switch kind {
        case .noBuffer, .noBufferInInterruptHandler: -2002
        case .payloadTooLarge: -2005
        case .addressInUse, .addressesExhausted: -2007
        case .invalidArgument, .notBound, .endpointDestroyed: -2003
        case .deviceClosed, .handshakeTimedOut, .virtio: -2004
        case .bufferNotOwned: -2008
        }
    }

    public var description: String {
        switch kind {
        case let .noBuffer(waited): waited == .zero ? "no free buffer" : "no buffer became free within \(waited)"
        case .noBufferInInterruptHandler:
            "no free buffer, and the send runs in a handler on the remote's own thread (inline interrupts): the remote cannot free one until the handler returns, so it did not wait"
        case let .payloadTooLarge(size, capacity): "payload of \(size) bytes does not fit the \(capacity)-byte buffer payload"
        case let .addressInUse(a): "address \(a) is already in use"
        case let .addressesExhausted(capacity): "all \(capacity) dynamic addresses are in use"
        case let .endpointDestroyed(a): "endpoint \(a) was destroyed"
        case let .notBound(a): "endpoint \(a) has no destination yet"
        case .deviceClosed: "the RPMsg device is closed (or its remote crashed or stopped)"
        case let .handshakeTimedOut(d): "the virtio handshake did not complete within \(d)"
        case .bufferNotOwned: "the buffer is not owned by the caller (released or sent already?)"
        case let .invalidArgument(why): why
        case let .virtio(e): e.description
        }
    }
}
