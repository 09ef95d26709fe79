import MetalIO
@testable import RPMsg
import Testing

@Suite("RPMsg wire formats")
struct RPMsgWireTests {
    @Test("the 16-byte header is little-endian: src, dst, reserved, len, flags")
    func header() throws {
        let memory = try SharedMemory(size: 4096)
        let region = try IORegion(memory: memory, physicalBase: PhysicalAddress(0))
        try RPMsgHeader(source: RPMsgAddress(0x0403), destination: RPMsgAddress(53), length: 0x1234).write(to: region, at: 8)
        #expect(try region.readBytes(at: 8, count: 16) == [0x03, 0x04, 0, 0, 53, 0, 0, 0, 0, 0, 0, 0, 0x34, 0x12, 0, 0])
        let back = try RPMsgHeader(from: region, at: 8)
        #expect(back == RPMsgHeader(source: RPMsgAddress(0x0403), destination: RPMsgAddress(53), length: 0x1234))
        #expect(throws: MetalIOError.self) { _ = try RPMsgHeader(from: region, at: 4090) }
    }

    @Test("the 40-byte name-service message: NUL-padded name, address, flags")
    func nameService() {
        let message = NameServiceMessage(name: "rpmsg-echo", address: RPMsgAddress(0x400), action: .destroy)
        let bytes = message.bytes
        #expect(bytes.count == 40)
        #expect(Array(bytes[0..<10]) == Array("rpmsg-echo".utf8) && bytes[10..<32].allSatisfy { $0 == 0 })
        #expect(Array(bytes[32..<40]) == [0x00, 0x04, 0, 0, 1, 0, 0, 0])
        #expect(NameServiceMessage(bytes: bytes) == message)
        #expect(NameServiceMessage(bytes: Array(bytes.prefix(39))) == nil)
        var badAction = bytes
        badAction[36] = 7
        #expect(NameServiceMessage(bytes: badAction) == nil)
        let long = NameServiceMessage(name: String(repeating: "n", count: 40), address: RPMsgAddress(1), action: .create)
        #expect(NameServiceMessage(bytes: long.bytes)?.name == String(repeating: "n", count: 32))
    }

    @Test("a huge buffer offered by the other side still carries at most what the 16-bit len field says")
    func capacityCap() {
        #expect(RPMsgDevice.payloadCapacity(512) == 496)
        #expect(RPMsgDevice.payloadCapacity(1 << 20) == 65535)
    }
}
