// The benchmark report (schema version 1) as Codable Swift types.
//
// This file owns the wire format of one report: field names, which fields are required, which are
// required-but-nullable (`timing.load_ms`, `timing.first_inference_ms` are sent as explicit
// `null`), the ISO 8601 timestamps, and a client-side check of the rules the server enforces
// (status "ok" needs raw samples, latencies finite and > 0, an error needs its text). The source
// of truth is `device_bench/schema.py` and the generated `device_bench/schema/report.schema.json`;
// the Python contract test validates a report produced by this code against that JSON Schema.
import Foundation

public let reportSchemaVersion = "1"

public struct BenchReport: Codable, Sendable, Equatable {
    public var schemaVersion: String = reportSchemaVersion
    /// Lowercase UUID generated once per run: the server's idempotency key.
    public var runID: String
    public var createdAt: Date
    public var startedAt: Date
    public var finishedAt: Date
    public var client: Client
    public var device: Device
    public var runtime: Runtime
    public var model: Model
    public var timing: Timing
    public var memory: Memory?
    /// Operations per compute unit (`cpu`, `gpu`, `ane`), from the runtime when it tells.
    public var placement: [String: Int]?
    public var thermal: Thermal
    public var parity: Parity?
    public var status: Status
    public var error: String?
    public var notes: [String: String]?

    /// `parityFailed`: measured (samples kept) but the output misses the reference beyond the
    /// tolerance; never a speed result, and never `ok`.
    public enum Status: String, Codable, Sendable { case ok, error, parityFailed = "parity_failed" }

    public init(
        runID: String = UUID().uuidString.lowercased(), createdAt: Date, startedAt: Date,
        finishedAt: Date, client: Client, device: Device, runtime: Runtime, model: Model,
        timing: Timing, memory: Memory? = nil, placement: [String: Int]? = nil, thermal: Thermal,
        parity: Parity? = nil, status: Status, error: String? = nil, notes: [String: String]? = nil
    ) {
        self.runID = runID
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.client = client
        self.device = device
        self.runtime = runtime
        self.model = model
        self.timing = timing
        self.memory = memory
        self.placement = placement
        self.thermal = thermal
        self.parity = parity
        self.status = status
        self.error = error
        self.notes = notes
    }

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", runID = "run_id", createdAt = "created_at"
        case startedAt = "started_at", finishedAt = "finished_at", client, device, runtime, model
        case timing, memory, placement, thermal, parity, status, error, notes
    }

    public struct Client: Codable, Sendable, Equatable {
        public var app: String
        public var platform: String
        public var appVersion: String
        public init(app: String, platform: String = "ios", appVersion: String) {
            self.app = app
            self.platform = platform
            self.appVersion = appVersion
        }
        enum CodingKeys: String, CodingKey { case app, platform, appVersion = "app_version" }
    }

    public struct Device: Codable, Sendable, Equatable {
        public var manufacturer: String
        public var model: String
        public var soc: String
        public var os: String
        public var osVersion: String
        public var memoryBytes: Int?
        public init(manufacturer: String, model: String, soc: String, os: String, osVersion: String, memoryBytes: Int?) {
            self.manufacturer = manufacturer
            self.model = model
            self.soc = soc
            self.os = os
            self.osVersion = osVersion
            self.memoryBytes = memoryBytes
        }
        enum CodingKeys: String, CodingKey {
            case manufacturer, model, soc, os, osVersion = "os_version", memoryBytes = "memory_bytes"
        }
    }

    public struct Runtime: Codable, Sendable, Equatable {
        public var name: String
        public var version: String
        public var accelerator: String
        public var delegate: String?
        public var computeUnits: String?
        public var threads: Int?
        /// True on the simulator or a stand-in engine: proves the path runs, never a speed result.
        public var emulated: Bool
        public init(name: String, version: String, accelerator: String, delegate: String? = nil,
                    computeUnits: String? = nil, threads: Int? = nil, emulated: Bool) {
            self.name = name
            self.version = version
            self.accelerator = accelerator
            self.delegate = delegate
            self.computeUnits = computeUnits
            self.threads = threads
            self.emulated = emulated
        }
        enum CodingKeys: String, CodingKey {
            case name, version, accelerator, delegate, computeUnits = "compute_units", threads, emulated
        }
    }

    public struct Model: Codable, Sendable, Equatable {
        public var name: String
        /// The manifest artifact's `model_family` (`freenet`, `mobilenet`, ...), when it has one.
        public var family: String?
        public var artifactID: String
        public var format: String
        public var precision: String
        public var sha256: String
        public var inputShape: [Int]
        public var bundle: String?
        public var macs: Int?
        public var params: Int?
        public init(name: String, artifactID: String, format: String, precision: String, sha256: String,
                    inputShape: [Int], bundle: String?, macs: Int? = nil, params: Int? = nil, family: String? = nil) {
            self.name = name
            self.family = family
            self.artifactID = artifactID
            self.format = format
            self.precision = precision
            self.sha256 = sha256
            self.inputShape = inputShape
            self.bundle = bundle
            self.macs = macs
            self.params = params
        }
        enum CodingKeys: String, CodingKey {
            case name, family, artifactID = "artifact_id", format, precision, sha256
            case inputShape = "input_shape", bundle, macs, params
        }
    }

    public struct Timing: Codable, Sendable, Equatable {
        public var loadMs: Double?
        public var firstInferenceMs: Double?
        public var warmupRuns: Int
        /// Every timed run, in order: statistics are computed by the aggregator, never here.
        public var samplesMs: [Double]
        public var cooldownMs: Double?
        public init(loadMs: Double?, firstInferenceMs: Double?, warmupRuns: Int, samplesMs: [Double], cooldownMs: Double? = nil) {
            self.loadMs = loadMs
            self.firstInferenceMs = firstInferenceMs
            self.warmupRuns = warmupRuns
            self.samplesMs = samplesMs
            self.cooldownMs = cooldownMs
        }
        enum CodingKeys: String, CodingKey {
            case loadMs = "load_ms", firstInferenceMs = "first_inference_ms", warmupRuns = "warmup_runs"
            case samplesMs = "samples_ms", cooldownMs = "cooldown_ms"
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            // Required but nullable in the schema: an unknown load time is `null`, never absent.
            try c.encode(loadMs, forKey: .loadMs)
            try c.encode(firstInferenceMs, forKey: .firstInferenceMs)
            try c.encode(warmupRuns, forKey: .warmupRuns)
            try c.encode(samplesMs, forKey: .samplesMs)
            try c.encodeIfPresent(cooldownMs, forKey: .cooldownMs)
        }
    }

    public struct Memory: Codable, Sendable, Equatable {
        public var peakBytes: Int?
        public init(peakBytes: Int?) { self.peakBytes = peakBytes }
        enum CodingKeys: String, CodingKey { case peakBytes = "peak_bytes" }
    }

    public struct Thermal: Codable, Sendable, Equatable {
        public var before: ThermalReading
        public var after: ThermalReading
        public init(before: ThermalReading, after: ThermalReading) {
            self.before = before
            self.after = after
        }
    }

    /// The output against the bundle's reference (docs/protocol.md "Parity"):
    /// `rel_diff = max|out - ref| / max|ref|`, judged against `tolerance`; `passed` is nil where
    /// no bound applies (int8, or a reference too small for an fp16 bound).
    public struct Parity: Codable, Sendable, Equatable {
        public var maxAbsDiff: Double?
        public var referenceChecked: Bool
        public var relDiff: Double?
        public var tolerance: Double?
        public var passed: Bool?
        public init(maxAbsDiff: Double?, referenceChecked: Bool, relDiff: Double? = nil, tolerance: Double? = nil, passed: Bool? = nil) {
            self.maxAbsDiff = maxAbsDiff
            self.referenceChecked = referenceChecked
            self.relDiff = relDiff
            self.tolerance = tolerance
            self.passed = passed
        }
        enum CodingKeys: String, CodingKey {
            case maxAbsDiff = "max_abs_diff", referenceChecked = "reference_checked", relDiff = "rel_diff", tolerance, passed
        }

        /// fp32 on a path that computes in fp32 (`device_bench.schema.FP32_CPU_TOLERANCE`).
        public static let fp32CPUTolerance = 1e-3
        /// fp16 models, and fp32 models on paths that may compute in fp16 (GPU, ANE, Core ML `all`).
        public static let fp16Tolerance = 5e-2
        /// fp16's smallest normal number (`export.manifest.FP16_MIN_NORMAL`).
        public static let fp16MinNormal = 6.1e-5
        public static let cpuAccelerators: Set<String> = ["cpu", "xnnpack", "wasm", "portable"]

        /// The bound for a precision on an accelerator (`device_bench.schema.parity_tolerance`).
        public static func tolerance(precision: String, accelerator: String) -> Double? {
            if precision == "int8" { return nil }
            if precision == "fp32" && cpuAccelerators.contains(accelerator) { return fp32CPUTolerance }
            return fp16Tolerance
        }

        /// Judges one output (`device_bench.schema.judge_parity`); nil when the output is unusable
        /// (wrong length, NaN or infinity), with the reason in `why`.
        public static func judge(output: [Float], reference: [Float], precision: String, accelerator: String,
                                 why: inout String?) -> Parity? {
            guard output.count == reference.count else {
                why = "output has \(output.count) values, reference output has \(reference.count)"
                return nil
            }
            var maxDiff = 0.0, maxRef = 0.0
            for (a, b) in zip(output, reference) {
                let d = abs(Double(a) - Double(b))
                guard d.isFinite else {
                    why = "output contains NaN or infinity"
                    return nil
                }
                maxDiff = max(maxDiff, d)
                maxRef = max(maxRef, abs(Double(b)))
            }
            let rel = maxRef > 0 ? maxDiff / maxRef : maxDiff
            var tol = tolerance(precision: precision, accelerator: accelerator)
            if let t = tol, t >= fp16Tolerance, maxRef < fp16MinNormal { tol = nil }  // fp16 cannot resolve it
            return Parity(maxAbsDiff: maxDiff, referenceChecked: true, relDiff: rel, tolerance: tol, passed: tol.map { rel <= $0 })
        }

        /// The report's `error` text for a failing verdict.
        public var failure: String {
            String(format: "output differs from the bundle's reference: rel_diff %.3g > tolerance %.0e; the samples are kept but are not a speed result",
                   relDiff ?? .nan, tolerance ?? .nan)
        }
    }
}

/// A thermal state name (`ProcessInfo.ThermalState` on iOS) or a temperature in degrees Celsius.
public enum ThermalReading: Codable, Sendable, Equatable {
    case state(ThermalState)
    case celsius(Double)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let value = try? c.decode(Double.self) {
            self = .celsius(value)
        } else {
            self = .state(try c.decode(ThermalState.self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .state(let s): try c.encode(s)
        case .celsius(let t): try c.encode(t)
        }
    }

    /// Hot enough that a measurement would be throttled; `.celsius` readings are never judged here.
    public func isAtLeast(_ threshold: ThermalState) -> Bool {
        if case .state(let s) = self { return s.severity >= threshold.severity }
        return false
    }
}

public enum ThermalState: String, Codable, Sendable, CaseIterable {
    case nominal, fair, serious, critical, unknown

    /// Order of heat; `unknown` ranks lowest so an unreadable sensor never blocks a run forever.
    var severity: Int {
        switch self {
        case .unknown: return -1
        case .nominal: return 0
        case .fair: return 1
        case .serious: return 2
        case .critical: return 3
        }
    }
}

public struct ReportValidationError: Error, CustomStringConvertible {
    public let problems: [String]
    public var description: String { "invalid report: " + problems.joined(separator: "; ") }
}

extension BenchReport {
    /// The checks the server applies that a runner can get wrong; catches them before queueing,
    /// because a report the server rejects with 422 would otherwise sit in the queue.
    public func validate() throws {
        var problems: [String] = []
        let latencies = timing.samplesMs + [timing.loadMs, timing.firstInferenceMs, timing.cooldownMs].compactMap { $0 }
        if latencies.contains(where: { !$0.isFinite || $0 < 0 }) { problems.append("latencies must be finite and >= 0") }
        if timing.samplesMs.contains(where: { $0 <= 0 }) { problems.append("timing.samples_ms must be > 0") }
        for (name, value) in [("load_ms", timing.loadMs), ("first_inference_ms", timing.firstInferenceMs)] {
            if let value, value <= 0 { problems.append("timing.\(name) must be > 0 or null") }
        }
        switch status {
        case .ok where timing.samplesMs.isEmpty: problems.append("status ok needs at least one sample")
        case .error where (error ?? "").isEmpty: problems.append("status error needs an error text")
        case .ok where parity?.passed == false: problems.append("status ok with parity.passed false must be parity_failed")
        case .parityFailed where parity?.passed != false: problems.append("status parity_failed needs parity.passed false")
        default: break
        }
        if finishedAt < startedAt { problems.append("finished_at is earlier than started_at") }
        if model.sha256.count != 64 || !model.sha256.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
            problems.append("model.sha256 must be 64 lowercase hex digits")
        }
        if model.inputShape.isEmpty || model.inputShape.contains(where: { $0 < 1 }) {
            problems.append("model.input_shape must be a non-empty list of positive sizes")
        }
        if let d = parity?.maxAbsDiff, !d.isFinite { problems.append("parity.max_abs_diff must be finite") }
        if let p = parity, let rel = p.relDiff, let tol = p.tolerance, let passed = p.passed, passed != (rel <= tol) {
            problems.append("parity.passed contradicts rel_diff and tolerance")
        }
        if !problems.isEmpty { throw ReportValidationError(problems: problems) }
    }

    /// The encoder every report goes through: ISO 8601 UTC with milliseconds, stable key order.
    public static func makeEncoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an ISO 8601 date: \(text)"))
        }
        return decoder
    }

    public func jsonData(pretty: Bool = false) throws -> Data {
        try Self.makeEncoder(pretty: pretty).encode(self)
    }
}
