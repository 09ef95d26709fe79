#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which interrupt handler, if any, the calling thread runs *inline* — on the thread that raised
/// the interrupt, as a handler runs on the CPU it interrupts. Code that would wait for the raising
/// side (a stop that waits for that side's thread, a send that waits for buffers only that side
/// returns) asks, and fails at once with a typed error instead of waiting for itself.
///
/// A thread-local word (`pthread_getspecific`: a load, no lock): the identity of the innermost
/// source whose handler runs here, restored when the handler returns.
public enum InterruptContext {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let result = pthread_key_create(&key, nil)
        precondition(result == 0, "pthread_key_create failed: \(result)")
        return key
    }()

    /// Whether the calling thread runs any interrupt handler inline now.
    public static var isActive: Bool { current != nil }

    /// Whether the calling thread runs a handler of `source` inline now (innermost only).
    public static func isRunning(_ source: AnyObject) -> Bool {
        current == Unmanaged.passUnretained(source).toOpaque()
    }

    private static var current: UnsafeMutableRawPointer? { pthread_getspecific(key) }

    /// Runs `body` as an inline handler of `source` on the calling thread.
    public static func run<T>(for source: AnyObject, _ body: () throws -> T) rethrows -> T {
        let outer = current
        pthread_setspecific(key, Unmanaged.passUnretained(source).toOpaque())
        defer { pthread_setspecific(key, outer) }
        return try body()
    }
}
