#if canImport(Glibc)
import Glibc
#endif

/// Whether this test process runs under ThreadSanitizer or AddressSanitizer (scripts/sanitize.sh,
/// and CI): their runtimes define `__tsan_init` / `__asan_init`. Emulated code then runs many
/// times slower than real time, so a test whose firmware must reach a count in real time asks for
/// less of it there — and says so; what it checks does not change.
public enum Sanitizer {
    public static let isActive: Bool = {
        guard let process = dlopen(nil, RTLD_NOW) else { return false }
        defer { dlclose(process) }
        return dlsym(process, "__tsan_init") != nil || dlsym(process, "__asan_init") != nil
    }()
}
