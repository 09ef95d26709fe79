import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import RemoteSim
import Synchronization
import MetalIO

/// Machine-readable reports of scenario results.
public enum ScenarioReports {
    /// FoundationXML on Linux is libxml2, whose node trees share global state: two threads
    /// building or freeing trees at once can crash the process (SIGSEGV in libxml2, seen in a
    /// loaded test run; swift-docc serializes its XML tests for the same reason). Every use of
    /// FoundationXML in this process — the JUnit writer, and whoever reads what it wrote — goes
    /// through this one lock, and no node may outlive `body`. Not reentrant: ``junit(_:)`` takes
    /// it itself, so call it outside.
    public static func withXML<R: Sendable, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        try xmlLock.withLock { _ throws(E) -> R in try body() }
    }

    private static let xmlLock = MetalMutex(())


    /// Text as XML 1.0 may carry it: characters XML cannot hold at all (control characters
    /// other than tab, newline and return; lone surrogates; U+FFFE/U+FFFF) are written as `\xNN`
    /// / `\u{…}` so nothing is lost and the document stays well-formed whatever a firmware sent.
    static func xmlSafe(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: out.unicodeScalars.append(scalar)
            case 0..<0x100: out += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16, uppercase: true)
            default: out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }

    /// JUnit XML, written with FoundationXML's tree (escaping is the writer's): one test suite per
    /// scenario, one test case per step, named `scenario / step title` (a title repeated in one
    /// scenario gets ` #2`, ` #3`, … in order), so a test's history survives lines moving; the
    /// file and line are properties. A failed step carries its failure and the board's dump
    /// (`system-out`, with `[[ATTACHMENT|path]]` lines for the files ``ScenarioResult/attachments``
    /// lists); steps after it are `skipped`.
    public static func junit(_ results: [ScenarioResult]) -> String {
        withXML { junitDocument(results) }
    }

    private static func junitDocument(_ results: [ScenarioResult]) -> String {
        func element(_ name: String, _ attributes: [(String, String)], _ children: [XMLNode] = [], text: String? = nil) -> XMLElement {
            let node = XMLElement(name: name)
            for (key, value) in attributes {
                let attribute = XMLNode(kind: .attribute)
                attribute.name = key
                attribute.stringValue = xmlSafe(value)
                node.addAttribute(attribute)
            }
            if let text { node.stringValue = xmlSafe(text) }
            for child in children { node.addChild(child) }
            return node
        }
        func time(_ d: Duration) -> String { String(format: "%.6f", d.inSeconds) }
        let total = results.reduce(0) { $0 + $1.steps.count + $1.notRun.count }
        let root = element("testsuites", [("name", "rproc-sim"), ("tests", "\(total)"), ("failures", "\(results.reduce(0) { $0 + $1.steps.filter { !$0.passed }.count })"),
                                          ("skipped", "\(results.reduce(0) { $0 + $1.notRun.count })")])
        for result in results {
            var seen: [String: Int] = [:]
            func testName(_ title: String) -> String {
                seen[title, default: 0] += 1
                return "\(result.name) / \(title)" + (seen[title]! > 1 ? " #\(seen[title]!)" : "")
            }
            func properties(_ location: SourceLocation) -> XMLElement {
                element("properties", [], [element("property", [("name", "file"), ("value", location.file)]),
                                           element("property", [("name", "line"), ("value", "\(location.line)")])])
            }
            // Files kept for the run, in the convention Jenkins and GitLab read from system-out.
            let attachments = result.attachments.map { "[[ATTACHMENT|\($0)]]\n" }.joined()
            var cases: [XMLNode] = []
            for step in result.steps {
                var children: [XMLNode] = [properties(step.location)]
                if let failure = step.failure {
                    children.append(element("failure", [("message", failure.split(separator: "\n").first.map(String.init) ?? failure)], text: failure))
                    let out = (step.dump.map { $0 + "\n" } ?? "") + attachments
                    if !out.isEmpty { children.append(element("system-out", [], text: out)) }
                }
                cases.append(element("testcase", [("classname", result.name), ("name", testName(step.title)), ("time", time(step.duration)),
                                                  ("file", step.location.file), ("line", "\(step.location.line)")], children))
            }
            for step in result.notRun {
                cases.append(element("testcase", [("classname", result.name), ("name", testName(step.title)), ("time", "0"),
                                                  ("file", step.location.file), ("line", "\(step.location.line)")],
                                     [properties(step.location), element("skipped", [("message", "not run: an earlier step failed")])]))
            }
            // A passing run's files (kept with --artifacts-always) belong to the suite.
            if result.passed && !attachments.isEmpty { cases.append(element("system-out", [], text: attachments)) }
            root.addChild(element("testsuite", [("name", result.name), ("tests", "\(result.steps.count + result.notRun.count)"),
                                                ("failures", "\(result.steps.filter { !$0.passed }.count)"), ("skipped", "\(result.notRun.count)"),
                                                ("time", time(result.duration)), ("file", result.path)], cases))
        }
        let document = XMLDocument(rootElement: root)
        document.version = "1.0"
        document.characterEncoding = "UTF-8"
        return document.xmlString(options: [.nodePrettyPrint]) + "\n"
    }

    /// A Chrome/Perfetto trace-event timeline: a slice per step on the host track, instants for
    /// the board's events on tracks for the remote core, the mailbox and RPMsg — a set of tracks
    /// per processor, named after it, when the scenario has several.
    public static func chromeTrace(_ results: [ScenarioResult]) throws -> Data {
        var events: [[String: Any]] = []
        for (pid, result) in results.enumerated() {
            events.append(["name": "process_name", "ph": "M", "pid": pid, "args": ["name": result.name]])
            events.append(["name": "thread_name", "ph": "M", "pid": pid, "tid": 1, "args": ["name": "host steps"]])
            var at = 0.0
            for step in result.steps {
                let micros = step.duration.inMicroseconds
                events.append(["name": step.title, "ph": "X", "pid": pid, "tid": 1, "ts": at, "dur": max(micros, 1),
                               "args": ["passed": step.passed, "detail": step.detail, "failure": step.failure ?? ""]])
                at += micros
            }
            let boards = result.processorTraces.isEmpty ? [(name: "", trace: result.trace)] : result.processorTraces
            for (index, board) in boards.enumerated() {
                events += boardEvents(board.trace, named: board.name, pid: pid, tracks: 10 * index)
            }
        }
        return try JSONSerialization.data(withJSONObject: ["traceEvents": events, "displayTimeUnit": "ms"], options: [.sortedKeys])
    }

    /// One board's tracks (thread ids `tracks` + 2…6): its core, mailbox, RPMsg, power and
    /// interrupt handlers, named after the processor when it has a name.
    private static func boardEvents(_ trace: [TraceEvent], named processor: String, pid: Int, tracks: Int) -> [[String: Any]] {
        var events: [[String: Any]] = []
        let prefix = processor.isEmpty ? "" : processor + " · "
        let (core, mailbox, rpmsg, power, interrupts) = (tracks + 2, tracks + 3, tracks + 4, tracks + 5, tracks + 6)
        for (tid, name) in [(core, "remote core"), (mailbox, "mailbox"), (rpmsg, "rpmsg"), (power, "power"), (interrupts, "interrupts")] {
            events.append(["name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": ["name": prefix + name]])
        }
        // Interrupt and trap handlers as slices, nested as they nest, on their own track. The
        // trace keeps only its latest events, so a return whose entry was dropped is left out,
        // and handlers still open at the end are closed there.
        var openHandlers = 0
        for event in trace {
            let ts = event.time.inMicroseconds
            let (tid, name): (Int, String)
            switch event.kind {
            case let .trap(entry):
                events.append(["name": entry.name, "ph": "B", "pid": pid, "tid": interrupts, "ts": ts,
                               "args": ["from": "\(entry.programCounter)", "handler": "\(entry.handler)"]])
                openHandlers += 1
                continue
            case let .trapReturn(exit):
                guard openHandlers > 0 else { continue }
                events.append(["ph": "E", "pid": pid, "tid": interrupts, "ts": ts, "args": ["to": "\(exit.returnAddress)"]])
                openHandlers -= 1
                continue
            case .stateChanged, .crash, .warning, .console: (tid, name) = (core, "\(event)")
            case .power: (tid, name) = (power, "\(event)")
            case .kickToHost, .kickToRemote, .invalidKick, .watchdog, .vdevWrite: (tid, name) = (mailbox, "\(event)")
            case .message: (tid, name) = (rpmsg, "\(event)")
            }
            events.append(["name": String(name.drop { $0 != "]" }.dropFirst(2)), "ph": "i", "s": "t", "pid": pid, "tid": tid, "ts": ts])
        }
        if let last = trace.last?.time.inMicroseconds {
            for _ in 0..<openHandlers { events.append(["ph": "E", "pid": pid, "tid": interrupts, "ts": last]) }
        }
        // Each suspension as a slice on the power track, from Running → Suspended until it left Suspended.
        var suspendedAt: (time: Double, call: String)?
        for event in trace {
            guard case let .stateChanged(from, to, call) = event.kind else { continue }
            let ts = event.time.inMicroseconds
            if to == .suspended { suspendedAt = (ts, "\(call)") }
            if from == .suspended, let start = suspendedAt {
                events.append(["name": "suspended", "ph": "X", "pid": pid, "tid": power, "ts": start.time, "dur": max(ts - start.time, 1),
                               "args": ["ended by": "\(call)"]])
                suspendedAt = nil
            }
        }
        if let start = suspendedAt, let last = trace.last {
            events.append(["name": "suspended", "ph": "X", "pid": pid, "tid": power, "ts": start.time,
                           "dur": max(last.time.inMicroseconds - start.time, 1), "args": ["ended by": "the end of the scenario"]])
        }
        return events
    }
}
