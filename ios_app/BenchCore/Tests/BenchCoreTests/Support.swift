// Test doubles: a tiny engine that really computes, a scripted thermal probe, a canned HTTP server.
//
// `TinyLinearEngine` stands in for Core ML on Linux, where Core ML does not exist: its artifact is
// a float32 file of weights W[K, C] followed by a bias b[K], and it computes
// logits = W · mean_hw(x) + b for x of shape [1, C, H, W]. The bundle built by the Python test
// computes the reference output with numpy, so the parity check compares two implementations.
// Its reports say `emulated: true` and name the stand-in in `delegate` and `notes`.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import BenchCore

struct TinyLinearEngine: InferenceEngine {
    let runtimeName = "coreml"
    let runtimeVersion = "linux-reference (no Core ML on Linux)"
    var failLoad: String? = nil
    /// Makes `run` throw `message` from its `call`-th call on (1 = the first inference).
    var failRun: (message: String, call: Int)? = nil

    func supports(_ artifact: Artifact) -> Bool { artifact.format == "coreml" && artifact.target == "coreml-linux-reference" }

    func accelerators(for artifact: Artifact) -> [AcceleratorChoice] {
        [AcceleratorChoice(accelerator: "cpu", computeUnits: "cpuOnly")]
    }

    func load(_ url: URL, artifact: Artifact, accelerator: AcceleratorChoice) async throws -> any LoadedModel {
        if let failLoad { throw EngineError(failLoad) }
        let shape = artifact.inputShape
        guard shape.count == 4, let k = artifact.outputs.first?.shape.last else {
            throw EngineError("tiny linear model needs a [1, C, H, W] input and a [1, K] output")
        }
        let values = try decodeFloat32LE(Data(contentsOf: url))
        let c = shape[1]
        guard values.count == k * c + k else { throw EngineError("weights file has \(values.count) values, expected \(k * c + k)") }
        return TinyLinearModel(weights: Array(values[0..<(k * c)]), bias: Array(values[(k * c)...]), channels: c, pixels: shape[2] * shape[3],
                               computeUnits: accelerator.computeUnits, failRun: failRun)
    }
}

final class TinyLinearModel: LoadedModel {
    let weights: [Float], bias: [Float], channels: Int, pixels: Int
    let computeUnits: String?
    let failRun: (message: String, call: Int)?
    private(set) var runs = 0

    init(weights: [Float], bias: [Float], channels: Int, pixels: Int, computeUnits: String? = "cpuOnly",
         failRun: (message: String, call: Int)? = nil) {
        self.weights = weights
        self.bias = bias
        self.channels = channels
        self.pixels = pixels
        self.computeUnits = computeUnits
        self.failRun = failRun
    }

    func run(_ input: [Float]) throws -> [Float] {
        runs += 1
        if let failRun, runs >= failRun.call { throw EngineError(failRun.message) }
        guard input.count == channels * pixels else { throw EngineError("input has \(input.count) values") }
        var means = [Float](repeating: 0, count: channels)
        for ch in 0..<channels {
            var sum: Float = 0
            for p in 0..<pixels { sum += input[ch * pixels + p] }
            means[ch] = sum / Float(pixels)
        }
        return bias.indices.map { k in
            var acc = bias[k]
            for ch in 0..<channels { acc += weights[k * channels + ch] * means[ch] }
            return acc
        }
    }

    func describe() async -> RuntimeInfo {
        RuntimeInfo(delegate: "benchcore-tiny-linear (Linux test stand-in)", computeUnits: computeUnits, threads: 1, emulated: true,
                    placement: ["cpu": 2],  // mean + matmul, both on the CPU
                    notes: ["engine": "TinyLinearEngine: pure Swift stand-in for Core ML in the Linux tests; not a speed result"])
    }
}

/// Thermal readings served in order; the last one repeats.
final class ScriptedThermal: ThermalProbe, @unchecked Sendable {
    private let lock = NSLock()
    private var readings: [ThermalReading]
    private(set) var reads = 0

    init(_ readings: [ThermalReading]) { self.readings = readings }

    func read() -> ThermalReading {
        lock.lock()
        defer { lock.unlock() }
        reads += 1
        return readings.count > 1 ? readings.removeFirst() : readings[0]
    }
}

/// An in-memory aggregator: canned files, a switch to go "down", and a log of received reports.
final class StubServer: HTTPTransport, @unchecked Sendable {
    private let lock = NSLock()
    var files: [String: Data] = [:]          // path under /api/v1/bundles/ -> body
    var headerOverride: [String: String] = [:]  // path -> X-Content-SHA256 to send instead
    var down = false
    var postStatus: (Data) -> (Int, String) = { _ in (201, #"{"stored": true}"#) }
    /// Answer the batch endpoint with 404, like an aggregator from before it existed.
    var noBatchEndpoint = false
    private(set) var posted: [Data] = []
    private(set) var batchSizes: [Int] = []

    func send(_ request: URLRequest) async throws -> (Data, HTTPURLResponse) { try handle(request) }

    // Synchronous so the lock is never held across a suspension point.
    private func handle(_ request: URLRequest) throws -> (Data, HTTPURLResponse) {
        lock.lock()
        defer { lock.unlock() }
        let url = request.url!
        if down { throw URLError(.cannotConnectToHost) }
        func answer(_ status: Int, _ body: Data, _ headers: [String: String] = [:]) -> (Data, HTTPURLResponse) {
            (body, HTTPURLResponse(url: url, statusCode: status, httpVersion: "HTTP/1.1", headerFields: headers)!)
        }
        if request.httpMethod == "POST" && url.path == "/api/v1/reports/batch" {
            if noBatchEndpoint { return answer(404, Data(#"{"detail": "Not Found"}"#.utf8)) }
            guard request.value(forHTTPHeaderField: "Authorization") == "Bearer good-token" else {
                return answer(401, Data(#"{"detail": "unknown device token"}"#.utf8))
            }
            let object = try JSONSerialization.jsonObject(with: request.httpBody ?? Data()) as! [String: Any]
            let reports = object["reports"] as! [Any]
            batchSizes.append(reports.count)
            var results: [[String: Any]] = []
            for (index, report) in reports.enumerated() {
                let item = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
                let (status, text) = postStatus(item)
                // A whole-request failure (5xx, 413) answers the batch as a whole, as the server does.
                if status >= 500 || status == 413 { return answer(status, Data(text.utf8)) }
                var result: [String: Any] = ["index": index, "status": status]
                if status == 422 { result["detail"] = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["detail"] ?? text }
                if status < 300 { posted.append(item) }
                results.append(result)
            }
            return answer(200, try JSONSerialization.data(withJSONObject: ["results": results]))
        }
        if request.httpMethod == "POST" {
            let body = request.httpBody ?? Data()
            guard request.value(forHTTPHeaderField: "Authorization") == "Bearer good-token" else {
                return answer(401, Data(#"{"detail": "unknown device token"}"#.utf8))
            }
            let (status, text) = postStatus(body)
            if status < 300 { posted.append(body) }
            return answer(status, Data(text.utf8))
        }
        let prefix = "/api/v1/bundles/"
        let path = url.path
        if path == "/api/v1/bundles" {
            return answer(200, Data(#"{"bundles": ["b1"]}"#.utf8))
        }
        guard path.hasPrefix(prefix), let body = files[String(path.dropFirst(prefix.count))] else {
            return answer(404, Data(#"{"detail": "no such file"}"#.utf8))
        }
        let key = String(path.dropFirst(prefix.count))
        return answer(200, body, ["X-Content-SHA256": headerOverride[key] ?? Digest.sha256Hex(body)])
    }

    func setDown(_ value: Bool) { lock.lock(); down = value; lock.unlock() }
    var postedCount: Int { lock.lock(); defer { lock.unlock() }; return posted.count }
    var batches: [Int] { lock.lock(); defer { lock.unlock() }; return batchSizes }
    /// The posted reports as JSON objects (a batch item is re-encoded, so compare values, not bytes).
    var postedObjects: [NSDictionary] {
        lock.lock(); defer { lock.unlock() }
        return posted.compactMap { try? JSONSerialization.jsonObject(with: $0) as? NSDictionary }
    }
}

/// A bundle with one tiny linear artifact (C=3, 4x4 pixels, K=2), its reference data computed here.
struct TinyBundle {
    static let channels = 3, height = 4, width = 4, classes = 2

    /// `drift` scales the reference output, so that a drift of 1.5 makes the model miss it.
    static func make(bundle: String = "b1", corruptSHA: Bool = false, drift: Float = 1) -> (manifest: Data, files: [String: Data], reference: [Float]) {
        let weights: [Float] = (0..<(classes * channels + classes)).map { Float($0 % 5) * 0.25 - 0.5 }
        let input: [Float] = (0..<(channels * height * width)).map { Float(($0 * 7) % 11) / 11 - 0.5 }
        let model = TinyLinearModel(weights: Array(weights[0..<(classes * channels)]), bias: Array(weights[(classes * channels)...]),
                                    channels: channels, pixels: height * width)
        let output = try! model.run(input).map { $0 * drift }
        let wData = encodeFloat32LE(weights), inData = encodeFloat32LE(input), outData = encodeFloat32LE(output)
        let sha = corruptSHA ? String(repeating: "0", count: 64) : Digest.sha256Hex(wData)
        let manifest = """
        {"schema_version": "1", "bundle_id": "\(bundle)", "created_at": "2026-11-25T10:00:00Z", "tool": "test",
         "artifacts": [
          {"id": "tiny_linear-coreml-fp32", "model": "tiny_linear", "model_family": "tiny", "config_hash": "x",
           "format": "coreml", "target": "coreml-linux-reference", "precision": "fp32", "status": "ok",
           "file": "tiny/weights.bin", "sha256": "\(sha)", "size_bytes": \(wData.count),
           "inputs": [{"name": "x", "shape": [1, \(channels), \(height), \(width)], "dtype": "float32", "layout": "NCHW", "mean": null, "std": null}],
           "outputs": [{"name": "logits", "shape": [1, \(classes)], "dtype": "float32", "layout": "NC"}],
           "reference": {"input_file": "tiny/ref_in.bin", "output_file": "tiny/ref_out.bin", "dtype": "float32",
                         "input_sha256": "\(Digest.sha256Hex(inData))", "output_sha256": "\(Digest.sha256Hex(outData))", "seed": 0},
           "passes": [], "tool_versions": {"numpy": "2"}, "macs": 42, "params": 8},
          {"id": "tiny_linear-tflite-fp32", "model": "tiny_linear", "model_family": "tiny", "config_hash": "x",
           "format": "tflite", "target": "litert-cpu", "precision": "fp32", "status": "ok", "file": "tiny/m.tflite",
           "sha256": "\(String(repeating: "a", count: 64))", "inputs": [{"name": "x", "shape": [1, 4, 4, 3]}], "outputs": []},
          {"id": "broken-coreml-fp16", "model": "tiny_linear", "model_family": "tiny", "config_hash": "x",
           "format": "coreml", "target": "coreml-all", "precision": "fp16", "status": "failed", "error": "converter crashed",
           "file": null, "sha256": null}
         ]}
        """
        let files = [
            "\(bundle)/manifest.json": Data(manifest.utf8),
            "\(bundle)/files/tiny/weights.bin": wData,
            "\(bundle)/files/tiny/ref_in.bin": inData,
            "\(bundle)/files/tiny/ref_out.bin": outData,
        ]
        return (Data(manifest.utf8), files, output)
    }
}

func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("benchcore-\(UUID().uuidString)", isDirectory: true)
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

let testClient = BenchReport.Client(app: "FreeNetBench", platform: "ios", appVersion: "0.1.0 (test)")

func sampleReport(status: BenchReport.Status = .ok) -> BenchReport {
    let now = Date()
    return BenchReport(
        createdAt: now, startedAt: now.addingTimeInterval(-2), finishedAt: now, client: testClient,
        device: .init(manufacturer: "Apple", model: "iPhone15,2", soc: "A16 Bionic", os: "ios", osVersion: "17.4.1", memoryBytes: 6_000_000_000),
        runtime: .init(name: "coreml", version: "iOS 17.4.1", accelerator: "ane", computeUnits: "cpuAndNeuralEngine", emulated: false),
        model: .init(name: "tiny_linear", artifactID: "tiny", format: "coreml", precision: "fp32",
                     sha256: String(repeating: "ab", count: 32), inputShape: [1, 3, 4, 4], bundle: "b1"),
        timing: .init(loadMs: status == .ok ? 12.5 : nil, firstInferenceMs: nil, warmupRuns: 2, samplesMs: status == .ok ? [1.5, 1.25] : []),
        thermal: .init(before: .state(.nominal), after: .celsius(31.5)),
        status: status, error: status == .ok ? nil : "load failed: boom")
}
