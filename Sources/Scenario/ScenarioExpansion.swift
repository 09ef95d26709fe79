import Foundation
import Yams

extension ScenarioParser {
    /// Most steps a file may expand to (through `repeat` and `include`), and how deep includes
    /// and repeats may nest: a file cannot make the runner build an unbounded list.
    static let maximumExpandedSteps = 100_000
    static let maximumNesting = 8
    /// Most loop iterations a file may unroll in all (loops over bodies that make no steps too).
    static let maximumIterations = 1_000_000

    /// Turns the `steps:` list into plain steps: `${name}` replaced by the file's `vars:` and loop
    /// variables, `repeat:` unrolled, `include:` files read in place. Every step keeps the line and
    /// column of the node it came from (in the included file for included steps).
    struct Expander {
        let reader: Reader
        var steps: [(step: ScenarioStep, location: SourceLocation, on: String?)] = []
        /// Loop iterations unrolled so far: loops over empty or nested bodies are bounded too,
        /// not just the steps they make.
        var iterations = 0

        init(reader: Reader) { self.reader = reader }

        mutating func expand(_ nodes: [Node], vars: [String: String], depth: Int = 0, including: [String] = []) throws(ScenarioError) {
            for node in nodes {
                if let map = node.mapping, map.count == 1, let key = map.first?.key.scalar?.string, let value = map.first?.value {
                    if key == "repeat" {
                        try unroll(value, vars: vars, depth: depth, including: including)
                        continue
                    }
                    if key == "include" {
                        try include(value, vars: vars, depth: depth, including: including)
                        continue
                    }
                }
                let (resolved, on) = try reader.target(try substitute(node, vars))
                steps.append((try reader.step(resolved), reader.location(node), on))
                guard steps.count <= ScenarioParser.maximumExpandedSteps else {
                    throw reader.error(node, "the scenario expands to more than \(ScenarioParser.maximumExpandedSteps) steps")
                }
            }
        }

        /// `repeat: { times: 3, steps: [...] }` or `repeat: { for: size, in: 1..496 | [a, b], steps: [...] }`.
        private mutating func unroll(_ node: Node, vars: [String: String], depth: Int, including: [String]) throws(ScenarioError) {
            guard depth < ScenarioParser.maximumNesting else { throw reader.error(node, "repeat and include nest more than \(ScenarioParser.maximumNesting) deep") }
            guard let args = node.mapping else { throw reader.error(node, "repeat needs a mapping: { times: 3, steps: [...] } or { for: x, in: 1..5, steps: [...] }") }
            try reader.allowOnly(args, ["times", "for", "in", "steps"], context: "repeat")
            guard let body = args["steps"]?.sequence else { throw reader.error(node, "repeat needs 'steps' (a list)") }
            let values: [String?]
            if let times = args["times"] {
                guard args["for"] == nil, args["in"] == nil else { throw reader.error(times, "give either times, or for with in — not both") }
                values = Array(repeating: nil, count: try reader.int(try substitute(times, vars), "times", range: 1...ScenarioParser.maximumExpandedSteps))
            } else {
                guard let name = args["for"], let domain = args["in"] else { throw reader.error(node, "repeat needs 'times', or 'for' (a variable name) with 'in' (a range such as 1..496, or a list)") }
                let variable = try reader.string(name, "for")
                guard Self.isName(variable) else { throw reader.error(name, "a variable name is letters, digits and '_', starting with a letter") }
                values = try domainValues(try substitute(domain, vars)).map { $0 }
                return try unrollValues(values, variable: variable, body: body, at: node, vars: vars, depth: depth, including: including)
            }
            try unrollValues(values, variable: nil, body: body, at: node, vars: vars, depth: depth, including: including)
        }

        private mutating func unrollValues(_ values: [String?], variable: String?, body: Node.Sequence, at node: Node, vars: [String: String], depth: Int,
                                           including: [String]) throws(ScenarioError) {
            for value in values {
                var scope = vars
                if let variable, let value { scope[variable] = value }
                try expand(Array(body), vars: scope, depth: depth + 1, including: including)
                // Counted after the body, so a body that makes steps meets the step limit first.
                iterations += 1
                guard iterations <= ScenarioParser.maximumIterations else {
                    throw reader.error(node, "the scenario's repeats run more than \(ScenarioParser.maximumIterations) times in all")
                }
            }
        }

        /// `1..496` (inclusive), or a list of values.
        private func domainValues(_ node: Node) throws(ScenarioError) -> [String] {
            if let list = node.sequence {
                var values: [String] = []
                for item in list { values.append(try reader.string(item, "in")) }
                return values
            }
            let text = try reader.string(node, "in")
            let bounds = text.split(separator: ".", omittingEmptySubsequences: true)
            guard text.contains(".."), bounds.count == 2, let low = Int(bounds[0]), let high = Int(bounds[1]), low <= high,
                  high - low < ScenarioParser.maximumExpandedSteps else {
                throw reader.error(node, "in must be a range such as 1..496 (low ≤ high, fewer than \(ScenarioParser.maximumExpandedSteps) values) or a list")
            }
            return (low...high).map(String.init)
        }

        /// `include: common/setup.yaml`: a file holding a list of steps (or a mapping with `steps:`),
        /// relative to the file that includes it.
        private mutating func include(_ node: Node, vars: [String: String], depth: Int, including: [String]) throws(ScenarioError) {
            guard depth < ScenarioParser.maximumNesting else { throw reader.error(node, "repeat and include nest more than \(ScenarioParser.maximumNesting) deep") }
            let name = try reader.string(try substitute(node, vars), "include")
            let path = name.hasPrefix("/") ? name : URL(fileURLWithPath: reader.path).deletingLastPathComponent().appendingPathComponent(name).standardized.path
            guard !including.contains(path), path != URL(fileURLWithPath: reader.path).standardized.path else {
                throw reader.error(node, "'\(name)' includes itself (through \((including + [path]).map { ($0 as NSString).lastPathComponent }.joined(separator: " → ")))")
            }
            let text = try ScenarioParser.readText(path, at: reader.location(node), what: "included file '\(name)'")
            let root = try ScenarioParser.compose(text, path: path)
            let included = Reader(path: path)
            let list: Node.Sequence
            if let sequence = root?.sequence { list = sequence } else if let map = root?.mapping, let sequence = map["steps"]?.sequence {
                try included.allowOnly(map, ["steps"], context: "an included file")
                list = sequence
            } else {
                throw reader.error(node, "included file '\(name)' must be a list of steps, or a mapping with 'steps'")
            }
            // The included steps go on the same list (moved in and out, not copied).
            var inner = Expander(reader: included)
            swap(&inner.steps, &steps)
            inner.iterations = iterations
            defer {
                swap(&inner.steps, &steps)
                iterations = inner.iterations
            }
            try inner.expand(Array(list), vars: vars, depth: depth + 1, including: including + [path])
        }

        static func isName(_ text: String) -> Bool {
            guard let first = text.first, first.isLetter, text.count <= 64 else { return false }
            return text.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
        }

        /// `node` with every `${name}` in its scalars replaced; an unknown name is an error at that scalar.
        func substitute(_ node: Node, _ vars: [String: String]) throws(ScenarioError) -> Node {
            switch node {
            case var .scalar(scalar):
                guard scalar.string.contains("${") else { return node }
                var out = ""
                var rest = Substring(scalar.string)
                while let open = rest.range(of: "${") {
                    out += rest[..<open.lowerBound]
                    guard let close = rest[open.upperBound...].firstIndex(of: "}") else { throw reader.error(node, "'${' without a closing '}'") }
                    let name = String(rest[open.upperBound..<close])
                    guard let value = vars[name] else {
                        throw reader.error(node, "unknown variable '\(name)'" + (vars.isEmpty ? " (define it under vars:)" : " (defined: \(vars.keys.sorted().joined(separator: ", ")))"))
                    }
                    out += value
                    rest = rest[rest.index(after: close)...]
                }
                scalar.string = out + rest
                return .scalar(scalar)
            case let .mapping(map):
                var pairs: [(Node, Node)] = []
                for (key, value) in map { pairs.append((key, try substitute(value, vars))) }
                return .mapping(Node.Mapping(pairs, map.tag, map.style, map.mark))
            case let .sequence(sequence):
                var items: [Node] = []
                for item in sequence { items.append(try substitute(item, vars)) }
                return .sequence(Node.Sequence(items, sequence.tag, sequence.style, sequence.mark))
            case .alias:
                return node
            }
        }
    }

    /// `vars: { size: 64, name: rpmsg-echo }`: text values for `${name}`.
    static func variables(_ node: Node?, reader: Reader) throws(ScenarioError) -> [String: String] {
        guard let node else { return [:] }
        guard let map = node.mapping else { throw reader.error(node, "vars must be a mapping of names to values") }
        var vars: [String: String] = [:]
        for (key, value) in map {
            let name = try reader.string(key, "a variable name")
            guard Expander.isName(name) else { throw reader.error(key, "a variable name is letters, digits and '_', starting with a letter") }
            vars[name] = try reader.string(value, "vars.\(name)")
        }
        return vars
    }
}
