#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file given by a user (a firmware image, a scenario, a payload) could not be read.
public struct FileError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        case notFound
        case permissionDenied
        /// Not a regular file; says what it is instead ("a FIFO", "a directory", …).
        case notRegular(String)
        /// Larger than the reader accepts.
        case tooLarge(size: Int, limit: Int)
        /// The file ended before `offset + count` (it shrank, or a range past its end was asked for).
        case endOfFile(offset: Int, count: Int)
        /// Any other failure of a system call, with its `errno`.
        case system(call: String, errno: Int32)
    }

    public var kind: Kind
    public var path: String

    public init(_ kind: Kind, path: String) {
        self.kind = kind
        self.path = path
    }

    /// What went wrong, without the path (for messages that name the file already).
    public var reason: String {
        switch kind {
        case .notFound: "no such file"
        case .permissionDenied: "permission denied"
        case let .notRegular(what): "is \(what), not a regular file"
        case let .tooLarge(size, limit): "is \(size) bytes, more than the \(limit) accepted"
        case let .endOfFile(offset, count): "ended before bytes [\(offset), +\(count))"
        case let .system(call, code): "\(call): \(String(cString: strerror(code)))"
        }
    }

    public var description: String {
        switch kind {
        case .notRegular, .tooLarge, .endOfFile: "\(path) \(reason)"
        case .notFound, .permissionDenied, .system: "\(path): \(reason)"
        }
    }
}

/// A file opened for reading only when it is a regular file. It is opened without blocking, so
/// a FIFO named by mistake (or by an attacker) is refused at once instead of waiting forever for
/// a writer; devices, directories and sockets are refused by what they are. Closed on `deinit`.
public final class RegularFile {
    public let path: String
    /// The size when it was opened.
    public let size: Int
    private let descriptor: Int32

    public init(opening path: String) throws(FileError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw Self.openError(errno, path: path) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw FileError(.system(call: "fstat", errno: code), path: path)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw FileError(.notRegular(Self.describe(mode: info.st_mode)), path: path)
        }
        // A regular file ignores O_NONBLOCK; it is cleared so reads are plain reads everywhere.
        // (F_SETFL sets only the status flags: none other than O_NONBLOCK was asked for.)
        _ = fcntl(fd, F_SETFL, 0)
        descriptor = fd
        size = Int(info.st_size)
    }

    deinit { close(descriptor) }

    /// Fills `buffer` with the bytes at `offset`.
    /// - Throws: ``FileError/Kind/endOfFile(offset:count:)`` when the file ends first.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(FileError) {
        guard offset >= 0 else { throw FileError(.endOfFile(offset: offset, count: buffer.count), path: path) }
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(.system(call: "read", errno: errno), path: path)
            }
            guard n > 0 else { throw FileError(.endOfFile(offset: offset, count: buffer.count), path: path) }
            done += n
        }
    }

    /// The bytes `[offset, offset + count)`.
    public func bytes(at offset: Int, count: Int) throws(FileError) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: max(0, count))
        guard count > 0 else { return result }
        let outcome = result.withUnsafeMutableBytes { buffer in Result { () throws(FileError) in try read(into: buffer, at: offset) } }
        try outcome.get()
        return result
    }

    /// The whole file, refused when it is larger than `limit` bytes.
    public static func contents(of path: String, limit: Int) throws(FileError) -> [UInt8] {
        let file = try RegularFile(opening: path)
        guard file.size <= limit else { throw FileError(.tooLarge(size: file.size, limit: limit), path: path) }
        return try file.bytes(at: 0, count: file.size)
    }

    /// Writes `bytes` as the whole content of the regular file at `path` (made with mode 0644 when
    /// it is new). A FIFO, a device, a directory or a socket there is refused before anything is
    /// written — opened without blocking, so a FIFO cannot hold the writer.
    public static func write(_ bytes: [UInt8], to path: String) throws(FileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0o644)
        guard fd >= 0 else { throw openError(errno, path: path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError(.system(call: "fstat", errno: errno), path: path) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw FileError(.notRegular(describe(mode: info.st_mode)), path: path) }
        guard ftruncate(fd, 0) == 0 else { throw FileError(.system(call: "ftruncate", errno: errno), path: path) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { systemWrite(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(.system(call: "write", errno: errno), path: path)
            }
            done += n
        }
    }

    private static func openError(_ code: Int32, path: String) -> FileError {
        switch code {
        case ENOENT, ENOTDIR: FileError(.notFound, path: path)
        case EACCES, EPERM: FileError(.permissionDenied, path: path)
        case ENXIO: FileError(.notRegular("a socket or a device with nothing behind it"), path: path)
        case EISDIR: FileError(.notRegular("a directory"), path: path)
        default: FileError(.system(call: "open", errno: code), path: path)
        }
    }

    private static func describe(mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        default: "not a regular file"
        }
    }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif
