// The app's state: settings, the run in progress, its log, and the stored reports.
//
// This file owns the glue between the SwiftUI screens and BenchCore: it resolves settings from
// launch arguments, environment and the values saved by the settings screen (UserDefaults), keeps
// the report queue in the app's Documents folder (visible in the Files app and Finder, so results
// can be copied off the phone), flushes pending reports at launch and when the app becomes active,
// and starts/cancels runs. Measurements run off the main actor; only UI state lives here.
import BenchCore
import Foundation
import SwiftUI
import UIKit

@MainActor
final class AppModel: ObservableObject {
    @Published var log: [String] = []
    @Published var isRunning = false
    @Published var reports: [StoredReport] = []
    @Published var lastError: String?
    @Published var pendingCount = 0

    /// Saved by the settings screen, keyed like the launch arguments (`serverURL`, `token`, ...).
    @Published var stored: [String: String] {
        didSet { UserDefaults.standard.set(stored, forKey: Self.defaultsKey) }
    }

    private static let defaultsKey = "FreeNetBenchSettings"
    private var runTask: Task<Void, Never>?
    let queue: ReportQueue
    let storage: URL

    init() {
        stored = UserDefaults.standard.dictionary(forKey: Self.defaultsKey) as? [String: String] ?? [:]
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        storage = documents.appendingPathComponent("FreeNetBench", isDirectory: true)
        do {
            queue = try ReportQueue(directory: storage.appendingPathComponent("reports", isDirectory: true))
        } catch {
            // Documents is always writable for the app; failing here means the device is full.
            fatalError("cannot create the report store in \(storage.path): \(error)")
        }
    }

    func settings() throws -> BenchSettings {
        try BenchSettings.resolve(arguments: ProcessInfo.processInfo.arguments,
                                  environment: ProcessInfo.processInfo.environment, stored: stored)
    }

    var clientInfo: BenchReport.Client {
        let info = Bundle.main.infoDictionary ?? [:]
        let version = "\(info["CFBundleShortVersionString"] as? String ?? "0") (\(info["CFBundleVersion"] as? String ?? "0"))"
        return BenchReport.Client(app: "FreeNetBench", platform: "ios", appVersion: version)
    }

    var engines: [any InferenceEngine] {
        var engines: [any InferenceEngine] = [CoreMLEngine(compiledCache: storage.appendingPathComponent("compiled", isDirectory: true))]
        #if canImport(ExecuTorch)
        engines.append(ExecuTorchEngine())
        #endif
        return engines
    }

    private var launched = false

    func onLaunch() {
        guard !launched else { return }  // onAppear can fire more than once
        launched = true
        Task { await refresh() }
        if let current = try? settings(), current.autorun { start() } else { Task { await flush() } }
    }

    func refresh() async {
        reports = await queue.allReports().map { StoredReport(report: $0.report, state: $0.state) }
        pendingCount = await queue.pendingRunIDs().count
    }

    /// Retries every stored report the server has not acknowledged yet.
    func flush() async {
        guard let current = try? settings() else { return }
        let client = AggregatorClient(baseURL: current.serverURL, token: current.token)
        let result = await queue.flush(using: client)
        if !result.sent.isEmpty { append("uploaded \(result.sent.count) stored report(s)") }
        if let why = result.stoppedBecause { append("upload postponed: \(why)") }
        await refresh()
    }

    func start() {
        guard !isRunning else { return }
        lastError = nil
        let settings: BenchSettings
        do { settings = try self.settings() } catch {
            lastError = "\(error)"
            return
        }
        isRunning = true
        // Keep the screen on: a locked phone throttles and suspends the app mid-measurement.
        UIApplication.shared.isIdleTimerDisabled = true
        let runner = BenchRunner(settings: settings, queue: queue, engines: engines,
                                 cacheDirectory: storage.appendingPathComponent("bundles", isDirectory: true),
                                 clientInfo: clientInfo, log: { [model = self] line in
                                     // The runner works off the main actor; the log is UI state.
                                     Task { @MainActor in model.append(line) }
                                 })
        runTask = Task {
            do {
                let summary = try await runner.run()
                let ok = summary.reports.filter { $0.status == .ok }.count
                let parityFailed = summary.reports.filter { $0.status == .parityFailed }.count
                append("done: \(ok) ok, \(parityFailed) parity failed, \(summary.reports.count - ok - parityFailed) error, "
                       + "\(summary.skipped.count) skipped; \(summary.upload.stillPending.count) waiting for upload")
                for (id, why) in summary.skipped.sorted(by: { $0.key < $1.key }) { append("skipped \(id): \(why)") }
            } catch is CancellationError {
                append("run cancelled")
            } catch {
                lastError = "\(error)"
                append("run failed: \(error)")
            }
            isRunning = false
            UIApplication.shared.isIdleTimerDisabled = false
            await refresh()
        }
    }

    func cancel() { runTask?.cancel() }

    func append(_ line: String) {
        let stamp = Date().formatted(date: .omitted, time: .standard)
        log.append("\(stamp)  \(line)")
        if log.count > 500 { log.removeFirst(log.count - 500) }
    }
}

/// One stored report and where it is in the upload queue (pending, sent, rejected).
struct StoredReport: Identifiable {
    let report: BenchReport
    let state: String
    var id: String { report.runID }
}
