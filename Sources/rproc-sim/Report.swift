import Foundation
import MetalIO
import Virtio
import Remoteproc

/// Human-readable renderings of images and resource tables.
enum RprocSimReport {
    static func size(_ bytes: UInt64) -> String {
        bytes < 1024 ? "\(bytes) B" : String(format: "%.1f KiB", Double(bytes) / 1024)
    }

    static func duration(_ d: Duration) -> String {
        let micros = d.inMicroseconds
        return micros < 1000 ? String(format: "%.0f µs", micros) : String(format: "%.2f ms", micros / 1000)
    }

    static func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }

    static func header(_ image: ELFImage) -> String {
        let thumb = image.header.machine == .arm && image.entry & 1 == 1 ? " (Thumb)" : ""
        return "\(image.header.fileClass) \(image.header.machine), entry \(hex(image.entry))\(thumb) · \(image.path)"
    }

    static func segments(_ image: ELFImage, processor: RemoteProcessor) -> String {
        var lines = ["segments   " + pad("paddr", 13) + pad("vaddr", 13) + pad("filesz", 10) + pad("memsz", 10) + pad("flags", 6) + "memory"]
        for segment in image.loadableSegments {
            let memory = segment.memorySize == 0 ? "-" :
                processor.memory(containingDevice: DeviceAddress(segment.physicalAddress)).map { "\($0.memory.name) +\(hex(UInt64($0.offset)))" } ?? "?"
            lines.append("  LOAD     " + pad(hex(segment.physicalAddress), 13) + pad(hex(segment.virtualAddress), 13)
                         + pad(size(segment.fileSize), 10) + pad(size(segment.memorySize), 10) + pad(segment.flags.description, 6) + memory)
        }
        return lines.joined(separator: "\n")
    }

    /// Which hosts take the table: "hosts: linux ✓ · openamp ✗" and, per refusal, the rule.
    static func hostAcceptance(_ table: ResourceTable) -> String {
        let verdicts = HostPersonality.allCases.map { ($0, $0.violations(in: table)) }
        var lines = ["hosts      " + verdicts.map { "\($0.0) " + ($0.1.isEmpty ? "✓" : "✗") }.joined(separator: " · ")]
        for (_, violations) in verdicts { lines += violations.map { "  \($0)" } }
        return lines.joined(separator: "\n")
    }

    static func resourceTable(_ installed: InstalledResourceTable) -> String {
        resourceTable(installed.table, address: installed.location.device, memory: installed.location.memoryName)
    }

    static func resourceTable(_ table: ResourceTable, address: DeviceAddress, memory: String?) -> String {
        var lines = ["resource table @ \(address) (\(table.bytes.count) B, version \(table.version), \(table.entries.count) entries)" + (memory.map { " in \($0)" } ?? "")]
        for (index, entry) in table.entries.enumerated() {
            let tag = "  [\(index)] " + pad(entry.kindName, 9)
            switch entry {
            case let .carveout(m), let .devmem(m):
                lines.append(tag + "da \(m.deviceAddress)  pa \(m.physicalAddress)  len \(size(UInt64(m.length)))  flags \(hex(UInt64(m.flags)))  \"\(visibleText(m.name))\"")
            case let .trace(t):
                lines.append(tag + "da \(t.deviceAddress)  len \(t.length)  \"\(visibleText(t.name))\"")
            case let .vdev(v):
                var features: [String] = []
                if v.deviceFeatures.contains(.rpmsgNameService) { features.append("NS") }
                if v.deviceFeatures.contains(.ringIndirectDescriptors) { features.append("INDIRECT_DESC") }
                if v.deviceFeatures.contains(.ringEventIndex) { features.append("EVENT_IDX") }
                let kind = v.deviceID == VirtioDeviceResource.rpmsgDeviceID ? " (rpmsg)" : ""
                lines.append(tag + "id \(v.deviceID)\(kind)  notify \(v.notifyID)  features \(hex(UInt64(v.deviceFeatures.rawValue))) (\(features.joined(separator: "|")))  status \(hex(UInt64(v.status.rawValue)))  config \(v.config.count) B")
                for (k, vring) in v.vrings.enumerated() {
                    lines.append("        vring\(k)  da \(vring.deviceAddress)  align \(vring.alignment)  num \(vring.count)  notify \(vring.notifyID)")
                }
            case let .vendor(v):
                lines.append(tag + "type \(v.type)  \(v.payload.count) B of data")
            case let .unknown(type, _):
                lines.append(tag + "type \(type) (skipped)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
