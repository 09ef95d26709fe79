import Remoteproc
import Virtio

/// A resource table from an image: parsed, judged by both hosts, described, rebuilt from its
/// entries. Any outcome but a typed error or a table is a finding (a trap, a sanitizer report).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let table = try? ResourceTable(bytes: bytes) else { return 0 }
    for host in HostPersonality.allCases { _ = host.violations(in: table) }
    _ = table.virtioDevices.map { "\($0.device)" }
    _ = table.entries.map { "\($0)" }
    if let rebuilt = try? ResourceTable(entries: table.entries) {
        // What was built from parsed entries parses again to the same entries.
        guard let again = try? ResourceTable(bytes: rebuilt.bytes), again.entries == rebuilt.entries else { fatalError("a rebuilt table does not parse back") }
    }
    return 0
}
