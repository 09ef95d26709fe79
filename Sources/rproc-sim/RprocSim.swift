import ArgumentParser
import Virtio

@main
struct RprocSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rproc-sim",
        abstract: "Drive the Swift remoteproc core against a simulated remote processor.",
        subcommands: [Run.self, Debug.self, Load.self, Inspect.self, Bench.self]
    )
}

/// `--host linux|openamp`.
extension HostPersonality: ExpressibleByArgument {}
