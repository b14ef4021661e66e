// The Core ML engine: runs `format: coreml` artifacts with each of the four MLComputeUnits.
//
// This file owns everything Core ML: compiling a downloaded `.mlpackage`/`.mlmodel` once per
// sha256 (the compiled `.mlmodelc` is cached; compile time goes to the notes, not to `load_ms`),
// loading it with `MLModelConfiguration.computeUnits` set to `.cpuOnly`, `.cpuAndGPU`,
// `.cpuAndNeuralEngine` or `.all`, converting float32 inputs to the model's declared input type,
// reading the first output back in logical order, and reporting per-op device placement from
// `MLComputePlan` on iOS 17.4+ / macOS 14.4+. It only exists where Core ML does: Linux builds of
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
        guard let units = Self.computeUnitChoices.first(where: { $0.name == accelerator.computeUnits })?.units else {
            throw EngineError("unknown Core ML compute units '\(accelerator.computeUnits ?? "nil")'")
        }
        var notes: [String: String] = [:]
        let compiled = try await compiledModel(for: url, sha256: artifact.sha256 ?? "unhashed-\(artifact.id)", notes: &notes)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = units
        let model = try await MLModel.load(contentsOf: compiled, configuration: configuration)
        return try CoreMLLoadedModel(model: model, compiledURL: compiled, configuration: configuration, artifact: artifact, notes: notes)
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
    let inputName: String
    let outputName: String
    let inputShape: [Int]
    let inputType: MLMultiArrayDataType
    var provider: MLFeatureProvider?
    var lastOutput: MLFeatureProvider?
    let notes: [String: String]

    init(model: MLModel, compiledURL: URL, configuration: MLModelConfiguration, artifact: Artifact, notes: [String: String]) throws {
        self.model = model
        self.compiledURL = compiledURL
        self.configuration = configuration
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

    func setInput(_ values: [Float]) throws {
        let float32 = MLMultiArray(MLShapedArray<Float>(scalars: values, shape: inputShape))
        let array: MLMultiArray
        switch inputType {
        case .float32:
            array = float32
        default:
            // fp16 (or double) inputs: let Core ML convert; avoids Float16, absent on Intel Macs.
            array = MLMultiArray(concatenating: [float32], axis: 0, dataType: inputType)
        }
        provider = try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
    }

    func run() throws {
        guard let provider else { throw EngineError("setInput was not called") }
        lastOutput = try model.prediction(from: provider)
    }

    func output() throws -> [Float] {
        guard let array = lastOutput?.featureValue(for: outputName)?.multiArrayValue else {
            throw EngineError("no multi-array output '\(outputName)'")
        }
        // The shaped-array view reads in logical order whatever the strides (ANE pads rows).
        return MLShapedArray<Float>(converting: array).scalars
    }

    func placement() async -> [String: Int]? {
        guard #available(iOS 17.4, macOS 14.4, *) else { return nil }
        guard let plan = try? await MLComputePlan.load(contentsOf: compiledURL, configuration: configuration) else { return nil }
        return Self.deviceCounts(plan)
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
