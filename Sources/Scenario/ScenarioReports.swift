import Foundation
import RemoteSim

/// Machine-readable reports of scenario results.
public enum ScenarioReports {
    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// JUnit XML: one test suite per scenario, one test case per step.
    public static func junit(_ results: [ScenarioResult]) -> String {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        let failures = results.filter { !$0.passed }.count
        xml += "<testsuites name=\"rproc-sim\" tests=\"\(results.reduce(0) { $0 + $1.steps.count })\" failures=\"\(failures)\">\n"
        for result in results {
            let failed = result.steps.filter { !$0.passed }.count
            xml += "  <testsuite name=\"\(escape(result.name))\" tests=\"\(result.steps.count)\" failures=\"\(failed)\" time=\"\(String(format: "%.6f", seconds(result.duration)))\" file=\"\(escape(result.path))\">\n"
            for step in result.steps {
                xml += "    <testcase classname=\"\(escape(result.name))\" name=\"\(escape(step.title)) (\(escape(step.location.description)))\" time=\"\(String(format: "%.6f", seconds(step.duration)))\""
                if let failure = step.failure {
                    xml += ">\n      <failure message=\"\(escape(failure.split(separator: "\n").first.map(String.init) ?? failure))\">\(escape(failure))</failure>\n"
                    if let dump = step.dump { xml += "      <system-out>\(escape(dump))</system-out>\n" }
                    xml += "    </testcase>\n"
                } else {
                    xml += "/>\n"
                }
            }
            xml += "  </testsuite>\n"
        }
        return xml + "</testsuites>\n"
    }

    /// A Chrome/Perfetto trace-event timeline: a slice per step on the host track, instants for
    /// the board's events on tracks for the remote core, the mailbox and RPMsg.
    public static func chromeTrace(_ results: [ScenarioResult]) throws -> Data {
        var events: [[String: Any]] = []
        for (pid, result) in results.enumerated() {
            events.append(["name": "process_name", "ph": "M", "pid": pid, "args": ["name": result.name]])
            for (tid, name) in [(1, "host steps"), (2, "remote core"), (3, "mailbox"), (4, "rpmsg")] {
                events.append(["name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": ["name": name]])
            }
            var at = 0.0
            for step in result.steps {
                let micros = seconds(step.duration) * 1e6
                events.append(["name": step.title, "ph": "X", "pid": pid, "tid": 1, "ts": at, "dur": max(micros, 1),
                               "args": ["passed": step.passed, "detail": step.detail, "failure": step.failure ?? ""]])
                at += micros
            }
            for event in result.trace {
                let ts = seconds(event.time) * 1e6
                let (tid, name): (Int, String)
                switch event.kind {
                case .stateChanged, .crash, .warning: (tid, name) = (2, "\(event)")
                case .kickToHost, .kickToRemote, .invalidKick, .watchdog, .vdevWrite: (tid, name) = (3, "\(event)")
                case .console: (tid, name) = (2, "\(event)")
                case .message: (tid, name) = (4, "\(event)")
                }
                events.append(["name": String(name.drop { $0 != "]" }.dropFirst(2)), "ph": "i", "s": "t", "pid": pid, "tid": tid, "ts": ts])
            }
        }
        return try JSONSerialization.data(withJSONObject: ["traceEvents": events, "displayTimeUnit": "ms"], options: [.prettyPrinted])
    }
}
