// The Core ML engine: runs `format: coreml` artifacts with each of the four MLComputeUnits.
//
// This file owns everything Core ML: compiling a downloaded `.mlpackage`/`.mlmodel` once per
// sha256 (the compiled `.mlmodelc` is cached; compile time goes to the notes, not to `load_ms`),
// loading it with `MLModelConfiguration.computeUnits` set to `.cpuOnly`, `.cpuAndGPU`,
// `.cpuAndNeuralEngine` or `.all`, and the engine's three calls: `load`, `run` (float32 input
// converted to the model's declared input type, prediction, first output read back in logical
// order) and `describe` (the compute units, and per-op device placement from `MLComputePlan` on
// iOS 17.4+ / macOS 14.4+). It only exists where Core ML does: Linux builds of
// BenchCore compile it out.
#if canImport(CoreML)
import CoreML
import Foundation

public struct CoreMLEngine: InferenceEngine {
    public let runtimeName = "coreml"
    public var runtimeVersion: String {
        // Core ML ships with the OS and has no version of its own.
        let v = ProcessInfo.processInfo.operatingSystemVersion
        #if os(iOS)
        let os = "iOS"
        #else
        let os = "macOS"
        #endif
        return "\(os) \(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"
    }
    /// Where compiled models are kept, keyed by the artifact's sha256.
    public let compiledCache: URL

    public init(compiledCache: URL) {
        self.compiledCache = compiledCache
    }

    public func supports(_ artifact: Artifact) -> Bool { artifact.format == "coreml" }

    public func accelerators(for artifact: Artifact) -> [AcceleratorChoice] {
        Self.computeUnitChoices.map { AcceleratorChoice(accelerator: $0.accelerator, computeUnits: $0.name) }
    }

    /// Report names for the compute units: `runtime.compute_units` carries the MLComputeUnits
    /// case name, `runtime.accelerator` the unit the choice adds on top of the CPU.
    static let computeUnitChoices: [(name: String, accelerator: String, units: MLComputeUnits)] = [
        ("cpuOnly", "cpu", .cpuOnly),
        ("cpuAndGPU", "gpu", .cpuAndGPU),
        ("cpuAndNeuralEngine", "ane", .cpuAndNeuralEngine),
        ("all", "all", .all),
    ]

    public func load(_ url: URL, artifact: Artifact, accelerator: AcceleratorChoice) async throws -> any LoadedModel {
        guard let choice = Self.computeUnitChoices.first(where: { $0.name == accelerator.computeUnits }) else {
            throw EngineError("unknown Core ML compute units '\(accelerator.computeUnits ?? "nil")'")
        }
        var notes: [String: String] = [:]
        let compiled = try await compiledModel(for: url, sha256: artifact.sha256 ?? "unhashed-\(artifact.id)", notes: &notes)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = choice.units
        let model = try await MLModel.load(contentsOf: compiled, configuration: configuration)
        return try CoreMLLoadedModel(model: model, compiledURL: compiled, configuration: configuration, computeUnits: choice.name,
                                     artifact: artifact, notes: notes)
    }

    /// Compiles once per artifact hash; later loads (other compute units, later launches) reuse it.
    func compiledModel(for source: URL, sha256: String, notes: inout [String: String]) async throws -> URL {
        if source.pathExtension == "mlmodelc" { return source }
        let target = compiledCache.appendingPathComponent("\(sha256).mlmodelc", isDirectory: true)
        if FileManager.default.fileExists(atPath: target.path) {
            notes["compile"] = "cached"
            return target
        }
        let clock = ContinuousClock()
        let start = clock.now
        let temporary = try await MLModel.compileModel(at: source)
        notes["compile_ms"] = String(format: "%.1f", toMilliseconds(clock.now - start))
        try FileManager.default.createDirectory(at: compiledCache, withIntermediateDirectories: true)
        // compileModel writes to a temporary directory the system may purge: keep a copy.
        _ = try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: temporary, to: target)
        return target
    }
}

final class CoreMLLoadedModel: LoadedModel {
    let model: MLModel
    let compiledURL: URL
    let configuration: MLModelConfiguration
    let computeUnits: String
    let inputName: String
    let outputName: String
    let inputShape: [Int]
    let inputType: MLMultiArrayDataType
    let notes: [String: String]

    init(model: MLModel, compiledURL: URL, configuration: MLModelConfiguration, computeUnits: String, artifact: Artifact,
         notes: [String: String]) throws {
        self.model = model
        self.compiledURL = compiledURL
        self.configuration = configuration
        self.computeUnits = computeUnits
        let description = model.modelDescription
        // Prefer the names the manifest gives; fall back to the model's own first input/output.
        let inputName = artifact.inputs.first.map(\.name).flatMap { description.inputDescriptionsByName[$0] != nil ? $0 : nil }
            ?? description.inputDescriptionsByName.keys.sorted().first
        let outputName = artifact.outputs.first.map(\.name).flatMap { description.outputDescriptionsByName[$0] != nil ? $0 : nil }
            ?? description.outputDescriptionsByName.keys.sorted().first
        guard let inputName, let outputName else { throw EngineError("Core ML model declares no inputs or no outputs") }
        guard let constraint = description.inputDescriptionsByName[inputName]?.multiArrayConstraint else {
            throw EngineError("input '\(inputName)' is not a multi-array (image inputs are not supported by this runner)")
        }
        self.inputName = inputName
        self.outputName = outputName
        self.inputType = constraint.dataType
        let declared = constraint.shape.map(\.intValue)
        self.inputShape = artifact.inputShape.isEmpty ? declared : artifact.inputShape
        self.notes = notes.merging(["coreml_input": inputName, "coreml_output": outputName]) { a, _ in a }
    }

    func run(_ input: [Float]) throws -> [Float] {
        var array = MLMultiArray(MLShapedArray<Float>(scalars: input, shape: inputShape))
        if inputType != .float32 {
            // fp16 (or double) inputs: let Core ML convert; avoids Float16, absent on Intel Macs.
            array = MLMultiArray(concatenating: [array], axis: 0, dataType: inputType)
        }
        let features = try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
        let result = try model.prediction(from: features)
        guard let output = result.featureValue(for: outputName)?.multiArrayValue else {
            throw EngineError("no multi-array output '\(outputName)'")
        }
        // The shaped-array view reads in logical order whatever the strides (ANE pads rows).
        return MLShapedArray<Float>(converting: output).scalars
    }

    func describe() async -> RuntimeInfo {
        var notes = self.notes
        var placement: [String: Int]?
        if #available(iOS 17.4, macOS 14.4, *) {
            do {
                let plan = try await MLComputePlan.load(contentsOf: compiledURL, configuration: configuration)
                placement = Self.deviceCounts(plan)
                if placement == nil { notes["placement"] = "unknown: MLComputePlan lists no operations for this model type" }
            } catch {
                notes["placement"] = "unknown: MLComputePlan failed: \(error)"
            }
        } else {
            notes["placement"] = "unknown: MLComputePlan needs iOS 17.4+ / macOS 14.4+"
        }
        // Core ML has no delegate and no thread setting; the compute units are what it was asked for.
        return RuntimeInfo(computeUnits: computeUnits, placement: placement, notes: notes)
    }

    /// Operations per preferred compute device; ops without a device (constants) are not counted.
    @available(iOS 17.4, macOS 14.4, *)
    static func deviceCounts(_ plan: MLComputePlan) -> [String: Int]? {
        var counts: [String: Int] = [:]
        func count(_ device: MLComputeDevice?) {
            guard let device else { return }
            let key: String
            switch device {
            case .cpu: key = "cpu"
            case .gpu: key = "gpu"
            case .neuralEngine: key = "ane"
            @unknown default: key = "other"
            }
            counts[key, default: 0] += 1
        }
        func visit(_ block: MLModelStructure.Program.Block) {
            for operation in block.operations {
                count(plan.deviceUsage(for: operation)?.preferred)
                operation.blocks.forEach(visit)
            }
        }
        switch plan.modelStructure {
        case .program(let program):
            for function in program.functions.values { visit(function.block) }
        case .neuralNetwork(let network):
            for layer in network.layers { count(plan.deviceUsage(for: layer)?.preferred) }
        default:
            return nil
        }
        return counts.isEmpty ? nil : counts
    }
}
#endif
