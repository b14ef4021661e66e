// The HTTP client of the aggregator protocol (docs/protocol.md).
//
// This file owns every request the app makes: health, bundle list, manifest, artifact download
// (verified against the manifest's sha256 and the server's X-Content-SHA256 header, a mismatch is
// refused) and report upload, one at a time or the offline queue as one batch (201 stored / 200
// already stored; 401, 413 and 422 are errors that a retry cannot fix; network failures and 5xx
// are retryable). The transport is a protocol so tests
// can run the client against canned answers as well as against the real server on loopback.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

public protocol HTTPTransport: Sendable {
    func send(_ request: URLRequest) async throws -> (Data, HTTPURLResponse)
}

/// URLSession over an ephemeral configuration: no cookies or caches between runs.
public final class URLSessionTransport: HTTPTransport {
    private let session: URLSession

    public init(timeout: TimeInterval = 60) {
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: config)
    }

    public func send(_ request: URLRequest) async throws -> (Data, HTTPURLResponse) {
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else {
            throw AggregatorError.badResponse("not an HTTP response from \(request.url?.absoluteString ?? "?")")
        }
        return (data, http)
    }
}

public enum AggregatorError: Error, CustomStringConvertible, Equatable {
    /// Network down, refused connection, timeout: the server never answered.
    case unreachable(String)
    case unauthorized(String)
    case tooLarge(String)
    /// 422: the report is not valid; `detail` lists the fields the server named.
    case rejected(String)
    case notFound(String)
    case server(status: Int, body: String)
    case badResponse(String)
    case checksumMismatch(path: String, expected: String, actual: String)

    /// Whether sending the same request later can succeed without changing it.
    public var isRetryable: Bool {
        switch self {
        case .unreachable, .server: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .unreachable(let why): return "aggregator unreachable: \(why)"
        case .unauthorized(let why): return "token refused (401): \(why); create one with `freenet token create --device NAME` and enter it in Settings"
        case .tooLarge(let why): return "report too large (413): \(why)"
        case .rejected(let why): return "report rejected (422): \(why)"
        case .notFound(let why): return "not found (404): \(why)"
        case .server(let status, let body): return "aggregator error \(status): \(body)"
        case .badResponse(let why): return "unexpected answer: \(why)"
        case .checksumMismatch(let path, let expected, let actual):
            return "sha256 mismatch for \(path): manifest says \(expected), received \(actual); refusing to load it"
        }
    }
}

public enum UploadOutcome: Sendable, Equatable {
    case stored       // 201
    case alreadyStored  // 200: the same run_id was stored earlier (a retry after a lost answer)
}

public struct AggregatorClient: Sendable {
    public let baseURL: URL
    public let token: String
    let transport: any HTTPTransport

    public init(baseURL: URL, token: String, transport: any HTTPTransport = URLSessionTransport()) {
        self.baseURL = baseURL
        self.token = token
        self.transport = transport
    }

    public struct Health: Decodable, Sendable { public let status: String; public let schemaVersion: String?
        enum CodingKeys: String, CodingKey { case status, schemaVersion = "schema_version" } }

    public func health() async throws -> Health {
        let data = try await get(["api", "v1", "health"]).data
        do { return try JSONDecoder().decode(Health.self, from: data) } catch {
            throw AggregatorError.badResponse("health answer is not JSON: \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
    }

    public func bundles() async throws -> [String] {
        let data = try await get(["api", "v1", "bundles"]).data
        // Accept a plain list of ids or {"bundles": [...]} (list of ids or of {"bundle_id": ...}).
        if let ids = try? JSONDecoder().decode([String].self, from: data) { return ids }
        struct Entry: Decodable { let bundleID: String?; let id: String?
            enum CodingKeys: String, CodingKey { case bundleID = "bundle_id", id } }
        struct Wrapped: Decodable { let bundles: [Entry] }
        struct WrappedIDs: Decodable { let bundles: [String] }
        if let w = try? JSONDecoder().decode(WrappedIDs.self, from: data) { return w.bundles }
        if let w = try? JSONDecoder().decode(Wrapped.self, from: data) { return w.bundles.compactMap { $0.bundleID ?? $0.id } }
        if let entries = try? JSONDecoder().decode([Entry].self, from: data) { return entries.compactMap { $0.bundleID ?? $0.id } }
        throw AggregatorError.badResponse("bundle list not understood: \(String(decoding: data.prefix(200), as: UTF8.self))")
    }

    public func manifest(bundle: String) async throws -> BundleManifest {
        let (data, response) = try await get(["api", "v1", "bundles", bundle, "manifest.json"])
        if let header = response.value(forHTTPHeaderField: "X-Content-SHA256")?.lowercased() {
            let actual = Digest.sha256Hex(data)
            if header != actual { throw AggregatorError.checksumMismatch(path: "manifest.json", expected: header, actual: actual) }
        }
        return try BundleManifest.decode(data)
    }

    /// Downloads one bundle file and refuses it unless its sha256 equals `expectedSHA256` (from
    /// the manifest) and the server's X-Content-SHA256 header, when present, agrees. Without an
    /// expected value (an older manifest) the header alone is checked.
    public func download(bundle: String, path: String, expectedSHA256: String?) async throws -> Data {
        let segments = ["api", "v1", "bundles", bundle, "files"] + path.split(separator: "/").map(String.init)
        let (data, response) = try await get(segments)
        let actual = Digest.sha256Hex(data)
        let header = response.value(forHTTPHeaderField: "X-Content-SHA256")?.lowercased()
        if let expected = expectedSHA256?.lowercased(), actual != expected {
            throw AggregatorError.checksumMismatch(path: path, expected: expected, actual: actual)
        }
        if let header, header != actual {
            throw AggregatorError.checksumMismatch(path: path + " (X-Content-SHA256 header)", expected: header, actual: actual)
        }
        return data
    }

    /// POSTs one report's JSON exactly as stored (the queue never re-encodes what it persisted).
    public func upload(reportJSON: Data) async throws -> UploadOutcome {
        var request = URLRequest(url: url(["api", "v1", "reports"]))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.httpBody = reportJSON
        let (data, response) = try await perform(request)
        switch response.statusCode {
        case 201: return .stored
        case 200: return .alreadyStored
        default: throw Self.error(for: response.statusCode, body: data, url: request.url)
        }
    }

    /// One item of a batch answer: 201 stored, 200 stored before, 422 invalid (with the reason).
    public struct BatchItemResult: Sendable, Equatable {
        public var status: Int
        public var detail: String
    }

    /// `POST /api/v1/reports/batch` with `{"reports": [...]}`, each report's JSON exactly as
    /// stored. Returns one result per report, in order (each report is judged alone); throws when
    /// the request as a whole fails (unreachable, 401, 404 from a server without the endpoint,
    /// 413, 5xx).
    public func uploadBatch(reportJSONs: [Data]) async throws -> [BatchItemResult] {
        var body = Data(#"{"reports":["#.utf8)
        for (i, json) in reportJSONs.enumerated() {
            if i > 0 { body.append(Data(",".utf8)) }
            body.append(json)
        }
        body.append(Data("]}".utf8))
        var request = URLRequest(url: url(["api", "v1", "reports", "batch"]))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.httpBody = body
        let (data, response) = try await perform(request)
        guard response.statusCode == 200 else { throw Self.error(for: response.statusCode, body: data, url: request.url) }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let results = object["results"] as? [[String: Any]], results.count == reportJSONs.count else {
            throw AggregatorError.badResponse("batch answer does not list one result per report: \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        return try results.map { item in
            guard let status = (item["status"] as? NSNumber)?.intValue else {
                throw AggregatorError.badResponse("batch result without a status: \(item)")
            }
            return BatchItemResult(status: status, detail: item["detail"].map(Self.detailText(object:)) ?? "")
        }
    }

    // MARK: - plumbing

    func url(_ segments: [String]) -> URL {
        // Build the path segment by segment so a bundle id or file name is percent-encoded
        // instead of being read as path syntax.
        var url = baseURL
        for segment in segments { url.appendPathComponent(segment) }
        return url
    }

    private func get(_ segments: [String]) async throws -> (data: Data, response: HTTPURLResponse) {
        var request = URLRequest(url: url(segments))
        request.httpMethod = "GET"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await perform(request)
        guard response.statusCode == 200 else { throw Self.error(for: response.statusCode, body: data, url: request.url) }
        return (data, response)
    }

    private func perform(_ request: URLRequest) async throws -> (Data, HTTPURLResponse) {
        do {
            return try await transport.send(request)
        } catch let error as AggregatorError {
            throw error
        } catch {
            throw AggregatorError.unreachable("\(request.url?.absoluteString ?? "?"): \(error.localizedDescription)")
        }
    }

    static func error(for status: Int, body: Data, url: URL?) -> AggregatorError {
        let text = detailText(body)
        switch status {
        case 401, 403: return .unauthorized(text)
        case 404: return .notFound("\(url?.path ?? "?"): \(text)")
        case 413: return .tooLarge(text)
        case 422: return .rejected(text)
        default: return .server(status: status, body: text)
        }
    }

    /// FastAPI puts the reason in `detail`: a string, or for 422 a list of {field|loc, msg}.
    static func detailText(_ body: Data) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let detail = object["detail"] else {
            return String(decoding: body.prefix(2000), as: UTF8.self)
        }
        return detailText(object: detail)
    }

    static func detailText(object detail: Any) -> String {
        if let text = detail as? String { return text }
        if let items = detail as? [[String: Any]] {
            return items.map { item in
                let field = (item["field"] as? String) ?? ((item["loc"] as? [Any])?.map { "\($0)" }.joined(separator: ".") ?? "?")
                return "\(field): \(item["msg"] as? String ?? "?")"
            }.joined(separator: "; ")
        }
        return String(describing: detail)
    }
}
