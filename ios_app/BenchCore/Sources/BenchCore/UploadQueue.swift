// The persistent upload queue: reports survive a server that is down, a lost answer and an app kill.
//
// This file owns the report store in app storage. Every report is first written atomically to
// `pending/<run_id>.json`; only an acknowledgement from the server (201 stored, or 200 stored
// before) moves it to `sent/`. A report the server can never accept (422 invalid, 413 too large)
// moves to `rejected/` with the reason next to it, so nothing is deleted and the queue does not
// retry it forever. Network errors, 5xx and 401 (a token the operator can fix) leave it pending.
// The queue goes up in batches (`POST /api/v1/reports/batch`, judged per report).
// Re-sending is safe because the server is idempotent on `run_id`.
import Foundation

public actor ReportQueue {
    public let directory: URL
    private var pendingDir: URL { directory.appendingPathComponent("pending", isDirectory: true) }
    private var sentDir: URL { directory.appendingPathComponent("sent", isDirectory: true) }
    private var rejectedDir: URL { directory.appendingPathComponent("rejected", isDirectory: true) }

    public init(directory: URL) throws {
        self.directory = directory
        for dir in ["pending", "sent", "rejected"] {
            try FileManager.default.createDirectory(
                at: directory.appendingPathComponent(dir, isDirectory: true), withIntermediateDirectories: true)
        }
    }

    /// Validates and persists a report; returns the file it was written to.
    @discardableResult
    public func enqueue(_ report: BenchReport) throws -> URL {
        try report.validate()
        let file = pendingDir.appendingPathComponent("\(report.runID).json")
        try report.jsonData(pretty: true).write(to: file, options: .atomic)
        return file
    }

    public func pendingRunIDs() -> [String] { ids(in: pendingDir) }
    public func sentRunIDs() -> [String] { ids(in: sentDir) }
    public func rejectedRunIDs() -> [String] { ids(in: rejectedDir) }

    /// Every stored report (pending, sent and rejected), for the results screen.
    public func allReports() -> [(report: BenchReport, state: String)] {
        let decoder = BenchReport.makeDecoder()
        var out: [(BenchReport, String)] = []
        for (dir, state) in [(pendingDir, "pending"), (sentDir, "sent"), (rejectedDir, "rejected")] {
            for id in ids(in: dir) {
                if let data = try? Data(contentsOf: dir.appendingPathComponent("\(id).json")),
                   let report = try? decoder.decode(BenchReport.self, from: data) {
                    out.append((report, state))
                }
            }
        }
        return out.sorted { $0.0.createdAt > $1.0.createdAt }
    }

    public struct FlushResult: Sendable, Equatable {
        public var sent: [String] = []
        public var rejected: [String: String] = [:]
        public var stillPending: [String] = []
        /// Why the flush stopped early (server unreachable, token refused), if it did.
        public var stoppedBecause: String?
    }

    /// Reports per batch request: far below the server's 1000 and its body limit.
    public static let batchSize = 100

    /// Tries to upload every pending report once, oldest first, through
    /// `POST /api/v1/reports/batch`: 201/200 moves a report to `sent/`, 422 to `rejected/` with the
    /// reason, anything else keeps it pending. An aggregator without the batch endpoint (404), or
    /// a batch over its size limit (413), gets one POST per report instead.
    public func flush(using client: AggregatorClient) async -> FlushResult {
        var result = FlushResult()
        let pending = pendingFilesOldestFirst()
        var start = 0
        while start < pending.count {
            let chunk = Array(pending[start..<min(pending.count, start + Self.batchSize)])
            let ids = chunk.map { $0.deletingPathExtension().lastPathComponent }
            let bodies: [Data]
            do {
                bodies = try chunk.map { try Data(contentsOf: $0) }
            } catch {
                result.stoppedBecause = "could not read a pending report: \(error)"
                result.stillPending = pending[start...].map { $0.deletingPathExtension().lastPathComponent }
                return result
            }
            do {
                let items = try await client.uploadBatch(reportJSONs: bodies)
                for (i, item) in items.enumerated() {
                    switch item.status {
                    case 200, 201:
                        try? move(chunk[i], to: sentDir)
                        result.sent.append(ids[i])
                    case 422:
                        setAside(chunk[i], id: ids[i], reason: item.detail, result: &result,
                                 description: AggregatorError.rejected(item.detail).description)
                    default:
                        result.stillPending.append(ids[i])
                        result.stoppedBecause = "the server did not store \(ids[i]) (status \(item.status)): kept for the next flush"
                    }
                }
            } catch let error as AggregatorError {
                switch error {
                case .notFound, .tooLarge:
                    if let stop = await flushOneByOne(chunk, using: client, result: &result) {
                        result.stoppedBecause = stop
                        result.stillPending += pending[(start + chunk.count)...].map { $0.deletingPathExtension().lastPathComponent }
                        return result
                    }
                default:
                    // Unreachable / 5xx / 401 affect every report alike: keep them all.
                    result.stoppedBecause = error.description
                    result.stillPending += pending[start...].map { $0.deletingPathExtension().lastPathComponent }
                    return result
                }
            } catch {
                result.stoppedBecause = "\(error)"
                result.stillPending += pending[start...].map { $0.deletingPathExtension().lastPathComponent }
                return result
            }
            start += chunk.count
        }
        return result
    }

    /// One POST per report; returns why it stopped early (the rest of `files` stays pending).
    private func flushOneByOne(_ files: [URL], using client: AggregatorClient, result: inout FlushResult) async -> String? {
        for (index, file) in files.enumerated() {
            let id = file.deletingPathExtension().lastPathComponent
            do {
                _ = try await client.upload(reportJSON: try Data(contentsOf: file))
                try move(file, to: sentDir)
                result.sent.append(id)
            } catch let error as AggregatorError {
                switch error {
                case .rejected(let why), .tooLarge(let why):
                    setAside(file, id: id, reason: why, result: &result, description: error.description)
                default:
                    result.stillPending += files[index...].map { $0.deletingPathExtension().lastPathComponent }
                    return error.description
                }
            } catch {
                result.stillPending += files[index...].map { $0.deletingPathExtension().lastPathComponent }
                return "could not read \(file.lastPathComponent): \(error)"
            }
        }
        return nil
    }

    private func setAside(_ file: URL, id: String, reason: String, result: inout FlushResult, description: String) {
        try? Data(reason.utf8).write(to: rejectedDir.appendingPathComponent("\(id).reason.txt"), options: .atomic)
        try? move(file, to: rejectedDir)
        result.rejected[id] = description
    }

    /// Flushes until nothing is pending or `attempts` flushes were made, waiting `initialDelay`,
    /// then twice as long (capped at `maxDelay`), between flushes that stopped early.
    public func drain(using client: AggregatorClient, attempts: Int = 5, initialDelay: Duration = .seconds(2),
                      maxDelay: Duration = .seconds(60)) async -> FlushResult {
        var delay = initialDelay
        var total = FlushResult()
        for attempt in 1...max(1, attempts) {
            let r = await flush(using: client)
            total.sent += r.sent
            total.rejected.merge(r.rejected) { a, _ in a }
            total.stillPending = r.stillPending
            total.stoppedBecause = r.stoppedBecause
            if r.stoppedBecause == nil || attempt == attempts || Task.isCancelled { break }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, maxDelay)
        }
        return total
    }

    // MARK: - files

    private func ids(in dir: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    private func pendingFilesOldestFirst() -> [URL] {
        let keys: [URLResourceKey] = [.contentModificationDateKey]
        let files = ((try? FileManager.default.contentsOfDirectory(at: pendingDir, includingPropertiesForKeys: keys)) ?? [])
            .filter { $0.pathExtension == "json" }
        func date(_ url: URL) -> Date {
            (try? url.resourceValues(forKeys: Set(keys)).contentModificationDate) ?? .distantPast
        }
        return files.sorted { (date($0), $0.lastPathComponent) < (date($1), $1.lastPathComponent) }
    }

    private func move(_ file: URL, to dir: URL) throws {
        let target = dir.appendingPathComponent(file.lastPathComponent)
        if FileManager.default.fileExists(atPath: target.path) { try FileManager.default.removeItem(at: target) }
        try FileManager.default.moveItem(at: file, to: target)
    }
}
