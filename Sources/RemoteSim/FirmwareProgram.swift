import Remoteproc

/// A firmware program the board runs on its remote core's thread, after the image (which carries
/// its resource table) is loaded: native Swift firmware (`EchoFirmware`, …) and the emulated CPU
/// running an ELF (`EmulatedCPU`) alike. It returns, or throws ``FirmwareHalt``, when the core is
/// stopped.
public protocol FirmwareProgram: Sendable {
    func run(on core: RemoteCore) throws
    /// Called when the board is powered (``Board/configure(data:)``), before the image is loaded
    /// and the core started: a program sets up here what its run would otherwise set up after
    /// the start, on the core's time (an emulated CPU opens its engine and maps the board's
    /// memories). `memories` are those the core will see. Optional; the default does nothing.
    func prepare(memories: [RemoteprocMemory])
}

extension FirmwareProgram {
    public func prepare(memories: [RemoteprocMemory]) {}
}

/// The earlier name of ``FirmwareProgram``.
@available(*, deprecated, renamed: "FirmwareProgram")
public typealias NativeFirmware = FirmwareProgram

extension UInt32 {
    /// The four little-endian bytes of the value (how the programs answer with a count).
    var littleEndianBytes: [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: self >> (8 * UInt32($0))) } }
}
