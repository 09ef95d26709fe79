import ArgumentParser
import Foundation
import MetalIO
import Remoteproc
import Virtio

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a firmware ELF's architecture, entry, segments and decoded resource table.",
        discussion: "Nothing is loaded or run. A bad file gets the loader's error and exit status 2."
    )

    @Argument(help: "An ELF file.")
    var firmware: String

    @Flag(help: "Print JSON.")
    var json = false

    struct Output: Codable {
        struct Segment: Codable { var physicalAddress, virtualAddress, fileSize, memorySize: UInt64; var flags: String }
        struct Entry: Codable {
            var index: Int
            var type: String
            var fields: [String: String]
            var vrings: [[String: String]]?
        }
        var file: String
        var elfClass: String
        var machine: String
        var entry: UInt64
        var segments: [Segment]
        var resourceTable: ResourceTableInfo?
        struct ResourceTableInfo: Codable {
            var address: UInt64
            var size: Int
            var version: UInt32
            var entries: [Entry]
            /// Per host personality: the rules of that host the table breaks (empty: accepted).
            var hosts: [String: [String]]
        }
    }

    func run() throws {
        let store = FileImageStore()
        let image: ELFImage
        let table: ResourceTable?
        do {
            let size = try store.open(firmware)
            defer { store.close() }
            image = try ELFImage(store: store, fileSize: size, path: firmware)
            table = try image.resourceTableBytes(from: store).map { (bytes) throws in try ResourceTable(bytes: bytes) }
        } catch {
            Terminal.error("error: \(error)")
            throw ExitCode(2)
        }
        let output = Output(
            file: firmware, elfClass: image.header.fileClass.description, machine: image.header.machine.description, entry: image.entry,
            segments: image.loadableSegments.map { .init(physicalAddress: $0.physicalAddress, virtualAddress: $0.virtualAddress,
                                                         fileSize: $0.fileSize, memorySize: $0.memorySize, flags: $0.flags.description.replacingOccurrences(of: " ", with: "")) },
            resourceTable: table.map { t in
                .init(address: image.resourceTableSection?.address ?? 0, size: t.bytes.count, version: t.version,
                      entries: t.entries.enumerated().map { Self.describe($1, index: $0) },
                      hosts: Dictionary(uniqueKeysWithValues: HostPersonality.allCases.map { host in
                          (host.rawValue, host.violations(in: t).map(\.description))
                      }))
            })
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(terminalSafeJSON(try encoder.encode(output)))
            return
        }
        Terminal.line(RprocSimReport.header(image))
        var lines = ["segments   " + RprocSimReport.pad("paddr", 13) + RprocSimReport.pad("vaddr", 13) + RprocSimReport.pad("filesz", 10)
                     + RprocSimReport.pad("memsz", 10) + "flags"]
        for s in image.loadableSegments {
            lines.append("  LOAD     " + RprocSimReport.pad(hex(s.physicalAddress), 13) + RprocSimReport.pad(hex(s.virtualAddress), 13)
                         + RprocSimReport.pad(RprocSimReport.size(s.fileSize), 10) + RprocSimReport.pad(RprocSimReport.size(s.memorySize), 10) + s.flags.description)
        }
        Terminal.line(lines.joined(separator: "\n"))
        if let table, let section = image.resourceTableSection {
            Terminal.line(RprocSimReport.resourceTable(table, address: DeviceAddress(section.address), memory: nil))
            Terminal.line(RprocSimReport.hostAcceptance(table))
        } else {
            Terminal.line("no resource table")
        }
    }

    static func describe(_ entry: ResourceEntry, index: Int) -> Output.Entry {
        switch entry {
        case let .carveout(m), let .devmem(m):
            return .init(index: index, type: entry.kindName, fields: ["da": "\(m.deviceAddress)", "pa": "\(m.physicalAddress)", "len": "\(m.length)",
                                                                     "flags": hex(UInt64(m.flags)), "name": m.name])
        case let .trace(t):
            return .init(index: index, type: "trace", fields: ["da": "\(t.deviceAddress)", "len": "\(t.length)", "name": t.name])
        case let .vdev(v):
            return .init(index: index, type: "vdev", fields: ["id": "\(v.deviceID)", "notifyid": "\(v.notifyID)", "dfeatures": hex(UInt64(v.deviceFeatures.rawValue)),
                                                              "status": hex(UInt64(v.status.rawValue)), "config_len": "\(v.config.count)"],
                         vrings: v.vrings.map { ["da": "\($0.deviceAddress)", "align": "\($0.alignment)", "num": "\($0.count)", "notifyid": "\($0.notifyID)"] })
        case let .vendor(v):
            return .init(index: index, type: "vendor", fields: ["type": "\(v.type)", "len": "\(v.payload.count + 8)"])
        case let .unknown(type, _):
            return .init(index: index, type: "unknown", fields: ["type": "\(type)"])
        }
    }
}
