import MetalIO
import Virtio

/// The life-cycle state of a remote processor (the design document's states, plus Crashed and
/// Suspended for crash detection and suspend/resume).
public enum RemoteprocState: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Powered off; the initial state (`RPROC_OFFLINE`).
    case offline
    /// Configured and able to take an application (`RPROC_CONFIGURED`).
    case configured
    /// An application is loaded and ready to run (`RPROC_READY`).
    case ready
    /// The application runs (`RPROC_RUNNING`).
    case running
    /// Stopped, still powered, resources still held (`RPROC_STOPPED`).
    case stopped
    /// The remote faulted, panicked or missed its watchdog while running.
    case crashed
    /// Suspended while running: the core's clock is stopped, memory and registers kept
    /// (``RemoteProcessor/suspend(_:timeout:)``, ``RemoteProcessor/resume()``).
    case suspended

    public var description: String { rawValue.prefix(1).uppercased() + rawValue.dropFirst() }

    /// Running or suspended: the remote can still answer (a crash, a stop or a shutdown ends that).
    public var isLive: Bool { self == .running || self == .suspended }
}

/// The public calls of a remote processor, as named in errors and state-change events.
public enum RemoteprocCall: String, Hashable, Sendable, CustomStringConvertible {
    case initialize = "init"
    case remove
    case configure
    case load
    case setResourceTable = "set resource table"
    case start
    case stop
    case shutdown
    case createVirtio = "create virtio"
    case removeVirtio = "remove virtio"
    case mmap
    case allocateNotifyID = "allocate notify id"
    case notification
    case reportCrash = "report crash"
    case recover
    case suspend
    case resume
    public var description: String { rawValue }
}

/// One state change, as delivered to observers.
public struct StateChange: Hashable, Sendable, CustomStringConvertible {
    public var from: RemoteprocState
    public var to: RemoteprocState
    /// The call that caused it.
    public var call: RemoteprocCall
    /// A one-line reason (a crash's description), when there is one.
    public var reason: String?
    /// Increases by one with every change of this processor, so observers on several threads can order them.
    public var sequence: UInt64

    public var description: String {
        "\(from) → \(to) (\(call))" + (reason.map { ": \($0)" } ?? "")
    }
}

/// One write the host made into a vdev entry in the remote's memory, as it happened: what a
/// firmware polling its resource table sees, in order (for traces and start-up tests).
public struct VdevWrite: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// The status byte. `availableIndices`: each vring's `avail->idx` at that moment — how
        /// many buffers the host had made available (vring 0: the receive buffers it posted).
        case status(VirtioStatus, availableIndices: [UInt16])
        /// gfeatures, the features the host accepted.
        case features(VirtioFeatures)
        /// A vring's device address (a Linux host writes it as its virtio driver probes).
        case vringAddress(vring: Int, DeviceAddress)
        /// `count` bytes of the config space from `offset`.
        case config(offset: Int, count: Int)
    }
    /// The vdev's position among the table's vdev entries.
    public var vdev: Int
    public var kind: Kind

    public init(vdev: Int, kind: Kind) {
        self.vdev = vdev
        self.kind = kind
    }

    public var description: String {
        switch kind {
        case let .status(status, available):
            let rings = available.enumerated().map { "vring\($0.offset) avail idx \($0.element)" }.joined(separator: ", ")
            return "vdev \(vdev) status \(status)" + (rings.isEmpty ? "" : " · \(rings)")
        case let .features(features):
            return "vdev \(vdev) gfeatures \(hex(UInt64(features.rawValue)))"
        case let .vringAddress(vring, address):
            return "vdev \(vdev) vring\(vring) da \(address)"
        case let .config(offset, count):
            return "vdev \(vdev) config [\(offset), +\(count))"
        }
    }
}

/// What observers of a remote processor are told.
public enum RemoteprocEvent: Hashable, Sendable {
    case stateChanged(StateChange)
    /// Something was accepted but deserves a look: a skipped table entry, an ANY trace buffer, …
    case warning(String)
    /// The host wrote into a vdev entry (status, features, a vring address).
    case vdevWrite(VdevWrite)
}
