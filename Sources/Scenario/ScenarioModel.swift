import Foundation
import Yams

/// Where something is in a scenario file.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var description: String { "\(file):\(line):\(column)" }
}

/// A scenario file that cannot run: bad YAML, an unknown step or field, a wrong type, a missing
/// firmware. Refused before anything runs.
public struct ScenarioError: Error, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    public var description: String { "\(location): \(message)" }
}

/// How the remote is programmed.
public enum FirmwareChoice: Hashable, Sendable {
    /// A `Firmware/programs` program on an emulated CPU.
    case program(name: String, architecture: String)
    /// An ELF file on an emulated CPU.
    case elf(path: String, architecture: String)
    /// A native (Swift) firmware model.
    case native(name: String)

    public var summary: String {
        switch self {
        case let .program(name, arch): "Firmware/\(name) · \(arch)"
        case let .elf(path, arch): "\(path) · \(arch)"
        case let .native(name): "native \(name)"
        }
    }
}

/// What a received-message expectation matches.
public enum PayloadMatch: Hashable, Sendable {
    case exact([UInt8])
    case prefix([UInt8])
    case regex(String)
    case any
}

/// One step of a scenario.
public enum ScenarioStep: Hashable, Sendable {
    case configure, load, start, boot, stop, shutdown, recover
    case wait(Duration)
    case send(to: String, payload: [UInt8], count: Int)
    case expectState(String, within: Duration)
    case expectAnnounce(String, within: Duration)
    case expectReceived(from: String?, match: PayloadMatch, count: Int, within: Duration)
    case expectConsole(regex: String, within: Duration)
    case expectCrash(kind: String?, within: Duration)

    public var title: String {
        switch self {
        case .configure: "configure"
        case .load: "load"
        case .start: "start"
        case .boot: "boot"
        case .stop: "stop"
        case .shutdown: "shutdown"
        case .recover: "recover"
        case let .wait(d): "wait \(d)"
        case let .send(to, payload, count): "send \(count) × \(payload.count) B to \(to)"
        case let .expectState(s, _): "expect state \(s)"
        case let .expectAnnounce(n, _): "expect announce \(n)"
        case let .expectReceived(from, _, count, _): "expect \(count) message(s)" + (from.map { " from \($0)" } ?? "")
        case let .expectConsole(regex, _): "expect console /\(regex)/"
        case let .expectCrash(kind, _): "expect crash" + (kind.map { " (\($0))" } ?? "")
        }
    }
}

/// A parsed scenario file.
public struct ScenarioFile: Sendable {
    public var path: String
    public var name: String
    public var firmware: FirmwareChoice
    public var pollMode: Bool
    public var steps: [(step: ScenarioStep, location: SourceLocation)]
}
