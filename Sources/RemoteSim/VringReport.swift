import MetalIO
import Remoteproc
import RPMsg
import Virtio

/// A readable dump of every vdev's vrings in a live resource table: status, features, indices,
/// descriptors, the buffers in flight and the last used ones, with RPMsg headers (and name-service
/// messages) decoded. What `monitor vrings` prints in a debugger and `rproc-sim run` prints when a
/// step fails. Everything is read from shared memory and bounds-checked; what cannot be read or
/// does not add up is said so, never trusted.
public enum VringReport {
    /// Buffers listed per ring, in flight and recently used.
    public static let bufferLimit = 8

    /// The dump of the table at `table` (device address and size), read through `read`.
    public static func render(tableAt table: (address: DeviceAddress, size: Int), read: (UInt64, Int) -> [UInt8]?) -> String {
        guard let bytes = read(table.address.rawValue, table.size) else { return "resource table at \(table.address): not readable\n" }
        let parsed: ResourceTable
        do { parsed = try ResourceTable(bytes: bytes) } catch { return "resource table at \(table.address): \(error)\n" }
        return render(parsed, read: read)
    }

    /// The dump of `table`'s vdevs, reading rings and buffers through `read` (device address → bytes).
    public static func render(_ table: ResourceTable, read: (UInt64, Int) -> [UInt8]?) -> String {
        var out = ""
        for (index, device) in table.virtioDevices {
            let isRPMsg = device.deviceID == VirtioDeviceResource.rpmsgDeviceID
            out += "vdev entry \(index) (\(isRPMsg ? "rpmsg" : "virtio id \(device.deviceID)")): status \(statusText(device.status)), "
                + "features offered \(short(device.deviceFeatures.rawValue)) accepted \(short(device.driverFeatures.rawValue))\n"
            for (k, vring) in device.vrings.enumerated() {
                let direction = isRPMsg && device.vrings.count == 2 ? (k == 0 ? " (remote → host)" : " (host → remote)") : ""
                guard let address = vring.deviceAddress.device else {
                    out += "  vring\(k): not placed yet (da ANY: the host writes it as its virtio driver starts)\n"
                    continue
                }
                out += "  vring\(k) @ \(address) num \(vring.count) align \(vring.alignment) notify \(vring.notifyID.rawValue)\(direction)\n"
                do {
                    let layout = try VringLayout(count: Int(vring.count), alignment: Int(vring.alignment))
                    let snapshot = try VringSnapshot(layout: layout, at: address.rawValue, read: read)
                    out += ring(snapshot, decodeRPMsg: isRPMsg, read: read)
                } catch {
                    out += "    \(error)\n"
                }
            }
        }
        return out.isEmpty ? "no vdev in the resource table\n" : out
    }

    static func statusText(_ status: VirtioStatus) -> String {
        short(status.rawValue) + " (\(status.names))"
    }

    private static func ring(_ ring: VringSnapshot, decodeRPMsg: Bool, read: (UInt64, Int) -> [UInt8]?) -> String {
        var out = "    avail idx \(ring.availIndex) flags \(short(ring.availFlags)) used_event \(ring.usedEvent); "
            + "used idx \(ring.usedIndex) flags \(short(ring.usedFlags)) avail_event \(ring.availEvent); "
        if let count = ring.inFlightCount {
            out += "\(count) in flight\n"
        } else {
            out += "indices inconsistent (avail − used = \(ring.availIndex &- ring.usedIndex) > num \(ring.layout.count))\n"
        }
        out += descriptorTable(ring)
        let inFlight = ring.inFlightHeads
        if !inFlight.isEmpty {
            out += "    in flight (made available, not yet used):\n"
            for (position, head) in inFlight.prefix(bufferLimit) {
                out += "      avail[\(position)] " + buffer(ring, head: Int(head), usedLength: nil, decodeRPMsg: decodeRPMsg, read: read) + "\n"
            }
            if inFlight.count > bufferLimit { out += "      … \(inFlight.count - bufferLimit) more\n" }
        }
        let used = ring.recentlyUsed(min(bufferLimit, 4))
        if !used.isEmpty {
            out += "    last used:\n"
            for (position, element) in used {
                out += "      used[\(position)] " + buffer(ring, head: Int(element.id), usedLength: element.length, decodeRPMsg: decodeRPMsg, read: read) + "\n"
            }
        }
        return out
    }

    /// The descriptor table, runs of like descriptors (same length and flags, unchained,
    /// contiguous buffers) on one line each.
    private static func descriptorTable(_ ring: VringSnapshot) -> String {
        var out = "    descriptors:\n"
        var i = 0
        let all = ring.descriptors
        while i < all.count {
            let first = all[i]
            var j = i + 1
            // A run: unchained, same length and flags, addresses a constant step apart.
            let step = i + 1 < all.count ? all[i + 1].address &- first.address : 0
            if !first.isChained {
                while j < all.count, !all[j].isChained, all[j].length == first.length, all[j].flags == first.flags,
                      all[j].address == all[j - 1].address &+ step { j += 1 }
            }
            let flags = flagText(first.flags)
            if j - i > 1 {
                let last = all[j - 1]
                if first.address == 0 && step == 0 && first.length == 0 && first.flags == 0 {
                    out += "      \(i)–\(j - 1): unused (zero)\n"
                } else {
                    let stepText = step == 0 ? "same address" : Int64(bitPattern: step) < 0 ? "step −\(short(0 &- step))" : "step \(short(step))"
                    out += "      \(i)–\(j - 1): \(hex(first.address)) … \(hex(last.address)) (\(stepText)), len \(first.length)\(flags)\n"
                }
            } else {
                out += "      \(i): \(hex(first.address)) len \(first.length)\(flags)\(first.isChained ? " next \(first.next)" : "")\n"
            }
            i = j
        }
        return out
    }

    private static func flagText(_ flags: UInt16) -> String {
        var names: [String] = []
        if flags & VringLayout.next != 0 { names.append("NEXT") }
        if flags & VringLayout.write != 0 { names.append("WRITE") }
        if flags & VringLayout.indirect != 0 { names.append("INDIRECT") }
        let unknown = flags & ~(VringLayout.next | VringLayout.write | VringLayout.indirect)
        if unknown != 0 { names.append(short(unknown)) }
        return names.isEmpty ? "" : " " + names.joined(separator: "|")
    }

    /// One buffer (the chain at `head`): where it is and, for RPMsg, the message in it.
    private static func buffer(_ ring: VringSnapshot, head: Int, usedLength: UInt32?, decodeRPMsg: Bool,
                               read: (UInt64, Int) -> [UInt8]?) -> String {
        let chain = ring.chain(from: head)
        guard let (_, first) = chain.first else { return "desc \(head): out of range (num \(ring.layout.count))" }
        var text = "desc \(head)\(chain.count > 1 ? " (+\(chain.count - 1) chained)" : "") @ \(hex(first.address)) len \(first.length)"
        if let usedLength { text += ", used len \(usedLength)" }
        guard decodeRPMsg else { return text }
        // A device-writable buffer not yet used is an empty receive buffer; once used, the device wrote a message in it.
        if first.isDeviceWritable && usedLength == nil { return text + ": empty receive buffer" }
        if !first.isDeviceWritable && usedLength != nil { return text + ": returned to the sender (" + message(at: first, limit: Int(first.length), read: read) + ")" }
        let limit = usedLength.map { min(Int($0), Int(first.length)) } ?? Int(first.length)
        return text + ": " + message(at: first, limit: limit, read: read)
    }

    /// The RPMsg message in a buffer of `limit` valid bytes.
    static func message(at descriptor: VringSnapshot.Descriptor, limit: Int, read: (UInt64, Int) -> [UInt8]?) -> String {
        guard limit >= RPMsgHeader.size else { return "\(limit) bytes, too short for an RPMsg header" }
        guard let header = read(descriptor.address, RPMsgHeader.size) else { return "buffer not readable" }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(header[at + $1]) << (8 * UInt32($1)) } }
        let source = u32(0), destination = u32(4)
        let length = Int(UInt16(header[12]) | UInt16(header[13]) << 8)
        let flags = UInt16(header[14]) | UInt16(header[15]) << 8
        var text = "rpmsg \(address(source)) → \(address(destination)) len \(length) flags \(short(flags))"
        let available = limit - RPMsgHeader.size
        guard length <= available else { return text + " (length beyond the \(available) bytes of the buffer)" }
        let shown = min(length, 48)
        guard let payload = read(descriptor.address + UInt64(RPMsgHeader.size), shown) else { return text + ": payload not readable" }
        if destination == RPMsgAddress.nameService.rawValue, length == NameServiceMessage.size,
           let full = read(descriptor.address + UInt64(RPMsgHeader.size), length), let ns = NameServiceMessage(bytes: full) {
            return text + ": name service \(ns.action == .create ? "create" : "destroy") \"\(visibleText(ns.name))\" at \(ns.address)"
        }
        text += ": " + preview(payload)
        return length > shown ? text + " …" : text
    }

    /// Small values (flags, status) in hex without padding: `0x0`, `0xf`.
    private static func short(_ value: some BinaryInteger) -> String { "0x" + String(value, radix: 16) }

    private static func address(_ raw: UInt32) -> String { raw == RPMsgAddress.any.rawValue ? "ANY" : "\(raw)" }

    /// Printable text quoted (other bytes as \xNN), or hex bytes when the payload is mostly binary.
    static func preview(_ bytes: [UInt8]) -> String {
        if bytes.isEmpty { return "(empty)" }
        let printable = bytes.filter { (0x20..<0x7F).contains($0) || $0 == 0x0A || $0 == 0x09 }.count
        guard printable * 4 >= bytes.count * 3 else { return bytes.map { hexString([$0]) }.joined(separator: " ") }
        var text = "\""
        for byte in bytes {
            switch byte {
            case 0x0A: text += "\\n"
            case 0x09: text += "\\t"
            case UInt8(ascii: "\""): text += "\\\""
            case UInt8(ascii: "\\"): text += "\\\\"
            case 0x20..<0x7F: text.append(Character(Unicode.Scalar(byte)))
            default: text += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
            }
        }
        return text + "\""
    }
}
