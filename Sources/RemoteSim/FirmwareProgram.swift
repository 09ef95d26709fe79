/// A firmware program the board runs on its remote core's thread, after the image (which carries
/// its resource table) is loaded: native Swift firmware (`EchoFirmware`, …) and the emulated CPU
/// running an ELF (`EmulatedCPU`) alike. It returns, or throws ``FirmwareHalt``, when the core is
/// stopped.
public protocol FirmwareProgram: Sendable {
    func run(on core: RemoteCore) throws
}

/// The earlier name of ``FirmwareProgram``.
@available(*, deprecated, renamed: "FirmwareProgram")
public typealias NativeFirmware = FirmwareProgram

extension UInt32 {
    /// The four little-endian bytes of the value (how the programs answer with a count).
    var littleEndianBytes: [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: self >> (8 * UInt32($0))) } }
}
