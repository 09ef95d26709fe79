import Foundation
import MetalIO

/// Where rproc-sim's words for a person go. Text that came from firmware or a file (console
/// lines, service names, ELF and table names, scenario text in an error) is shown, never
/// interpreted: every control character but the newlines rproc-sim writes itself is escaped
/// (`visibleText`). JSON goes out through its encoder, which escapes on its own.
enum Terminal {
    /// `text` made safe to show; colour codes are added after this, never before.
    static func shown(_ text: String) -> String { visibleText(text, keepingNewlines: true) }

    /// Prints `text` on standard output.
    static func line(_ text: String, terminator: String = "\n") { print(shown(text), terminator: terminator) }

    /// Writes `text` and a newline on standard error.
    static func error(_ text: String) { FileHandle.standardError.write(Data((shown(text) + "\n").utf8)) }
}
