import MetalIO
import Virtio

/// A board operation that could not be done: which one, and why.
public struct BoardError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// `start` before `configure` powered the core.
        case notPowered
        /// `start` while the core runs.
        case alreadyRunning
        /// One of the board's threads (the core's, the watchdog's) could not be started.
        case thread(ThreadError)
        /// The core's thread did not end within the time a stop allows.
        case didNotStop(within: Duration)
        /// The core's thread ended its firmware but not its own work within the time allowed.
        case threadDidNotFinish(within: Duration)
        /// A fault needs a processor that has booted the board (none is attached).
        case noProcessor
        /// A crash can only be injected into a running core.
        case notRunning
        /// There is no vring `index` (the vdev has `available`).
        case noSuchVring(index: Int, available: Int)
        /// No resource table is installed (load first).
        case noResourceTable
        /// A 32-bit write at `offset` does not fit in the `size`-byte installed table.
        case outsideResourceTable(offset: Int, size: Int)
        /// Board memory refused an access.
        case memory(MetalIOError)
        /// A vring's geometry is not one the board can lay out.
        case vring(VirtioError)
        /// The core's firmware ended (a crash, a stop) before it could be suspended.
        case coreHalted
        /// The core did not reach an instruction boundary (a board access, for native firmware) in time.
        case didNotPark(within: Duration)
        /// The core's clock is gated (suspended): it cannot crash or run until resumed.
        case suspended
        /// Called from a host interrupt handler running inline on the core's own thread
        /// (``Virtio/InterruptDelivery/inline``): waiting for the core would wait for itself.
        case insideCoreInterrupt
        /// A feature that needs real time was asked of a board in virtual time.
        case realTimeOnly(String)
    }

    /// What was being done: "start", "stop", "corrupt vring 1 avail-idx", …
    public var operation: String
    public var kind: Kind

    public init(_ operation: String, _ kind: Kind) {
        self.operation = operation
        self.kind = kind
    }

    public var description: String {
        let why = switch kind {
        case .notPowered: "the core is not powered (configure first)"
        case .alreadyRunning: "the core is already running"
        case let .thread(error): "\(error)"
        case let .didNotStop(within): "the core did not stop within \(within)"
        case let .threadDidNotFinish(within): "the core's thread did not finish within \(within)"
        case .noProcessor: "no processor drives the board"
        case .notRunning: "the core is not running"
        case .coreHalted: "the core's firmware ended before its clock could be gated"
        case let .didNotPark(within): "the core did not reach an instruction boundary within \(within) (native firmware parks at its next board access)"
        case .suspended: "the core is suspended (its clock is gated); resume it first"
        case .insideCoreInterrupt: "called from a host interrupt handler running inline on the core's own thread, which cannot wait for itself (call it from another thread, or make the board with hostInterrupts: .thread)"
        case let .realTimeOnly(feature): "\(feature) needs real time; a board in virtual time (clock: virtual) cannot have it"
        case let .noSuchVring(index, available): "no vring \(index) (the vdev has \(available))"
        case .noResourceTable: "no resource table is installed (load first)"
        case let .outsideResourceTable(offset, size): "offset \(offset) is not inside the \(size)-byte resource table"
        case let .memory(error): "\(error)"
        case let .vring(error): "\(error)"
        }
        return "\(operation): \(why)"
    }
}
