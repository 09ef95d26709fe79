#if canImport(Glibc)
import Glibc
#endif

/// The TCP calls of the GDB server and client, in one place: loopback (127.0.0.1) only, Nagle
/// off (packets are small and interactive), no SIGPIPE when the peer has gone.
enum LoopbackSocket {
    /// A listening socket on 127.0.0.1:`port` (0: the kernel picks) and the port it got.
    static func listen(port: UInt16) throws(GDBConnectionError) -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw GDBConnectionError(.socket(errno: errno)) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, Glibc.listen(fd, 2) == 0 else {
            let error = errno
            close(fd)
            throw GDBConnectionError(.listen(port: port, errno: error))
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, UInt16(bigEndian: actual.sin_port))
    }

    /// The next connection on a listening socket, or `nil` when the listener was closed.
    static func accept(_ listener: Int32) -> Int32? {
        while true {
            let client = Glibc.accept(listener, nil, nil)
            if client >= 0 {
                noDelay(client)
                return client
            }
            if errno != EINTR { return nil }
        }
    }

    /// A connection to 127.0.0.1:`port`.
    static func connect(port: UInt16) throws(GDBConnectionError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw GDBConnectionError(.socket(errno: errno)) }
        var address = loopback(port)
        let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard result == 0 else {
            let error = errno
            close(fd)
            throw GDBConnectionError(.connect(port: port, errno: error))
        }
        noDelay(fd)
        return fd
    }

    /// Writes all of `bytes`; `false` when the peer has gone.
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { if errno == EINTR { continue } else { return false } }
            offset += n
        }
        return true
    }

    /// What is available, waiting up to `milliseconds`: empty when nothing came, `nil` when the peer has gone.
    static func receive(_ fd: Int32, milliseconds: Int32) -> [UInt8]? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, milliseconds)
        if ready == 0 { return [] }
        guard ready > 0 else { return errno == EINTR ? [] : nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        guard n > 0 else { return nil }
        return Array(buffer.prefix(n))
    }

    /// Stops further sends and receives (wakes a thread blocked in `accept`), then closes.
    /// Ends every blocked call on `fd` (an `accept` returns nil) without freeing the descriptor.
    static func interrupt(_ fd: Int32) {
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    static func close(_ fd: Int32) {
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }

    private static func noDelay(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    private static func loopback(_ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}
