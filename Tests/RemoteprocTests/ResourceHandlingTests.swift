import Foundation
import MetalIO
import Virtio
@testable import Remoteproc
import Synchronization
import Testing

func rpmsgVdev(notify: NotifyID = .any, vrings: [NotifyID] = [.any, .any], addresses: [ResourceAddress] = [.any, .any],
               config: [UInt8] = []) -> ResourceEntry {
    .vdev(VirtioDeviceResource(notifyID: notify, deviceFeatures: [.rpmsgNameService, .ringEventIndex],
                               vrings: zip(vrings, addresses).map { VringResource(deviceAddress: $1, alignment: 4096, count: 256, notifyID: $0) },
                               config: config))
}

/// Loads a tiny image whose table holds `entries`, into a fresh platform.
func load(_ entries: [ResourceEntry], platform: TestPlatform? = nil, capacity: Int = 32) throws -> (TestPlatform, RemoteProcessor, EventLog) {
    let platform = try platform ?? TestPlatform()
    let processor = try platform.processor(notifyIDCapacity: capacity)
    let log = EventLog(processor)
    try processor.configure()
    try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage(table: try ResourceTable(entries: entries))]))
    return (platform, processor, log)
}

func loadError(_ entries: [ResourceEntry], platform: TestPlatform? = nil, capacity: Int = 32) throws -> RemoteprocError {
    let platform = try platform ?? TestPlatform()
    let processor = try platform.processor(notifyIDCapacity: capacity)
    try processor.configure()
    let error = try #require(remoteprocError {
        try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage(table: try ResourceTable(entries: entries))]))
    })
    #expect(processor.state == .configured)
    return error
}

@Suite("Resource table handling")
struct ResourceHandlingTests {
    @Test("ANY vrings and carveouts are allocated in the shared pool, avoiding fixed ones, and written back")
    func anyAllocation() throws {
        let fixedVring = ResourceAddress(0x3000_0000)
        let (platform, processor, _) = try load([
            .carveout(MemoryResource(deviceAddress: .any, length: 0x4000, name: "buffers")),
            rpmsgVdev(addresses: [fixedVring, .any]),
            .carveout(MemoryResource(deviceAddress: ResourceAddress(0x3008_0000), length: 0x1000, name: "fixed")),
        ])
        let table = try ResourceTable(bytes: try platform.bytes(atDevice: 0x2000_0000, count: processor.installedResourceTable!.table.bytes.count))
        guard case let .carveout(any) = table.entries[0], case let .vdev(vdev) = table.entries[1], case let .carveout(fixed) = table.entries[2] else {
            Issue.record("\(table.entries)"); return
        }
        let vringSize = UInt64(vdev.vrings[0].byteSize!)
        var ranges = [(UInt64(any.deviceAddress.rawValue), UInt64(0x4000)), (0x3000_0000, vringSize),
                      (UInt64(vdev.vrings[1].deviceAddress.rawValue), vringSize), (0x3008_0000, 0x1000)]
        ranges.sort { $0.0 < $1.0 }
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.0 + a.1 <= b.0, "overlap: \(ranges)") }
        for (start, size) in ranges { #expect(start >= 0x3000_0000 && start + size <= 0x3010_0000 && start % 4096 == 0) }
        // pa follows the shared window's host physical base.
        #expect(any.physicalAddress.rawValue == any.deviceAddress.rawValue - 0x3000_0000 + 0x9000_0000)
        #expect(fixed.physicalAddress == ResourceAddress(0x9008_0000))
        #expect(processor.installedResourceTable?.carveouts.map(\.name) == ["buffers", "fixed"])
    }

    @Test("fixed notify ids are honoured; ANY ids take the lowest free ones")
    func notifyIDs() throws {
        let (_, processor, _) = try load([rpmsgVdev(notify: NotifyID(5), vrings: [.any, NotifyID(0)])])
        guard case let .vdev(vdev) = processor.installedResourceTable?.table.entries[0] else { Issue.record("no vdev"); return }
        #expect(vdev.notifyID == NotifyID(5))
        #expect(vdev.vrings.map(\.notifyID) == [NotifyID(1), NotifyID(0)])
    }

    @Test("notify-id exhaustion and out-of-range ids are errors, never duplicates")
    func notifyIDErrors() throws {
        let exhausted = try loadError([rpmsgVdev(), rpmsgVdev()], capacity: 4)
        guard case .notifyIDsExhausted(capacity: 4) = exhausted.kind else { Issue.record("\(exhausted)"); return }
        let range = try loadError([rpmsgVdev(notify: NotifyID(40))])
        guard case .notifyIDOutOfRange(NotifyID(40), capacity: 32) = range.kind else { Issue.record("\(range)"); return }
    }

    @Test("the allocation API: fixed, ANY, in use, out of range, exhausted, release")
    func allocateNotifyID() throws {
        let processor = try TestPlatform().processor(notifyIDCapacity: 3)
        #expect(try processor.allocateNotifyID(NotifyID(1)) == NotifyID(1))
        #expect(try processor.allocateNotifyID() == NotifyID(0))
        let inUse = try #require(remoteprocError { _ = try processor.allocateNotifyID(NotifyID(1)) })
        guard case .notifyIDInUse(NotifyID(1)) = inUse.kind else { Issue.record("\(inUse)"); return }
        #expect(try processor.allocateNotifyID() == NotifyID(2))
        let full = try #require(remoteprocError { _ = try processor.allocateNotifyID() })
        guard case .notifyIDsExhausted(capacity: 3) = full.kind else { Issue.record("\(full)"); return }
        let out = try #require(remoteprocError { _ = try processor.allocateNotifyID(NotifyID(3)) })
        guard case .notifyIDOutOfRange = out.kind else { Issue.record("\(out)"); return }
        processor.releaseNotifyID(NotifyID(1))
        #expect(try processor.allocateNotifyID() == NotifyID(1))
    }

    @Test("ids the user took stay reserved across loads, reloads and stops until released or shut down")
    func userIDsSurviveLoads() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let image = MemoryImageStore(["fixed": try tinyImage(table: try ResourceTable(entries: [rpmsgVdev(notify: NotifyID(0), vrings: [NotifyID(1), NotifyID(2)])])),
                                      "any": try tinyImage(table: try ResourceTable(entries: [rpmsgVdev()]))])
        #expect(try processor.allocateNotifyID(NotifyID(1)) == NotifyID(1))
        try processor.configure()
        // A table that wants the user's id fails to load, naming it.
        let clash = try #require(remoteprocError { try processor.load("fixed", from: image) })
        guard case .notifyIDInUse(NotifyID(1)) = clash.kind else { Issue.record("\(clash)"); return }
        // ANY ids go around it, after a stop and a reload too.
        try processor.load("any", from: image)
        let ids = { (processor.installedResourceTable?.table.virtioDevices.first?.device).map { [$0.notifyID] + $0.vrings.map(\.notifyID) } ?? [] }
        #expect(ids() == [NotifyID(0), NotifyID(2), NotifyID(3)])
        try processor.load("any", from: image)   // a reload
        #expect(ids() == [NotifyID(0), NotifyID(2), NotifyID(3)])
        try processor.start()
        try processor.stop()
        let still = try #require(remoteprocError { _ = try processor.allocateNotifyID(NotifyID(1)) }, "still the user's after a stop")
        guard case .notifyIDInUse(NotifyID(1)) = still.kind else { Issue.record("\(still)"); return }
        // Released: a table may have it.
        processor.releaseNotifyID(NotifyID(1))
        #expect(try processor.allocateNotifyID(NotifyID(1)) == NotifyID(1))
        processor.releaseNotifyID(NotifyID(1))
        // Shutdown releases the user's ids as well.
        #expect(try processor.allocateNotifyID(NotifyID(5)) == NotifyID(5))
        try processor.shutdown()
        #expect(try processor.allocateNotifyID(NotifyID(5)) == NotifyID(5))
        _ = platform
    }

    @Test("a reload after shutdown gets the same ids and addresses")
    func reloadSameIDs() throws {
        let (platform, processor, _) = try load([rpmsgVdev(), .carveout(MemoryResource(deviceAddress: .any, length: 0x2000, name: "c"))])
        let first = try #require(processor.installedResourceTable?.table)
        try processor.shutdown()
        try processor.configure()
        try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage(table: try ResourceTable(entries: [
            rpmsgVdev(), .carveout(MemoryResource(deviceAddress: .any, length: 0x2000, name: "c"))]))]))
        #expect(processor.installedResourceTable?.table == first)
        _ = platform
    }

    @Test("a pool too small for the ANY requests is a clear allocation error")
    func poolExhausted() throws {
        let error = try loadError([.carveout(MemoryResource(deviceAddress: .any, length: 0x20_0000, name: "huge"))])
        guard case let .allocationFailed(what, size) = error.kind else { Issue.record("\(error)"); return }
        #expect(what.contains("huge") && size == 0x20_0000)
    }

    @Test("a fixed carveout outside every memory fails unless the mmap op provides it")
    func carveoutMapping() throws {
        let outside = MemoryResource(deviceAddress: ResourceAddress(0x6000_0000), length: 0x1000, name: "far")
        let error = try loadError([.carveout(outside)])
        guard case .noMapping = error.kind else { Issue.record("\(error)"); return }

        let platform = try TestPlatform()
        let extra = try SharedMemory(size: 0x1000)
        platform.offerMapping(RemoteprocMemory(name: "far", physicalAddress: PhysicalAddress(0x7000_0000), deviceAddress: DeviceAddress(0x6000_0000),
                                               region: try IORegion(memory: extra, physicalBase: PhysicalAddress(0x7000_0000))))
        let (_, processor, _) = try load([.carveout(outside)], platform: platform)
        #expect(platform.calls.contains("map"))
        #expect(processor.memory(named: "far") != nil, "the op's memory is registered")
        guard case let .carveout(m) = processor.installedResourceTable?.table.entries[0] else { Issue.record("no carveout"); return }
        #expect(m.physicalAddress == ResourceAddress(0x7000_0000))
    }

    @Test("trace buffers are mapped; ANY or empty ones are ignored with a warning; devmem and unknown types warn")
    func warnings() throws {
        let (_, processor, log) = try load([
            .trace(TraceResource(deviceAddress: ResourceAddress(0x2000_1000), length: 256, name: "log")),
            .trace(TraceResource(deviceAddress: .any, length: 256, name: "anywhere")),
            .devmem(MemoryResource(deviceAddress: ResourceAddress(0x4000_0000), physicalAddress: ResourceAddress(0x4000_0000), length: 0x1000, name: "mbox")),
            .unknown(type: 77),
        ])
        let traces = try #require(processor.installedResourceTable?.traceBuffers)
        #expect(traces.map(\.name) == ["log"])
        #expect(traces.first?.mapping.memoryName == "sram")
        #expect(traces.first?.mapping.offset == 0x1000)
        #expect(log.warnings.count == 3)
        #expect(log.warnings.contains { $0.contains("anywhere") })
        #expect(log.warnings.contains { $0.contains("devmem") })
        #expect(log.warnings.contains { $0.contains("77") })
    }

    @Test("a trace buffer outside every memory is an error")
    func traceOutside() throws {
        let error = try loadError([.trace(TraceResource(deviceAddress: ResourceAddress(0x5000_0000), length: 64, name: "lost"))])
        guard case let .noMapping(what, _, _, _) = error.kind else { Issue.record("\(error)"); return }
        #expect(what.contains("lost"))
    }

    @Test("vendor entries reach the op; skipped ones warn; a failing op aborts the load")
    func vendor() throws {
        let entry = ResourceEntry.vendor(VendorResource(type: 200, payload: [1, 2, 3, 4]))
        let (platform, _, log) = try load([.unknown(type: 9), entry])
        #expect(platform.vendorCalls.map(\.0) == [VendorResource(type: 200, payload: [1, 2, 3, 4])])
        #expect(platform.vendorCalls.map(\.1) == [1])
        #expect(log.warnings.count == 1)

        let skipping = try TestPlatform()
        skipping.answerVendor(.skipped)
        let (_, _, skipLog) = try load([entry], platform: skipping)
        #expect(skipLog.warnings.contains { $0.contains("vendor type 200") })

        let failing = try TestPlatform()
        failing.fail("vendor")
        let error = try loadError([entry], platform: failing)
        guard case .operationFailed(op: "handle vendor resource") = error.kind else { Issue.record("\(error)"); return }
    }

    @Test("set resource table: the attach flow installs a table already in memory")
    func attach() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let table = try ResourceTable(entries: [rpmsgVdev()])
        try platform.sram.region.write(table.bytes, at: 0x800)
        try processor.configure()
        try processor.setResourceTable(at: DeviceAddress(0x2000_0800), size: table.bytes.count, bootAddress: DeviceAddress(0x41))
        #expect(processor.state == .ready)
        #expect(processor.bootAddress == DeviceAddress(0x41))
        let written = try ResourceTable(bytes: try platform.sram.region.readBytes(at: 0x800, count: table.bytes.count))
        guard case let .vdev(vdev) = written.entries[0] else { Issue.record("no vdev"); return }
        #expect(vdev.notifyID == NotifyID(0) && vdev.vrings.allSatisfy { !$0.deviceAddress.isAny })

        let garbage = try #require(remoteprocError { try processor.setResourceTable(at: DeviceAddress(0x2000_4000), size: 64) })
        guard case .resourceTable = garbage.kind else { Issue.record("\(garbage)"); return }
        #expect(processor.state == .ready)
        let nowhere = try #require(remoteprocError { try processor.setResourceTable(at: DeviceAddress(0x5000_0000), size: 64) })
        guard case .noMapping = nowhere.kind else { Issue.record("\(nowhere)"); return }
    }
}

@Suite("Memory")
struct MemoryTests {
    @Test("lookups by name, physical, device and virtual address, with misses")
    func lookups() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        #expect(processor.memory(named: "sram")?.deviceAddress == DeviceAddress(0x2000_0000))
        #expect(processor.memory(named: "nope") == nil)
        #expect(processor.memory(named: String(repeating: "x", count: 40)) == nil)
        let byPA = try #require(processor.memory(containingPhysical: PhysicalAddress(0x1004_0010)))
        #expect(byPA.memory.name == "sram" && byPA.offset == 0x10)
        let byDA = try #require(processor.memory(containingDevice: DeviceAddress(0x3000_0100), size: 0x100))
        #expect(byDA.memory.name == "shared" && byDA.offset == 0x100)
        #expect(processor.memory(containingDevice: DeviceAddress(0x3010_0000)) == nil)
        #expect(processor.memory(containingDevice: DeviceAddress(0x300F_FFFF), size: 2) == nil, "a range straddling the end")
        #expect(processor.memory(containingPhysical: PhysicalAddress(0x2000_0000)) == nil, "sram's device address is not its physical one")
        let va = try #require(platform.code.region.virtualAddress(ofOffset: 0x40))
        let byVA = try #require(processor.memory(containingVirtual: va))
        #expect(byVA.memory.name == "code" && byVA.offset == 0x40)
        #expect(processor.memory(containingVirtual: VirtualAddress(0x10)) == nil)
    }

    @Test("the memory op answers lookups the list misses")
    func getMem() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let extra = try SharedMemory(size: 4096)
        platform.offerLookup(RemoteprocMemory(name: "extra", physicalAddress: PhysicalAddress(0xA000_0000), deviceAddress: DeviceAddress(0x5000_0000),
                                              region: try IORegion(memory: extra, physicalBase: PhysicalAddress(0xA000_0000))))
        #expect(processor.memory(containingDevice: DeviceAddress(0x5000_0010))?.offset == 0x10)
        #expect(processor.memory(containingPhysical: PhysicalAddress(0xA000_0FFF))?.offset == 0xFFF)
        #expect(processor.memory(containingDevice: DeviceAddress(0x5000_1000)) == nil)
    }

    @Test("mmap resolves the other address and the host view; refuses what nothing covers")
    func mmap() throws {
        let platform = try TestPlatform()
        let processor = try platform.processor()
        let byDevice = try processor.map(physical: nil, device: DeviceAddress(0x2000_0100), size: 16)
        #expect(byDevice.physical == PhysicalAddress(0x1004_0100) && byDevice.offset == 0x100 && byDevice.memoryName == "sram")
        #expect(byDevice.virtual == platform.sram.region.virtualAddress(ofOffset: 0x100))
        let byPhysical = try processor.map(physical: PhysicalAddress(0x9000_0200), device: nil, size: 16)
        #expect(byPhysical.device == DeviceAddress(0x3000_0200))
        let error = try #require(remoteprocError { _ = try processor.map(physical: nil, device: DeviceAddress(0x6000_0000), size: 16) })
        guard case .noMapping = error.kind else { Issue.record("\(error)"); return }
        #expect(remoteprocError { _ = try processor.map(physical: nil, device: nil, size: 16) } != nil)
        #expect(remoteprocError { _ = try processor.map(physical: nil, device: DeviceAddress(0), size: 0) } != nil)
    }
}

@Suite("Virtio device entry point")
struct VirtioEntryTests {
    func running(config: [UInt8] = [9, 8, 7, 6]) throws -> (TestPlatform, RemoteProcessor) {
        let (platform, processor, _) = try load([rpmsgVdev(config: config)])
        try processor.start()
        return (platform, processor)
    }

    @Test("create virtio: needs a table and an existing vdev index; returns the same device twice")
    func create() throws {
        let (platform, processor) = try running()
        let device = try processor.createVirtio(index: 0, role: .driver)
        #expect(device.deviceID == 7 && device.notifyID == NotifyID(0))
        #expect(device.vrings.map(\.notifyID) == [NotifyID(1), NotifyID(2)])
        #expect(device.vrings.allSatisfy { $0.mapping.memoryName == "shared" && $0.count == 256 && $0.alignment == 4096 })
        #expect(try processor.createVirtio(index: 0, role: .driver) === device)
        let missing = try #require(remoteprocError { _ = try processor.createVirtio(index: 1, role: .driver) })
        guard case .noSuchVirtioDevice(index: 1, count: 1) = missing.kind else { Issue.record("\(missing)"); return }

        let bare = try readyProcessor(platform)
        let none = try #require(remoteprocError { _ = try bare.createVirtio(index: 0, role: .driver) })
        guard case .noResourceTable = none.kind else { Issue.record("\(none)"); return }
    }

    @Test("status, features and config go through the vdev entry in target memory")
    func dispatch() throws {
        let (platform, processor) = try running()
        let device = try processor.createVirtio(index: 0, role: .driver)
        let entry = processor.installedResourceTable!.table.entryOffsets[0]
        platform.clearCalls()
        #expect(try device.negotiateFeatures(supported: [.rpmsgNameService]) == [.rpmsgNameService])
        #expect(try platform.sram.region.read(UInt32.self, at: entry + 16) == 1, "gfeatures written into the table")
        try device.setStatus([.acknowledge, .driver, .driverOK])
        #expect(try platform.sram.region.read(UInt8.self, at: entry + 24) == 0x07)
        #expect(platform.notified == [NotifyID(0), NotifyID(0)], "status and features changes notify the vdev id")
        #expect(try device.readConfig(at: 1, count: 3) == [8, 7, 6])
        try device.writeConfig([0x55], at: 3)
        #expect(try device.readConfig(at: 0, count: 4) == [9, 8, 7, 0x55])
        #expect(remoteprocError { _ = try device.readConfig(at: 2, count: 3) } != nil, "past config_len")
        #expect(remoteprocError { _ = try device.readConfig(at: -1, count: 1) } != nil)
        try device.reset()
        #expect(try device.status() == .needsReset)
        try device.kick(vring: 1)
        #expect(platform.notified.last == NotifyID(2))
        #expect(remoteprocError { try device.kick(vring: 2) } != nil)
    }

    @Test("the device role may not write what only the driver writes")
    func deviceRoleLimits() throws {
        let (platform, processor) = try running()
        try platform.sram.region.write(UInt8(VirtioStatus.driverOK.rawValue), at: processor.installedResourceTable!.table.entryOffsets[0] + 24)
        let device = try processor.createVirtio(index: 0, role: .device, driverTimeout: .seconds(1))
        #expect(remoteprocError { try device.setStatus(.driverOK) } != nil)
        #expect(remoteprocError { try device.writeConfig([1], at: 0) } != nil)
        try device.acknowledgeReset()
        #expect(try device.status() == [])
    }

    @Test("the device role waits for DRIVER_OK, with a timeout")
    func waitForDriver() throws {
        let (platform, processor) = try running()
        let timedOut = try #require(remoteprocError { _ = try processor.createVirtio(index: 0, role: .device, driverTimeout: .milliseconds(50)) })
        guard case .timedOut = timedOut.kind else { Issue.record("\(timedOut)"); return }
        #expect(processor.virtioDeviceList.isEmpty)

        let statusOffset = processor.installedResourceTable!.table.entryOffsets[0] + 24
        let region = platform.sram.region
        let writer = Thread {
            usleep(20_000)
            try? region.write(UInt8(0x04), at: statusOffset)
        }
        writer.start()
        let device = try processor.createVirtio(index: 0, role: .device, driverTimeout: .seconds(10))
        #expect(try device.status().contains(.driverOK))
    }

    @Test("notifications reach the vrings with that id; ANY reaches all; the vdev's own id none")
    func notifications() throws {
        let (_, processor) = try running()
        let device = try processor.createVirtio(index: 0, role: .driver)
        let hits = Mutex<[Int]>([])
        for k in 0..<2 { device.setNotificationHandler(forVring: k) { hits.withLock { $0.append(k) } } }
        #expect(processor.handleNotification(NotifyID(2)) == 1)
        #expect(processor.handleNotification(NotifyID(0)) == 0)
        #expect(processor.handleNotification(.any) == 2)
        #expect(processor.handleNotification(NotifyID(9)) == 0)
        #expect(hits.withLock { $0 } == [1, 0, 1])
        processor.removeVirtio(device)
        #expect(processor.handleNotification(.any) == 0)
    }

    @Test("shutdown releases the virtio devices")
    func shutdownReleases() throws {
        let (_, processor) = try running()
        _ = try processor.createVirtio(index: 0, role: .driver)
        try processor.shutdown()
        #expect(processor.virtioDeviceList.isEmpty)
    }
}
