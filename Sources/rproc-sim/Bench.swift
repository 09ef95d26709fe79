import ArgumentParser
import Foundation
import MetalIO
import Remoteproc

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the core's speed: ELF loading through both image stores, against memcpy of the same bytes."
    )

    @Option(name: .customLong("size-mib"), help: "Image size in MiB.")
    var sizeMiB: Int = 1

    @Option(help: "Timed repetitions (the median is reported).")
    var iterations: Int = 30

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Result: Codable {
        var name: String
        var bytes: Int
        var medianMicroseconds: Double
        var p99Microseconds: Double
        var megabytesPerSecond: Double
    }

    func validate() throws {
        guard (1...64).contains(sizeMiB) else { throw ValidationError("--size-mib must be between 1 and 64") }
        guard (3...10_000).contains(iterations) else { throw ValidationError("--iterations must be between 3 and 10000") }
    }

    func run() throws {
        let size = sizeMiB << 20
        var generator = SystemRandomNumberGenerator()
        let payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let table = try ResourceTable(entries: [
            .vdev(VirtioDeviceResource(deviceFeatures: [.rpmsgNameService], vrings: [VringResource(count: 256), VringResource(count: 256)])),
            .trace(TraceResource(deviceAddress: ResourceAddress(0x2000_1000), length: 2048, name: "trace")),
        ])
        let image = ELFWriter.image(segments: [.init(address: 0, bytes: payload)], entry: 1, resourceTable: (0x2000_0000, table.bytes))
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rproc-sim-bench-\(getpid()).elf")
        try Data(image).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        let platform = try LoadOnlyPlatform(codeSize: size + (64 << 10))
        let processor = try RemoteProcessor(ops: platform)
        for memory in platform.memories { processor.addMemory(memory) }
        try processor.configure()
        let memoryStore = MemoryImageStore(["bench": image])
        let fileStore = FileImageStore()

        var results: [Result] = []
        results.append(try measure("ELF load, memory store", bytes: image.count) { try processor.load("bench", from: memoryStore) })
        results.append(try measure("ELF load, file store", bytes: image.count) { try processor.load(file.path, from: fileStore) })
        let target = platform.memories[0].region
        results.append(try measure("memcpy of the same bytes", bytes: image.count) {
            try payload.withUnsafeBytes { try target.write(bytes: $0, at: 0) }
        })
        try processor.shutdown()

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
        } else {
            print("\(iterations) runs each, \(sizeMiB) MiB image (one segment + resource table)")
            for r in results {
                print(Report.pad(r.name, 28) + String(format: "median %9.1f µs   p99 %9.1f µs   %8.0f MB/s", r.medianMicroseconds, r.p99Microseconds, r.megabytesPerSecond))
            }
        }
    }

    private func measure(_ name: String, bytes: Int, _ body: () throws -> Void) throws -> Result {
        let clock = ContinuousClock()
        var samples: [Double] = []
        for _ in 0..<(iterations + 2) {
            let start = clock.now
            try body()
            let d = clock.now - start
            samples.append(Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12)
        }
        samples = Array(samples.dropFirst(2)).sorted()   // the first runs warm caches and page tables
        let median = samples[samples.count / 2]
        let p99 = samples[min(samples.count - 1, Int(Double(samples.count) * 0.99))]
        return Result(name: name, bytes: bytes, medianMicroseconds: median, p99Microseconds: p99,
                      megabytesPerSecond: Double(bytes) / median)
    }
}
