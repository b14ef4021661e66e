// The interface between the runner and one inference runtime (Core ML, ExecuTorch, ...).
//
// An engine says which bundle artifacts it can run and on which accelerators (for Core ML: the
// four `MLComputeUnits`), loads one artifact for one accelerator, and hands back a loaded model
// whose `run()` is the only thing the runner times: input conversion and output read-back happen
// outside the timed region. Placement (ops per compute unit) is reported only when the runtime
// tells it; `nil` means unknown, never "all on CPU".
import Foundation

public struct AcceleratorChoice: Sendable, Hashable, CustomStringConvertible {
    /// Report's `runtime.accelerator`: `cpu`, `gpu`, `ane`, `all`, `xnnpack`, ...
    public var accelerator: String
    /// Report's `runtime.compute_units` (Core ML `MLComputeUnits` case name).
    public var computeUnits: String?
    public var delegate: String?
    public var threads: Int?
    public var emulated: Bool

    public init(accelerator: String, computeUnits: String? = nil, delegate: String? = nil, threads: Int? = nil, emulated: Bool = false) {
        self.accelerator = accelerator
        self.computeUnits = computeUnits
        self.delegate = delegate
        self.threads = threads
        self.emulated = emulated
    }

    public var description: String { computeUnits.map { "\(accelerator) (\($0))" } ?? accelerator }
}

public protocol InferenceEngine: Sendable {
    /// Report's `runtime.name`: one of `coreml`, `executorch`, ...
    var runtimeName: String { get }
    var runtimeVersion: String { get }
    func supports(_ artifact: Artifact) -> Bool
    func accelerators(for artifact: Artifact) -> [AcceleratorChoice]
    /// Loads (and compiles, where the runtime needs it) the artifact at `url` for `accelerator`.
    /// Only the time of this call is reported as `load_ms`.
    func load(_ url: URL, artifact: Artifact, accelerator: AcceleratorChoice) async throws -> any LoadedModel
}

public protocol LoadedModel: AnyObject {
    /// Copies `values` (float32, the first input's shape) into the runtime's input. Not timed.
    func setInput(_ values: [Float]) throws
    /// One inference on the current input. Timed.
    func run() throws
    /// First output of the last `run()`, as float32 in logical (row-major) order. Not timed.
    func output() throws -> [Float]
    /// Ops per compute unit as the runtime plans them, or nil when it cannot tell.
    func placement() async -> [String: Int]?
    /// Extra facts for the report's `notes` (compile time, delegate details).
    var notes: [String: String] { get }
}

extension LoadedModel {
    public func placement() async -> [String: Int]? { nil }
    public var notes: [String: String] { [:] }
}

public struct EngineError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
