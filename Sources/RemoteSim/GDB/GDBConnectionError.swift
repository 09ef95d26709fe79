#if canImport(Glibc)
import Glibc
#endif

/// A GDB connection that could not be made or used: the server's listening socket, or the
/// ``GDBClient``'s conversation with a server.
public struct GDBConnectionError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// `socket()` failed with `errno`.
        case socket(errno: Int32)
        /// Cannot listen on 127.0.0.1:`port`.
        case listen(port: UInt16, errno: Int32)
        /// Cannot connect to 127.0.0.1:`port`.
        case connect(port: UInt16, errno: Int32)
        /// The peer closed the connection.
        case closed
        /// The server refused a packet (a NAK, or one it could not read).
        case refused
        /// No reply came in time.
        case noReply(within: Duration)
        /// A `monitor` command answered something other than OK.
        case monitorFailed(command: String, reply: String)
    }

    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch kind {
        case let .socket(errno): "gdb: socket failed (errno \(errno))"
        case let .listen(port, errno): "gdb: cannot listen on 127.0.0.1:\(port) (errno \(errno)\(errno == EADDRINUSE ? ", the port is in use" : ""))"
        case let .connect(port, errno): "gdb: cannot connect to 127.0.0.1:\(port) (errno \(errno))"
        case .closed: "gdb: the other side closed the connection"
        case .refused: "gdb: the server refused a packet"
        case let .noReply(within): "gdb: no reply within \(within)"
        case let .monitorFailed(command, reply): "gdb: monitor \(command) answered \(reply)"
        }
    }
}
