// swift-tools-version: 6.0
// Coverage-guided fuzz targets (libFuzzer), one per untrusted input. Built and run by
// ../scripts/fuzz.sh with `--sanitize=fuzzer --sanitize=address`; each target is an executable
// whose main is libFuzzer's (hence -parse-as-library) and whose entry is LLVMFuzzerTestOneInput.
import PackageDescription

let targets: [(name: String, products: [String])] = [
    ("resource-table", ["Remoteproc", "Virtio"]),
    ("elf-image", ["Remoteproc"]),
    ("vring-device", ["RPMsg", "Virtio", "MetalIO", "support"]),
    ("vring-driver", ["RPMsg", "Virtio", "MetalIO", "support"]),
    ("rpmsg-message", ["RPMsg", "Virtio", "MetalIO", "support"]),
    ("scenario-file", ["Scenario"]),
    ("gdb-packets", ["RemoteSim"]),
    ("core-file", ["RemoteSim"]),
]

let package = Package(
    name: "swift-remoteproc-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "swift-remoteproc", path: "..")],
    targets: [
        // A host and a remote RPMsg device over one shared memory, moved only by pump().
        .target(name: "FuzzSupport", dependencies: [.product(name: "RPMsg", package: "swift-remoteproc"),
                                                    .product(name: "Virtio", package: "swift-remoteproc"),
                                                    .product(name: "MetalIO", package: "swift-remoteproc")],
                path: "Targets/support"),
    ] + targets.map { target in
        .executableTarget(
            name: "fuzz-\(target.name)",
            dependencies: target.products.map { $0 == "support" ? "FuzzSupport" : .product(name: $0, package: "swift-remoteproc") },
            path: "Targets/\(target.name)",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    }
)
