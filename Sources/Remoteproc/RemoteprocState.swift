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
    /// Suspended while running.
    case suspended

    public var description: String { rawValue.prefix(1).uppercased() + rawValue.dropFirst() }
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

/// What observers of a remote processor are told.
public enum RemoteprocEvent: Hashable, Sendable {
    case stateChanged(StateChange)
    /// Something was accepted but deserves a look: a skipped table entry, an ANY trace buffer, …
    case warning(String)
}
