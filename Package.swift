// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "swift-remoteproc",
    products: [
        .library(name: "MetalIO", targets: ["MetalIO"]),
        .library(name: "Virtio", targets: ["Virtio"]),
        .library(name: "RPMsg", targets: ["RPMsg"]),
        .library(name: "Remoteproc", targets: ["Remoteproc"]),
        .library(name: "RemoteSim", targets: ["RemoteSim"]),
        .library(name: "Scenario", targets: ["Scenario"]),
        .library(name: "RemoteprocTesting", targets: ["RemoteprocTesting"]),
        .library(name: "FirmwareKit", targets: ["FirmwareKit"]),
        .executable(name: "rproc-sim", targets: ["rproc-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        // Debian's libunicorn-dev. Only Sources/RemoteSim/UnicornEngine.swift imports it.
        .systemLibrary(name: "CUnicorn", pkgConfig: "unicorn", providers: [.apt(["libunicorn-dev"])]),

        // Debian's libelf-dev. Only Sources/Remoteproc/ELFFile.swift imports it.
        .systemLibrary(name: "CLibElf", pkgConfig: "libelf", providers: [.apt(["libelf-dev"])]),

        // libmetal's I/O region: typed, bounds-checked access to (shared) memory.
        .target(name: "MetalIO"),

        // Split virtqueues in both roles, and the transport protocol virtio devices are used through.
        .target(name: "Virtio", dependencies: ["MetalIO"]),

        // RPMsg over virtio, both roles: endpoints, name service, send / try-send / zero-copy, hold / release.
        .target(name: "RPMsg", dependencies: ["Virtio", "MetalIO"]),

        // The remoteproc design document: life cycle, ops protocol, memory, resource table, ELF loading.
        .target(name: "Remoteproc", dependencies: ["MetalIO", "Virtio", "CLibElf"]),

        // The simulated board: mailbox, memory map, the remote core's thread, native firmware.
        .target(name: "RemoteSim", dependencies: ["Remoteproc", "RPMsg", "Virtio", "MetalIO", "CUnicorn"]),

        // Scenario files: model, strict parser, runner, reports.
        .target(name: "Scenario", dependencies: ["RemoteSim", "Remoteproc", "RPMsg", "Virtio", "MetalIO", "FirmwareKit", "Yams",
                                                 .product(name: "DequeModule", package: "swift-collections")]),

        // Test support for users' own XCTest and Swift Testing suites.
        .target(name: "RemoteprocTesting", dependencies: ["RemoteSim", "Remoteproc", "RPMsg", "Virtio", "MetalIO", "FirmwareKit"]),

        // Builds the bare-metal programs in Firmware/ with the toolchain's clang and ld.lld.
        .target(name: "FirmwareKit"),

        .executableTarget(
            name: "rproc-sim",
            dependencies: [
                "Remoteproc", "MetalIO", "Virtio", "RPMsg", "RemoteSim", "Scenario", "FirmwareKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Test-run settings that must be in place before Swift Testing starts (see the C file).
        .target(name: "TestParallelism", path: "Tests/TestParallelism"),
        // Where tests write files: one directory per test process, removed at exit.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "MetalIOTests", dependencies: ["MetalIO"]),
        .testTarget(name: "VirtioTests", dependencies: ["TestParallelism", "Virtio", "MetalIO"]),
        .testTarget(name: "RPMsgTests", dependencies: ["RPMsg", "Virtio", "MetalIO"]),
        .testTarget(name: "RemoteSimTests", dependencies: ["TestSupport", "RemoteSim", "Remoteproc", "RPMsg", "Virtio", "MetalIO", "FirmwareKit"]),
        .testTarget(name: "ScenarioTests", dependencies: ["TestSupport", "Scenario", "RemoteSim", "Remoteproc", "RPMsg", "Virtio", "MetalIO", "FirmwareKit"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "rproc-sim", "FirmwareKit", "Remoteproc", "Scenario", "MetalIO", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "RemoteprocTestingTests", dependencies: ["TestSupport", "RemoteprocTesting", "RemoteSim", "Remoteproc", "RPMsg"]),
        .testTarget(name: "ExampleTests", dependencies: ["RemoteprocTesting", "RPMsg", "MetalIO"]),
        .testTarget(name: "IntegrationTests", dependencies: ["Remoteproc", "RPMsg", "Virtio", "MetalIO"]),
        .testTarget(
            name: "RemoteprocTests",
            dependencies: ["Remoteproc", "MetalIO", "Virtio", "FirmwareKit"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
