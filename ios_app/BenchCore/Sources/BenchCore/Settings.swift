// Run settings and where they come from.
//
// This file owns the configuration of a benchmark run (aggregator URL, device token, bundle,
// warm-up and timed run counts, cool-down policy) and its sources, highest precedence first:
// launch arguments (`-serverURL http://mac.local:8787 -token T -bundle B -runs 50 -autorun YES`,
// the Xcode scheme or `xcrun devicectl device process launch ... -- ARGS`), environment variables
// (`FREENET_SERVER_URL`, `FREENET_TOKEN`, ..., used by the Linux tests), then what the settings
// screen saved. Bad values fail with a message naming the setting instead of running with junk.
import Foundation

public struct CooldownPolicy: Sendable, Equatable {
    /// Thermal states at or above which the runner waits before measuring.
    public var hotThreshold: ThermalState = .serious
    public var pollInterval: Duration = .seconds(10)
    /// Longest wait for the device to cool; after it the run proceeds and says so in its notes.
    public var maxWait: Duration = .seconds(300)
    /// Fixed rest before every (artifact, accelerator) measurement, so runs start from similar heat.
    public var restBeforeRun: Duration = .zero

    public init(hotThreshold: ThermalState = .serious, pollInterval: Duration = .seconds(10),
                maxWait: Duration = .seconds(300), restBeforeRun: Duration = .zero) {
        self.hotThreshold = hotThreshold
        self.pollInterval = pollInterval
        self.maxWait = maxWait
        self.restBeforeRun = restBeforeRun
    }
}

public struct BenchSettings: Sendable, Equatable {
    public var serverURL: URL
    public var token: String
    /// Bundle id; nil picks the only bundle the server has.
    public var bundle: String?
    public var warmupRuns: Int = 10
    public var timedRuns: Int = 50
    public var cooldown = CooldownPolicy()
    /// Only these artifact ids (all when empty).
    public var artifactIDs: Set<String> = []
    /// Only these accelerators, e.g. ["ane", "gpu"] (all the engine offers when empty).
    public var accelerators: Set<String> = []
    /// Start a run as soon as the app launches (for unattended runs from Xcode / devicectl).
    public var autorun = false

    public init(serverURL: URL, token: String, bundle: String? = nil) {
        self.serverURL = serverURL
        self.token = token
        self.bundle = bundle
    }

    /// Keys shared by launch arguments (`-key value`), environment (`FREENET_KEY`) and storage.
    public enum Key: String, CaseIterable, Sendable {
        case serverURL, token, bundle, warmups, runs, cooldownMaxSeconds, restSeconds, artifacts, accelerators, autorun

        public var environmentName: String {
            switch self {
            case .serverURL: return "FREENET_SERVER_URL"
            case .token: return "FREENET_TOKEN"
            case .bundle: return "FREENET_BUNDLE"
            case .warmups: return "FREENET_WARMUPS"
            case .runs: return "FREENET_RUNS"
            case .cooldownMaxSeconds: return "FREENET_COOLDOWN_MAX_SECONDS"
            case .restSeconds: return "FREENET_REST_SECONDS"
            case .artifacts: return "FREENET_ARTIFACTS"
            case .accelerators: return "FREENET_ACCELERATORS"
            case .autorun: return "FREENET_AUTORUN"
            }
        }
    }

    /// Merges the three sources; `stored` is what the settings screen saved (key -> text).
    public static func resolve(arguments: [String], environment: [String: String], stored: [String: String] = [:]) throws -> BenchSettings {
        let fromArgs = parseLaunchArguments(arguments)
        func value(_ key: Key) -> String? {
            for candidate in [fromArgs[key.rawValue], environment[key.environmentName], stored[key.rawValue]] {
                if let v = candidate?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty { return v }
            }
            return nil
        }
        guard let urlText = value(.serverURL) else {
            throw SettingsError("no aggregator URL: enter it in Settings, or launch with -serverURL http://HOST:8787")
        }
        guard let url = URL(string: urlText), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), url.host != nil else {
            throw SettingsError("serverURL '\(urlText)' is not an http(s) URL such as http://192.168.1.20:8787")
        }
        guard let token = value(.token) else {
            throw SettingsError("no device token: create one with `freenet token create --device NAME` and enter it in Settings (or -token)")
        }
        var settings = BenchSettings(serverURL: url, token: token, bundle: value(.bundle))
        func int(_ key: Key, _ range: ClosedRange<Int>) throws -> Int? {
            guard let text = value(key) else { return nil }
            guard let n = Int(text), range.contains(n) else {
                throw SettingsError("\(key.rawValue) must be a whole number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
            }
            return n
        }
        if let n = try int(.warmups, 0...10_000) { settings.warmupRuns = n }
        if let n = try int(.runs, 1...100_000) { settings.timedRuns = n }
        if let n = try int(.cooldownMaxSeconds, 0...3600) { settings.cooldown.maxWait = .seconds(n) }
        if let n = try int(.restSeconds, 0...3600) { settings.cooldown.restBeforeRun = .seconds(n) }
        func list(_ key: Key) -> Set<String> {
            Set((value(key) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }
        settings.artifactIDs = list(.artifacts)
        settings.accelerators = list(.accelerators)
        if let text = value(.autorun) {
            switch text.lowercased() {
            case "1", "yes", "true": settings.autorun = true
            case "0", "no", "false": settings.autorun = false
            default: throw SettingsError("autorun must be YES or NO, got '\(text)'")
            }
        }
        return settings
    }

    /// `-key value` pairs, the convention iOS itself uses for launch arguments.
    static func parseLaunchArguments(_ arguments: [String]) -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            if arg.hasPrefix("-"), arg.count > 1, i + 1 < arguments.count, let key = Key(rawValue: String(arg.drop(while: { $0 == "-" }))) {
                out[key.rawValue] = arguments[i + 1]
                i += 2
            } else {
                i += 1
            }
        }
        return out
    }
}

public struct SettingsError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
