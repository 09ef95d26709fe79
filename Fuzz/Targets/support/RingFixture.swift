import MetalIO
import RPMsg
import Virtio

/// A poll-mode host/remote pair with a receiver on each side and one message in flight each way,
/// whose ring and buffer memory a fuzz input then overwrites. Nothing moves until ``pump()``, so
/// a finding replays exactly.
public struct RingFixture {
    /// The device address of the shared window (buffer addresses on the wire are device addresses).
    public static let sharedBase = RPMsgLoopback.sharedBase

    public let pair: RPMsgLoopback
    public let toRemote: RPMsgEndpoint
    public let toHost: RPMsgEndpoint

    public init() throws {
        pair = try RPMsgLoopback(interruptThreads: false, vringCount: 16)
        toHost = try pair.remote.createEndpoint(address: RPMsgAddress(100), destination: RPMsgAddress(200)) { _ in }
        toRemote = try pair.host.createEndpoint(address: RPMsgAddress(200), destination: RPMsgAddress(100)) { _ in }
        pair.pump()
        try toRemote.send(Array("to remote".utf8))
        try toHost.send(Array("to host".utf8))
    }

    public var region: IORegion { pair.window.region }

    /// Vring `index`'s memory: where it starts in the region and its layout.
    public func vring(_ index: Int) throws -> (offset: Int, layout: VringLayout) {
        let location = pair.hostTransport.vringLocations[index]
        return (location.offset, try VringLayout(count: location.count, alignment: location.alignment))
    }

    /// Writes `bytes` at `offset` in the region, as the peer could; silently skips what lies
    /// outside (the fuzz input decides offsets).
    public func poke(_ bytes: ArraySlice<UInt8>, at offset: Int) {
        guard offset >= 0, offset <= region.size, bytes.count <= region.size - offset else { return }
        try? region.write(Array(bytes), at: offset)
    }

    /// Applies the input's writes (see ``writes(in:span:)``) to both vrings: each write lands in
    /// the ring its position's low bit names, at an offset inside the part `part` of that ring
    /// (a range of offsets from the ring's start), then both sides run and are probed.
    public func overwrite(_ input: UnsafeBufferPointer<UInt8>, part: (VringLayout) -> Range<Int>) {
        let rings = (0..<2).compactMap { try? vring($0) }
        guard rings.count == 2 else { fatalError("the fixture has no two vrings") }
        for (position, bytes) in writes(in: input, span: 1 << 16) {
            let (offset, layout) = rings[position & 1]
            let range = part(layout)
            poke(bytes, at: offset + range.lowerBound + (position >> 1) % range.count)
        }
        pumpAndProbe()
    }

    /// Runs both sides, then checks they still answer: a send each way fails cleanly or works.
    public func pumpAndProbe() {
        pair.pump()
        _ = try? toRemote.trySend(Array("after".utf8))
        _ = try? toHost.trySend(Array("after".utf8))
        pair.pump()
        _ = pair.host.statistics
        _ = pair.remote.statistics
    }

    public func shutdown() { pair.shutdown() }
}

/// Reads a fuzz input as a list of writes: each is a 2-byte little-endian position, a 1-byte
/// length (0…32) and that many bytes; positions are taken modulo `span`.
public func writes(in input: UnsafeBufferPointer<UInt8>, span: Int) -> [(position: Int, bytes: ArraySlice<UInt8>)] {
    let bytes = Array(input)
    var out: [(Int, ArraySlice<UInt8>)] = []
    var at = 0
    while at + 3 <= bytes.count, span > 0 {
        let position = (Int(bytes[at]) | Int(bytes[at + 1]) << 8) % span
        let length = min(Int(bytes[at + 2]) % 33, bytes.count - at - 3)
        out.append((position, bytes[(at + 3)..<(at + 3 + length)]))
        at += 3 + length
    }
    return out
}
