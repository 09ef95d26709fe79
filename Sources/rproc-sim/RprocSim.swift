import ArgumentParser
import Foundation
import Virtio

@main
struct RprocSim: ParsableCommand {
    /// The tool's version (`rproc-sim --version`).
    static let version = "0.13.0"

    static let configuration = CommandConfiguration(
        commandName: "rproc-sim",
        abstract: "Drive the Swift remoteproc core against a simulated remote processor.",
        discussion: "Exit status, for every command: 0 success, 1 a failure of what ran (a scenario, a firmware), 2 a usage or file error.",
        version: version,
        subcommands: [Run.self, Debug.self, Load.self, Inspect.self, Bench.self, Soak.self]
    )

    /// As ArgumentParser's, but a usage error exits 2 (the documented status), not 64.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                Terminal.error(fullMessage(for: error))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// `--host linux|openamp`.
extension HostPersonality: ExpressibleByArgument {}

/// Runs `body`, turning any error into "error: …" on standard error and exit status 2: for the
/// steps that read the files a user named (a missing or malformed ELF, a table the host refuses).
func fileStep<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let code as ExitCode { throw code } catch {
        Terminal.error("error: \(error)")
        throw ExitCode(2)
    }
}
