// The interface between the runner and one inference runtime (Core ML, ExecuTorch, ...): the same
// three calls as the Android app's `Engine` (android_app/bench-core/.../Engine.java) — load, run,
// describe.
//
// An engine says which bundle artifacts it can run and on which accelerators (for Core ML: the
// four `MLComputeUnits`). `load` (timed as load_ms) hands back a loaded model; its `run` takes the
// float32 input and returns the first output, and the whole call is what the runner times, input
// copy and output read-back included, as on Android. `describe` says afterwards what the runtime
// used. Placement (ops per compute unit) is reported only when the runtime tells it; `nil` means
// unknown, never "all on CPU".
import Foundation

/// What the runner asks an engine for: one accelerator (and, for Core ML, the compute-units setting).
public struct AcceleratorChoice: Sendable, Hashable, CustomStringConvertible {
    /// Report's `runtime.accelerator`: `cpu`, `gpu`, `ane`, `all`, `xnnpack`, ...
    public var accelerator: String
    /// Core ML `MLComputeUnits` case name to load with; nil for runtimes without that setting.
    public var computeUnits: String?

    public init(accelerator: String, computeUnits: String? = nil) {
        self.accelerator = accelerator
        self.computeUnits = computeUnits
    }

    public var description: String { computeUnits.map { "\(accelerator) (\($0))" } ?? accelerator }
}

/// What a loaded model says the runtime used (`LoadedModel.describe`): the report's
/// `runtime.delegate`, `runtime.compute_units`, `runtime.threads`, `runtime.emulated`, its
/// `placement` and extra `notes`. Runtime name, version and accelerator come from the engine.
public struct RuntimeInfo: Sendable, Equatable {
    /// Delegate / backend in use (e.g. `XnnpackBackend`); nil when the runtime has no such notion.
    public var delegate: String?
    /// Core ML `MLComputeUnits` case name the model was loaded with.
    public var computeUnits: String?
    public var threads: Int?
    public var emulated: Bool
    /// Ops per compute unit as the runtime reported them, e.g. `["ane": 60, "cpu": 3]`; nil when it does not tell.
    public var placement: [String: Int]?
    /// Facts worth keeping (compile time, input/output names, why placement is unknown).
    public var notes: [String: String]

    public init(delegate: String? = nil, computeUnits: String? = nil, threads: Int? = nil, emulated: Bool = false,
                placement: [String: Int]? = nil, notes: [String: String] = [:]) {
        self.delegate = delegate
        self.computeUnits = computeUnits
        self.threads = threads
        self.emulated = emulated
        self.placement = placement
        self.notes = notes
    }
}

public protocol InferenceEngine: Sendable {
    /// Report's `runtime.name`: one of `coreml`, `executorch`, ...
    var runtimeName: String { get }
    var runtimeVersion: String { get }
    func supports(_ artifact: Artifact) -> Bool
    func accelerators(for artifact: Artifact) -> [AcceleratorChoice]
    /// Call 1. Loads (and compiles, where the runtime needs it) the artifact at `url` for
    /// `accelerator`. Only the time of this call is reported as `load_ms`.
    func load(_ url: URL, artifact: Artifact, accelerator: AcceleratorChoice) async throws -> any LoadedModel
}

public protocol LoadedModel: AnyObject {
    /// Call 2. One inference on `input` (float32, the first input's shape, row-major); returns the
    /// first output as float32 in logical (row-major) order. Blocks until the output is ready:
    /// the runner times the whole call.
    func run(_ input: [Float]) throws -> [Float]
    /// Call 3. What the runtime used. Called after the timed runs, and after a failed run, so it
    /// must not throw; anything it cannot tell stays nil.
    func describe() async -> RuntimeInfo
}

public struct EngineError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
