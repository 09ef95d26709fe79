import Scenario

/// A scenario file's text: parsed and expanded (variables, loops, generators) as `rproc-sim run`
/// would before running anything. Includes and ELF paths name files on this machine; a fuzz input
/// that finds one reads it through the same checks as a user's file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let file = try? ScenarioParser.parse(text, path: "/nonexistent/fuzz.yaml") else { return 0 }
    _ = file.steps.map { "\($0.step.title) \($0.location)" }
    return 0
}
