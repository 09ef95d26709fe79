import Foundation
import MetalIO
import Remoteproc
import RemoteSim
import Virtio
import Yams

/// Reads scenario files strictly: every key is known, every value has the right type, every
/// wait has a timeout; the first problem is reported with file, line and column.
public enum ScenarioParser {
    public static let architectures = ["cortex-m4", "rv32", "native"]
    public static let nativeModels = ["echo", "ping", "sink", "multi-service", "crash", "panic", "hang", "beacon"]
    public static let states = ["offline", "configured", "ready", "running", "stopped", "crashed", "suspended"]
    public static let crashKinds = ["fault", "panic", "watchdog", "other"]
    static let defaultWithin: Duration = .seconds(5)

    public static func parse(file path: String) throws(ScenarioError) -> ScenarioFile {
        try parse(try readText(path, at: SourceLocation(file: path, line: 1, column: 1), what: "the file"), path: path)
    }

    /// Largest scenario or included file read (a scenario is text a person writes).
    static let maximumFileSize = 4 << 20
    /// Most YAML nodes a document may hold once aliases are resolved (an alias "bomb" is refused).
    static let maximumNodes = 200_000
    /// Deepest nesting of flow collections, and widest indentation, a document may have.
    static let maximumFlowNesting = 64
    static let maximumIndentation = 256

    /// A scenario file's text: a regular file of at most 4 MiB, valid UTF-8.
    static func readText(_ path: String, at location: SourceLocation, what: String) throws(ScenarioError) -> String {
        let data: [UInt8]
        do { data = try RegularFile.contents(of: path, limit: maximumFileSize) } catch {
            throw ScenarioError(location: location, message: "\(what): \(error)")
        }
        // One pass: the offset of the first byte that does not decode, if any.
        var parser = Unicode.UTF8.ForwardParser()
        var bytes = data.makeIterator()
        var offset = 0
        decoding: while true {
            switch parser.parseScalar(from: &bytes) {
            case let .valid(encoded): offset += encoded.count
            case .error: throw ScenarioError(location: location, message: "\(what) \(path) is not UTF-8 text (byte \(offset))")
            case .emptyInput: break decoding
            }
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The YAML tree of `text`, refused with a location when it is not YAML, nests too deep for
    /// the parser (checked on the text first), or grows too large through aliases.
    static func compose(_ text: String, path: String) throws(ScenarioError) -> Node? {
        try checkNesting(text, path: path)
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch let error as YamlError {
            throw yamlError(error, path: path)
        } catch {
            throw ScenarioError(location: SourceLocation(file: path, line: 1, column: 1), message: "invalid YAML: \(error)")
        }
        if let root {
            var budget = maximumNodes
            func count(_ node: Node) -> Bool {
                budget -= 1
                guard budget > 0 else { return false }
                switch node {
                case let .mapping(map): return map.allSatisfy { count($0.key) && count($0.value) }
                case let .sequence(list): return list.allSatisfy(count)
                default: return true
                }
            }
            guard count(root) else {
                throw ScenarioError(location: SourceLocation(file: path, line: 1, column: 1),
                                    message: "the document holds more than \(maximumNodes) values (aliases expanding it?)")
            }
        }
        return root
    }

    /// Refuses flow collections nested deeper than 64 and lines indented (or dashed) past 256
    /// columns: the YAML parser recurses on nesting, and such a file is not a scenario anyone wrote.
    static func checkNesting(_ text: String, path: String) throws(ScenarioError) {
        var depth = 0, line = 1, column = 0, quote: Character?, lineStart = true, indent = 0
        for character in text {
            column += 1
            if character == "\n" {
                line += 1; column = 0; lineStart = true; indent = 0
                if quote == "'" || quote == "\n" { quote = nil }
                continue
            }
            if lineStart {
                if character == " " || character == "-" { indent += 1 } else { lineStart = false }
                if indent > maximumIndentation {
                    throw ScenarioError(location: SourceLocation(file: path, line: line, column: column), message: "nested deeper than \(maximumIndentation) columns")
                }
            }
            if let open = quote {
                if character == open { quote = nil }
                continue
            }
            switch character {
            case "\"", "'": quote = character
            case "#": quote = "\n"   // a comment runs to the end of the line
            case "[", "{":
                depth += 1
                guard depth <= maximumFlowNesting else {
                    throw ScenarioError(location: SourceLocation(file: path, line: line, column: column), message: "nested deeper than \(maximumFlowNesting) levels")
                }
            case "]", "}": depth = max(0, depth - 1)
            default: break
            }
        }
    }

    public static func parse(_ text: String, path: String) throws(ScenarioError) -> ScenarioFile {
        let root = try compose(text, path: path)
        let p = Reader(path: path)
        guard let root, let top = root.mapping else { throw p.error(root, "expected a mapping with name, firmware and steps") }
        try p.allowOnly(top, ["name", "firmware", "arch", "elf", "board", "host", "debug", "leftovers", "tags", "vars", "steps", "processors", "clock"],
                        context: "scenario")
        var tags: [String] = []
        if let node = top["tags"] {
            guard let list = node.sequence else { throw p.error(node, "tags must be a list of words, e.g. [smoke, m4]") }
            for item in list {
                let tag = try p.string(item, "tags")
                guard !tag.isEmpty, tag.count <= 64, tag.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                    throw p.error(item, "a tag is a word of letters, digits, '-', '_' or '.' (at most 64)")
                }
                tags.append(tag)
            }
        }
        let name = try top["name"].map { (n) throws(ScenarioError) in try p.string(n, "name") } ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        /// What one processor is (the file's top level, or an entry of `processors:`): its
        /// firmware and core, and its board.
        func processor(_ top: Node.Mapping, root: Node) throws(ScenarioError) -> (ScenarioFile.Processor, BoardClock) {
            let givenArch = try top["arch"].map { (n) throws(ScenarioError) in try p.string(n, "arch") }
            if let givenArch, !architectures.contains(givenArch) {
                throw p.error(top["arch"], "arch must be one of \(architectures.joined(separator: ", ")), not '\(givenArch)'")
            }
            var arch = givenArch ?? "native"
            let firmware: FirmwareChoice
            if let elf = top["elf"] {
                let file = try p.string(elf, "elf")
                let resolved = file.hasPrefix("/") ? file : URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(file).path
                // The ELF decides: its e_machine and class name the core it was built for.
                let built = try elfArchitecture(resolved, shown: file, node: elf, reader: p)
                if let givenArch, givenArch != built {
                    throw p.error(top["arch"], "arch is \(givenArch) but '\(file)' is built for \(built) (its ELF header says so); drop arch or fix it")
                }
                arch = built
                firmware = .elf(path: resolved, architecture: arch)
            } else {
                guard let node = top["firmware"] else { throw p.error(root, "missing 'firmware' (a Firmware/ program or native model name) or 'elf'") }
                let program = try p.string(node, "firmware")
                if arch == "native" {
                    guard nativeModels.contains(program) else {
                        throw p.error(node, "no native firmware '\(program)' (available: \(nativeModels.joined(separator: ", ")))")
                    }
                    firmware = .native(name: program)
                } else {
                    guard ScenarioFirmware.programExists(program) else {
                        throw p.error(node, "no Firmware/ program '\(program)' (available: \(ScenarioFirmware.programs().joined(separator: ", ")))")
                    }
                    firmware = .program(name: program, architecture: arch)
                }
            }
            var pollMode = false
            var autosuspend: Duration?
            var coreClock: CoreClockRate?
            var faults: FaultHandling?
            var exactPCs = false
            var hostInterrupts = InterruptDelivery.inline
            var clock = BoardClock.realTime
            var sizes: [String: Int] = [:]
            if let board = top["board"] {
                guard let map = board.mapping else { throw p.error(board, "board must be a mapping") }
                try p.allowOnly(map, ["poll", "code", "sram", "shared", "autosuspend", "core-clock", "faults", "exact-pcs", "host-interrupts", "clock"], context: "board")
                if let node = map["exact-pcs"] {
                    exactPCs = try p.bool(node, "board.exact-pcs")
                    guard !exactPCs || arch != "native" else { throw p.error(node, "board.exact-pcs is for an emulated CPU: set arch to cortex-m4 or rv32") }
                }
                if let poll = map["poll"] { pollMode = try p.bool(poll, "board.poll") }
                if let node = map["autosuspend"] {
                    let delay = try p.duration(node, "board.autosuspend")
                    guard delay >= .milliseconds(1) else { throw p.error(node, "board.autosuspend must be at least 1ms (the idle time before the remote is suspended)") }
                    autosuspend = delay
                }
                if let node = map["core-clock"] {
                    guard let text = node.scalar?.string, let rate = ScenarioParser.frequency(text) else {
                        throw p.error(node, "board.core-clock must be a frequency such as 100MHz, 48MHz or 32768Hz, from 1kHz to 1GHz")
                    }
                    coreClock = rate
                }
                if let node = map["faults"] {
                    guard let text = node.scalar?.string, let handling = FaultHandling(rawValue: text) else {
                        throw p.error(node, "board.faults must be crash (a fault crashes the core) or vectored (it enters the firmware's fault handler)")
                    }
                    guard handling == .crash || arch != "native" else {
                        throw p.error(node, "board.faults: vectored enters the fault handler of an emulated CPU: set arch to cortex-m4 or rv32")
                    }
                    faults = handling
                }
                if let node = map["host-interrupts"] {
                    guard !pollMode else {
                        throw p.error(node, "board.host-interrupts cannot be set with poll: true (kicks then reach the host only when the runner polls)")
                    }
                    guard let text = node.scalar?.string, let delivery = InterruptDelivery(rawValue: text), delivery != .poll else {
                        throw p.error(node, "board.host-interrupts must be inline (the remote's kicks are handled on the core's thread) or thread (on a host interrupt thread)")
                    }
                    hostInterrupts = delivery
                }
                if let node = map["clock"] {
                    guard let text = node.scalar?.string, let chosen = BoardClock(rawValue: text) else {
                        throw p.error(node, "board.clock must be real-time (the host's clock) or virtual (lockstep, repeatable time)")
                    }
                    if chosen == .virtual, hostInterrupts == .thread, let threaded = map["host-interrupts"] {
                        throw p.error(threaded, "board.host-interrupts: thread needs real time: a host interrupt thread would run beside the virtual-time schedule (use inline, or clock: real-time)")
                    }
                    clock = chosen
                }
                for name in ["code", "sram", "shared"] {
                    guard let node = map[name] else { continue }
                    guard let text = node.scalar?.string, let bytes = ScenarioParser.size(text), bytes >= 4096, bytes <= 256 << 20, bytes % 4096 == 0 else {
                        throw p.error(node, "board.\(name) must be a size such as 256K or 1M: a multiple of 4K up to 256M")
                    }
                    sizes[name] = bytes
                }
            }
            var config = ScenarioFile.Processor(firmware: firmware)
            config.pollMode = pollMode
            config.autosuspend = autosuspend
            config.coreClock = coreClock
            config.faults = faults
            config.exactPCs = exactPCs
            config.hostInterrupts = hostInterrupts
            config.codeSize = sizes["code"]
            config.sramSize = sizes["sram"]
            config.sharedSize = sizes["shared"]
            config.architecture = arch
            return (config, clock)
        }
        var processors: [(name: String, node: Node, config: ScenarioFile.Processor)] = []
        let single: ScenarioFile.Processor
        var boardClock = BoardClock.realTime
        if let list = top["processors"] {
            for key in ["firmware", "arch", "elf", "board"] where top[key] != nil {
                throw p.error(top[key], "\(key) belongs inside each entry of processors: (a file has one processor at the top, or several under processors:)")
            }
            if let node = top["debug"] { throw p.error(node, "debug serves the core of a file with one processor (run that processor alone to debug it)") }
            guard let map = list.mapping, !map.isEmpty, map.count <= ScenarioParser.maximumProcessors else {
                throw p.error(list, "processors must be a mapping of 1 to \(ScenarioParser.maximumProcessors) names to processors: { m4: { firmware: echo, arch: cortex-m4 }, … }")
            }
            for (key, value) in map {
                guard let name = key.scalar?.string, !name.isEmpty, name.count <= 32,
                      name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                    throw p.error(key, "a processor's name is a word of letters, digits, '-' or '_' (at most 32)")
                }
                guard let entry = value.mapping else { throw p.error(value, "processor \(name) must be a mapping: { firmware: …, arch: … }") }
                try p.allowOnly(entry, ["firmware", "arch", "elf", "board", "host"], context: "processor \(name)")
                if let board = entry["board"]?.mapping, let node = board["clock"] {
                    throw p.error(node, "the clock is the system's: set clock: at the top of a file with processors:")
                }
                var (config, _) = try processor(entry, root: value)
                config.host = try entry["host"].map { (node) throws(ScenarioError) in try p.host(node) }
                processors.append((name, value, config))
            }
            single = processors[0].config
        } else {
            if let node = top["clock"] { throw p.error(node, "clock: at the top is for a file with processors: (one processor sets board: { clock: … })") }
            (single, boardClock) = try processor(top, root: root)
        }
        if let node = top["clock"] {
            guard let text = node.scalar?.string, let chosen = BoardClock(rawValue: text) else {
                throw p.error(node, "clock must be real-time (the host's clock) or virtual (lockstep, repeatable time)")
            }
            if chosen == .virtual, let threaded = processors.first(where: { $0.config.hostInterrupts == .thread }) {
                throw p.error(threaded.node, "processor \(threaded.name): host-interrupts: thread needs real time, and this file's clock is virtual")
            }
            boardClock = chosen
        }
        let arch = single.architecture
        var debug: DebuggerOptions?
        if let node = top["debug"] {
            guard arch != "native" else { throw p.error(node, "debug serves GDB for an emulated CPU: set arch to cortex-m4 or rv32") }
            if node.scalar != nil {
                debug = DebuggerOptions(port: UInt16(try p.int(node, "debug", range: 1...65535)), waitForDebugger: true)
            } else if let map = node.mapping {
                try p.allowOnly(map, ["port", "wait"], context: "debug")
                guard let port = map["port"] else { throw p.error(node, "debug needs a 'port' (the loopback port gdb-multiarch connects to)") }
                debug = DebuggerOptions(port: UInt16(try p.int(port, "debug.port", range: 1...65535)),
                                             waitForDebugger: try map["wait"].map { (n) throws(ScenarioError) in try p.bool(n, "debug.wait") } ?? true)
            } else {
                throw p.error(node, "debug must be a port number or a mapping with port and wait")
            }
        }
        var failOnLeftovers = false
        if let node = top["leftovers"] {
            let value = try p.string(node, "leftovers")
            guard value == "fail" || value == "ignore" else { throw p.error(node, "leftovers must be fail or ignore, not '\(value)'") }
            failOnLeftovers = value == "fail"
        }
        let host = try top["host"].map { (node) throws(ScenarioError) in try p.host(node) } ?? .default
        guard let stepsNode = top["steps"], let steps = stepsNode.sequence else { throw p.error(top["steps"] ?? root, "missing 'steps' (a list)") }
        var expander = Expander(reader: p)
        try expander.expand(Array(steps), vars: try variables(top["vars"], reader: p))
        let parsed = expander.steps
        if arch == "native", let debugStep = parsed.first(where: { if case .debug = $0.step { true } else { false } }) {
            throw ScenarioError(location: debugStep.location, message: "debug halts an emulated CPU for gdb: set arch to cortex-m4 or rv32")
        }
        var file = ScenarioFile(path: path, name: name, processor: single, clock: boardClock, debug: debug, host: host, failOnLeftovers: failOnLeftovers,
                                tags: tags, steps: parsed)
        file.processors = processors.map { (name: $0.name, config: $0.config) }
        try ScenarioParser.checkTargets(file, reader: p)
        if file.clock == .virtual, let conflict = file.virtualTimeConflict(), let location = conflict.location {
            throw ScenarioError(location: location, message: conflict.message)
        }
        return file
    }

    /// The most processors a file may hold.
    public static let maximumProcessors = 8

    /// Every step's `on:` names a processor of the file; with several, every step but `wait` has one.
    static func checkTargets(_ file: ScenarioFile, reader p: Reader) throws(ScenarioError) {
        let names = file.processors.map(\.name)
        for (step, location, on) in file.steps {
            if let on {
                guard !names.isEmpty else {
                    throw ScenarioError(location: location, message: "on: \(on) names a processor, and this file has one (list them under processors: to have several)")
                }
                guard names.contains(on) else {
                    throw ScenarioError(location: location, message: "on: no processor '\(on)' (processors: \(names.joined(separator: ", ")))")
                }
            } else if names.count > 1, !step.isSystemWide {
                throw ScenarioError(location: location, message: "\(step.title): which processor? add on: (one of \(names.joined(separator: ", ")))")
            }
            if !names.isEmpty, case .debug = step {
                throw ScenarioError(location: location, message: "debug is for a file with one processor (its core waits for gdb)")
            }
        }
    }

    /// "100MHz", "48 MHz", "32768Hz", "1GHz", "12.5MHz": a core clock the board accepts.
    static func frequency(_ text: String) -> CoreClockRate? {
        let trimmed = text.replacingOccurrences(of: " ", with: "").lowercased()
        let units: [(String, Double)] = [("ghz", 1e9), ("mhz", 1e6), ("khz", 1e3), ("hz", 1)]
        guard let (suffix, scale) = units.first(where: { trimmed.hasSuffix($0.0) }),
              let number = Double(trimmed.dropLast(suffix.count)), number.isFinite, number > 0 else { return nil }
        let hertz = (number * scale).rounded()
        guard abs(hertz - number * scale) < 1e-3, hertz <= 1e12 else { return nil }          // whole hertz
        return CoreClockRate(hertz: UInt64(hertz))
    }

    /// The emulated core an ELF file was built for, from its header: 32-bit ARM → cortex-m4,
    /// 32-bit RISC-V → rv32. Anything else, an unreadable file or one that is not a regular file
    /// (a FIFO would block the read) is refused at the `elf:` line.
    static func elfArchitecture(_ path: String, shown: String, node: Node, reader p: Reader) throws(ScenarioError) -> String {
        let image: ELFImage
        do { image = try ELFImage.read(path, from: FileImageStore()) } catch {
            if case let .file(problem) = error.kind { throw p.error(node, "firmware file '\(shown)': \(problem)") }
            throw p.error(node, "firmware file '\(shown)' is not a loadable ELF: \(error)")
        }
        switch (image.header.machine, image.header.fileClass) {
        case (.arm, .elf32): return "cortex-m4"
        case (.riscv, .elf32): return "rv32"
        default:
            throw p.error(node, "'\(shown)' is built for \(image.header.machine) (\(image.header.fileClass)); this board emulates 32-bit ARM (cortex-m4) and RISC-V (rv32)")
        }
    }

    static func yamlError(_ error: YamlError, path: String) -> ScenarioError {
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _):
            return ScenarioError(location: SourceLocation(file: path, line: mark.line, column: mark.column),
                                 message: "invalid YAML: \(problem)" + (context.map { " (\($0.text))" } ?? ""))
        case let .composer(context, problem, mark, _):
            return ScenarioError(location: SourceLocation(file: path, line: mark.line, column: mark.column),
                                 message: "invalid YAML: \(problem)" + (context.map { " (\($0.text))" } ?? ""))
        default:
            return ScenarioError(location: SourceLocation(file: path, line: 1, column: 1), message: "invalid YAML: \(error)")
        }
    }

    struct Reader {
        let path: String

        func location(_ node: Node?) -> SourceLocation {
            SourceLocation(file: path, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1)
        }
        func error(_ node: Node?, _ message: String) -> ScenarioError { ScenarioError(location: location(node), message: message) }

        /// A `host:` value: one of the host personalities.
        func host(_ node: Node) throws(ScenarioError) -> HostPersonality {
            let name = try string(node, "host")
            guard let chosen = HostPersonality(rawValue: name) else {
                throw error(node, "host must be one of \(HostPersonality.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
            }
            return chosen
        }

        func allowOnly(_ map: Node.Mapping, _ keys: [String], context: String) throws(ScenarioError) {
            for (key, _) in map {
                guard let name = key.scalar?.string, keys.contains(name) else {
                    let name = key.scalar?.string ?? "?"
                    let hint = ScenarioParser.closest(to: name, in: keys).map { " — did you mean '\($0)'?" } ?? ""
                    throw error(key, "unknown field '\(name)' in \(context)\(hint) (expected one of: \(keys.joined(separator: ", ")))")
                }
            }
        }

        func string(_ node: Node, _ field: String) throws(ScenarioError) -> String {
            guard let s = node.scalar?.string else { throw error(node, "\(field) must be a text value") }
            return s
        }

        func bool(_ node: Node, _ field: String) throws(ScenarioError) -> Bool {
            guard let s = node.scalar?.string, let b = ["true": true, "false": false, "yes": true, "no": false][s.lowercased()] else {
                throw error(node, "\(field) must be true or false")
            }
            return b
        }

        func int(_ node: Node, _ field: String, range: ClosedRange<Int> = 0...10_000_000) throws(ScenarioError) -> Int {
            guard let s = node.scalar?.string, let v = Int(s), range.contains(v) else {
                throw error(node, "\(field) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return v
        }

        func uint32(_ node: Node, _ field: String) throws(ScenarioError) -> UInt32 {
            guard let text = node.scalar?.string else { throw error(node, "\(field) must be a number") }
            let value = text.lowercased().hasPrefix("0x") ? UInt32(text.dropFirst(2), radix: 16) : UInt32(text)
            guard let value else { throw error(node, "\(field) must be a number from 0 to 0xFFFFFFFF (decimal or 0x…)") }
            return value
        }

        func duration(_ node: Node, _ field: String) throws(ScenarioError) -> Duration {
            guard let text = node.scalar?.string, let d = ScenarioParser.duration(text) else {
                throw error(node, "\(field) must be a duration such as 200ms, 2s or 10m")
            }
            return d
        }

        /// What a received-message expectation matches: exactly one of received (text), hex,
        /// prefix, regex — or none of them (any message).
        static let matcherKeys = ["received", "hex", "prefix", "regex"] + PayloadGenerator.keys

        /// A payload generator's bytes (`random:`, `counter:`, `pattern:`; see ``PayloadGenerator``).
        func generated(_ key: String, _ node: Node) throws(ScenarioError) -> [UInt8] {
            guard let args = node.mapping else { throw error(node, "\(key) needs a mapping, e.g. { size: 64\(key == "random" ? ", seed: 7" : key == "pattern" ? ", text: ab" : "") }") }
            guard let sizeNode = args["size"] else { throw error(node, "\(key) needs 'size' (1 to 496 bytes)") }
            let size = try int(sizeNode, "\(key).size", range: 1...65536)
            switch key {
            case "random":
                try allowOnly(args, ["size", "seed"], context: "random")
                let seed = try args["seed"].map { (n) throws(ScenarioError) in UInt64(try uint32(n, "random.seed")) } ?? 1
                return PayloadGenerator.random(size: size, seed: seed).bytes
            case "counter":
                try allowOnly(args, ["size", "start"], context: "counter")
                let start = try args["start"].map { (n) throws(ScenarioError) in UInt8(try int(n, "counter.start", range: 0...255)) } ?? 0
                return PayloadGenerator.counter(size: size, start: start).bytes
            default:
                try allowOnly(args, ["size", "text", "hex"], context: "pattern")
                let pattern: [UInt8]
                if let text = args["text"], args["hex"] == nil { pattern = Array(try string(text, "pattern.text").utf8) }
                else if let hex = args["hex"], args["text"] == nil {
                    guard let bytes = ScenarioParser.hexBytes(try string(hex, "pattern.hex")) else { throw error(hex, "hex must be pairs of hex digits") }
                    pattern = bytes
                } else { throw error(node, "pattern needs one of text or hex") }
                guard !pattern.isEmpty else { throw error(node, "the pattern is empty") }
                return PayloadGenerator.pattern(pattern, size: size).bytes
            }
        }

        func matcher(_ args: Node.Mapping, node: Node) throws(ScenarioError) -> PayloadMatch? {
            let given = Self.matcherKeys.filter { args[$0] != nil }
            guard given.count <= 1 else {
                throw error(args[given[1]], "give one of received, hex, prefix, regex, random, counter or pattern, not both \(given[0]) and \(given[1])")
            }
            guard let key = given.first, let value = args[key] else { return nil }
            switch key {
            case "received": return .exact(Array(try string(value, "received").utf8))
            case "hex":
                guard let bytes = ScenarioParser.hexBytes(try string(value, "hex")) else { throw error(value, "hex must be pairs of hex digits") }
                return .exact(bytes)
            case "prefix": return .prefix(Array(try string(value, "prefix").utf8))
            case "random", "counter", "pattern": return .exact(try generated(key, value))
            default:
                let pattern = try string(value, "regex")
                do { _ = try ScenarioRegex(pattern) } catch { throw self.error(value, "\(error)") }
                return .regex(pattern)
            }
        }

        /// A step's `on: NAME` (the processor it addresses), taken out of its arguments: `send:
        /// { on: m4, to: …, text: … }`; a word step takes it as `boot: { on: m4 }`.
        func target(_ node: Node) throws(ScenarioError) -> (step: Node, on: String?) {
            guard let map = node.mapping, map.count == 1, let (key, value) = map.first, let args = value.mapping,
                  let onNode = args["on"] else { return (node, nil) }
            let name = try string(onNode, "on")
            let rest = args.filter { $0.key.scalar?.string != "on" }
            if rest.isEmpty, let word = key.scalar?.string {
                return (Node.scalar(Node.Scalar(word, .implicit, .any, key.mark)), name)
            }
            let trimmed = Node.Mapping(rest.map { ($0.key, $0.value) }, args.tag, args.style, args.mark)
            return (Node.mapping(Node.Mapping([(key, Node.mapping(trimmed))], map.tag, map.style, map.mark)), name)
        }

        func step(_ node: Node) throws(ScenarioError) -> ScenarioStep {
            if let word = node.scalar?.string {
                switch word {
                case "configure": return .configure
                case "load": return .load
                case "start": return .start
                case "boot": return .boot
                case "stop": return .stop
                case "shutdown": return .shutdown
                case "recover": return .recover
                case "suspend": return .suspend(.forced, timeout: ScenarioParser.defaultSuspendTimeout, expect: .suspended)
                case "resume": return .resume
                case "debug": return .debug(attachWithin: ScenarioParser.defaultDebugAttachWithin, within: ScenarioParser.defaultDebugWithin)
                default:
                    let hint = ScenarioParser.closest(to: word, in: ScenarioParser.stepNames).map { " — did you mean '\($0)'?" } ?? ""
                    throw error(node, "unknown step '\(word)'\(hint) (steps: \(ScenarioParser.stepNames.joined(separator: ", ")))")
                }
            }
            guard let map = node.mapping, map.count == 1, let (keyNode, value) = map.first, let key = keyNode.scalar?.string else {
                throw error(node, "a step is a word (boot, stop, …) or a mapping with one key (send, expect, wait)")
            }
            switch key {
            case "wait": return .wait(try duration(value, "wait"))
            case "dump":
                let name = try string(value, "dump")
                guard !name.isEmpty else { throw error(value, "dump needs a file name: dump: remote.core") }
                return .dump(path: name.hasPrefix("/") ? name : URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(name).path)
            case "debug":
                guard let args = value.mapping else { throw error(value, "debug is a word, or a mapping: { within: 30m }") }
                try allowOnly(args, ["within", "attach-within"], context: "debug")
                return .debug(attachWithin: try args["attach-within"].map { (n) throws(ScenarioError) in try duration(n, "attach-within") } ?? ScenarioParser.defaultDebugAttachWithin,
                              within: try args["within"].map { (n) throws(ScenarioError) in try duration(n, "within") } ?? ScenarioParser.defaultDebugWithin)
            case "send":
                guard let args = value.mapping else { throw error(value, "send needs a mapping: { to: SERVICE, text: … }") }
                try allowOnly(args, ["to", "text", "hex", "file", "count", "for"] + PayloadGenerator.keys, context: "send")
                guard let to = args["to"] else { throw error(value, "send needs 'to' (an announced service name)") }
                let sources = (["text", "hex", "file"] + PayloadGenerator.keys).filter { args[$0] != nil }
                guard sources.count <= 1 else {
                    throw error(args[sources[1]], "give one of text, hex, file, random, counter or pattern, not both \(sources[0]) and \(sources[1])")
                }
                if let fileNode = args["file"] {
                    if let forNode = args["for"] { throw error(forNode, "for does not go with file (a file is sent whole, count times)") }
                    let name = try string(fileNode, "file")
                    let resolved = name.hasPrefix("/") ? name : URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(name).path
                    let bytes: [UInt8]
                    do { bytes = try RegularFile.contents(of: resolved, limit: 64 << 20) } catch { throw self.error(fileNode, "payload file: \(error)") }
                    guard !bytes.isEmpty else { throw error(fileNode, "payload file \(resolved) is empty") }
                    let chunks = stride(from: 0, to: bytes.count, by: 496).map { Array(bytes[$0..<min($0 + 496, bytes.count)]) }
                    let count = try args["count"].map { (n) throws(ScenarioError) in try int(n, "count", range: 1...1_000_000) } ?? 1
                    guard count * chunks.count <= 100_000_000 else { throw error(args["count"], "count × the file's \(chunks.count) messages is over 100,000,000") }
                    return .sendFile(to: try string(to, "to"), chunks: chunks, path: resolved, count: count)
                }
                let payload: [UInt8]
                if let text = args["text"] { payload = Array(try string(text, "text").utf8) } else if let hexNode = args["hex"] {
                    guard let bytes = ScenarioParser.hexBytes(try string(hexNode, "hex")) else { throw error(hexNode, "hex must be pairs of hex digits") }
                    payload = bytes
                } else if let key = PayloadGenerator.keys.first(where: { args[$0] != nil }), let node = args[key] {
                    payload = try generated(key, node)
                } else { throw error(value, "send needs one of text, hex, file, random, counter or pattern") }
                guard payload.count <= 496 else { throw error(value, "the payload is \(payload.count) bytes; at most 496 fit a buffer") }
                if let forNode = args["for"] {
                    guard args["count"] == nil else { throw error(forNode, "give either count or for, not both") }
                    return .sendFor(to: try string(to, "to"), payload: payload, duration: try duration(forNode, "for"))
                }
                let count = try args["count"].map { (n) throws(ScenarioError) in try int(n, "count", range: 1...10_000_000) } ?? 1
                return .send(to: try string(to, "to"), payload: payload, count: count)
            case "expect":
                guard let args = value.mapping else { throw error(value, "expect needs a mapping: { state: running } or { announce: NAME } …") }
                let within = try args["within"].map { (n) throws(ScenarioError) in try duration(n, "within") } ?? ScenarioParser.defaultWithin
                if let state = args["state"] {
                    try allowOnly(args, ["state", "within"], context: "expect state")
                    let s = try string(state, "state")
                    guard ScenarioParser.states.contains(s) else { throw error(state, "state must be one of \(ScenarioParser.states.joined(separator: ", "))") }
                    return .expectState(s, within: within)
                }
                if let name = args["announce"] {
                    try allowOnly(args, ["announce", "within"], context: "expect announce")
                    return .expectAnnounce(try string(name, "announce"), within: within)
                }
                if let none = args["none"] {
                    try allowOnly(args, ["none", "from", "for"], context: "expect none")
                    guard let forNode = args["for"] else { throw error(value, "expect none needs 'for' (how long nothing may arrive, e.g. 100ms)") }
                    let match: PayloadMatch
                    if let map = none.mapping {
                        try allowOnly(map, Self.matcherKeys, context: "expect none")
                        match = try matcher(map, node: none) ?? .any
                    } else {
                        let text = try string(none, "none")
                        match = text == "any" ? .any : .exact(Array(text.utf8))
                    }
                    return .expectNone(from: try args["from"].map { (n) throws(ScenarioError) in try string(n, "from") }, match: match,
                                       for: try duration(forNode, "for"))
                }
                if let noCrash = args["no-crash"] {
                    try allowOnly(args, ["no-crash", "for"], context: "expect no-crash")
                    guard try bool(noCrash, "no-crash") else { throw error(noCrash, "no-crash must be true (expect a crash with { crash: any })") }
                    guard let forNode = args["for"] else { throw error(value, "expect no-crash needs 'for' (how long, e.g. 1s)") }
                    return .expectNoCrash(for: try duration(forNode, "for"))
                }
                if Self.matcherKeys.contains(where: { args[$0] != nil }) || args["count"] != nil {
                    try allowOnly(args, Self.matcherKeys + ["count", "from", "within"], context: "expect received")
                    let match = try matcher(args, node: value) ?? .any
                    let count = try args["count"].map { (n) throws(ScenarioError) in try int(n, "count", range: 1...10_000_000) } ?? 1
                    return .expectReceived(from: try args["from"].map { (n) throws(ScenarioError) in try string(n, "from") }, match: match, count: count, within: within)
                }
                if let console = args["console"] {
                    try allowOnly(args, ["console", "within"], context: "expect console")
                    let pattern = try string(console, "console")
                    do { _ = try ScenarioRegex(pattern) } catch { throw self.error(console, "\(error)") }
                    return .expectConsole(regex: pattern, within: within)
                }
                if let crash = args["crash"] {
                    try allowOnly(args, ["crash", "within"], context: "expect crash")
                    let kind = try string(crash, "crash")
                    guard kind == "any" || ScenarioParser.crashKinds.contains(kind) else {
                        throw error(crash, "crash must be any or one of \(ScenarioParser.crashKinds.joined(separator: ", "))")
                    }
                    return .expectCrash(kind: kind == "any" ? nil : kind, within: within)
                }
                if let malformed = args["malformed"] {
                    try allowOnly(args, ["malformed", "within"], context: "expect malformed")
                    return .expectMalformed(atLeast: try int(malformed, "malformed", range: 0...1_000_000), within: within)
                }
                if let trace = args["trace"] {
                    try allowOnly(args, ["trace", "within"], context: "expect trace")
                    let pattern = try string(trace, "trace")
                    do { _ = try ScenarioRegex(pattern) } catch { throw self.error(trace, "\(error)") }
                    return .expectTrace(regex: pattern, within: within)
                }
                for (keyNode, _) in args {
                    guard let name = keyNode.scalar?.string, name != "within" else { continue }
                    let hint = ScenarioParser.closest(to: name, in: ScenarioParser.expectKinds).map { " — did you mean '\($0)'?" } ?? ""
                    throw error(keyNode, "unknown expectation '\(name)'\(hint) (expect one of: \(ScenarioParser.expectKinds.joined(separator: ", ")))")
                }
                throw error(value, "expect needs one of: \(ScenarioParser.expectKinds.joined(separator: ", "))")
            case "inject":
                guard let args = value.mapping else { throw error(value, "inject needs a mapping: { crash: fault } or { crash: panic, code: 0xBAD }") }
                try allowOnly(args, ["crash", "code"], context: "inject")
                guard let crash = args["crash"] else { throw error(value, "inject needs 'crash' (fault or panic)") }
                let kind = try string(crash, "crash")
                guard ["fault", "panic"].contains(kind) else { throw error(crash, "inject crash must be fault or panic") }
                let code = try args["code"].map { (n) throws(ScenarioError) in try uint32(n, "code") } ?? 0xDEAD
                return .inject(kind == "panic" ? .panic(code: code) : .fault(code: code))
            case "suspend":
                func kind(_ node: Node) throws(ScenarioError) -> SuspendKind {
                    let name = try string(node, "kind")
                    guard let kind = SuspendKind(rawValue: name) else {
                        throw error(node, "suspend kind must be one of \(SuspendKind.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
                    }
                    return kind
                }
                if value.scalar != nil { return .suspend(try kind(value), timeout: ScenarioParser.defaultSuspendTimeout, expect: .suspended) }
                guard let args = value.mapping else { throw error(value, "suspend is a word, a kind (suspend: auto) or a mapping: { kind: system, timeout: 1s, expect: refused }") }
                try allowOnly(args, ["kind", "timeout", "expect"], context: "suspend")
                var outcome = SuspendOutcome.suspended
                if let node = args["expect"] {
                    let name = try string(node, "expect")
                    guard let chosen = SuspendOutcome(rawValue: name) else {
                        throw error(node, "suspend expect must be one of \(SuspendOutcome.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
                    }
                    outcome = chosen
                }
                return .suspend(try args["kind"].map { (n) throws(ScenarioError) in try kind(n) } ?? .forced,
                                timeout: try args["timeout"].map { (n) throws(ScenarioError) in try duration(n, "timeout") } ?? ScenarioParser.defaultSuspendTimeout,
                                expect: outcome)
            case "power-replies":
                let name = try string(value, "power-replies")
                if name == "normal" { return .powerReplies(nil) }
                guard let fault = PowerReplyFault(rawValue: name) else {
                    throw error(value, "power-replies must be cancel, ignore or normal, not '\(name)'")
                }
                return .powerReplies(fault)
            case "drop-kicks", "delay-kicks":
                guard let args = value.mapping else { throw error(value, "\(key) needs a mapping: { to: remote, … }") }
                try allowOnly(args, key == "drop-kicks" ? ["to", "count"] : ["to", "by"], context: key)
                guard let toNode = args["to"] else { throw error(value, "\(key) needs 'to' (remote or host)") }
                guard let to = KickDirection(rawValue: try string(toNode, "to")) else { throw error(toNode, "to must be remote or host") }
                if key == "drop-kicks" {
                    let count = try args["count"].map { (n) throws(ScenarioError) in try int(n, "count", range: 1...1_000_000) } ?? 1
                    return .dropKicks(to, count: count)
                }
                guard let by = args["by"] else { throw error(value, "delay-kicks needs 'by' (a duration; 0ms clears it)") }
                return .delayKicks(to, by: try duration(by, "by"))
            case "corrupt":
                guard let args = value.mapping else { throw error(value, "corrupt needs a mapping: { vring: 1, field: avail-idx, value: 999 } or { table: 24, value: 0 }") }
                guard let valueNode = args["value"] else { throw error(value, "corrupt needs 'value'") }
                let number = try uint32(valueNode, "value")
                if let vring = args["vring"] {
                    try allowOnly(args, ["vring", "field", "value"], context: "corrupt vring")
                    guard let fieldNode = args["field"] else { throw error(value, "corrupt vring needs 'field'") }
                    guard let field = VringField(rawValue: try string(fieldNode, "field")) else {
                        throw error(fieldNode, "field must be one of \(VringField.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return .corruptVring(index: try int(vring, "vring", range: 0...255), field: field, value: number)
                }
                if let table = args["table"] {
                    try allowOnly(args, ["table", "value"], context: "corrupt table")
                    return .corruptTable(offset: try int(table, "table", range: 0...1_000_000), value: number)
                }
                throw error(value, "corrupt needs 'vring' or 'table'")
            default:
                let hint = ScenarioParser.closest(to: key, in: ScenarioParser.stepNames).map { " — did you mean '\($0)'?" } ?? ""
                throw error(keyNode, "unknown step '\(key)'\(hint) (steps: \(ScenarioParser.stepNames.joined(separator: ", ")))")
            }
        }
    }

    /// Every step, in one list for every message that names them.
    public static let stepNames = ["configure", "load", "start", "boot", "stop", "shutdown", "recover", "suspend", "resume", "debug", "dump", "wait",
                                   "send", "expect", "inject", "drop-kicks", "delay-kicks", "corrupt", "power-replies", "repeat", "include"]
    /// How long a `suspend` step's request waits for the firmware's answer unless it says (Linux's OMAP driver: 1 s).
    public static let defaultSuspendTimeout: Duration = .seconds(1)
    /// What an `expect` step can check.
    public static let expectKinds = ["state", "announce", "received", "hex", "prefix", "regex", "random", "counter", "pattern", "count",
                                     "none", "no-crash", "console", "crash", "malformed", "trace"]

    /// The name in `candidates` closest to a misspelt `name` (at most a third of its letters
    /// changed, added, dropped or swapped), if one is. Names longer than 64 letters match nothing.
    static func closest(to name: String, in candidates: [String]) -> String? {
        // Edits to turn a into b: a letter changed, added, dropped, or two neighbours swapped.
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
            for i in 0...a.count { d[i][0] = i }
            for j in 0...b.count { d[0][j] = j }
            for i in stride(from: 1, through: a.count, by: 1) {
                for j in stride(from: 1, through: b.count, by: 1) {
                    d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
                }
            }
            return d[a.count][b.count]
        }
        let typed = Array(name.lowercased())
        guard typed.count <= 64 else { return nil }
        let best = candidates.map { ($0, distance(typed, Array($0))) }.min { $0.1 < $1.1 }
        guard let best, best.1 > 0, best.1 <= max(1, typed.count / 3) else { return nil }
        return best.0
    }

    /// "4096", "256K", "1M".
    public static func size(_ text: String) -> Int? {
        let scales: [(String, Int)] = [("K", 1 << 10), ("M", 1 << 20)]
        for (suffix, scale) in scales where text.uppercased().hasSuffix(suffix) {
            return Int(text.dropLast()).map { $0 * scale }
        }
        return Int(text)
    }

    /// "200ms", "2s", "500us", "1.5s".
    /// How long a `debug` step waits for the debugger to let the core go, unless it says.
    public static let defaultDebugWithin: Duration = .seconds(600)
    /// How long a `debug` step waits for a debugger to connect (or to be connected already) before it fails.
    public static let defaultDebugAttachWithin: Duration = .seconds(30)

    public static func duration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("s", 1), ("m", 60)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value >= 0, value * scale <= 3600 else { return nil }
            return .nanoseconds(Int64(value * scale * 1e9))
        }
        return nil
    }

    static func hexBytes(_ text: String) -> [UInt8]? { bytes(fromHex: text.filter { !$0.isWhitespace }) }

}
