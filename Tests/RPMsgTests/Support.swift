import Foundation
import MetalIO
import RPMsg
import Synchronization
import Testing
import Virtio

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
        (hostTransport, remoteTransport) = LoopbackTransport.makePair(vrings: vrings, features: features, interruptThreads: interruptThreads)
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
