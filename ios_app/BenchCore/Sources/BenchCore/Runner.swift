// The benchmark runner: bundle in, one stored-and-uploaded report per artifact x accelerator out.
//
// This file owns the measurement procedure. For one bundle it fetches the manifest, downloads each
// artifact an engine can run (sha256-checked; cached by hash), and for every accelerator the
// engine offers: reads the thermal state, waits while the device is hot, times load, the first
// inference, W untimed warm-ups and N timed runs (every raw sample kept), runs the manifest's
// reference input and judges its output against the reference output (rel_diff against the
// protocol's tolerance: a miss is "parity_failed", never "ok"), asks the engine to describe what the
// runtime used (delegate, compute units, threads, op placement, notes; also after a failed run),
// reads the thermal state again, and writes the report to the persistent queue before trying to
// upload it. The engine contract is three calls, as on Android: load, run, describe. Any failure becomes a report with status "error" and the reason;
// a run never produces an empty success. Statistics are left to the aggregator.
import Foundation

public struct BenchRunner: Sendable {
    public var settings: BenchSettings
    public var client: AggregatorClient
    public var queue: ReportQueue
    public var engines: [any InferenceEngine]
    /// Where downloaded artifacts are cached (by bundle and path, re-verified by sha256).
    public var cacheDirectory: URL
    public var clientInfo: BenchReport.Client
    public var thermal: any ThermalProbe
    public var device: BenchReport.Device
    public var log: @Sendable (String) -> Void

    public init(settings: BenchSettings, queue: ReportQueue, engines: [any InferenceEngine], cacheDirectory: URL,
                clientInfo: BenchReport.Client, client: AggregatorClient? = nil,
                thermal: any ThermalProbe = SystemThermalProbe(), device: BenchReport.Device = DeviceProbe.current(),
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.settings = settings
        self.client = client ?? AggregatorClient(baseURL: settings.serverURL, token: settings.token)
        self.queue = queue
        self.engines = engines
        self.cacheDirectory = cacheDirectory
        self.clientInfo = clientInfo
        self.thermal = thermal
        self.device = device
        self.log = log
    }

    public struct Summary: Sendable {
        public var bundle: String
        public var reports: [BenchReport] = []
        /// Artifacts no engine in this build can run, with the reason.
        public var skipped: [String: String] = [:]
        public var upload = ReportQueue.FlushResult()
    }

    /// Runs the whole bundle. Throws only when there is nothing to report on (no manifest);
    /// every per-artifact failure is a report with status "error".
    public func run() async throws -> Summary {
        let bundle = try await resolveBundle()
        log("bundle \(bundle): fetching manifest from \(settings.serverURL.absoluteString)")
        let manifest = try await client.manifest(bundle: bundle)
        var summary = Summary(bundle: bundle)
        for artifact in manifest.artifacts {
            if !settings.artifactIDs.isEmpty && !settings.artifactIDs.contains(artifact.id) { continue }
            if let why = artifact.unavailableReason {
                summary.skipped[artifact.id] = why
                continue
            }
            guard let engine = engines.first(where: { $0.supports(artifact) }) else {
                summary.skipped[artifact.id] = "no engine in this build runs format '\(artifact.format)' target '\(artifact.target ?? "-")'"
                continue
            }
            let choices = engine.accelerators(for: artifact).filter {
                settings.accelerators.isEmpty || settings.accelerators.contains($0.accelerator)
            }
            if choices.isEmpty {
                summary.skipped[artifact.id] = "none of the accelerators asked for (\(settings.accelerators.sorted().joined(separator: ","))) applies"
                continue
            }
            log("\(artifact.id): downloading")
            let prepared: Result<PreparedArtifact, any Error>
            do { prepared = .success(try await prepare(artifact, bundle: bundle)) } catch { prepared = .failure(error) }
            for choice in choices {
                try Task.checkCancellation()
                log("\(artifact.id) on \(choice): measuring")
                let report = try await measure(artifact, bundle: bundle, prepared: prepared, engine: engine, choice: choice)
                try await queue.enqueue(report)
                summary.reports.append(report)
                log("\(artifact.id) on \(choice): \(report.status == .ok ? "ok" : "\(report.status.rawValue): \(report.error ?? "")")")
                // Upload as we go so a long run shows up on the dashboard early; whatever fails
                // stays queued for the drain below or a later launch.
                _ = await queue.flush(using: client)
            }
        }
        summary.upload = await queue.drain(using: client, attempts: 3)
        return summary
    }

    func resolveBundle() async throws -> String {
        if let bundle = settings.bundle { return bundle }
        let bundles = try await client.bundles()
        guard bundles.count == 1, let only = bundles.first else {
            throw SettingsError(bundles.isEmpty
                ? "the aggregator serves no bundle (start it with `freenet serve --bundles DIR`)"
                : "the aggregator serves several bundles (\(bundles.joined(separator: ", "))): choose one in Settings or with -bundle")
        }
        return only
    }

    // MARK: - download

    struct PreparedArtifact {
        var modelURL: URL
        var referenceInput: [Float]?
        var referenceOutput: [Float]?
    }

    func prepare(_ artifact: Artifact, bundle: String) async throws -> PreparedArtifact {
        guard let file = artifact.file, let sha256 = artifact.sha256 else {
            throw ManifestError.invalid("artifact \(artifact.id) has no file/sha256")
        }
        let root = cacheDirectory.appendingPathComponent(safeName(bundle), isDirectory: true)
        var modelURL = root.appendingPathComponent(file)
        let data = try await fetch(bundle: bundle, path: file, sha256: sha256, into: root)
        if file.hasSuffix(".zip") {
            // A directory artifact (.mlpackage): unpack next to the archive, once per sha256.
            let folder = root.appendingPathComponent(file + ".d", isDirectory: true)
            let marker = folder.appendingPathComponent(".sha256")
            if (try? String(contentsOf: marker, encoding: .utf8)) != sha256 {
                try? FileManager.default.removeItem(at: folder)
                try StoredZip.extract(data, to: folder)
                try sha256.write(to: marker, atomically: true, encoding: .utf8)
            }
            let top = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0 != ".sha256" })
            modelURL = top.count == 1 ? folder.appendingPathComponent(top.first!) : folder
        }
        var prepared = PreparedArtifact(modelURL: modelURL)
        if let ref = artifact.reference {
            let input = try decodeFloat32LE(try await fetch(bundle: bundle, path: ref.inputFile, sha256: ref.inputSHA256, into: root))
            let output = try decodeFloat32LE(try await fetch(bundle: bundle, path: ref.outputFile, sha256: ref.outputSHA256, into: root))
            guard input.count == artifact.inputElementCount else {
                throw ManifestError.badReference("reference input has \(input.count) values, input shape \(artifact.inputShape) needs \(artifact.inputElementCount)")
            }
            prepared.referenceInput = input
            prepared.referenceOutput = output
        }
        return prepared
    }

    /// Returns the file's bytes, from the cache when its sha256 still matches, else downloaded.
    @discardableResult
    func fetch(bundle: String, path: String, sha256: String?, into root: URL) async throws -> Data {
        // Paths come from the network: never let one climb out of the cache directory.
        let parts = path.split(separator: "/")
        guard !path.hasPrefix("/"), !parts.isEmpty, !parts.contains(where: { $0 == ".." || $0 == "." }) else {
            throw ManifestError.invalid("file path '\(path)' must be relative and stay inside the bundle")
        }
        let local = root.appendingPathComponent(path)
        if let sha256, let cached = try? Data(contentsOf: local), Digest.sha256Hex(cached) == sha256.lowercased() {
            return cached
        }
        let data = try await client.download(bundle: bundle, path: path, expectedSHA256: sha256)
        try FileManager.default.createDirectory(at: local.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: local, options: .atomic)
        return data
    }

    // MARK: - measurement

    func measure(_ artifact: Artifact, bundle: String, prepared: Result<PreparedArtifact, any Error>,
                 engine: any InferenceEngine, choice: AcceleratorChoice) async throws -> BenchReport {
        let started = Date()
        let before = thermal.read()
        var notes: [String: String] = [:]
        let cooldownMs = try await coolDown(notes: &notes)
        var timing = BenchReport.Timing(loadMs: nil, firstInferenceMs: nil, warmupRuns: settings.warmupRuns, samplesMs: [], cooldownMs: cooldownMs)
        var parity: BenchReport.Parity?
        var failure: String?
        var stage = "download"
        var model: (any LoadedModel)?
        do {
            let files = try prepared.get()
            stage = "load"
            let clock = ContinuousClock()
            timing.loadMs = try await milliseconds(clock) { model = try await engine.load(files.modelURL, artifact: artifact, accelerator: choice) }
            guard let loaded = model else { throw EngineError("engine returned no model") }
            let input = files.referenceInput ?? syntheticInput(count: artifact.inputElementCount)
            notes["input"] = files.referenceInput == nil ? "synthetic (bundle has no reference input)" : "bundle reference input"
            stage = "first inference"
            timing.firstInferenceMs = try milliseconds(clock) { _ = try loaded.run(input) }
            stage = "warm-up"
            for _ in 0..<settings.warmupRuns { _ = try loaded.run(input) }
            stage = "timed runs"
            var samples: [Double] = []
            samples.reserveCapacity(settings.timedRuns)
            for _ in 0..<settings.timedRuns { samples.append(try milliseconds(clock) { _ = try loaded.run(input) }) }
            timing.samplesMs = samples
            stage = "reference check"
            parity = try checkParity(loaded, prepared: files, artifact: artifact, accelerator: choice.accelerator, notes: &notes)
        } catch {
            failure = "\(stage) failed: \(error)"
        }
        // What the runtime used, asked once a model is loaded, also after a failed run.
        let info = await model?.describe()
        if let info { notes.merge(info.notes) { runner, _ in runner } }
        let after = thermal.read()
        let peak = DeviceProbe.peakResidentBytes()
        if peak != nil { notes["memory_scope"] = "process peak RSS since launch (getrusage), not this model alone" }
        var report = BenchReport(
            createdAt: Date(), startedAt: started, finishedAt: Date(), client: clientInfo, device: device,
            runtime: .init(name: engine.runtimeName, version: engine.runtimeVersion, accelerator: choice.accelerator,
                           delegate: info?.delegate, computeUnits: info?.computeUnits ?? choice.computeUnits, threads: info?.threads,
                           emulated: (info?.emulated ?? false) || DeviceProbe.isSimulator),
            model: .init(name: artifact.model, artifactID: artifact.id, format: artifact.format, precision: artifact.precision,
                         sha256: (artifact.sha256 ?? "").lowercased(), inputShape: artifact.inputShape, bundle: bundle,
                         macs: artifact.macs, params: artifact.params, family: artifact.modelFamily),
            timing: timing, memory: peak.map { .init(peakBytes: $0) }, placement: info?.placement,
            thermal: .init(before: before, after: after), parity: parity,
            status: failure != nil ? .error : parity?.passed == false ? .parityFailed : .ok,
            error: failure ?? (parity?.passed == false ? parity?.failure : nil), notes: notes.isEmpty ? nil : notes)
        do {
            try report.validate()
        } catch {
            // A measurement the schema would reject (e.g. a 0 ms sample from a coarse clock)
            // is reported as an error with the reason, never silently dropped.
            report.status = .error
            report.error = [report.error, "measurement not reportable: \(error)"].compactMap { $0 }.joined(separator: "; ")
            report.timing = .init(loadMs: nil, firstInferenceMs: nil, warmupRuns: settings.warmupRuns, samplesMs: [], cooldownMs: cooldownMs)
            report.parity = nil
            try report.validate()
        }
        return report
    }

    /// Waits the fixed rest, then while the device is at or above the hot threshold (up to
    /// `maxWait`); returns the time waited in ms.
    func coolDown(notes: inout [String: String]) async throws -> Double {
        let policy = settings.cooldown
        let clock = ContinuousClock()
        let start = clock.now
        if policy.restBeforeRun > .zero { try await Task.sleep(for: policy.restBeforeRun) }
        let deadline = clock.now + policy.maxWait
        while thermal.read().isAtLeast(policy.hotThreshold) {
            if clock.now >= deadline {
                notes["cooldown"] = "still \(describe(thermal.read())) after waiting \(policy.maxWait); measured anyway"
                break
            }
            try await Task.sleep(for: policy.pollInterval)
        }
        return toMilliseconds(clock.now - start)
    }

    /// Runs the reference input once and judges the output against the reference output with
    /// the protocol's tolerance for this precision and accelerator.
    func checkParity(_ model: any LoadedModel, prepared: PreparedArtifact, artifact: Artifact, accelerator: String,
                     notes: inout [String: String]) throws -> BenchReport.Parity {
        guard let input = prepared.referenceInput, let expected = prepared.referenceOutput else {
            return .init(maxAbsDiff: nil, referenceChecked: false)
        }
        let output = try model.run(input)
        var why: String?
        guard let verdict = BenchReport.Parity.judge(output: output, reference: expected, precision: artifact.precision,
                                                     accelerator: accelerator, why: &why) else {
            notes["parity"] = why
            return .init(maxAbsDiff: nil, referenceChecked: false)
        }
        return verdict
    }

    private func describe(_ reading: ThermalReading) -> String {
        switch reading {
        case .state(let s): return s.rawValue
        case .celsius(let t): return "\(t) °C"
        }
    }
}

/// Deterministic input in [-1, 1) for bundles without a reference input (a fixed LCG, so every
/// device sees the same values).
func syntheticInput(count: Int) -> [Float] {
    var state: UInt64 = 0x2545F4914F6CDD1D
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

func toMilliseconds(_ d: Duration) -> Double {
    let (seconds, attoseconds) = d.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

func milliseconds(_ clock: ContinuousClock, _ body: () throws -> Void) rethrows -> Double {
    let start = clock.now
    try body()
    return toMilliseconds(clock.now - start)
}

func milliseconds(_ clock: ContinuousClock, _ body: () async throws -> Void) async rethrows -> Double {
    let start = clock.now
    try await body()
    return toMilliseconds(clock.now - start)
}

func safeName(_ text: String) -> String {
    String(text.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" })
}
