// Unpacking of directory artifacts shipped as one uncompressed ZIP file.
//
// A Core ML `.mlpackage` is a directory, but the bundle protocol moves single files with one
// sha256 each, so the exporter ships it as `NAME.mlpackage.zip` written with ZIP_STORED (no
// compression: weights barely compress, and iOS has no public unzip API). This file owns reading
// such an archive through its central directory and writing its members under a target folder,
// refusing compressed members, ZIP64 and any path that would leave the folder.
import Foundation

public enum StoredZip {
    public struct ZipError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Extracts every member of `archive` under `directory`; returns the relative member paths.
    @discardableResult
    public static func extract(_ archive: Data, to directory: URL) throws -> [String] {
        let bytes = [UInt8](archive)
        func u16(_ at: Int) throws -> Int {
            guard at >= 0, at + 2 <= bytes.count else { throw ZipError("truncated archive") }
            return Int(bytes[at]) | Int(bytes[at + 1]) << 8
        }
        func u32(_ at: Int) throws -> Int {
            guard at >= 0, at + 4 <= bytes.count else { throw ZipError("truncated archive") }
            return Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
        }
        // The end-of-central-directory record is the last 22 bytes plus an optional comment.
        var eocd = -1
        var i = bytes.count - 22
        while i >= max(0, bytes.count - 22 - 65_535) {
            if try u32(i) == 0x0605_4b50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw ZipError("not a ZIP archive (no end of central directory)") }
        let count = try u16(eocd + 10)
        var offset = try u32(eocd + 16)
        guard count != 0xFFFF, offset != 0xFFFF_FFFF else { throw ZipError("ZIP64 archives are not supported") }
        var names: [String] = []
        for _ in 0..<count {
            guard try u32(offset) == 0x0201_4b50 else { throw ZipError("corrupt central directory at byte \(offset)") }
            let method = try u16(offset + 10)
            let compressedSize = try u32(offset + 20)
            let size = try u32(offset + 24)
            let nameLength = try u16(offset + 28)
            let extraLength = try u16(offset + 30)
            let commentLength = try u16(offset + 32)
            let localOffset = try u32(offset + 42)
            guard offset + 46 + nameLength <= bytes.count else { throw ZipError("truncated archive") }
            let name = String(decoding: bytes[(offset + 46)..<(offset + 46 + nameLength)], as: UTF8.self)
            offset += 46 + nameLength + extraLength + commentLength

            let parts = name.split(separator: "/")
            guard !name.hasPrefix("/"), !parts.contains(where: { $0 == ".." }), !name.contains("\\") else {
                throw ZipError("member '\(name)' would be written outside the target folder")
            }
            let target = directory.appendingPathComponent(name)
            if name.hasSuffix("/") {
                try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
                continue
            }
            guard method == 0 else {
                throw ZipError("member '\(name)' is compressed (method \(method)); write the archive with ZIP_STORED")
            }
            guard compressedSize == size, size != 0xFFFF_FFFF else { throw ZipError("member '\(name)' has inconsistent sizes") }
            guard try u32(localOffset) == 0x0403_4b50 else { throw ZipError("corrupt local header for '\(name)'") }
            let start = localOffset + 30 + (try u16(localOffset + 26)) + (try u16(localOffset + 28))
            guard start + size <= bytes.count else { throw ZipError("truncated member '\(name)'") }
            try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes[start..<(start + size)]).write(to: target, options: .atomic)
            names.append(name)
        }
        return names
    }
}
