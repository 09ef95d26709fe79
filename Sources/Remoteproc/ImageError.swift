import MetalIO

/// Why a firmware image was refused or could not be loaded. Nothing is written outside the
/// registered memories whatever the image contains.
public struct ImageError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// The file does not start with the ELF magic.
        case notELF
        /// EI_CLASS is neither ELFCLASS32 nor ELFCLASS64.
        case unsupportedClass(UInt8)
        /// EI_DATA is not little-endian.
        case unsupportedByteOrder(UInt8)
        /// e_type is not ET_EXEC.
        case unsupportedType(UInt16)
        /// A header, table or section lies (partly) past the end of the file.
        case truncated(what: String, needed: Int, fileSize: Int)
        /// A field has an impossible value (a count or size no image has).
        case invalidField(field: String, value: UInt64, reason: String)
        /// Segment `index`'s file bytes lie past the end of the file.
        case segmentBeyondFile(index: Int, offset: UInt64, size: UInt64, fileSize: Int)
        /// p_memsz is below p_filesz.
        case memorySizeBelowFileSize(index: Int, fileSize: UInt64, memorySize: UInt64)
        /// Segment `index` lies outside every memory of the remote.
        case segmentUnmapped(index: Int, address: UInt64, size: UInt64)
        /// Two loadable segments overlap in the remote's memory.
        case overlappingSegments(first: Int, second: Int)
        /// libelf refused the image.
        case libelf(operation: String, message: String)
        /// The image store failed.
        case store(operation: String, message: String)
        /// The image file could not be opened or read (missing, not a regular file, shrank).
        case file(FileError)
        /// Writing into target memory failed.
        case target(MetalIOError)
    }

    public var kind: Kind
    /// The image's path in its store.
    public var path: String

    public init(_ kind: Kind, path: String = "") {
        self.kind = kind
        self.path = path
    }

    public var description: String {
        let what: String
        switch kind {
        case .notELF: what = "not an ELF file (bad magic)"
        case let .unsupportedClass(c): what = "unsupported ELF class \(c) (expected 1 = ELF32 or 2 = ELF64)"
        case let .unsupportedByteOrder(d): what = "unsupported byte order \(d) (only little-endian, EI_DATA = 1, is supported)"
        case let .unsupportedType(t): what = "ELF type \(t) is not an executable (ET_EXEC = 2)"
        case let .truncated(w, needed, size): what = "truncated: \(w) needs \(needed) bytes, the file has \(size)"
        case let .invalidField(field, value, reason): what = "\(field) = \(value): \(reason)"
        case let .segmentBeyondFile(i, off, size, fileSize):
            what = "segment \(i) (offset \(off), \(size) bytes) runs past the end of the \(fileSize)-byte file"
        case let .memorySizeBelowFileSize(i, f, m): what = "segment \(i) has p_memsz \(m) below p_filesz \(f)"
        case let .segmentUnmapped(i, a, s): what = "segment \(i) at \(hex(a)) (\(s) bytes) lies outside every memory of the remote"
        case let .overlappingSegments(a, b): what = "segments \(a) and \(b) overlap in the remote's memory"
        case let .libelf(op, message): what = "libelf \(op): \(message)"
        case let .store(op, message): what = "image store \(op): \(message)"
        case let .file(error): what = error.reason
        case let .target(e): what = e.description
        }
        return path.isEmpty ? what : "\(path): \(what)"
    }
}
