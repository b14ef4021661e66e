// The ExecuTorch engine: runs `format: executorch` artifacts (.pte) lowered for XNNPACK or Core ML.
//
// This file owns the ExecuTorch path of the app, through the runtime's Swift API (`Module`,
// `Tensor<Float>`) from the `executorch` Swift package (prebuilt xcframeworks, branch
// `swiftpm-<version>`, see project.yml). It compiles only when that package is linked, so the
// app still builds with Core ML alone. Which backend runs is fixed at export time (the artifact's
// `target`), so each artifact has exactly one accelerator here. ExecuTorch does not report op
// placement through its Swift API: `placement` stays unknown (nil).
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
        return [AcceleratorChoice(accelerator: t.accelerator, delegate: t.delegate)]
    }

    func load(_ url: URL, artifact: Artifact, accelerator: AcceleratorChoice) async throws -> any LoadedModel {
        let module = Module(filePath: url.path)
        // Loads the program and plans the method (delegates initialise here), so it is `load_ms`.
        try module.load("forward")
        return ExecuTorchLoadedModel(module: module, shape: artifact.inputShape)
    }
}

final class ExecuTorchLoadedModel: LoadedModel {
    let module: Module
    let shape: [Int]
    private var input: Tensor<Float>?
    private var outputs: [Value] = []

    init(module: Module, shape: [Int]) {
        self.module = module
        self.shape = shape
    }

    func setInput(_ values: [Float]) throws {
        input = Tensor<Float>(values, shape: shape)
    }

    func run() throws {
        guard let input else { throw EngineError("setInput was not called") }
        outputs = try module.forward(input)
    }

    func output() throws -> [Float] {
        // `tensor()` is nil when the first output is not a float32 tensor.
        guard let tensor: Tensor<Float> = outputs.first?.tensor() else {
            throw EngineError("first output of 'forward' is not a float32 tensor (\(outputs.count) outputs)")
        }
        return tensor.scalars()
    }
}
#endif
