import Foundation

/// gdb-multiarch in batch mode, bounded: its output, or what it wrote before `timeout` passed and
/// it was killed. (SIGKILL: gdb can spin where it never looks at SIGTERM — a test then fails on
/// the output instead of hanging.)
public enum GDBBatch {
    public static let path = ["/usr/bin/gdb-multiarch", "/usr/local/bin/gdb-multiarch"].first { FileManager.default.isExecutableFile(atPath: $0) }

    public static func run(_ arguments: [String], timeout: TimeInterval = 60) throws -> String {
        guard let path else { throw CocoaError(.executableNotLoadable, userInfo: [NSLocalizedDescriptionKey: "gdb-multiarch is not installed (.ci/run installs it)"]) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-q", "-nx", "-batch"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()   // Foundation lets go of a process only once it has seen it exit
        return String(decoding: output, as: UTF8.self)
    }
}
