// Unit tests of BenchCore's pieces without a server: digest, report wire format and checks,
// settings precedence, manifest decoding, ZIP unpacking and the HTTP status mapping.
import Foundation
import XCTest
@testable import BenchCore

final class DigestTests: XCTestCase {
    // FIPS 180-4 / NIST example vectors.
    func testKnownVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ]
        for (text, hex) in vectors {
            XCTAssertEqual(Digest.sha256Hex(Data(text.utf8)), hex, "sha256(\"\(text)\")")
            var streaming = PortableSHA256()
            streaming.update(Data(text.utf8))
            XCTAssertEqual(streaming.finalizeHex(), hex)
        }
    }

    func testStreamingInOddChunksMatchesOneShot() throws {
        let data = Data((0..<10_007).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        var streaming = PortableSHA256()
        var offset = 0
        for size in [1, 63, 64, 65, 127, 1000, 3, 5000] where offset < data.count {
            let end = min(data.count, offset + size)
            streaming.update(data[offset..<end])
            offset = end
        }
        streaming.update(data[offset...])
        XCTAssertEqual(streaming.finalizeHex(), Digest.sha256Hex(data))
        let file = temporaryDirectory().appendingPathComponent("blob")
        try data.write(to: file)
        XCTAssertEqual(try Digest.sha256Hex(fileAt: file), Digest.sha256Hex(data))
    }
}

final class ReportTests: XCTestCase {
    func testWireFormatUsesSnakeCaseAndExplicitNulls() throws {
        let report = sampleReport()
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: report.jsonData()) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["schema_version", "run_id", "created_at", "started_at", "finished_at", "client", "device",
                                          "runtime", "model", "timing", "thermal", "status"])
        let timing = try XCTUnwrap(object["timing"] as? [String: Any])
        // Required-but-nullable: present as null, not missing.
        XCTAssertTrue(timing.keys.contains("first_inference_ms"))
        XCTAssertTrue(timing["first_inference_ms"] is NSNull)
        XCTAssertEqual(timing["samples_ms"] as? [Double], [1.5, 1.25])
        let thermal = try XCTUnwrap(object["thermal"] as? [String: Any])
        XCTAssertEqual(thermal["before"] as? String, "nominal")
        XCTAssertEqual(thermal["after"] as? Double, 31.5)
        XCTAssertEqual(object["run_id"] as? String, report.runID.lowercased())
        let created = try XCTUnwrap(object["created_at"] as? String)
        XCTAssertTrue(created.hasSuffix("Z") && created.contains("T"), created)
        let runtime = try XCTUnwrap(object["runtime"] as? [String: Any])
        XCTAssertEqual(runtime["compute_units"] as? String, "cpuAndNeuralEngine")
    }

    func testRoundTrip() throws {
        let report = sampleReport(status: .error)
        let decoded = try BenchReport.makeDecoder().decode(BenchReport.self, from: report.jsonData())
        XCTAssertEqual(decoded.runID, report.runID)
        XCTAssertEqual(decoded.timing, report.timing)
        XCTAssertEqual(decoded.thermal, report.thermal)
        XCTAssertEqual(decoded.createdAt.timeIntervalSince1970, report.createdAt.timeIntervalSince1970, accuracy: 0.001)
    }

    func testValidationCatchesWhatTheServerWouldReject() {
        var report = sampleReport()
        XCTAssertNoThrow(try report.validate())
        let cases: [(String, (inout BenchReport) -> Void)] = [
            ("status ok needs", { $0.timing.samplesMs = [] }),
            ("samples_ms must be > 0", { $0.timing.samplesMs = [1, 0] }),
            ("finite", { $0.timing.samplesMs = [.nan] }),
            ("load_ms must be > 0", { $0.timing.loadMs = 0 }),
            ("needs an error text", { $0.status = .error; $0.error = nil }),
            ("finished_at", { $0.finishedAt = $0.startedAt.addingTimeInterval(-1) }),
            ("sha256", { $0.model.sha256 = "ABC" }),
        ]
        for (expected, mutate) in cases {
            report = sampleReport()
            mutate(&report)
            XCTAssertThrowsError(try report.validate(), expected) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) should mention \(expected)")
            }
        }
    }
}

final class ParityTests: XCTestCase {
    typealias P = BenchReport.Parity
    let ref: [Float] = [0.5, -2, 1, 0.25]

    func judge(_ scale: Float, _ reference: [Float]? = nil, _ precision: String, _ accelerator: String) -> P? {
        var why: String?
        let r = reference ?? ref
        return P.judge(output: r.map { $0 * scale }, reference: r, precision: precision, accelerator: accelerator, why: &why)
    }

    func testToleranceTableIsTheProtocols() {
        for acc in ["cpu", "xnnpack", "wasm", "portable"] { XCTAssertEqual(P.tolerance(precision: "fp32", accelerator: acc), 1e-3) }
        for acc in ["gpu", "ane", "all", "coreml", "nnapi", "vulkan"] { XCTAssertEqual(P.tolerance(precision: "fp32", accelerator: acc), 5e-2) }
        XCTAssertEqual(P.tolerance(precision: "fp16", accelerator: "cpu"), 5e-2)
        XCTAssertNil(P.tolerance(precision: "int8", accelerator: "cpu"))
    }

    func testVerdicts() throws {
        XCTAssertEqual(judge(1.002, nil, "fp32", "cpu")?.passed, false)
        XCTAssertEqual(judge(1.002, nil, "fp32", "ane")?.passed, true)
        XCTAssertEqual(try XCTUnwrap(judge(1.5, nil, "fp16", "gpu")?.relDiff), 0.5, accuracy: 1e-6)
        XCTAssertEqual(judge(1.5, nil, "fp16", "gpu")?.passed, false)
        let int8 = try XCTUnwrap(judge(3, nil, "int8", "cpu"))
        XCTAssertNil(int8.passed)
        XCTAssertNil(int8.tolerance)
        // Below fp16's smallest normal an fp16 bound says nothing; the fp32 CPU bound still does.
        let tiny: [Float] = [1e-5, -3e-5]
        XCTAssertNil(judge(2, tiny, "fp32", "gpu")?.passed)
        XCTAssertEqual(judge(2, tiny, "fp32", "cpu")?.passed, false)
        var why: String?
        XCTAssertNil(P.judge(output: [.nan, 0, 0, 0], reference: ref, precision: "fp32", accelerator: "cpu", why: &why))
        XCTAssertEqual(why, "output contains NaN or infinity")
    }

    func testStatusMustAgreeWithTheVerdict() {
        var report = sampleReport()
        report.parity = P(maxAbsDiff: 1, referenceChecked: true, relDiff: 0.5, tolerance: 1e-3, passed: false)
        XCTAssertThrowsError(try report.validate())
        report.status = .parityFailed
        XCTAssertNoThrow(try report.validate())
        report.parity?.passed = true
        XCTAssertThrowsError(try report.validate())
    }
}

final class SettingsTests: XCTestCase {
    func testLaunchArgumentsBeatEnvironmentBeatStored() throws {
        let s = try BenchSettings.resolve(
            arguments: ["/app", "-serverURL", "http://10.0.0.2:8787", "-runs", "7", "-NSDocumentRevisionsDebugMode", "YES"],
            environment: ["FREENET_SERVER_URL": "http://ignored:1", "FREENET_TOKEN": "env-token", "FREENET_WARMUPS": "3"],
            stored: ["token": "stored-token", "bundle": "b1", "accelerators": "ane, gpu"])
        XCTAssertEqual(s.serverURL.absoluteString, "http://10.0.0.2:8787")
        XCTAssertEqual(s.token, "env-token")
        XCTAssertEqual(s.bundle, "b1")
        XCTAssertEqual(s.timedRuns, 7)
        XCTAssertEqual(s.warmupRuns, 3)
        XCTAssertEqual(s.accelerators, ["ane", "gpu"])
        XCTAssertFalse(s.autorun)
    }

    func testBadValuesFailWithTheSettingName() {
        let cases: [([String: String], String)] = [
            ([:], "no aggregator URL"),
            (["FREENET_SERVER_URL": "ftp://x"], "not an http(s) URL"),
            (["FREENET_SERVER_URL": "http://h:1"], "no device token"),
            (["FREENET_SERVER_URL": "http://h:1", "FREENET_TOKEN": "t", "FREENET_RUNS": "0"], "runs must be"),
            (["FREENET_SERVER_URL": "http://h:1", "FREENET_TOKEN": "t", "FREENET_AUTORUN": "maybe"], "autorun"),
        ]
        for (env, expected) in cases {
            XCTAssertThrowsError(try BenchSettings.resolve(arguments: [], environment: env)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) should mention \(expected)")
            }
        }
    }
}

final class ManifestTests: XCTestCase {
    func testDecodesExporterManifestAndIgnoresExtras() throws {
        let manifest = try BundleManifest.decode(TinyBundle.make().manifest)
        XCTAssertEqual(manifest.bundleID, "b1")
        XCTAssertEqual(manifest.artifacts.count, 3)
        let tiny = manifest.artifacts[0]
        XCTAssertEqual(tiny.inputShape, [1, 3, 4, 4])
        XCTAssertEqual(tiny.reference?.inputFile, "tiny/ref_in.bin")
        XCTAssertEqual(tiny.macs, 42)
        XCTAssertNil(tiny.unavailableReason)
        XCTAssertEqual(manifest.artifacts[2].unavailableReason, "export failed: converter crashed")
    }

    func testInvalidManifestNamesTheField() {
        XCTAssertThrowsError(try BundleManifest.decode(Data(#"{"bundle_id": "x"}"#.utf8))) { error in
            XCTAssertTrue("\(error)".contains("artifacts"), "\(error)")
        }
    }

    func testFloat32RoundTripAndOddLength() throws {
        let values: [Float] = [0, -1.5, .pi, 1e-20]
        XCTAssertEqual(try decodeFloat32LE(encodeFloat32LE(values)), values)
        XCTAssertEqual(encodeFloat32LE([1]), Data([0x00, 0x00, 0x80, 0x3f]))  // little-endian 1.0f
        XCTAssertThrowsError(try decodeFloat32LE(Data([1, 2, 3])))
    }
}

final class StoredZipTests: XCTestCase {
    /// Builds a stored (method 0) ZIP the way Python's zipfile.ZIP_STORED lays it out.
    static func makeZip(_ members: [(String, Data)], method: UInt16 = 0) -> Data {
        var out = Data(), central = Data()
        func le16(_ v: Int) -> Data { withUnsafeBytes(of: UInt16(v).littleEndian) { Data($0) } }
        func le32(_ v: Int) -> Data { withUnsafeBytes(of: UInt32(v).littleEndian) { Data($0) } }
        for (name, body) in members {
            let offset = out.count
            let n = Data(name.utf8)
            out += le32(0x0403_4b50) + le16(20) + le16(0) + le16(Int(method)) + le16(0) + le16(0) + le32(0)
            out += le32(body.count) + le32(body.count) + le16(n.count) + le16(0) + n + body
            central += le32(0x0201_4b50) + le16(20) + le16(20) + le16(0) + le16(Int(method)) + le16(0) + le16(0) + le32(0)
            central += le32(body.count) + le32(body.count) + le16(n.count) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0)
            central += le32(offset) + n
        }
        let cdOffset = out.count
        out += central
        out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(members.count) + le16(members.count)
        out += le32(central.count) + le32(cdOffset) + le16(0)
        return out
    }

    func testExtractsStoredMembers() throws {
        let dir = temporaryDirectory()
        let zip = Self.makeZip([("m.mlpackage/", Data()), ("m.mlpackage/Manifest.json", Data("{}".utf8)),
                                ("m.mlpackage/Data/weights.bin", Data([1, 2, 3]))])
        let names = try StoredZip.extract(zip, to: dir)
        XCTAssertEqual(names, ["m.mlpackage/Manifest.json", "m.mlpackage/Data/weights.bin"])
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("m.mlpackage/Data/weights.bin")), Data([1, 2, 3]))
    }

    func testRefusesCompressionAndEscapingPaths() {
        let dir = temporaryDirectory()
        XCTAssertThrowsError(try StoredZip.extract(Self.makeZip([("a", Data([1]))], method: 8), to: dir)) {
            XCTAssertTrue("\($0)".contains("ZIP_STORED"), "\($0)")
        }
        XCTAssertThrowsError(try StoredZip.extract(Self.makeZip([("../evil", Data([1]))]), to: dir)) {
            XCTAssertTrue("\($0)".contains("outside"), "\($0)")
        }
        XCTAssertThrowsError(try StoredZip.extract(Data("not a zip at all, just text....".utf8), to: dir))
    }
}

final class ClientTests: XCTestCase {
    func client(_ server: StubServer, token: String = "good-token") -> AggregatorClient {
        AggregatorClient(baseURL: URL(string: "http://stub:8787")!, token: token, transport: server)
    }

    func testUploadStatusMapping() async throws {
        let server = StubServer()
        let body = try sampleReport().jsonData()
        let outcome = try await client(server).upload(reportJSON: body)
        XCTAssertEqual(outcome, .stored)
        server.postStatus = { _ in (200, #"{"stored": false}"#) }
        let again = try await client(server).upload(reportJSON: body)
        XCTAssertEqual(again, .alreadyStored)
        server.postStatus = { _ in (422, #"{"detail": [{"field": "timing.samples_ms.3", "msg": "Input should be greater than 0"}]}"#) }
        do {
            _ = try await client(server).upload(reportJSON: body)
            XCTFail("422 must throw")
        } catch let error as AggregatorError {
            XCTAssertEqual(error, .rejected("timing.samples_ms.3: Input should be greater than 0"))
            XCTAssertFalse(error.isRetryable)
        }
        do {
            _ = try await client(server, token: "bad").upload(reportJSON: body)
            XCTFail("401 must throw")
        } catch let error as AggregatorError {
            guard case .unauthorized = error else { return XCTFail("\(error)") }
        }
        server.setDown(true)
        do {
            _ = try await client(server).upload(reportJSON: body)
            XCTFail("down must throw")
        } catch let error as AggregatorError {
            XCTAssertTrue(error.isRetryable, "\(error)")
        }
    }

    func testDownloadRefusesChecksumMismatch() async throws {
        let server = StubServer()
        server.files = TinyBundle.make().files
        let good = try await client(server).download(bundle: "b1", path: "tiny/ref_in.bin", expectedSHA256: nil)
        XCTAssertEqual(good.count, 3 * 4 * 4 * 4)
        do {
            _ = try await client(server).download(bundle: "b1", path: "tiny/ref_in.bin", expectedSHA256: String(repeating: "0", count: 64))
            XCTFail("mismatch must throw")
        } catch let error as AggregatorError {
            guard case .checksumMismatch = error else { return XCTFail("\(error)") }
            XCTAssertTrue(error.description.contains("refusing"))
        }
        // A server header that disagrees with the bytes is refused too.
        server.headerOverride["b1/files/tiny/ref_in.bin"] = String(repeating: "1", count: 64)
        do {
            _ = try await client(server).download(bundle: "b1", path: "tiny/ref_in.bin", expectedSHA256: Digest.sha256Hex(good))
            XCTFail("header mismatch must throw")
        } catch let error as AggregatorError {
            guard case .checksumMismatch = error else { return XCTFail("\(error)") }
        }
    }
}
