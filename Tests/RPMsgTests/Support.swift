import Foundation
import MetalIO
import RPMsg
import Synchronization
import Testing
import Virtio

/// The vdev fields both sides of a loopback pair share (what the resource table's vdev entry holds).
final class SharedVdev: Sendable {
    let status = Atomic<UInt8>(0)
    let deviceFeatures: UInt32
    let driverFeatures = Atomic<UInt32>(0)
    init(deviceFeatures: VirtioFeatures) { self.deviceFeatures = deviceFeatures.rawValue }
}

/// One side of a virtio transport pair over shared memory. A kick raises the peer's
/// "interrupt": with `interruptThread`, a thread of the peer runs its handler (as a mailbox
/// interrupt would); without, the kick is only counted and the test delivers it with `poll()`.
final class LoopbackTransport: VirtioTransport {
    let role: VirtioRole
    let deviceID: UInt32 = 7
    let vringLocations: [VringLocation]
    let vdev: SharedVdev
    private let handlers = Mutex<[Int: @Sendable () -> Void]>([:])
    private let peer = Mutex<LoopbackTransport?>(nil)
    private let pending = Mutex<(vrings: Set<Int>, stop: Bool)>(([], false))
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    let kicksReceived = Atomic<Int>(0)
    let usesThread: Bool

    init(role: VirtioRole, vrings: [VringLocation], vdev: SharedVdev, interruptThread: Bool) {
        self.role = role
        self.vringLocations = vrings
        self.vdev = vdev
        self.usesThread = interruptThread
        if interruptThread {
            let thread = Thread { [self] in
                while true {
                    wake.wait()
                    let (vrings, stop) = pending.withLock { p in
                        defer { p.vrings = [] }
                        return (p.vrings, p.stop)
                    }
                    if stop { break }
                    for vring in vrings.sorted() { handlers.withLock { $0[vring] }?() }
                }
                stopped.signal()
            }
            thread.name = "\(role) interrupt"
            thread.start()
        }
    }

    func connect(to other: LoopbackTransport) { peer.withLock { $0 = other } }

    /// Stops the interrupt thread (bounded wait).
    func shutdown() {
        guard usesThread else { return }
        pending.withLock { $0.stop = true }
        wake.signal()
        _ = stopped.wait(timeout: .now() + 5)
        peer.withLock { $0 = nil }
    }

    /// Delivers the interrupts raised so far (poll mode).
    func poll() {
        let vrings = pending.withLock { p in
            defer { p.vrings = [] }
            return p.vrings
        }
        for vring in vrings.sorted() { handlers.withLock { $0[vring] }?() }
    }

    fileprivate func raise(_ vring: Int) {
        kicksReceived.add(1, ordering: .relaxed)
        pending.withLock { _ = $0.vrings.insert(vring) }
        if usesThread { wake.signal() }
    }

    func status() throws -> VirtioStatus { VirtioStatus(rawValue: vdev.status.load(ordering: .acquiring)) }
    func setStatus(_ status: VirtioStatus) throws { vdev.status.store(status.rawValue, ordering: .releasing) }
    func acknowledgeReset() throws { vdev.status.store(0, ordering: .releasing) }
    func deviceFeatures() throws -> VirtioFeatures { VirtioFeatures(rawValue: vdev.deviceFeatures) }
    func driverFeatures() throws -> VirtioFeatures { VirtioFeatures(rawValue: vdev.driverFeatures.load(ordering: .acquiring)) }
    func negotiateFeatures(supported: VirtioFeatures) throws -> VirtioFeatures {
        let accepted = VirtioFeatures(rawValue: vdev.deviceFeatures).intersection(supported)
        vdev.driverFeatures.store(accepted.rawValue, ordering: .releasing)
        return accepted
    }
    func readConfig(at offset: Int, count: Int) throws -> [UInt8] { [] }
    func writeConfig(_ bytes: [UInt8], at offset: Int) throws {}
    func kick(vring index: Int) throws { peer.withLock { $0 }?.raise(index) }
    func setNotificationHandler(forVring index: Int, _ handler: (@Sendable () -> Void)?) { handlers.withLock { $0[index] = handler } }
}

/// A host and a remote RPMsg device in one process over the same shared memory.
struct RPMsgPair {
    static let sharedBase: UInt64 = 0x3000_0000
    let memory: SharedMemory
    let window: BufferWindow
    let hostTransport: LoopbackTransport
    let remoteTransport: LoopbackTransport
    let host: RPMsgDevice
    let remote: RPMsgDevice

    init(interruptThreads: Bool = true, vringCount: Int = 256, features: VirtioFeatures = [.rpmsgNameService, .ringEventIndex],
         configuration: RPMsgConfiguration = RPMsgConfiguration(), hostSupports: VirtioFeatures? = nil) throws {
        memory = try SharedMemory(size: 1 << 20)
        let region = try IORegion(name: "shared", memory: memory, physicalBase: PhysicalAddress(Self.sharedBase))
        window = BufferWindow(region: region, deviceBase: Self.sharedBase)
        let layout = try VringLayout(count: vringCount, alignment: 4096)
        let stride = (layout.byteSize + 4095) / 4096 * 4096
        let vrings = (0..<2).map { i in
            VringLocation(index: i, notifyID: UInt32(i + 1), deviceAddress: Self.sharedBase + UInt64(i * stride), region: region,
                          offset: i * stride, count: vringCount, alignment: 4096)
        }
        let vdev = SharedVdev(deviceFeatures: features)
        hostTransport = LoopbackTransport(role: .driver, vrings: vrings, vdev: vdev, interruptThread: interruptThreads)
        remoteTransport = LoopbackTransport(role: .device, vrings: vrings, vdev: vdev, interruptThread: interruptThreads)
        hostTransport.connect(to: remoteTransport)
        remoteTransport.connect(to: hostTransport)
        var hostConfiguration = configuration
        if let hostSupports { hostConfiguration.supportedFeatures = hostSupports }
        host = try RPMsgDevice(host: hostTransport, window: window, pool: (2 * stride)..<(region.size), configuration: hostConfiguration)
        remote = try RPMsgDevice(remote: remoteTransport, window: window, configuration: configuration)
    }

    func shutdown() {
        host.close()
        remote.close()
        hostTransport.shutdown()
        remoteTransport.shutdown()
    }

    /// Poll mode: delivers pending interrupts both ways until nothing moves.
    func pump() {
        for _ in 0..<8 {
            hostTransport.poll()
            remoteTransport.poll()
        }
    }
}

/// Collects received messages thread-safely.
final class Inbox: Sendable {
    private let messages = Mutex<[(source: RPMsgAddress, payload: [UInt8])]>([])
    func append(_ message: RPMsgMessage) { let payload = message.payload; messages.withLock { $0.append((message.source, payload)) } }
    var all: [(source: RPMsgAddress, payload: [UInt8])] { messages.withLock { $0 } }
    var count: Int { messages.withLock { $0.count } }

    /// Waits until `count` messages arrived, up to `timeout`.
    func wait(for count: Int, timeout: Duration = .seconds(30)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while self.count < count {
            if ContinuousClock.now > deadline { return false }
            usleep(100)
        }
        return true
    }
}

/// Waits for `condition`, up to `timeout`.
func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now > deadline { return false }
        usleep(100)
    }
    return true
}

func rpmsgError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> RPMsgError? {
    do {
        try body()
        return nil
    } catch let error as RPMsgError {
        return error
    } catch {
        Issue.record("expected an RPMsgError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
