import Foundation
import MetalIO
import RemoteSim

/// The folder `rproc-sim run --artifacts DIR` writes for a scenario run (docs/debugging.md): the
/// remote's core dump, a copy of the firmware image, the console log, the Perfetto trace, the
/// vring report at the failure and a README with the command lines that open each.
public enum ScenarioArtifacts {
    public static let coreFile = "remote.core"
    public static let firmwareFile = "firmware.elf"
    public static let consoleFile = "console.log"
    public static let traceFile = "trace.json"
    public static let vringsFile = "vrings.txt"
    public static let readmeFile = "README.txt"
    /// The largest firmware image copied (a scenario's image is a few hundred KiB).
    static let imageLimit = 256 << 20

    /// Writes `result`'s folder inside `directory` (named after the scenario, made unique) and
    /// returns the absolute paths of the files written, the folder's README first.
    public static func write(_ result: ScenarioResult, into directory: String) throws -> [String] {
        let root = URL(fileURLWithPath: directory).standardizedFileURL
        let base = String(result.name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "-" }.prefix(80))
        var folder = root.appendingPathComponent(base.isEmpty ? "scenario" : base)
        var suffix = 2
        while FileManager.default.fileExists(atPath: folder.path) {
            folder = root.appendingPathComponent("\(base)-\(suffix)")
            suffix += 1
        }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        func path(_ name: String) -> String { folder.appendingPathComponent(name).path }
        var written: [String] = []
        var notes: [String] = []

        let postMortem = result.postMortem
        if let dump = postMortem?.coreDump {
            try RegularFile.write(CoreDumpFile.encode(dump), to: path(coreFile))
            written.append(path(coreFile))
        } else if let error = postMortem?.coreDumpError {
            notes.append("No core dump: \(error)")
        }
        var image: [UInt8]?
        if let bytes = postMortem?.imageBytes {
            image = bytes
        } else if let imagePath = postMortem?.imagePath {
            do { image = try RegularFile.contents(of: imagePath, limit: imageLimit) } catch { notes.append("The firmware image was not copied: \(error)") }
        }
        if let image {
            try RegularFile.write(image, to: path(firmwareFile))
            written.append(path(firmwareFile))
        }
        let console = result.trace.compactMap { if case let .console(line, _) = $0.kind { visibleText(line) } else { nil } }
        try RegularFile.write(Array(console.map { $0 + "\n" }.joined().utf8), to: path(consoleFile))
        written.append(path(consoleFile))
        try RegularFile.write(Array(try ScenarioReports.chromeTrace([result])), to: path(traceFile))
        written.append(path(traceFile))
        var report = ""
        if let failure = result.failure {
            report += "The step that failed: \(failure.title) (\(failure.location))\n\(failure.failure ?? "")\n\n"
            if let dump = failure.dump { report += "The board when it failed:\n" + dump + "\n" }
        }
        if let vrings = postMortem?.vrings { report += "Every vring:\n" + vrings }
        try RegularFile.write(Array(report.utf8), to: path(vringsFile))
        written.append(path(vringsFile))

        let readme = self.readme(result, folder: folder.path, hasCore: written.contains(path(coreFile)),
                                 hasImage: written.contains(path(firmwareFile)), notes: notes)
        try RegularFile.write(Array(readme.utf8), to: path(readmeFile))
        return [path(readmeFile)] + written
    }

    static func readme(_ result: ScenarioResult, folder: String, hasCore: Bool, hasImage: Bool, notes: [String]) -> String {
        let core = "\(folder)/\(coreFile)", elf = "\(folder)/\(firmwareFile)"
        var out = """
            rproc-sim: scenario "\(visibleText(result.name))" (\(result.path)) \(result.passed ? "passed" : "failed")
            firmware: \(visibleText(result.firmware))

            """
        if let failure = result.failure {
            out += "failed at: \(failure.title) (\(failure.location))\n  \(visibleText(failure.failure ?? "", keepingNewlines: true).replacingOccurrences(of: "\n", with: "\n  "))\n"
        }
        if let crash = result.postMortem?.coreDump?.info.crash { out += "the remote crashed: \(crash.kind): \(visibleText(crash.message))\n" }
        if result.postMortem?.coreDump?.info.programCounterExact == false {
            out += "note: \(CoreDump.inexactPCNote)\n"
        }
        out += "\nFiles:\n"
        if hasCore {
            out += "  \(coreFile)     the remote's core dump: memories, registers, crash, console and trace tails\n"
        }
        if hasImage { out += "  \(firmwareFile)    the firmware image that ran\n" }
        out += """
              \(consoleFile)     everything the firmware printed
              \(traceFile)      the run's timeline (Perfetto / chrome://tracing)
              \(vringsFile)      the failing step, the board at that moment and every vring

            """
        if hasCore && hasImage && result.postMortem?.coreDump?.cpu != nil {
            out += """

                Debug the core at the faulting line:
                  rproc-sim debug --core \(core) \(elf) --port 3333
                  gdb-multiarch -q \(elf) -ex 'target remote :3333' -ex bt
                or let gdb open the core file itself:
                  gdb-multiarch -q -ex 'set osabi none' -ex 'file \(elf)' -ex 'core-file \(core)' -ex bt

                """
        } else if hasCore {
            out += "\nThe core holds no CPU registers (native firmware runs as host code): its notes and memories are\nthere for ELF tools, e.g. readelf -n -l \(core).\n"
        }
        out += """

            See the timeline: open https://ui.perfetto.dev and load \(folder)/\(traceFile).

            """
        for note in notes { out += "\n\(note)\n" }
        return out
    }
}
