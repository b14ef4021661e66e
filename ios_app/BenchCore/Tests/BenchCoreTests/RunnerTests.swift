// The runner and the upload queue against the in-memory server: the full measurement procedure,
// error reports instead of empty successes, cool-down, and no report lost while the server is down.
import Foundation
import XCTest
@testable import BenchCore

final class RunnerTests: XCTestCase {
    func makeRunner(_ server: StubServer, engine: TinyLinearEngine = TinyLinearEngine(), thermal: any ThermalProbe = ScriptedThermal([.state(.nominal)]),
                    configure: (inout BenchSettings) -> Void = { _ in }) throws -> (BenchRunner, ReportQueue) {
        var settings = BenchSettings(serverURL: URL(string: "http://stub:8787")!, token: "good-token", bundle: nil)
        settings.warmupRuns = 3
        settings.timedRuns = 25
        settings.cooldown = CooldownPolicy(pollInterval: .milliseconds(5), maxWait: .seconds(2))
        configure(&settings)
        let dir = temporaryDirectory()
        let queue = try ReportQueue(directory: dir.appendingPathComponent("reports"))
        let client = AggregatorClient(baseURL: settings.serverURL, token: settings.token, transport: server)
        let runner = BenchRunner(settings: settings, queue: queue, engines: [engine], cacheDirectory: dir.appendingPathComponent("cache"),
                                 clientInfo: testClient, client: client, thermal: thermal)
        return (runner, queue)
    }

    func testFullRunMeasuresChecksParityAndUploads() async throws {
        let server = StubServer()
        let bundle = TinyBundle.make()
        server.files = bundle.files
        let (runner, queue) = try makeRunner(server)
        let summary = try await runner.run()

        XCTAssertEqual(summary.bundle, "b1")  // the only bundle the server lists
        XCTAssertEqual(summary.reports.count, 1)
        XCTAssertEqual(summary.skipped.keys.sorted(), ["broken-coreml-fp16", "tiny_linear-tflite-fp32"])
        let report = try XCTUnwrap(summary.reports.first)
        XCTAssertEqual(report.status, .ok, report.error ?? "")
        XCTAssertEqual(report.timing.samplesMs.count, 25)
        XCTAssertTrue(report.timing.samplesMs.allSatisfy { $0 > 0 && $0.isFinite })
        XCTAssertEqual(report.timing.warmupRuns, 3)
        XCTAssertNotNil(report.timing.loadMs)
        XCTAssertNotNil(report.timing.firstInferenceMs)
        XCTAssertEqual(report.parity?.referenceChecked, true)
        XCTAssertEqual(try XCTUnwrap(report.parity?.maxAbsDiff), 0, accuracy: 1e-6)
        XCTAssertEqual(report.parity?.passed, true)
        XCTAssertEqual(report.model.family, "tiny")
        XCTAssertEqual(report.placement, ["cpu": 2])
        XCTAssertEqual(report.model.macs, 42)
        XCTAssertEqual(report.model.sha256, Digest.sha256Hex(bundle.files["b1/files/tiny/weights.bin"]!))
        XCTAssertTrue(report.runtime.emulated)
        // runtime.delegate/compute_units/threads and the engine's notes come from describe().
        XCTAssertEqual(report.runtime.delegate, "benchcore-tiny-linear (Linux test stand-in)")
        XCTAssertEqual(report.runtime.computeUnits, "cpuOnly")
        XCTAssertEqual(report.runtime.threads, 1)
        XCTAssertTrue(report.notes?["engine"]?.contains("not a speed result") == true)
        XCTAssertEqual(report.notes?["input"], "bundle reference input")
        XCTAssertEqual(report.thermal.before, .state(.nominal))

        XCTAssertEqual(server.postedCount, 1)
        let sentIDs = await queue.sentRunIDs()
        let pendingIDs = await queue.pendingRunIDs()
        XCTAssertEqual(sentIDs, [report.runID])
        XCTAssertEqual(pendingIDs, [])
    }

    func testOutputOffTheReferenceIsParityFailedWithItsSamples() async throws {
        let server = StubServer()
        server.files = TinyBundle.make(drift: 1.5).files
        let (runner, _) = try makeRunner(server)
        let summary = try await runner.run()
        let report = try XCTUnwrap(summary.reports.first)
        XCTAssertEqual(report.status, .parityFailed, report.error ?? "")
        XCTAssertEqual(report.timing.samplesMs.count, 25)
        XCTAssertEqual(report.parity?.passed, false)
        XCTAssertEqual(try XCTUnwrap(report.parity?.relDiff), 1.0 / 3.0, accuracy: 1e-5)
        XCTAssertEqual(report.parity?.tolerance, 1e-3)  // fp32 on the cpu accelerator
        XCTAssertTrue(report.error?.contains("rel_diff") == true, report.error ?? "")
        XCTAssertEqual(server.postedCount, 1)  // uploaded like any other result
    }

    func testChecksumMismatchGivesAnErrorReportNotASuccess() async throws {
        let server = StubServer()
        server.files = TinyBundle.make(corruptSHA: true).files
        let (runner, _) = try makeRunner(server) { $0.bundle = "b1" }
        let summary = try await runner.run()
        let report = try XCTUnwrap(summary.reports.first)
        XCTAssertEqual(report.status, .error)
        XCTAssertTrue(report.error?.contains("download failed") == true && report.error?.contains("sha256 mismatch") == true, report.error ?? "")
        XCTAssertEqual(report.timing.samplesMs, [])
        XCTAssertNil(report.timing.loadMs)
        XCTAssertEqual(server.postedCount, 1)  // failures are results: they are uploaded too
    }

    func testEngineFailureGivesAnErrorReport() async throws {
        let server = StubServer()
        server.files = TinyBundle.make().files
        let (runner, _) = try makeRunner(server, engine: TinyLinearEngine(failLoad: "ANE compiler refused op 'gather'"))
        let summary = try await runner.run()
        let report = try XCTUnwrap(summary.reports.first)
        XCTAssertEqual(report.status, .error)
        XCTAssertEqual(report.error, "load failed: ANE compiler refused op 'gather'")
        XCTAssertNoThrow(try report.validate())
    }

    func testFailedRunStillSaysWhatTheRuntimeUsed() async throws {
        let server = StubServer()
        server.files = TinyBundle.make().files
        // First inference and 3 warm-ups pass; the first timed run throws.
        let engine = TinyLinearEngine(failRun: (message: "GPU command buffer aborted", call: 5))
        let (runner, _) = try makeRunner(server, engine: engine)
        let summary = try await runner.run()
        let report = try XCTUnwrap(summary.reports.first)
        XCTAssertEqual(report.status, .error)
        XCTAssertEqual(report.error, "timed runs failed: GPU command buffer aborted")
        XCTAssertNotNil(report.timing.loadMs)
        XCTAssertEqual(report.timing.samplesMs, [])
        XCTAssertEqual(report.runtime.delegate, "benchcore-tiny-linear (Linux test stand-in)")
        XCTAssertEqual(report.placement, ["cpu": 2])
        XCTAssertNoThrow(try report.validate())
    }

        func testWaitsWhileTheDeviceIsHot() async throws {
        let server = StubServer()
        server.files = TinyBundle.make().files
        // before, then two hot polls, then cool.
        let thermal = ScriptedThermal([.state(.serious), .state(.critical), .state(.serious), .state(.fair)])
        let (runner, _) = try makeRunner(server, thermal: thermal)
        let summary = try await runner.run()
        let report = try XCTUnwrap(summary.reports.first)
        XCTAssertEqual(report.thermal.before, .state(.serious))
        XCTAssertEqual(report.thermal.after, .state(.fair))
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(report.timing.cooldownMs), 10)  // two polls of 5 ms
        XCTAssertNil(report.notes?["cooldown"])
    }

    func testGivesUpWaitingAfterMaxWaitAndSaysSo() async throws {
        let server = StubServer()
        server.files = TinyBundle.make().files
        let (runner, _) = try makeRunner(server, thermal: ScriptedThermal([.state(.critical)])) {
            $0.cooldown = CooldownPolicy(pollInterval: .milliseconds(5), maxWait: .milliseconds(30))
        }
        let summary = try await runner.run()
        let report = try XCTUnwrap(summary.reports.first)
        XCTAssertEqual(report.status, .ok)
        XCTAssertTrue(report.notes?["cooldown"]?.contains("still critical") == true, "\(report.notes ?? [:])")
    }
}

final class UploadQueueTests: XCTestCase {
    func testNothingIsLostWhileTheServerIsDown() async throws {
        let server = StubServer()
        server.setDown(true)
        let client = AggregatorClient(baseURL: URL(string: "http://stub:8787")!, token: "good-token", transport: server)
        let dir = temporaryDirectory()
        let queue = try ReportQueue(directory: dir)
        let a = sampleReport(), b = sampleReport(status: .error)
        try await queue.enqueue(a)
        try await queue.enqueue(b)

        let down = await queue.drain(using: client, attempts: 2, initialDelay: .milliseconds(1))
        XCTAssertEqual(down.sent, [])
        XCTAssertEqual(Set(down.stillPending), [a.runID, b.runID])
        XCTAssertTrue(down.stoppedBecause?.contains("unreachable") == true, down.stoppedBecause ?? "")

        // A new queue object on the same folder = the app was killed and relaunched.
        let relaunched = try ReportQueue(directory: dir)
        let pendingAfterRelaunch = await relaunched.pendingRunIDs()
        XCTAssertEqual(Set(pendingAfterRelaunch), [a.runID, b.runID])
        server.setDown(false)
        let up = await relaunched.flush(using: client)
        XCTAssertEqual(Set(up.sent), [a.runID, b.runID])
        XCTAssertNil(up.stoppedBecause)
        let pending = await relaunched.pendingRunIDs()
        XCTAssertEqual(pending, [])
        // What was posted is what was stored.
        let stored = try Data(contentsOf: dir.appendingPathComponent("sent/\(a.runID).json"))
        XCTAssertTrue(server.postedObjects.contains(try JSONSerialization.jsonObject(with: stored) as! NSDictionary))
        XCTAssertEqual(server.batches, [2])  // both in one batch request
    }

    func testUnauthorizedKeepsReportsAndInvalidOnesAreSetAside() async throws {
        let server = StubServer()
        let dir = temporaryDirectory()
        let queue = try ReportQueue(directory: dir)
        let report = sampleReport()
        try await queue.enqueue(report)
        let badToken = AggregatorClient(baseURL: URL(string: "http://stub:8787")!, token: "revoked", transport: server)
        let refused = await queue.flush(using: badToken)
        XCTAssertTrue(refused.stoppedBecause?.contains("401") == true, refused.stoppedBecause ?? "")
        let stillPending = await queue.pendingRunIDs()
        XCTAssertEqual(stillPending, [report.runID])

        server.postStatus = { _ in (422, #"{"detail": [{"field": "runtime.emulated", "msg": "Field required"}]}"#) }
        let good = AggregatorClient(baseURL: URL(string: "http://stub:8787")!, token: "good-token", transport: server)
        let rejected = await queue.flush(using: good)
        XCTAssertEqual(Array(rejected.rejected.keys), [report.runID])
        let rejectedIDs = await queue.rejectedRunIDs()
        XCTAssertEqual(rejectedIDs, [report.runID])
        let reason = try String(contentsOf: dir.appendingPathComponent("rejected/\(report.runID).reason.txt"), encoding: .utf8)
        XCTAssertTrue(reason.contains("runtime.emulated"), reason)
    }

    func testOneBatchStoresSetsAsideAndKeepsPerReport() async throws {
        let server = StubServer()
        let client = AggregatorClient(baseURL: URL(string: "http://stub:8787")!, token: "good-token", transport: server)
        let dir = temporaryDirectory()
        let queue = try ReportQueue(directory: dir)
        let good = sampleReport(), invalid = sampleReport(), again = sampleReport()
        for r in [good, invalid, again] { try await queue.enqueue(r) }
        server.postStatus = { body in
            let id = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["run_id"] as? String
            if id == invalid.runID { return (422, #"{"detail": [{"field": "runtime.accelerator", "msg": "bad"}]}"#) }
            if id == again.runID { return (200, #"{"stored": false}"#) }
            return (201, #"{"stored": true}"#)
        }
        let result = await queue.flush(using: client)
        XCTAssertEqual(server.batches, [3])
        XCTAssertEqual(Set(result.sent), [good.runID, again.runID])
        XCTAssertEqual(Array(result.rejected.keys), [invalid.runID])
        XCTAssertNil(result.stoppedBecause)
        let reason = try String(contentsOf: dir.appendingPathComponent("rejected/\(invalid.runID).reason.txt"), encoding: .utf8)
        XCTAssertTrue(reason.contains("runtime.accelerator"), reason)
        let pending = await queue.pendingRunIDs()
        XCTAssertEqual(pending, [])
    }

    func testWholeBatchFailureKeepsEverythingAndOldServersGetSinglePosts() async throws {
        let server = StubServer()
        let client = AggregatorClient(baseURL: URL(string: "http://stub:8787")!, token: "good-token", transport: server)
        let queue = try ReportQueue(directory: temporaryDirectory())
        let a = sampleReport(), b = sampleReport()
        try await queue.enqueue(a)
        try await queue.enqueue(b)
        server.postStatus = { _ in (503, #"{"detail": "maintenance"}"#) }
        let down = await queue.flush(using: client)
        XCTAssertEqual(Set(down.stillPending), [a.runID, b.runID])
        XCTAssertTrue(down.stoppedBecause?.contains("503") == true, down.stoppedBecause ?? "")

        server.postStatus = { _ in (201, #"{"stored": true}"#) }
        server.noBatchEndpoint = true
        let single = await queue.flush(using: client)
        XCTAssertEqual(Set(single.sent), [a.runID, b.runID])
        XCTAssertEqual(server.postedCount, 2)
        XCTAssertEqual(server.batches, [2])  // only the refused 503 attempt went to the batch endpoint
    }

    func testEnqueueRefusesAnInvalidReport() async throws {
        let queue = try ReportQueue(directory: temporaryDirectory())
        var report = sampleReport()
        report.timing.samplesMs = []
        do {
            try await queue.enqueue(report)
            XCTFail("an ok report without samples must not be queued")
        } catch {
            XCTAssertTrue("\(error)".contains("needs at least one sample"), "\(error)")
        }
    }
}
