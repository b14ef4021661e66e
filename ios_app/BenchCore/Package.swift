// swift-tools-version:6.0
// BenchCore: the platform-independent core of the FreeNet iOS benchmark app (protocol client,
// runner, Codable report, upload queue, Core ML engine). It builds and is tested on Linux (Swift 6
// in a Debian 13 chroot, see scripts/setup_swift.sh); Apple-only code sits behind
// `#if canImport(CoreML)`. No package dependencies: CI can only reach Debian's registry.
import PackageDescription

let package = Package(
    name: "BenchCore",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "BenchCore", targets: ["BenchCore"]),
    ],
    targets: [
        .target(name: "BenchCore"),
        .testTarget(name: "BenchCoreTests", dependencies: ["BenchCore"]),
    ],
    swiftLanguageModes: [.v6]
)
