// What the app can learn about the device it runs on: identity, thermal state, peak memory.
//
// This file owns the `device` block of a report (manufacturer, `utsname.machine` such as
// `iPhone15,2`, chip name, OS version, RAM), the thermal reading (`ProcessInfo.thermalState` on
// Apple platforms; Linux has no equivalent, so it reports "unknown") and the process's peak
// resident memory from `getrusage`. Everything here is read-only and cheap.
import Foundation
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif

public protocol ThermalProbe: Sendable {
    func read() -> ThermalReading
}

public struct SystemThermalProbe: ThermalProbe {
    public init() {}
    public func read() -> ThermalReading {
        #if canImport(Darwin)
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: return .state(.nominal)
        case .fair: return .state(.fair)
        case .serious: return .state(.serious)
        case .critical: return .state(.critical)
        @unknown default: return .state(.unknown)
        }
        #else
        return .state(.unknown)
        #endif
    }
}

public enum DeviceProbe {
    /// `utsname.machine`: `iPhone15,2` on a phone, `arm64`/`x86_64` on a simulator or Linux.
    public static func machineIdentifier() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    /// True when running in the iOS simulator, whose "device" is the Mac: never a speed result.
    public static var isSimulator: Bool {
        #if targetEnvironment(simulator)
        return true
        #else
        return false
        #endif
    }

    public static func current() -> BenchReport.Device {
        let memory = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        let v = ProcessInfo.processInfo.operatingSystemVersion
        let osVersion = "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"
        #if os(iOS)
        let env = ProcessInfo.processInfo.environment
        let model = isSimulator ? (env["SIMULATOR_MODEL_IDENTIFIER"] ?? machineIdentifier()) : machineIdentifier()
        return .init(manufacturer: "Apple", model: model, soc: isSimulator ? "simulator (\(machineIdentifier()))" : chipName(model),
                     os: "ios", osVersion: osVersion, memoryBytes: memory)
        #elseif os(macOS)
        return .init(manufacturer: "Apple", model: sysctlString("hw.model") ?? machineIdentifier(),
                     soc: sysctlString("machdep.cpu.brand_string") ?? machineIdentifier(), os: "macos",
                     osVersion: osVersion, memoryBytes: memory)
        #else
        let cpu = linuxCPUInfo()
        return .init(manufacturer: cpu.vendor ?? "unknown", model: cpu.modelName ?? machineIdentifier(),
                     soc: machineIdentifier(), os: "linux", osVersion: linuxKernelRelease(), memoryBytes: memory)
        #endif
    }

    /// Chip of the iPhones and iPads in use today (Apple publishes no API for it); the model
    /// identifier is always reported as well, so an unknown entry loses nothing.
    public static func chipName(_ identifier: String) -> String {
        let table: [String: String] = [
            "iPhone12,1": "A13 Bionic", "iPhone12,3": "A13 Bionic", "iPhone12,5": "A13 Bionic", "iPhone12,8": "A13 Bionic",
            "iPhone13,1": "A14 Bionic", "iPhone13,2": "A14 Bionic", "iPhone13,3": "A14 Bionic", "iPhone13,4": "A14 Bionic",
            "iPhone14,2": "A15 Bionic", "iPhone14,3": "A15 Bionic", "iPhone14,4": "A15 Bionic", "iPhone14,5": "A15 Bionic",
            "iPhone14,6": "A15 Bionic", "iPhone14,7": "A15 Bionic", "iPhone14,8": "A15 Bionic",
            "iPhone15,2": "A16 Bionic", "iPhone15,3": "A16 Bionic", "iPhone15,4": "A16 Bionic", "iPhone15,5": "A16 Bionic",
            "iPhone16,1": "A17 Pro", "iPhone16,2": "A17 Pro",
            "iPhone17,1": "A18 Pro", "iPhone17,2": "A18 Pro", "iPhone17,3": "A18", "iPhone17,4": "A18", "iPhone17,5": "A18",
            "iPad13,4": "M1", "iPad13,5": "M1", "iPad13,6": "M1", "iPad13,7": "M1", "iPad13,16": "M1", "iPad13,17": "M1",
            "iPad14,3": "M2", "iPad14,4": "M2", "iPad14,5": "M2", "iPad14,6": "M2",
            "iPad16,3": "M4", "iPad16,4": "M4", "iPad16,5": "M4", "iPad16,6": "M4",
        ]
        return table[identifier] ?? "unknown (\(identifier))"
    }

    /// Peak resident memory of this process so far (getrusage); it covers every earlier run in
    /// the same process, which the report says in its notes.
    public static func peakResidentBytes() -> Int? {
        var usage = rusage()
        #if canImport(Darwin)
        let who = RUSAGE_SELF
        #else
        let who = RUSAGE_SELF.rawValue  // Glibc imports it as an enum case
        #endif
        guard getrusage(who, &usage) == 0, usage.ru_maxrss > 0 else { return nil }
        #if canImport(Darwin)
        return Int(usage.ru_maxrss)  // bytes on Darwin
        #else
        return Int(usage.ru_maxrss) * 1024  // kilobytes on Linux
        #endif
    }

    #if os(macOS)
    static func sysctlString(_ name: String) -> String? {
        var size = 0
        guard sysctlbyname(name, nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: size)
        guard sysctlbyname(name, &bytes, &size, nil, 0) == 0 else { return nil }
        return String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
    #endif

    static func linuxCPUInfo() -> (vendor: String?, modelName: String?) {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return (nil, nil) }
        func field(_ key: String) -> String? {
            for line in text.split(separator: "\n") where line.hasPrefix(key) {
                if let colon = line.firstIndex(of: ":") {
                    let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    if !value.isEmpty { return value }
                }
            }
            return nil
        }
        return (field("vendor_id"), field("model name"))
    }

    static func linuxKernelRelease() -> String {
        var info = utsname()
        uname(&info)
        let release = withUnsafeBytes(of: &info.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        return release.isEmpty ? "unknown" : release
    }
}
