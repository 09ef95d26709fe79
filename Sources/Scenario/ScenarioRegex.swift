import Foundation

/// A regular expression from a scenario file or the command line (`received: { regex: … }`,
/// `console:`, `trace:`, `--filter`): every one is compiled here.
///
/// Patterns are limited to ``maximumLength`` UTF-16 units. Above that, Foundation on Linux
/// (`_CFRegularExpressionCreate`, swift-corelibs-foundation 6.x) leaks a heap copy of the pattern
/// on every compile — found by the scenario-file fuzz target under LeakSanitizer — and no
/// expectation needs a longer one.
public struct ScenarioRegex: @unchecked Sendable {
    // @unchecked: NSRegularExpression is immutable after creation and documented thread-safe.
    public let pattern: String
    private let expression: NSRegularExpression

    public static let maximumLength = 256

    /// Why a pattern was refused.
    public enum Problem: Error, Hashable, Sendable, CustomStringConvertible {
        case tooLong(length: Int)
        case invalid
        public var description: String {
            switch self {
            case let .tooLong(length): "regular expression too long (\(length) characters; at most \(ScenarioRegex.maximumLength))"
            case .invalid: "invalid regular expression"
            }
        }
    }

    public init(_ pattern: String) throws(Problem) {
        let length = pattern.utf16.count
        guard length <= Self.maximumLength else { throw .tooLong(length: length) }
        guard let expression = try? NSRegularExpression(pattern: pattern) else { throw .invalid }
        self.pattern = pattern
        self.expression = expression
    }

    /// Whether the pattern matches anywhere in `text`.
    public func matches(_ text: String) -> Bool {
        expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}
