// The ExecuTorch engine: runs `format: executorch` artifacts (.pte) lowered for XNNPACK or Core ML.
//
// This file owns the ExecuTorch path of the app, through the runtime's Swift API (`Module`,
// `Tensor<Float>`) from the `executorch` Swift package (prebuilt xcframeworks, branch
// `swiftpm-<version>`, see project.yml). It compiles only when that package is linked, so the
// app still builds with Core ML alone. Which backend runs is fixed at export time (the artifact's
// `target`), so each artifact has exactly one accelerator here, and the delegate `describe` reports
// is the one that target was lowered for. ExecuTorch does not report op placement through its
// Swift API: `placement` stays unknown (nil).
#if canImport(ExecuTorch)
import BenchCore
import ExecuTorch
import Foundation

struct ExecuTorchEngine: InferenceEngine {
    let runtimeName = "executorch"
    /// The runtime has no version API; project.yml writes the package branch's version here.
    var runtimeVersion: String { Bundle.main.object(forInfoDictionaryKey: "FreeNetExecuTorchVersion") as? String ?? "unknown" }

    /// Export targets this build can run -> (report accelerator, delegate name).
    /// Vulkan .pte files are Android-only; MPS is linked only when its product is added.
    static let targets: [String: (accelerator: String, delegate: String)] = [
        "executorch-xnnpack": ("xnnpack", "XnnpackBackend"),
        "executorch-coreml": ("coreml", "CoreMLBackend"),
    ]

    func supports(_ artifact: Artifact) -> Bool {
        artifact.format == "executorch" && artifact.target.flatMap { Self.targets[$0] } != nil
    }

    func accelerators(for artifact: Artifact) -> [AcceleratorChoice] {
        guard let t = artifact.target.flatMap({ Self.targets[$0] }) else { return [] }
        return [AcceleratorChoice(accelerator: t.accelerator)]
    }

    func load(_ url: URL, artifact: Artifact, accelerator: AcceleratorChoice) async throws -> any LoadedModel {
        guard let target = artifact.target.flatMap({ Self.targets[$0] }) else {
            throw EngineError("ExecuTorch in this app does not run target '\(artifact.target ?? "-")'")
        }
        let module = Module(filePath: url.path)
        // Loads the program and plans the method (delegates initialise here), so it is `load_ms`.
        try module.load("forward")
        return ExecuTorchLoadedModel(module: module, shape: artifact.inputShape, delegate: target.delegate)
    }
}

final class ExecuTorchLoadedModel: LoadedModel {
    let module: Module
    let shape: [Int]
    let delegate: String

    init(module: Module, shape: [Int], delegate: String) {
        self.module = module
        self.shape = shape
        self.delegate = delegate
    }

    func run(_ input: [Float]) throws -> [Float] {
        let outputs: [Value] = try module.forward(Tensor<Float>(input, shape: shape))
        // `tensor()` is nil when the first output is not a float32 tensor.
        guard let output: Tensor<Float> = outputs.first?.tensor() else {
            throw EngineError("first output of 'forward' is not a float32 tensor (\(outputs.count) outputs)")
        }
        return output.scalars()
    }

    func describe() async -> RuntimeInfo {
        RuntimeInfo(delegate: delegate, notes: ["placement": "unknown: ExecuTorch's Swift API does not report op placement"])
    }
}
#endif
