import Virtio

/// A resource table one host stack accepts and the other refuses: which host, which of its
/// rules, and where in the table. Every rule is checked against the host's source (see
/// `docs/host-personalities.md`).
public struct HostRuleViolation: Hashable, Sendable, CustomStringConvertible {
    public enum Rule: String, Hashable, Sendable, CaseIterable {
        /// OpenAMP takes every notify id once, the vdev's first and then each vring's, in table
        /// order (`handle_vdev_rsc` → `remoteproc_allocate_id`); a fixed id already taken fails
        /// the table with `RPROC_ERR_RSC_TAB_NP`. Linux ignores the vdev's id and allocates the
        /// vrings' itself, so such a table works with Linux.
        case notifyIDTakenTwice
        /// OpenAMP maps each vring at the table's `da` as it is (`remoteproc_create_virtio`): it
        /// never allocates an ANY vring nor writes an address back. Linux does both.
        case vringAddressRequired
        /// OpenAMP maps a carveout through the platform (`handle_carveout_rsc`) and writes nothing
        /// back, so an ANY `da` would never reach the remote. Linux allocates and writes it.
        case carveoutAddressRequired
        /// Linux's vdev handler refuses more than two vrings (`rproc_handle_vdev`). OpenAMP takes any number.
        case tooManyVrings
        /// Linux maps a devmem entry only through an IOMMU domain (`rproc_handle_devmem` fails
        /// without one, and no platform here has an IOMMU). OpenAMP skips devmem entries.
        case devmemNeedsIOMMU

        /// The rule in a sentence, with where it comes from and what the other host does.
        public var explanation: String {
            switch self {
            case .notifyIDTakenTwice:
                "OpenAMP allocates every notify id once, the vdev's and then each vring's in table order (handle_vdev_rsc, remoteproc_allocate_id); "
                    + "a Linux host ignores the vdev's id and allocates the vrings' itself (host: linux)"
            case .vringAddressRequired:
                "OpenAMP maps vrings at the address the table gives and never allocates one (remoteproc_create_virtio); "
                    + "give the vring a fixed da, or use a host that allocates it (host: linux)"
            case .carveoutAddressRequired:
                "OpenAMP maps carveouts through the platform and writes nothing back (handle_carveout_rsc), so the remote would never learn the address; "
                    + "give it a fixed da, or use a host that allocates it (host: linux)"
            case .tooManyVrings:
                "Linux's vdev handler takes at most two vrings (rproc_handle_vdev); an OpenAMP host takes any number (host: openamp)"
            case .devmemNeedsIOMMU:
                "Linux maps devmem entries only through an IOMMU (rproc_handle_devmem), and this platform has none; "
                    + "an OpenAMP host skips them (host: openamp)"
            }
        }
    }

    public var host: HostPersonality
    public var rule: Rule
    /// The table entry at fault.
    public var entryIndex: Int
    /// What in this table breaks the rule ("vring 0's notify id 0 is already the vdev's").
    public var detail: String

    public init(host: HostPersonality, rule: Rule, entryIndex: Int, detail: String) {
        self.host = host
        self.rule = rule
        self.entryIndex = entryIndex
        self.detail = detail
    }

    public var description: String {
        "a \(host.hostName) host (host: \(host)) refuses resource table entry \(entryIndex): \(detail). \(rule.explanation)"
    }
}

extension HostPersonality {
    /// Every rule of this host the table breaks, in table order (empty: the host accepts it, as
    /// far as the table alone decides). Notify ids are simulated as the host allocates them, from
    /// `0..<notifyIDCapacity`.
    public func violations(in table: ResourceTable, notifyIDCapacity: Int = 32) -> [HostRuleViolation] {
        var found: [HostRuleViolation] = []
        func refuse(_ rule: HostRuleViolation.Rule, _ entry: Int, _ detail: String) {
            found.append(HostRuleViolation(host: self, rule: rule, entryIndex: entry, detail: detail))
        }
        var taken: [UInt32: (entry: Int, owner: String)] = [:]
        for (index, entry) in table.entries.enumerated() {
            switch (self, entry) {
            case let (.openamp, .vdev(v)):
                let ids = [(v.notifyID, "the vdev")] + v.vrings.enumerated().map { ($0.element.notifyID, "vring \($0.offset)") }
                for (id, owner) in ids {
                    if id.isAny {
                        if let free = (0..<UInt32(max(notifyIDCapacity, 0))).first(where: { taken[$0] == nil }) { taken[free] = (index, owner) }
                    } else if let holder = taken[id.rawValue] {
                        let whose = holder.entry == index ? "\(holder.owner)'s" : "\(holder.owner)'s in entry \(holder.entry)"
                        refuse(.notifyIDTakenTwice, index, "\(owner)'s notify id \(id.rawValue) is already \(whose)")
                    } else {
                        taken[id.rawValue] = (index, owner)
                    }
                }
                for (k, vring) in v.vrings.enumerated() where vring.deviceAddress.isAny {
                    refuse(.vringAddressRequired, index, "vring \(k) has device address ANY")
                }
            case let (.openamp, .carveout(m)) where m.deviceAddress.isAny:
                refuse(.carveoutAddressRequired, index, "carveout '\(m.name)' has device address ANY")
            case let (.linux, .vdev(v)) where v.vrings.count > 2:
                refuse(.tooManyVrings, index, "the vdev has \(v.vrings.count) vrings")
            case let (.linux, .devmem(m)):
                refuse(.devmemNeedsIOMMU, index, "devmem '\(m.name)' needs an IOMMU mapping")
            default:
                break
            }
        }
        return found
    }
}
