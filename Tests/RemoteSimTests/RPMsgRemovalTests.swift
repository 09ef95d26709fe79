import Testing
import MetalIO
import RPMsg
import Remoteproc
import RemoteSim

/// Something an endpoint's handler holds, to see when the handler is released.
private final class Witness: Sendable {}

@Suite("RPMsg goes away with its virtio device")
struct RPMsgRemovalTests {
    enum Removal: String, CaseIterable, CustomTestStringConvertible {
        case stop, crash, shutdown, droppedProcessor
        var testDescription: String { rawValue }
    }

    @Test("a stop, a crash, a shutdown or dropping the processor closes the host's RPMsg and releases its endpoints — an endpoint whose handler captures its device keeps nothing alive",
          .timeLimit(.minutes(1)), arguments: Removal.allCases)
    func removal(_ removal: Removal) throws {
        var (board, processor, device): (Board, RemoteProcessor?, RPMsgDevice?) = try bootBoard(EchoFirmware())
        weak var witness: Witness?
        weak var weakDevice: RPMsgDevice?
        let address: RPMsgAddress
        do {
            let held = Witness()
            witness = held
            let rpmsg = try #require(device)
            weakDevice = rpmsg
            // The handler captures the device: a cycle (device → endpoint → handler → device)
            // that only the device's removal breaks.
            address = try rpmsg.createEndpoint(destination: RPMsgAddress(1024)) { _ in _ = (held, rpmsg) }.address
        }
        #expect(witness != nil && device?.isClosed == false)
        switch removal {
        case .stop: try processor?.stop()
        case .crash: try processor?.reportCrash(CrashReport(kind: .fault, message: "injected by the test"))
        case .shutdown: try processor?.shutdown()
        case .droppedProcessor:
            processor = nil
            // The processor goes away when its last reference does, and that may be the board's
            // interrupt thread finishing a kick it was handling (it holds the processor for the
            // call): the device then closes on that thread, a moment later — wait for it, bounded.
            _ = waitUntil(.seconds(10)) { device?.isClosed == true && witness == nil }
        }
        #expect(device?.isClosed == true, "the host's RPMsg is closed once its device is gone")
        #expect(device?.endpoint(at: address) == nil)
        #expect(witness == nil, "the endpoint's handler was released")
        device = nil
        // A kick the interrupt thread was delivering when the device closed holds the device
        // until that call returns: wait for it, bounded.
        _ = waitUntil(.seconds(10)) { weakDevice == nil }
        #expect(weakDevice == nil, "nothing keeps the RPMsg device alive")
        try? processor?.shutdown()
        try board.shutdown()
    }

    @Test("a host RPMsg let go of without close() (before, or after, the processor's shutdown) leaves nothing alive: processor and board are released",
          .timeLimit(.minutes(1)), arguments: [false, true])
    func droppedWithoutClose(afterShutdown: Bool) throws {
        weak var weakBoard: Board?
        weak var weakProcessor: RemoteProcessor?
        do {
            var (board, processor, device): (Board, RemoteProcessor, RPMsgDevice?) = try bootBoard(EchoFirmware())
            weakBoard = board
            weakProcessor = processor
            try device?.send(Array("to nobody".utf8), from: RPMsgAddress(1024), to: RPMsgAddress(1024), timeout: .seconds(1))
            if afterShutdown { try processor.shutdown() }
            device = nil
            if !afterShutdown { try processor.shutdown() }
            _ = board
        }
        // A core thread ending holds its board a moment longer: wait for it, bounded.
        _ = waitUntil(.seconds(10)) { weakBoard == nil && weakProcessor == nil }
        #expect(weakProcessor == nil, "the processor is still alive")
        #expect(weakBoard == nil, "the board is still alive")
    }

    @Test("RPMsg put on a device that is already gone is closed at once", .timeLimit(.minutes(1)))
    func alreadyGone() throws {
        let (board, processor) = try startedBoard(EchoFirmware())
        let vdev = try processor.createVirtio(index: 0, role: .driver)
        try processor.stop()
        let announced = MetalMutex(false)
        vdev.transport.setRemovalHandler { announced.withLock { $0 = true } }
        #expect(announced.withLock { $0 })
        try processor.shutdown()
        try board.shutdown()
    }
}
