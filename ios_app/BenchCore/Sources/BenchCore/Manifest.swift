// The model bundle manifest as the app reads it.
//
// This file owns decoding `manifest.json` (written by `freenet export`, served by the aggregator
// at /api/v1/bundles/{bundle}/manifest.json) into the few fields a runner needs: which artifact
// files exist with which sha256, their input/output tensors, and the raw float32 reference input
// and output used for the parity check. Unknown fields are ignored on purpose: the exporter adds
// provenance and tool versions the phone does not need.
import Foundation

public struct BundleManifest: Decodable, Sendable, Equatable {
    public var schemaVersion: String?
    public var bundleID: String
    public var artifacts: [Artifact]

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", bundleID = "bundle_id", artifacts
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // schema_version may be a string or a number depending on the exporter version.
        if let s = try? c.decodeIfPresent(String.self, forKey: .schemaVersion) {
            schemaVersion = s
        } else if let n = try? c.decodeIfPresent(Int.self, forKey: .schemaVersion) {
            schemaVersion = String(n)
        }
        bundleID = try c.decode(String.self, forKey: .bundleID)
        artifacts = try c.decode([Artifact].self, forKey: .artifacts)
    }

    public static func decode(_ data: Data) throws -> BundleManifest {
        do {
            return try JSONDecoder().decode(BundleManifest.self, from: data)
        } catch let error as DecodingError {
            throw ManifestError.invalid(describe(error))
        }
    }
}

public struct Artifact: Decodable, Sendable, Equatable {
    public var id: String
    public var model: String
    /// `model_family` (`freenet`, `mobilenet`, ...): the report's `model.family`.
    public var modelFamily: String?
    public var format: String
    public var target: String?
    public var precision: String
    /// Export outcome: only "ok" artifacts have a file to run ("failed"/"skipped" carry `error`).
    public var status: String?
    public var error: String?
    /// Path of the artifact file relative to the bundle root. A Core ML `.mlpackage` is a
    /// directory, so it travels as `NAME.mlpackage.zip` (stored, uncompressed), one file with
    /// one sha256.
    public var file: String?
    public var sha256: String?
    public var sizeBytes: Int?
    public var inputs: [TensorSpec]
    public var outputs: [TensorSpec]
    public var reference: Reference?
    public var macs: Int?
    public var params: Int?

    enum CodingKeys: String, CodingKey {
        case id, model, modelFamily = "model_family", format, target, precision, status, error, file, sha256, sizeBytes = "size_bytes"
        case inputs, outputs, reference, macs, params
    }

    public init(id: String, model: String, format: String, target: String?, precision: String, status: String? = "ok",
                error: String? = nil, file: String?, sha256: String?, sizeBytes: Int? = nil, inputs: [TensorSpec],
                outputs: [TensorSpec], reference: Reference?, macs: Int? = nil, params: Int? = nil, modelFamily: String? = nil) {
        self.id = id
        self.modelFamily = modelFamily
        self.model = model
        self.format = format
        self.target = target
        self.precision = precision
        self.status = status
        self.error = error
        self.file = file
        self.sha256 = sha256
        self.sizeBytes = sizeBytes
        self.inputs = inputs
        self.outputs = outputs
        self.reference = reference
        self.macs = macs
        self.params = params
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        model = try c.decode(String.self, forKey: .model)
        modelFamily = try c.decodeIfPresent(String.self, forKey: .modelFamily)
        format = try c.decode(String.self, forKey: .format)
        target = try c.decodeIfPresent(String.self, forKey: .target)
        precision = try c.decode(String.self, forKey: .precision)
        status = try c.decodeIfPresent(String.self, forKey: .status)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        file = try c.decodeIfPresent(String.self, forKey: .file)
        sha256 = try c.decodeIfPresent(String.self, forKey: .sha256)
        sizeBytes = try c.decodeIfPresent(Int.self, forKey: .sizeBytes)
        inputs = try c.decodeIfPresent([TensorSpec].self, forKey: .inputs) ?? []
        outputs = try c.decodeIfPresent([TensorSpec].self, forKey: .outputs) ?? []
        reference = try c.decodeIfPresent(Reference.self, forKey: .reference)
        macs = try c.decodeIfPresent(Int.self, forKey: .macs)
        params = try c.decodeIfPresent(Int.self, forKey: .params)
    }

    /// Why this artifact cannot be run at all (failed export, no file), or nil when it can.
    public var unavailableReason: String? {
        if let status, status != "ok" { return "export \(status)" + (error.map { ": \($0)" } ?? "") }
        if file == nil || sha256 == nil { return "manifest lists no file/sha256 for it" }
        if inputs.isEmpty { return "manifest lists no inputs for it" }
        return nil
    }

    /// Shape of the first input: what the report calls `model.input_shape`.
    public var inputShape: [Int] { inputs.first?.shape ?? [] }

    public var inputElementCount: Int { inputShape.reduce(1, *) }
}

public struct TensorSpec: Decodable, Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var layout: String?
    public var dtype: String?
    public init(name: String, shape: [Int], layout: String? = nil, dtype: String? = "float32") {
        self.name = name
        self.shape = shape
        self.layout = layout
        self.dtype = dtype
    }
}

public struct Reference: Decodable, Sendable, Equatable {
    public var inputFile: String
    public var outputFile: String
    public var dtype: String
    public var inputSHA256: String?
    public var outputSHA256: String?

    enum CodingKeys: String, CodingKey {
        case inputFile = "input_file", outputFile = "output_file", dtype
        case inputSHA256 = "input_sha256", outputSHA256 = "output_sha256"
    }

    public init(inputFile: String, outputFile: String, dtype: String = "float32", inputSHA256: String?, outputSHA256: String?) {
        self.inputFile = inputFile
        self.outputFile = outputFile
        self.dtype = dtype
        self.inputSHA256 = inputSHA256
        self.outputSHA256 = outputSHA256
    }
}

public enum ManifestError: Error, CustomStringConvertible {
    case invalid(String)
    case badReference(String)

    public var description: String {
        switch self {
        case .invalid(let why): return "bundle manifest is not valid: \(why)"
        case .badReference(let why): return "reference data unusable: \(why)"
        }
    }
}

/// Raw little-endian float32 as the bundle stores reference tensors.
public func decodeFloat32LE(_ data: Data) throws -> [Float] {
    guard data.count % 4 == 0 else {
        throw ManifestError.badReference("\(data.count) bytes is not a whole number of float32 values")
    }
    return data.withUnsafeBytes { raw in
        (0..<(data.count / 4)).map { i in Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
    }
}

public func encodeFloat32LE(_ values: [Float]) -> Data {
    var data = Data(capacity: values.count * 4)
    for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    return data
}

func describe(_ error: DecodingError) -> String {
    func path(_ ctx: DecodingError.Context) -> String {
        ctx.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case .keyNotFound(let key, let ctx): return "missing field '\(key.stringValue)' at '\(path(ctx))'"
    case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx), .dataCorrupted(let ctx):
        return "\(ctx.debugDescription) at '\(path(ctx))'"
    @unknown default: return String(describing: error)
    }
}
