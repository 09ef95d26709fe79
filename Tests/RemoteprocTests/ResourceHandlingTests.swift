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

/// Fixed vring addresses in the shared window (256 entries, align 4096: 10,246 bytes each), for
/// tables an OpenAMP host takes.
let fixedVrings = [ResourceAddress(0x3000_0000), ResourceAddress(0x3000_4000)]

/// Loads a tiny image whose table holds `entries`, into a fresh platform.
func load(_ entries: [ResourceEntry], platform: TestPlatform? = nil, capacity: Int = 32,
          host: HostPersonality = .default) throws -> (TestPlatform, RemoteProcessor, EventLog) {
    let platform = try platform ?? TestPlatform()
    let processor = try platform.processor(notifyIDCapacity: capacity, host: host)
    let log = EventLog(processor)
    try processor.configure()
    try processor.load("tiny", from: MemoryImageStore(["tiny": try tinyImage(table: try ResourceTable(entries: entries))]))
    return (platform, processor, log)
}

/// ``load(_:platform:capacity:host:)`` with the host named first (long entry lists read better).
func load(hostFirst host: HostPersonality, _ entries: [ResourceEntry]) throws -> (TestPlatform, RemoteProcessor, EventLog) {
    try load(entries, host: host)
}

func loadError(_ entries: [ResourceEntry], platform: TestPlatform? = nil, capacity: Int = 32,
               host: HostPersonality = .default) throws -> RemoteprocError {
    let platform = try platform ?? TestPlatform()
    let processor = try platform.processor(notifyIDCapacity: capacity, host: host)
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
        let inMemory = try ResourceTable(bytes: try platform.bytes(atDevice: 0x2000_0000, count: processor.installedResourceTable!.table.bytes.count))
        guard case let .carveout(any) = inMemory.entries[0], case let .vdev(vdev) = processor.installedResourceTable?.table.entries[1],
              case let .carveout(fixed) = inMemory.entries[2], case let .vdev(vdevInMemory) = inMemory.entries[1] else {
            Issue.record("\(inMemory.entries)"); return
        }
        // A Linux host writes an allocated vring's address into the table only as its driver sets the queue up.
        #expect(vdevInMemory.vrings.map(\.deviceAddress) == [fixedVring, .any])
        #expect(!vdev.vrings[1].deviceAddress.isAny)
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

    @Test("openamp: fixed notify ids are honoured; ANY ids take the lowest free ones, in table order (the vdev's first)")
    func notifyIDsOpenAMP() throws {
        let (_, processor, _) = try load([rpmsgVdev(notify: NotifyID(5), vrings: [NotifyID(0), .any], addresses: fixedVrings)], host: .openamp)
        guard case let .vdev(vdev) = processor.installedResourceTable?.table.entries[0] else { Issue.record("no vdev"); return }
        #expect(vdev.notifyID == NotifyID(5))
        #expect(vdev.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1)])
        let (_, anyFirst, _) = try load([rpmsgVdev(addresses: fixedVrings)], host: .openamp)
        guard case let .vdev(all) = anyFirst.installedResourceTable?.table.entries[0] else { Issue.record("no vdev"); return }
        #expect([all.notifyID] + all.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1), NotifyID(2)])
        // In table order: vring 0 (ANY) takes 0, so vring 1's fixed 0 is taken.
        let error = try loadError([rpmsgVdev(notify: NotifyID(5), vrings: [.any, NotifyID(0)], addresses: fixedVrings)], host: .openamp)
        guard case let .refusedByHost(v) = error.kind else { Issue.record("\(error)"); return }
        #expect(v.detail == "vring 1's notify id 0 is already vring 0's")
    }

    @Test("linux: each vring gets the lowest free id in table order, predefined ids overwritten with a warning, the vdev's id untouched")
    func notifyIDsLinux() throws {
        let (platform, processor, log) = try load([rpmsgVdev(notify: NotifyID(5), vrings: [.any, NotifyID(7)]), rpmsgVdev()])
        let vdevs = try #require(processor.installedResourceTable?.table.virtioDevices.map(\.device))
        #expect(vdevs.map(\.notifyID) == [NotifyID(5), .any], "Linux never allocates or writes the vdev's own id")
        #expect(vdevs.map { $0.vrings.map(\.notifyID) } == [[NotifyID(0), NotifyID(1)], [NotifyID(2), NotifyID(3)]])
        #expect(log.warnings.contains { $0.contains("vring 1's notify id 7 replaced by 1") }, "\(log.warnings)")
        // The ids are in the table in memory before start.
        let inMemory = try ResourceTable(bytes: try platform.bytes(atDevice: 0x2000_0000, count: processor.installedResourceTable!.table.bytes.count))
        #expect(inMemory.virtioDevices.map { $0.device.vrings.map(\.notifyID) } == [[NotifyID(0), NotifyID(1)], [NotifyID(2), NotifyID(3)]])
    }

    @Test("notify-id exhaustion and out-of-range ids are errors, never duplicates")
    func notifyIDErrors() throws {
        let exhausted = try loadError([rpmsgVdev(), rpmsgVdev(), rpmsgVdev()], capacity: 4)
        guard case .notifyIDsExhausted(capacity: 4) = exhausted.kind else { Issue.record("\(exhausted)"); return }
        let openamp = try loadError([rpmsgVdev(addresses: fixedVrings), rpmsgVdev(addresses: [ResourceAddress(0x3000_8000), ResourceAddress(0x3000_C000)])],
                                    capacity: 4, host: .openamp)
        guard case .notifyIDsExhausted(capacity: 4) = openamp.kind else { Issue.record("\(openamp)"); return }
        let range = try loadError([rpmsgVdev(notify: NotifyID(40), addresses: fixedVrings)], host: .openamp)
        guard case .notifyIDOutOfRange(NotifyID(40), capacity: 32) = range.kind else { Issue.record("\(range)"); return }
        // A Linux host never looks at the vdev's id.
        _ = try load([rpmsgVdev(notify: NotifyID(40))])
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
        let processor = try platform.processor(host: .openamp)
        let image = MemoryImageStore(["fixed": try tinyImage(table: try ResourceTable(entries: [rpmsgVdev(notify: NotifyID(0), vrings: [NotifyID(1), NotifyID(2)], addresses: fixedVrings)])),
                                      "any": try tinyImage(table: try ResourceTable(entries: [rpmsgVdev(addresses: fixedVrings)]))])
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

    @Test("trace buffers are mapped; ANY or empty ones are ignored with a warning; devmem (openamp) and unknown types warn")
    func warnings() throws {
        let (_, processor, log) = try load(hostFirst: .openamp, [
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

    @Test("a trace buffer outside every memory is accepted (neither host checks it) with a warning, and claims no memory", arguments: HostPersonality.allCases)
    func traceOutside(host: HostPersonality) throws {
        let (_, processor, log) = try load(hostFirst: host, [
            .trace(TraceResource(deviceAddress: ResourceAddress(0x5000_0000), length: 64, name: "lost")),
            .trace(TraceResource(deviceAddress: ResourceAddress(0x2003_FF00), length: 0x7FFF_FFFF, name: "huge")),
            .carveout(MemoryResource(deviceAddress: host == .linux ? .any : ResourceAddress(0x3000_0000), length: 0x1000, name: "c")),
        ])
        #expect(processor.installedResourceTable?.traceBuffers.isEmpty == true)
        #expect(log.warnings.contains { $0.contains("'lost'") && $0.contains("outside every memory") }, "\(log.warnings)")
        #expect(log.warnings.contains { $0.contains("'huge'") }, "\(log.warnings)")
    }

    @Test("linux refuses devmem (no IOMMU) and vdevs of more than two vrings; openamp refuses ANY vrings and carveouts and ids taken twice")
    func hostRules() throws {
        let devmem = ResourceEntry.devmem(MemoryResource(deviceAddress: ResourceAddress(0x4000_0000), physicalAddress: ResourceAddress(0x4000_0000),
                                                         length: 0x1000, name: "mbox"))
        let linuxDevmem = try loadError([devmem])
        guard case let .refusedByHost(v) = linuxDevmem.kind else { Issue.record("\(linuxDevmem)"); return }
        #expect(v.host == .linux && v.rule == .devmemNeedsIOMMU && v.entryIndex == 0)
        #expect("\(linuxDevmem)".contains("host: linux") && "\(linuxDevmem)".contains("rproc_handle_devmem"), "\(linuxDevmem)")
        _ = try load([devmem], host: .openamp)

        let three = ResourceEntry.vdev(VirtioDeviceResource(vrings: (0..<3).map { _ in VringResource(count: 8) }))
        guard case let .refusedByHost(tooMany) = try loadError([three]).kind else { Issue.record("three vrings loaded"); return }
        #expect(tooMany.rule == .tooManyVrings)

        let anyVring = try loadError([rpmsgVdev()], host: .openamp)
        guard case let .refusedByHost(address) = anyVring.kind else { Issue.record("\(anyVring)"); return }
        #expect(address.rule == .vringAddressRequired && address.detail == "vring 0 has device address ANY")
        let anyCarveout = try loadError([.carveout(MemoryResource(deviceAddress: .any, length: 0x1000, name: "pool"))], host: .openamp)
        guard case let .refusedByHost(carveout) = anyCarveout.kind else { Issue.record("\(anyCarveout)"); return }
        #expect(carveout.rule == .carveoutAddressRequired)

        // The vendor table of a Linux-paired part: the vdev's id is vring 0's.
        let vendor = rpmsgVdev(notify: NotifyID(0), vrings: [NotifyID(0), NotifyID(1)], addresses: fixedVrings)
        let shared = try loadError([vendor], host: .openamp)
        guard case let .refusedByHost(twice) = shared.kind else { Issue.record("\(shared)"); return }
        #expect(twice.rule == .notifyIDTakenTwice && twice.detail == "vring 0's notify id 0 is already the vdev's")
        #expect("\(shared)".contains("host: openamp") && "\(shared)".contains("remoteproc_allocate_id"), "\(shared)")
        let (_, linux, log) = try load([vendor])
        guard case let .vdev(accepted) = linux.installedResourceTable?.table.entries[0] else { Issue.record("no vdev"); return }
        #expect(accepted.notifyID == NotifyID(0) && accepted.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1)])
        #expect(log.warnings.contains { $0.contains("the vdev's own notify id 0 is also vring 0's") }, "\(log.warnings)")
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
        // Linux: vring ids written now, the vdev's never, vring addresses when the driver sets the queues up.
        #expect(vdev.notifyID == .any && vdev.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1)])
        #expect(vdev.vrings.allSatisfy { $0.deviceAddress.isAny })
        #expect(processor.installedResourceTable?.table.virtioDevices.first?.device.vrings.allSatisfy { !$0.deviceAddress.isAny } == true)

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

@Suite("Device range allocation")
struct DeviceRangeAllocatorTests {
    private func pool(at device: UInt64, size: Int) throws -> RemoteprocMemory {
        RemoteprocMemory(name: "pool", physicalAddress: PhysicalAddress(0), deviceAddress: DeviceAddress(device),
                         region: try IORegion(memory: try SharedMemory(size: size), physicalBase: PhysicalAddress(0)), isAllocationPool: true)
    }

    @Test("first fit, aligned, around claimed ranges; nil when nothing fits")
    func firstFit() throws {
        let pools = [try pool(at: 0x3000_0000, size: 0x4000)]
        var fresh = DeviceRangeAllocator()
        fresh.claim(DeviceAddress(0x3000_0000), size: 0x100)
        fresh.claim(DeviceAddress(0x3000_1000), size: 0x1800)
        #expect(fresh.allocate(size: 0x800, alignment: 0x100, in: pools) == DeviceAddress(0x3000_0100))
        #expect(fresh.allocate(size: 0x1000, alignment: 0x1000, in: pools) == DeviceAddress(0x3000_3000))
        #expect(fresh.allocate(size: 0x1000, alignment: 0x1000, in: pools) == nil)
        #expect(fresh.allocate(size: 0, alignment: 0x1000, in: pools) == nil)
    }

    @Test("a pool or a claimed range at the top of the address space: no overflow, just nothing found")
    func topOfTheAddressSpace() throws {
        var ranges = DeviceRangeAllocator()
        // A range claimed up to the very end (its end saturates) blocks every candidate after it.
        ranges.claim(DeviceAddress(UInt64.max - 0xFFF), size: 0x2000)
        #expect(ranges.allocate(size: 0x100, alignment: 0x1000, in: [try pool(at: UInt64.max - 0x1FFF, size: 0x1000)]) == DeviceAddress(UInt64.max - 0x1FFF))
        #expect(ranges.allocate(size: 0x100, alignment: 0x1000, in: [try pool(at: UInt64.max - 0x1FFF, size: 0x1000)]) == nil)
        // A pool whose end does not fit in 64 bits is skipped.
        var other = DeviceRangeAllocator()
        #expect(other.allocate(size: 0x100, alignment: 0x10, in: [try pool(at: UInt64.max - 0xFF, size: 0x1000)]) == nil)
        #expect(other.allocate(size: 0x100, alignment: 0x10, in: [try pool(at: UInt64.max - 0xFFF, size: 0x1000)]) == nil)
        // Alignment that rounds past the top finds nothing instead of wrapping to 0.
        #expect(other.allocate(size: 0x10, alignment: 0x1_0000, in: [try pool(at: UInt64.max - 0x1FFF, size: 0x1000)]) == nil)
    }
}

@Suite("Virtio device entry point")
struct VirtioEntryTests {
    func running(config: [UInt8] = [9, 8, 7, 6], host: HostPersonality = .openamp) throws -> (TestPlatform, RemoteProcessor) {
        let (platform, processor, _) = try load([rpmsgVdev(addresses: host == .openamp ? fixedVrings : [.any, .any], config: config)], host: host)
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

        let (_, linux) = try running(host: .linux)
        let linuxDevice = try linux.createVirtio(index: 0, role: .driver)
        #expect(linuxDevice.notifyID == .any && linuxDevice.vrings.map(\.notifyID) == [NotifyID(0), NotifyID(1)])
        #expect(linuxDevice.host == .linux)
    }

    @Test("linux: status, features and config writes kick nothing; the queue set-up writes the vring address; removal writes 0 then 0x01")
    func linuxWrites() throws {
        let (platform, processor) = try running(host: .linux)
        let log = EventLog(processor)
        let device = try processor.createVirtio(index: 0, role: .driver)
        let entry = processor.installedResourceTable!.table.entryOffsets[0]
        platform.clearCalls()
        try device.setStatus([])
        try device.setStatus(.acknowledge)
        #expect(try device.negotiateFeatures(supported: [.rpmsgNameService]) == [.rpmsgNameService])
        try device.writeConfig([0x55], at: 3)
        #expect(try platform.sram.region.read(UInt32.self, at: entry + 28) == 0xFFFF_FFFF, "vring 0's address is ANY until the queue is set up")
        try device.prepareDriverQueue(0)
        #expect(try platform.sram.region.read(UInt32.self, at: entry + 28) == UInt32(device.vrings[0].deviceAddress.rawValue))
        #expect(platform.notified.isEmpty, "a Linux host kicks no vdev id")
        try device.kick(vring: 0)
        #expect(platform.notified == [NotifyID(0)])
        try processor.stop()
        #expect(try platform.sram.region.read(UInt8.self, at: entry + 24) == 0x01, "reset, then acknowledged again, before the stop")
        let statuses = log.vdevWrites.compactMap { if case let .status(s, _) = $0.kind { s.rawValue } else { nil } }
        #expect(statuses == [0x00, 0x01, 0x00, 0x01])
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

    @Test("notifications reach the vrings with that id; ANY reaches all; the vdev's own id none (openamp)")
    func notifications() throws {
        let (_, processor) = try running()
        let device = try processor.createVirtio(index: 0, role: .driver)
        let hits = MetalMutex<[Int]>([])
        for k in 0..<2 { device.setNotificationHandler(forVring: k) { hits.withLock { $0.append(k) } } }
        #expect(processor.handleNotification(NotifyID(2)) == 1)
        #expect(processor.handleNotification(NotifyID(0)) == 0)
        #expect(processor.handleNotification(.any) == 2)
        #expect(processor.handleNotification(NotifyID(9)) == 0)
        #expect(hits.withLock { $0 } == [1, 0, 1])
        processor.removeVirtio(device)
        #expect(processor.handleNotification(.any) == 0)
    }

    @Test("linux: a vdev id equal to vring 0's does not hide vring 0's notifications")
    func sharedVdevID() throws {
        let (_, processor, _) = try load([rpmsgVdev(notify: NotifyID(0), vrings: [NotifyID(0), NotifyID(1)])])
        try processor.start()
        let device = try processor.createVirtio(index: 0, role: .driver)
        let hits = MetalMutex<[Int]>([])
        for k in 0..<2 { device.setNotificationHandler(forVring: k) { hits.withLock { $0.append(k) } } }
        #expect(processor.handleNotification(NotifyID(0)) == 1)
        #expect(processor.handleNotification(NotifyID(1)) == 1)
        #expect(hits.withLock { $0 } == [0, 1])
    }

    @Test("shutdown releases the virtio devices")
    func shutdownReleases() throws {
        let (_, processor) = try running()
        _ = try processor.createVirtio(index: 0, role: .driver)
        try processor.shutdown()
        #expect(processor.virtioDeviceList.isEmpty)
    }
}
