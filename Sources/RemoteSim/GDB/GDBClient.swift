import MetalIO

/// A small GDB remote-serial-protocol client, for driving a ``GDBServer`` from Swift without
/// gdb: scripted debugging in tests, and the debugger benchmarks. One request at a time; replies
/// are checked, acknowledged and unescaped; console output (`O` packets) collects in ``output``.
public final class GDBClient {
    private let fd: Int32
    private var reader = GDBPacketReader(maximumPacketSize: 1 << 20)
    private var pending: [GDBInput] = []
    /// Console output the server sent (`monitor` answers, explanations of stops).
    public private(set) var output = ""

    /// Connects to a server on 127.0.0.1:`port`.
    public init(port: UInt16) throws {
        fd = try LoopbackSocket.connect(port: port)
    }

    deinit { LoopbackSocket.close(fd) }

    /// Sends `packet` and returns the reply's payload (an empty string is the "unsupported" reply).
    /// Console output that comes first is added to ``output``.
    /// - Throws: ``GDBConnectionError`` when no reply comes within `timeout` or the server has gone.
    public func request(_ packet: String, timeout: Duration = .seconds(10)) throws -> String {
        guard LoopbackSocket.send(fd, GDBPacketReader.frame(packet)) else { throw GDBConnectionError(.closed) }
        return try reply(timeout: timeout)
    }

    /// Sends Ctrl-C (0x03): a running core halts and the pending `c` gets its stop reply.
    public func interrupt() { LoopbackSocket.send(fd, [0x03]) }

    /// Sends `packet` without waiting (for `c`, answered only when the core stops).
    public func post(_ packet: String) { LoopbackSocket.send(fd, GDBPacketReader.frame(packet)) }

    /// Sends `bytes` as they are, unframed (protocol tests: noise between packets).
    public func sendRaw(_ bytes: [UInt8]) { LoopbackSocket.send(fd, bytes) }

    /// Waits for the next reply packet.
    public func reply(timeout: Duration = .seconds(10)) throws -> String {
        let clock = RealTimeClock.shared
        let deadline = clock.now + timeout
        while true {
            while !pending.isEmpty {
                switch pending.removeFirst() {
                case .ack, .interrupt: continue
                case .nack, .rejected: throw GDBConnectionError(.refused)
                case let .packet(payload):
                    LoopbackSocket.send(fd, [UInt8(ascii: "+")])
                    let text = String(decoding: payload, as: UTF8.self)
                    if text.count > 1, text.first == "O", text != "OK", let console = bytes(fromHex: text.dropFirst()) {
                        output += String(decoding: console, as: UTF8.self)
                        continue
                    }
                    return text
                }
            }
            let left = deadline - clock.now
            guard left > .zero else { throw GDBConnectionError(.noReply(within: timeout)) }
            let milliseconds = Int32(clamping: max(1, left.totalMilliseconds))
            guard let bytes = LoopbackSocket.receive(fd, milliseconds: min(milliseconds, 100)) else { throw GDBConnectionError(.closed) }
            pending += reader.feed(bytes)
        }
    }

    /// `monitor COMMAND`: what the server printed.
    public func monitor(_ command: String) throws -> String {
        output = ""
        let reply = try request("qRcmd," + hexString(Array(command.utf8)))
        guard reply == "OK" else { throw GDBConnectionError(.monitorFailed(command: command, reply: reply)) }
        return output
    }
}
