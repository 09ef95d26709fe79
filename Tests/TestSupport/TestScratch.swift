import Foundation

/// Where tests put the files they write: one directory per test process, under
/// `$TMPDIR/swift-remoteproc-tests/`, removed when the process exits. A process that died without
/// exiting (killed by a timeout, crashed) leaves its directory behind; the next test process
/// removes the directories of processes that no longer exist. (Tests used to leave a directory in
/// `/tmp` per scenario or CLI test: hundreds per run.)
public enum TestScratch {
    /// A new, empty directory of its own, named after `name`.
    public static func directory(_ name: String) throws -> URL {
        let url = root.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A path inside the process's directory that nothing uses yet (the caller creates it: a file,
    /// a FIFO, a socket).
    public static func path(_ name: String) -> String {
        root.appendingPathComponent("\(UUID().uuidString)-\(name)").path
    }

    /// This process's directory; made, and registered for removal at exit, on first use.
    static let root: URL = {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("swift-remoteproc-tests")
        removeDirectoriesOfEndedProcesses(in: parent)
        let own = parent.appendingPathComponent("pid-\(getpid())")
        try? FileManager.default.removeItem(at: own)
        do {
            try FileManager.default.createDirectory(at: own, withIntermediateDirectories: true)
        } catch {
            fatalError("cannot make the test scratch directory \(own.path): \(error)")
        }
        atexit { try? FileManager.default.removeItem(at: TestScratch.root) }
        return own
    }()

    private static func removeDirectoriesOfEndedProcesses(in parent: URL) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent.path) else { return }
        for name in names where name.hasPrefix("pid-") {
            guard let pid = pid_t(name.dropFirst(4)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: parent.appendingPathComponent(name))
            }
        }
    }
}
