import Foundation

/// The CPU architectures the board's firmware is built for.
public enum FirmwareArchitecture: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    /// Arm Cortex-M4, Thumb-2 (`thumbv7em-none-eabi`).
    case cortexM4 = "cortex-m4"
    /// RISC-V RV32IMAC (`riscv32-unknown-elf`).
    case rv32 = "rv32"

    public var description: String { rawValue }

    /// The compiler flags that select the architecture.
    public var targetFlags: [String] {
        switch self {
        case .cortexM4: ["--target=thumbv7em-none-eabi", "-mcpu=cortex-m4", "-mthumb"]
        case .rv32: ["--target=riscv32-unknown-elf", "-march=rv32imac", "-mabi=ilp32"]
        }
    }
}

/// Why a firmware program could not be built.
public struct FirmwareBuildError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// The compiler's output, when it ran and failed.
    public var compilerOutput: String
    public init(_ message: String, compilerOutput: String = "") {
        self.message = message
        self.compilerOutput = compilerOutput
    }
    public var description: String { compilerOutput.isEmpty ? message : "\(message)\n\(compilerOutput)" }
}

/// Builds the bare-metal programs of `Firmware/` with the toolchain's own `clang` and
/// `ld.lld`: `Firmware/programs/NAME/*.c` plus the board's start-up code and linker script, into
/// `NAME.elf` per architecture. Rebuilds only when a source is newer than the ELF.
public struct FirmwareBuilder: Sendable {
    /// The `Firmware/` directory.
    public var sourceRoot: URL
    /// Where ELFs go (`<package>/.build/firmware` by default).
    public var outputDirectory: URL
    /// The clang to use.
    public var clang: URL

    /// A builder for the `Firmware/` directory at `sourceRoot`.
    public init(sourceRoot: URL, outputDirectory: URL? = nil, clang: URL? = nil) throws(FirmwareBuildError) {
        self.sourceRoot = sourceRoot
        self.outputDirectory = outputDirectory
            ?? sourceRoot.deletingLastPathComponent().appendingPathComponent(".build/firmware", isDirectory: true)
        guard let compiler = clang ?? Self.findClang() else {
            throw FirmwareBuildError("clang not found: install the Swift toolchain (it ships clang and ld.lld) or set CLANG")
        }
        self.clang = compiler
    }

    /// A builder for this checkout's `Firmware/` directory: `$RPROC_FIRMWARE_DIR`, else
    /// `./Firmware` when it exists, else the one beside this package's sources.
    public static func forThisPackage() throws(FirmwareBuildError) -> FirmwareBuilder {
        try FirmwareBuilder(sourceRoot: try locateSourceRoot())
    }

    /// Finds the `Firmware/` directory (see ``forThisPackage()``).
    public static func locateSourceRoot() throws(FirmwareBuildError) -> URL {
        let fm = FileManager.default
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["RPROC_FIRMWARE_DIR"] { candidates.append(URL(fileURLWithPath: env)) }
        candidates.append(URL(fileURLWithPath: fm.currentDirectoryPath).appendingPathComponent("Firmware"))
        // Sources/FirmwareKit/FirmwareBuilder.swift → package root.
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent("Firmware"))
        for candidate in candidates where fm.fileExists(atPath: candidate.appendingPathComponent("board/rsim.h").path) {
            return candidate.standardizedFileURL
        }
        throw FirmwareBuildError("no Firmware/ directory found (looked in \(candidates.map(\.path).joined(separator: ", "))); set RPROC_FIRMWARE_DIR")
    }

    /// `$CLANG`, else the clang beside the running Swift toolchain, else the first on `PATH`.
    public static func findClang() -> URL? {
        let fm = FileManager.default
        let env = ProcessInfo.processInfo.environment
        if let explicit = env["CLANG"], fm.isExecutableFile(atPath: explicit) { return URL(fileURLWithPath: explicit) }
        let path = (env["PATH"] ?? "").split(separator: ":").map(String.init) + ["/opt/swift/usr/bin", "/usr/bin"]
        for dir in path {
            let candidate = URL(fileURLWithPath: dir).appendingPathComponent("clang")
            let lld = URL(fileURLWithPath: dir).appendingPathComponent("ld.lld")
            if fm.isExecutableFile(atPath: candidate.path) && fm.isExecutableFile(atPath: lld.path) { return candidate }
        }
        return nil
    }

    /// The programs in `Firmware/programs/`.
    public func programs() -> [String] {
        let dir = sourceRoot.appendingPathComponent("programs")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0).appendingPathComponent("main.c").path) }.sorted()
    }

    /// Where `program` for `architecture` is built.
    public func outputPath(program: String, architecture: FirmwareArchitecture) -> URL {
        outputDirectory.appendingPathComponent(architecture.rawValue).appendingPathComponent("\(program).elf")
    }

    /// Builds `program` for `architecture` (unless the ELF is newer than every source) and
    /// returns the ELF's path.
    public func build(program: String, architecture: FirmwareArchitecture) throws(FirmwareBuildError) -> URL {
        let programDir = sourceRoot.appendingPathComponent("programs").appendingPathComponent(program)
        guard !program.contains("/"), FileManager.default.fileExists(atPath: programDir.appendingPathComponent("main.c").path) else {
            throw FirmwareBuildError("no firmware program '\(program)' (available: \(programs().joined(separator: ", ")))")
        }
        return try build(sources: programDir, name: program, architecture: architecture)
    }

    /// Builds a firmware of your own: every `.c` file in `directory` (its headers found there
    /// too), linked with this package's board start-up code, linker script and remote-side
    /// library (`board/`, `lib/`), as the programs in `Firmware/programs` are. The ELF goes to
    /// `outputDirectory/<architecture>/<name>.elf` (name: the directory's name); rebuilt only when
    /// a source is newer.
    public func build(directory: URL, name: String? = nil, architecture: FirmwareArchitecture) throws(FirmwareBuildError) -> URL {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FirmwareBuildError("no firmware directory at \(directory.path)")
        }
        let name = name ?? directory.standardizedFileURL.lastPathComponent
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else { throw FirmwareBuildError("'\(name)' cannot name a firmware") }
        guard ((try? fm.contentsOfDirectory(atPath: directory.path)) ?? []).contains(where: { $0.hasSuffix(".c") }) else {
            throw FirmwareBuildError("\(directory.path) has no .c file to build")
        }
        return try build(sources: directory, name: name, architecture: architecture)
    }

    private func build(sources programDir: URL, name program: String, architecture: FirmwareArchitecture) throws(FirmwareBuildError) -> URL {
        let fm = FileManager.default
        let board = sourceRoot.appendingPathComponent("board")
        let archDir = board.appendingPathComponent(architecture.rawValue)
        let cFiles = ((try? fm.contentsOfDirectory(atPath: programDir.path)) ?? []).filter { $0.hasSuffix(".c") }.sorted()
            .map { programDir.appendingPathComponent($0) }
        let libDir = sourceRoot.appendingPathComponent("lib")
        let libFiles = ((try? fm.contentsOfDirectory(atPath: libDir.path)) ?? []).filter { $0.hasSuffix(".c") }.sorted()
            .map { libDir.appendingPathComponent($0) }
        let crt0 = archDir.appendingPathComponent("crt0.c")
        let script = archDir.appendingPathComponent("link.ld")
        let output = outputPath(program: program, architecture: architecture)

        // Up to date? Compare against every file the build reads.
        let inputs = cFiles + libFiles + [crt0, script] + Self.headers(in: [board, libDir, programDir])
        if let built = Self.modified(output), inputs.allSatisfy({ (Self.modified($0) ?? .distantFuture) <= built }) {
            return output
        }
        do {
            try fm.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw FirmwareBuildError("cannot create \(output.deletingLastPathComponent().path): \(error)")
        }
        // Build to a private name, then rename, so parallel builders never see half an ELF.
        let temporary = output.deletingLastPathComponent().appendingPathComponent(".\(program).\(UUID().uuidString).elf")
        var arguments = architecture.targetFlags
        arguments += ["-O2", "-g", "-ffreestanding", "-nostdlib", "-fno-builtin", "-Wall", "-Wextra", "-Werror", "-fuse-ld=lld",
                      "-I", board.path, "-I", libDir.path, "-I", programDir.path, "-Wl,-T,\(script.path)", crt0.path]
        arguments += libFiles.map(\.path) + cFiles.map(\.path) + ["-o", temporary.path]
        let (status, log) = Self.run(clang, arguments)
        guard status == 0 else {
            try? fm.removeItem(at: temporary)
            throw FirmwareBuildError("building \(program) for \(architecture) failed (clang exit \(status))", compilerOutput: log)
        }
        _ = try? fm.removeItem(at: output)
        do { try fm.moveItem(at: temporary, to: output) } catch {
            // Another builder won the race with an identical ELF.
            try? fm.removeItem(at: temporary)
            guard fm.fileExists(atPath: output.path) else { throw FirmwareBuildError("cannot move the ELF into place: \(error)") }
        }
        return output
    }

    /// Compiles and links arbitrary C sources with `flags` (tests use it for fixtures that are
    /// not board programs). Returns the combined compiler output; throws when clang fails.
    @discardableResult
    public func compile(_ arguments: [String]) throws(FirmwareBuildError) -> String {
        let (status, log) = Self.run(clang, arguments)
        guard status == 0 else { throw FirmwareBuildError("clang exit \(status)", compilerOutput: log) }
        return log
    }

    private static func headers(in dirs: [URL]) -> [URL] {
        dirs.flatMap { dir -> [URL] in
            guard let all = FileManager.default.enumerator(atPath: dir.path) else { return [] }
            return all.compactMap { $0 as? String }.filter { $0.hasSuffix(".h") }.map { dir.appendingPathComponent($0) }
        }
    }

    private static func modified(_ url: URL) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date
    }

    private static func run(_ tool: URL, _ arguments: [String]) -> (Int32, String) {
        let process = Process()
        process.executableURL = tool
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (-1, "cannot run \(tool.path): \(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
