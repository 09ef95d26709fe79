import MetalIO
import Virtio

/// Why a remote-processor call failed. The state is unchanged whenever a call throws.
public struct RemoteprocError: Error, CustomStringConvertible {
    public enum Kind: Sendable {
        /// The call is not allowed in this state (`RPROC_EINVAL` in OpenAMP).
        case wrongState(RemoteprocState)
        /// A platform op threw; the op's own error is in ``underlying``.
        case operationFailed(op: String)
        /// An op called back into a locking API of the same processor (it would deadlock).
        case reentrantCall
        /// The processor was removed.
        case removed
        case resourceTable(ResourceTableError)
        /// The table is well formed, but the processor's host personality refuses it (another host would take it).
        case refusedByHost(HostRuleViolation)
        case image(ImageError)
        case io(MetalIOError)
        /// No registered memory (nor the mmap op) covers the range.
        case noMapping(what: String, device: DeviceAddress?, physical: PhysicalAddress?, size: Int)
        /// No ANY address could be allocated for `what`.
        case allocationFailed(what: String, size: Int)
        /// Every notify id below the capacity is taken (`RPROC_ERR_RSC_TAB_NP`).
        case notifyIDsExhausted(capacity: Int)
        /// A fixed notify id is already taken.
        case notifyIDInUse(NotifyID)
        /// A fixed notify id is not below the capacity.
        case notifyIDOutOfRange(NotifyID, capacity: Int)
        /// No resource table is installed.
        case noResourceTable
        /// There is no vdev entry with this index.
        case noSuchVirtioDevice(index: Int, count: Int)
        /// A wait ran out of time.
        case timedOut(what: String, seconds: Double)
        case invalidArgument(String)
        /// The platform cannot do this (it says why): a platform without suspend and resume.
        case unsupported(String)
        /// The remote answered a suspend request with CANCEL; it keeps running.
        case refusedByRemote(SuspendKind)
        /// The remote did not answer a suspend request in time (Linux's `-EBUSY`); it keeps running.
        case busy(SuspendKind, timeout: Duration)
    }

    public var kind: Kind
    /// The call that failed.
    public var call: RemoteprocCall
    /// The op's or store's own error, when one caused this.
    public var underlying: (any Error)?

    public init(_ kind: Kind, call: RemoteprocCall, underlying: (any Error)? = nil) {
        self.kind = kind
        self.call = call
        self.underlying = underlying
    }

    /// The state the call found, when it failed for that reason.
    public var wrongState: RemoteprocState? {
        if case let .wrongState(state) = kind { return state }
        return nil
    }

    public var description: String {
        let why: String
        switch kind {
        case let .wrongState(state): why = "not allowed in state \(state)"
        case let .operationFailed(op): why = "the platform's \(op) op failed: \(underlying.map { "\($0)" } ?? "unknown error")"
        case .reentrantCall: why = "called from inside one of this processor's own ops (it would deadlock)"
        case .removed: why = "the processor has been removed"
        case let .resourceTable(e): why = e.description
        case let .refusedByHost(v): why = v.description
        case let .image(e): why = e.description
        case let .io(e): why = e.description
        case let .noMapping(what, device, physical, size):
            let at = [device.map { "da \($0)" }, physical.map { "pa \($0)" }].compactMap { $0 }.joined(separator: ", ")
            why = "no memory region covers \(what) (\(at), \(size) bytes)"
        case let .allocationFailed(what, size): why = "no free memory for \(what) (\(size) bytes)"
        case let .notifyIDsExhausted(capacity): why = "all \(capacity) notify ids are taken"
        case let .notifyIDInUse(id): why = "notify id \(id) is already taken"
        case let .notifyIDOutOfRange(id, capacity): why = "notify id \(id) is not below the capacity \(capacity)"
        case .noResourceTable: why = "no resource table is installed"
        case let .noSuchVirtioDevice(index, count): why = "no vdev entry \(index) (the table has \(count))"
        case let .timedOut(what, seconds): why = "timed out after \(seconds) s waiting for \(what)"
        case let .invalidArgument(text): why = text
        case let .unsupported(text): why = "unsupported: \(text)"
        case let .refusedByRemote(kind): why = "the remote refused the \(kind) suspend request (CANCEL); it keeps running"
        case let .busy(kind, timeout): why = "busy: the remote did not answer the \(kind) suspend request within \(timeout); it keeps running"
        }
        return "\(call): \(why)"
    }
}
