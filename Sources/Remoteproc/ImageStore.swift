#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MetalIO

/// Where firmware images come from (`struct image_store_ops`): open an image, hand back a range
/// of its bytes, or copy a range straight into target memory, then close.
///
/// A store is used by one load at a time; the core calls ``open(_:)`` and ``close()`` around it.
public protocol ImageStore: AnyObject {
    /// Opens the image at `path` and returns its size in bytes (`open`).
    func open(_ path: String) throws(ImageError) -> Int
    /// Closes the image opened last (`close`).
    func close()
    /// Returns the bytes `[offset, offset + count)` of the open image ("return-pointer" mode of `load`).
    func bytes(at offset: Int, count: Int) throws(ImageError) -> [UInt8]
    /// Copies the bytes `[offset, offset + count)` of the open image into `region` at
    /// `regionOffset` ("copy-to-target" mode of `load`).
    func copy(from offset: Int, count: Int, into region: IORegion, at regionOffset: Int) throws(ImageError)
}

/// Images from the file system. Copies go straight from the file into target memory (`pread`).
public final class FileImageStore: ImageStore {
    private var descriptor: Int32 = -1
    private var size = 0
    private var path = ""

    public init() {}
    deinit { close() }

    public func open(_ path: String) throws(ImageError) -> Int {
        close()
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError(.store(operation: "open", message: String(cString: strerror(errno))), path: path) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            Glibc.close(fd)
            throw ImageError(.store(operation: "open", message: "not a regular file"), path: path)
        }
        descriptor = fd
        size = Int(info.st_size)
        self.path = path
        return size
    }

    public func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    private func checkRange(_ offset: Int, _ count: Int) throws(ImageError) {
        guard descriptor >= 0 else { throw ImageError(.store(operation: "load", message: "no image is open"), path: path) }
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw ImageError(.truncated(what: "range [\(offset), +\(count))", needed: offset &+ count, fileSize: size), path: path)
        }
    }

    private func readFully(into buffer: UnsafeMutableRawBufferPointer, from offset: Int) throws(ImageError) {
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw ImageError(.store(operation: "read", message: n == 0 ? "unexpected end of file" : String(cString: strerror(errno))), path: path)
            }
            done += n
        }
    }

    public func bytes(at offset: Int, count: Int) throws(ImageError) -> [UInt8] {
        try checkRange(offset, count)
        var result = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return result }
        let outcome = result.withUnsafeMutableBytes { buffer in
            Result { () throws(ImageError) in try readFully(into: buffer, from: offset) }
        }
        try outcome.get()
        return result
    }

    public func copy(from offset: Int, count: Int, into region: IORegion, at regionOffset: Int) throws(ImageError) {
        try checkRange(offset, count)
        guard count > 0 else { return }
        do {
            try region.withUnsafeMutableBytes(at: regionOffset, count: count) { target in
                try readFully(into: target, from: offset)
            }
        } catch let error as ImageError {
            throw error
        } catch let error as MetalIOError {
            throw ImageError(.target(error), path: path)
        } catch {
            throw ImageError(.store(operation: "copy", message: "\(error)"), path: path)
        }
    }
}

/// Images held in memory, by name (like OpenAMP's `mem_image_store`).
public final class MemoryImageStore: ImageStore {
    private var images: [String: [UInt8]]
    private var current: [UInt8]?
    private var path = ""

    /// A store holding `images`, keyed by the path ``open(_:)`` is given.
    public init(_ images: [String: [UInt8]] = [:]) { self.images = images }

    /// Adds or replaces the image called `path`.
    public func add(_ bytes: [UInt8], as path: String) { images[path] = bytes }

    public func open(_ path: String) throws(ImageError) -> Int {
        guard let image = images[path] else { throw ImageError(.store(operation: "open", message: "no such image"), path: path) }
        current = image
        self.path = path
        return image.count
    }

    public func close() { current = nil }

    private func checkedImage(_ offset: Int, _ count: Int) throws(ImageError) -> [UInt8] {
        guard let image = current else { throw ImageError(.store(operation: "load", message: "no image is open"), path: path) }
        guard offset >= 0, count >= 0, offset <= image.count, count <= image.count - offset else {
            throw ImageError(.truncated(what: "range [\(offset), +\(count))", needed: offset &+ count, fileSize: image.count), path: path)
        }
        return image
    }

    public func bytes(at offset: Int, count: Int) throws(ImageError) -> [UInt8] {
        let image = try checkedImage(offset, count)
        return Array(image[offset..<(offset + count)])
    }

    public func copy(from offset: Int, count: Int, into region: IORegion, at regionOffset: Int) throws(ImageError) {
        let image = try checkedImage(offset, count)
        let outcome = image.withUnsafeBytes { all in
            Result { () throws(MetalIOError) in
                try region.write(bytes: UnsafeRawBufferPointer(rebasing: all[offset..<(offset + count)]), at: regionOffset)
            }
        }
        if case let .failure(error) = outcome { throw ImageError(.target(error), path: path) }
    }
}
