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
/// Only regular files are opened: a FIFO, a device or a directory is refused at ``open(_:)``.
public final class FileImageStore: ImageStore {
    private var file: RegularFile?
    private var path = ""
    /// The last aligned block a small read fetched: libelf and the table parser ask for a few
    /// dozen bytes at a time, several at the same places (the file header three times, the
    /// resource table twice), and one `pread` of the block serves them all. A file of at most
    /// ``wholeFileLimit`` bytes is one block: read once, whole, it serves the headers, the table
    /// and the segments' copies (three `pread`s become one for a small image).
    private var block: (offset: Int, bytes: [UInt8])?
    private static let blockSize = 4096
    /// The largest file read whole as one block (larger ones are read by 4 KiB block, their
    /// segments straight from the file into target memory).
    static let wholeFileLimit = 64 << 10

    public init() {}

    public func open(_ path: String) throws(ImageError) -> Int {
        close()
        self.path = path
        let opened: RegularFile
        do { opened = try RegularFile(opening: path) } catch { throw ImageError(.file(error), path: path) }
        file = opened
        return opened.size
    }

    public func close() {
        file = nil
        block = nil
    }

    private func openFile(_ offset: Int, _ count: Int) throws(ImageError) -> RegularFile {
        guard let file else { throw ImageError(.store(operation: "load", message: "no image is open"), path: path) }
        guard offset >= 0, count >= 0, offset <= file.size, count <= file.size - offset else {
            throw ImageError(.truncated(what: "range [\(offset), +\(count))", needed: offset &+ count, fileSize: file.size), path: path)
        }
        return file
    }

    public func bytes(at offset: Int, count: Int) throws(ImageError) -> [UInt8] {
        let file = try openFile(offset, count)
        // The block a read lies in: the whole file when it is small, else its aligned 4 KiB
        // (up to the file's end). A read inside it is served from it, read once.
        let (start, length) = file.size <= Self.wholeFileLimit
            ? (0, file.size)
            : (offset & ~(Self.blockSize - 1), min(Self.blockSize, file.size - (offset & ~(Self.blockSize - 1))))
        if offset + count <= start + length {
            if block?.offset != start {
                do { block = (start, try file.bytes(at: start, count: length)) } catch { throw ImageError(.file(error), path: path) }
            }
            if let block { return Array(block.bytes[(offset - start)..<(offset - start + count)]) }
        }
        do { return try file.bytes(at: offset, count: count) } catch { throw ImageError(.file(error), path: path) }
    }

    public func copy(from offset: Int, count: Int, into region: IORegion, at regionOffset: Int) throws(ImageError) {
        let file = try openFile(offset, count)
        guard count > 0 else { return }
        // A segment inside the block read last (any segment of a small image read whole; a
        // resource table segment placed after the code like the section headers that block was
        // read for) is copied from it, not read again.
        if let block, offset >= block.offset, offset - block.offset <= block.bytes.count - count {
            let outcome = block.bytes.withUnsafeBytes { all in
                Result { () throws(MetalIOError) in
                    try region.write(bytes: UnsafeRawBufferPointer(rebasing: all[(offset - block.offset)..<(offset - block.offset + count)]), at: regionOffset)
                }
            }
            if case let .failure(error) = outcome { throw ImageError(.target(error), path: path) }
            return
        }
        do {
            try region.withUnsafeMutableBytes(at: regionOffset, count: count) { target in
                try file.read(into: target, at: offset)
            }
        } catch let error as FileError {
            throw ImageError(.file(error), path: path)
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
