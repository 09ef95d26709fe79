#if canImport(Glibc)
import Glibc
#endif

/// The one thread type of the package (libmetal keeps its threads beside its I/O regions; WasmKit's
/// `PlatformThread` is the model): a POSIX thread running a closure. It is not copyable — one
/// owner decides its end: ``join()`` waits for the body to return; ``detach()``, or dropping the
/// value, lets it run to the end on its own.
public struct PlatformThread: ~Copyable {
    private let handle: pthread_t

    /// The closure, kept alive until the thread has taken it.
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts a thread running `body`.
    /// - Parameter name: what the thread is for, named in the error when it cannot start.
    /// - Throws: ``ThreadError`` when the system cannot make a thread.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(ThreadError) {
        let box = Unmanaged.passRetained(Body(body))
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            // The box was retained for this thread; it is released when the body returns.
            guard let raw else { return nil }
            Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw ThreadError(name: name, code: result)
        }
        self.handle = handle
    }

    /// Waits for the body to return. Called on the thread itself (its body dropped the last
    /// reference to the thread's owner), it detaches instead: a thread cannot wait for itself.
    public consuming func join() {
        if pthread_equal(handle, pthread_self()) != 0 { pthread_detach(handle) } else { pthread_join(handle, nil) }
        discard self
    }

    /// Whether this is the calling thread.
    public var isCurrent: Bool { pthread_equal(handle, pthread_self()) != 0 }

    /// Lets the thread run to its end on its own.
    public consuming func detach() {
        pthread_detach(handle)
        discard self
    }

    deinit { pthread_detach(handle) }
}

/// A thread could not be started.
public struct ThreadError: Error, Sendable, CustomStringConvertible {
    /// The name the thread was to have.
    public var name: String
    /// The `pthread_create` error number.
    public var code: Int32
    public var description: String { "cannot start thread '\(name)': \(String(cString: strerror(code)))" }
}
