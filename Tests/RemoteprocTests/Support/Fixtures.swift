import Virtio
import FirmwareKit
import Foundation
import Remoteproc

/// Firmware images the tests load, built from C sources by the toolchain's clang and ld.lld
/// (the board programs in Firmware/, and the fixtures beside this file).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func builder() throws -> FirmwareBuilder { try FirmwareBuilder.forThisPackage() }

    /// `Firmware/programs/NAME` for `architecture`.
    static func program(_ name: String, _ architecture: FirmwareArchitecture) throws -> URL {
        try builder().build(program: name, architecture: architecture)
    }

    /// The 64-bit (AArch64) fixture image.
    static func elf64() throws -> URL {
        let builder = try builder()
        let output = builder.outputDirectory.appendingPathComponent("fixtures/elf64.elf")
        try FileManager.default.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = output.deletingLastPathComponent().appendingPathComponent(".elf64.\(UUID().uuidString).elf")
        try builder.compile(["--target=aarch64-none-elf", "-O1", "-ffreestanding", "-nostdlib", "-fno-builtin", "-fuse-ld=lld",
                             "-mgeneral-regs-only", "-Wl,-T,\(directory.appendingPathComponent("elf64.ld").path)",
                             directory.appendingPathComponent("elf64.c").path, "-o", temporary.path])
        _ = try? FileManager.default.removeItem(at: output)
        try? FileManager.default.moveItem(at: temporary, to: output)
        try? FileManager.default.removeItem(at: temporary)
        return output
    }

    static func bytes(_ url: URL) throws -> [UInt8] { Array(try Data(contentsOf: url)) }
}
