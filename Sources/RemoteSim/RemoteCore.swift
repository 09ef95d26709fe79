import MetalIO
import Remoteproc
import RPMsg
import Synchronization
import Virtio

/// Why native firmware stopped running.
public struct FirmwareHalt: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Hashable {
        /// The host stopped the core.
        case stopped
        /// The firmware panicked with this code.
        case panic(UInt32)
        /// An access outside every memory of the board.
        case fault(address: UInt64, message: String)
    }
    public var reason: Reason
    /// Where the CPU was, for faults of an emulated core.
    public var programCounter: UInt64?
    /// The registers at the fault, for an emulated core.
    public var registers: [String: UInt64]
    /// Every register where an emulated core halted, whatever the reason (a stop, a PANIC, a fault).
    public var cpu: CPUSnapshot?
    public init(_ reason: Reason, programCounter: UInt64? = nil, registers: [String: UInt64] = [:], cpu: CPUSnapshot? = nil) {
        self.reason = reason
        self.programCounter = programCounter
        self.registers = registers
        self.cpu = cpu
    }
    public var description: String {
        switch reason {
        case .stopped: "stopped by the host"
        case let .panic(code): "panic \(hex(UInt64(code)))"
        case let .fault(address, message): "fault at \(hex(address)): \(message)"
        }
    }
}

/// What a firmware program written in Swift sees of the board, as C firmware would: memory at
/// device addresses, the mailbox (wait, kick, console, panic, watchdog, time), and — for the
/// virtio device role — the remote side's own remoteproc instance over the loaded resource table.
public final class RemoteCore: Sendable {
    public let layout: BoardLayout
    public let mailbox: Mailbox
    /// The board's memories as the remote sees them (device addresses).
    public let memories: [RemoteprocMemory]
    /// Where the loaded image's resource table is, and its size.
    public let resourceTable: (address: DeviceAddress, size: Int)?
    /// Where the image starts (its entry point).
    public let bootAddress: DeviceAddress
    /// The trace buffer (found in the table on first use) and how much the firmware has written.
    private let traceState = MetalMutex<(buffer: (address: UInt64, length: Int)?, looked: Bool, written: Int)>((nil, false, 0))
    /// The RPMsg devices ``rpmsg(vdev:configuration:)`` made: the board closes them when the
    /// firmware ends, as a reset tears down the remote's RPMsg stack. Closing drops the endpoints,
    /// whose handlers usually capture the device.
    private let rpmsgDevices = MetalMutex<[RPMsgDevice]>([])
    /// How native firmware answers suspend requests (in a struct: a `Mutex` whose value is a closure re-wraps it).
    private struct PowerPolicy { var decide: (@Sendable (SuspendKind) -> SuspendAnswer)? }
    private let powerPolicy = MetalMutex(PowerPolicy())

    /// What a debugger's `monitor` commands read (set by the board).
    let inspector: BoardInspector?

    init(layout: BoardLayout, mailbox: Mailbox, memories: [RemoteprocMemory], resourceTable: (address: DeviceAddress, size: Int)?,
         bootAddress: DeviceAddress, inspector: BoardInspector? = nil) {
        self.inspector = inspector
        self.bootAddress = bootAddress
        self.layout = layout
        self.mailbox = mailbox
        self.memories = memories
        self.resourceTable = resourceTable
    }

    /// Closes every RPMsg device the firmware made; called by the board once the program ended.
    func firmwareEnded() {
        for device in rpmsgDevices.withLock({ d in defer { d = [] }; return d }) { device.close() }
    }

    /// Throws ``FirmwareHalt`` when the host asked the core to stop (or it panicked): native
    /// firmware calls it in its loops (``waitForInterrupt()`` does too) so a stop halts it
    /// promptly. It is also where native firmware parks while the host has its clock gated
    /// (suspended). In virtual time each call is a scheduling point that takes
    /// ``virtualPollTime`` of the core's time: a native firmware that polls instead of waiting
    /// lets time pass (its watchdog fires, the host's timeouts end) as an emulated core's
    /// instructions do.
    public func checkStop() throws(FirmwareHalt) {
        mailbox.clock.advance(by: Self.virtualPollTime)
        try parkAndCheckStop()
    }

    /// What one ``checkStop()`` of native firmware costs in virtual time.
    public static let virtualPollTime: Duration = .microseconds(1)

    /// ``checkStop()`` after a wait (no time of its own).
    private func parkAndCheckStop() throws(FirmwareHalt) {
        mailbox.parkIfGated()
        try throwIfStopped()
    }

    /// ``checkStop()`` without parking: an emulated core parks only between runs, where a
    /// debugger can still reach it.
    func throwIfStopped() throws(FirmwareHalt) {
        guard mailbox.isStopRequested else { return }
        if let code = mailbox.panicCode { throw FirmwareHalt(.panic(code)) }
        throw FirmwareHalt(.stopped)
    }

    /// WAIT then ACK: blocks until the host kicks, acknowledges what it returned (before
    /// processing, so no kick is lost) and returns those bits. Throws on a stop. A suspend
    /// request that woke it is answered by the handler given to ``answerSuspendRequests(_:)``.
    @discardableResult
    public func waitForInterrupt() throws(FirmwareHalt) -> UInt32 {
        try waitForInterrupt(answering: true)
    }

    func waitForInterrupt(answering: Bool) throws(FirmwareHalt) -> UInt32 {
        let pending = mailbox.waitForInterrupt()
        try parkAndCheckStop()
        mailbox.acknowledge(pending)
        if answering { answerSuspendRequest() }
        return pending
    }

    /// SLEEP then ACK: sleeps up to `duration` of the board's time, or until the host kicks;
    /// acknowledges and returns what woke it (0: the time passed). Throws on a stop.
    @discardableResult
    public func sleep(for duration: Duration) throws(FirmwareHalt) -> UInt32 {
        let pending = mailbox.waitForInterrupt(timeout: duration)
        try parkAndCheckStop()
        if pending != 0 { mailbox.acknowledge(pending) }
        return pending
    }

    /// KICK: notifies the host. A scheduling point under a virtual clock: the host runs what
    /// the kick woke before the firmware goes on.
    public func kick(_ id: NotifyID) {
        mailbox.parkIfGated()
        mailbox.kick(id)
        mailbox.clock.yield()
    }

    /// Takes part in the suspend handshake (``PowerRegisters``): each request the host makes is
    /// answered with what `decide` returns for it, after the WAIT that it woke; `nil` stops
    /// taking part (the host then gates the clock without asking).
    public func answerSuspendRequests(_ decide: (@Sendable (SuspendKind) -> SuspendAnswer)?) {
        powerPolicy.withLock { $0.decide = decide }
        mailbox.setAnswersSuspendRequests(decide != nil)
    }

    /// Answers the request waiting, if any, with the handler's decision.
    func answerSuspendRequest() {
        guard let kind = mailbox.suspendRequest, let decide = powerPolicy.withLock({ $0.decide }) else { return }
        mailbox.answerSuspendRequest(decide(kind))
    }

    /// Writes `text` to the CONSOLE register.
    public func print(_ text: String) {
        mailbox.parkIfGated()
        for byte in text.utf8 { mailbox.console(byte) }
        mailbox.console(UInt8(ascii: "\n"))
    }

    /// Appends `text` and a newline to the resource table's trace buffer (RSC_TRACE), keeping it
    /// NUL-terminated, as C firmware's logging does; the host reads it as console output. When the
    /// buffer is full the text is dropped (a ring that wraps would need the host to follow it).
    public func trace(_ text: String) {
        let line = Array(text.utf8) + [UInt8(ascii: "\n")]
        let target: (UInt64, Int)? = traceState.withLock { state in
            if !state.looked {
                state.looked = true
                state.buffer = findTraceBuffer()
            }
            guard let buffer = state.buffer, state.written + line.count < buffer.length else { return nil }
            defer { state.written += line.count }
            return (buffer.address, state.written)
        }
        guard let (address, at) = target else { return }
        for (i, byte) in (line + [0]).enumerated() { try? store8(byte, at: address + UInt64(at + i)) }
    }

    /// The first RSC_TRACE entry with an address, read once from the loaded table.
    private func findTraceBuffer() -> (address: UInt64, length: Int)? {
        guard let table = resourceTable, let bytes = try? readBytes(at: table.address.rawValue, count: table.size),
              let parsed = try? ResourceTable(bytes: bytes) else { return nil }
        for case let .trace(entry) in parsed.entries {
            if let da = entry.deviceAddress.device { return (da.rawValue, Int(entry.length)) }
        }
        return nil
    }

    /// The region and offset of the `size` bytes at device address `address`; outside every
    /// memory it is a fault (`what` says which access).
    private func locate(_ address: UInt64, size: Int, _ what: String) throws(FirmwareHalt) -> (region: IORegion, offset: Int) {
        guard let found = memories.locate(address, size: size) else { throw FirmwareHalt(.fault(address: address, message: "\(what) unmapped memory")) }
        return found
    }

    private func readBytes(at address: UInt64, count: Int) throws(FirmwareHalt) -> [UInt8] {
        let (region, offset) = try locate(address, size: count, "read from")
        return (try? region.readBytes(at: offset, count: count)) ?? []
    }

    private func store8(_ value: UInt8, at address: UInt64) throws(FirmwareHalt) {
        let (region, offset) = try locate(address, size: 1, "store to")
        try? region.write(value, at: offset)
    }

    /// PANIC: never returns.
    public func panic(_ code: UInt32) throws(FirmwareHalt) -> Never {
        mailbox.panic(code)
        throw FirmwareHalt(.panic(code))
    }

    /// A 32-bit load at a device address, as the core would do it; outside every memory it is a fault.
    public func load32(_ address: UInt64) throws(FirmwareHalt) -> UInt32 {
        mailbox.parkIfGated()
        let (region, offset) = try locate(address, size: 4, "load from")
        return (try? region.read(UInt32.self, at: offset)) ?? 0
    }

    /// A 32-bit store at a device address; outside every memory it is a fault.
    public func store32(_ value: UInt32, at address: UInt64) throws(FirmwareHalt) {
        mailbox.parkIfGated()
        let (region, offset) = try locate(address, size: 4, "store to")
        try? region.write(value, at: offset)
    }

    /// The RPMsg settings native firmware uses by default: like an OpenAMP remote it waits a long
    /// time for the host's DRIVER_OK (a stop still ends the wait at once).
    public static var firmwareRPMsgConfiguration: RPMsgConfiguration {
        var configuration = RPMsgConfiguration()
        configuration.handshakeTimeout = .seconds(120)
        return configuration
    }

    /// Sets up the RPMsg remote (device role) over the loaded resource table's vdev `index`: it
    /// waits for the host's DRIVER_OK, then its own remoteproc instance adopts the table as the
    /// host completed it (allocating and writing nothing: under a Linux host the vring addresses
    /// appear only now) and creates the virtio device; RPMsg uses the host's buffers in the shared window.
    public func rpmsg(vdev index: Int = 0, configuration: RPMsgConfiguration = RemoteCore.firmwareRPMsgConfiguration) throws -> RemoteRPMsg {
        guard let table = resourceTable else { throw FirmwareHalt(.fault(address: 0, message: "the image has no resource table")) }
        try waitForDriver(table: table, vdev: index, timeout: configuration.handshakeTimeout)
        let ops = RemoteSideOps(mailbox: mailbox)
        let processor = try RemoteProcessor(ops: ops, notifyIDCapacity: Mailbox.notifyIDCount)
        for memory in memories { processor.addMemory(memory) }
        try processor.configure()
        try processor.adoptResourceTable(at: table.address, size: table.size)
        let device = try processor.createVirtio(index: index, role: .device, driverTimeout: .milliseconds(100))
        let shared = memories.first { $0.name == layout.shared.name } ?? memories[memories.count - 1]
        // DRIVER_OK was seen above (a stop ends that wait): RPMsg's own look at it is brief, for
        // a host that resets the device in between (it is stopping the core) must not leave the
        // core in a long wait that a stop does not end.
        var afterHandshake = configuration
        afterHandshake.handshakeTimeout = .milliseconds(100)
        let rpmsg = try RPMsgDevice(remote: device.transport, window: BufferWindow(region: shared.region, deviceBase: shared.deviceAddress),
                                    configuration: afterHandshake)
        rpmsgDevices.withLock { $0.append(rpmsg) }
        return RemoteRPMsg(processor: processor, device: rpmsg, core: self)
    }
}

extension RemoteCore {
    /// Waits for the host to set DRIVER_OK in vdev `index`'s status byte, counted as idle (as a
    /// core in WAIT) so a stop ends the wait at once. It wakes on every host write into a vdev
    /// entry the board sees (`Mailbox.hostWrites`), kicked or not — an OpenAMP host kicks the
    /// vdev's id after each status write, a Linux host the receive vring after DRIVER_OK, and a
    /// host may kick nothing at all.
    fileprivate func waitForDriver(table: (address: DeviceAddress, size: Int), vdev index: Int, timeout: Duration) throws {
        guard let (region, offset) = memories.locate(table.address.rawValue, size: table.size),
              let bytes = try? region.readBytes(at: offset, count: table.size) else {
            throw FirmwareHalt(.fault(address: table.address.rawValue, message: "the resource table is outside every memory"))
        }
        let parsed: ResourceTable
        do { parsed = try ResourceTable(bytes: bytes) } catch {
            throw FirmwareHalt(.fault(address: table.address.rawValue, message: "the resource table is malformed: \(error)"))
        }
        guard parsed.virtioDevices.indices.contains(index) else {
            throw FirmwareHalt(.fault(address: 0, message: "the resource table has no vdev \(index)"))
        }
        let entry = parsed.virtioDevices[index].index
        let statusOffset = offset + parsed.entryOffsets[entry] + VirtioDeviceResource.statusOffset
        let clock = mailbox.clock
        let ready = try mailbox.whileIdle { () throws in
            try Virtio.waitForDriverOK(clock: clock, until: clock.now + timeout, changes: mailbox.hostWrites,
                                       status: { VirtioStatus(rawValue: (try? region.read(UInt8.self, at: statusOffset)) ?? 0) },
                                       clearReset: { try? region.write(UInt8(0), at: statusOffset) },
                                       checkStop: { try parkAndCheckStop() })
        }
        guard ready else { throw FirmwareHalt(.fault(address: 0, message: "the host did not set DRIVER_OK within \(timeout)")) }
    }
}

/// The remote side's RPMsg and the remoteproc instance it runs over.
public struct RemoteRPMsg: Sendable {
    public let processor: RemoteProcessor
    public let device: RPMsgDevice
    let core: RemoteCore

    /// The firmware main loop's step: waits for a kick, then processes every vring
    /// (`remoteproc_get_notification(…, ANY)`). Throws when the core is stopped.
    /// A suspend request is answered after the vrings are processed: the remote has quiesced then.
    public func waitAndProcess() throws {
        _ = try core.waitForInterrupt(answering: false)
        processor.handleNotification(.any)
        core.answerSuspendRequest()
    }

    /// The firmware's main loop: ``waitAndProcess()`` until the core is stopped (then it throws).
    public func serve() throws -> Never {
        while true { try waitAndProcess() }
    }

    /// Sends `bytes` back to where `message` came from, from the address it was sent to; waits up
    /// to 5 s for a buffer. What an echoing or answering service does.
    public func reply(to message: RPMsgMessage, with bytes: [UInt8]) throws(RPMsgError) {
        try device.send(bytes, from: message.destination, to: message.source, timeout: .seconds(5))
    }
}

/// The remote side's platform: its notify op kicks the host through the mailbox.
final class RemoteSideOps: RemoteprocOps {
    let mailbox: Mailbox
    init(mailbox: Mailbox) { self.mailbox = mailbox }
    func start(bootAddress: DeviceAddress) throws {}
    func stop() throws {}
    func notify(_ id: NotifyID) throws {
        mailbox.parkIfGated()
        mailbox.kick(id)
        mailbox.clock.yield()
    }
    var clock: any WaitClock { mailbox.clock }
    var hostWrites: ConditionWaiters? { mailbox.hostWrites }
}

extension RemoteCore {
    /// Answers a debugger's `monitor` command (see ``BoardInspector/answer(monitor:)``).
    func monitor(_ command: String) -> String {
        inspector?.answer(monitor: command) ?? "this core has no board to inspect\n"
    }
}

extension Array where Element == RemoteprocMemory {
    /// The memory holding the `size` bytes at device address `address` — its region and their
    /// offset there, inside its bounds — or `nil` when no single memory holds them all.
    func locate(_ address: UInt64, size: Int) -> (region: IORegion, offset: Int)? {
        for memory in self {
            if let offset = memory.offset(ofDevice: DeviceAddress(address), size: size) { return (memory.region, offset) }
        }
        return nil
    }
}
