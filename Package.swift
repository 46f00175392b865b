// swift-tools-version: 6.2
// LotteryKit: sparse neural-network research in Swift (lottery tickets, IMP, rewinding).
import PackageDescription

// Engine's SIMD kernels are compiled for AVX2 (x86-64 from 2013 on; Swift's default
// baseline is SSE2). Swift never fuses a*b+c into FMA on its own, so results are bit for bit
// those of the SSE2 build (checked on training runs), only faster (LeNet step -8%).
#if arch(x86_64)
  let kernelSettings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"], .when(platforms: [.linux]))]
  // The 16-lane versions of a few sparse kernels, called only where oneDNN found AVX-512.
  let avx512Settings: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "skylake-avx512"], .when(platforms: [.linux]))
  ]
#else
  let kernelSettings: [SwiftSetting] = []
  let avx512Settings: [SwiftSetting] = []
#endif

let package = Package(
  name: "LotteryKit",
  platforms: [.macOS(.v14)],
  products: [
    // `import LotteryKit` (the umbrella module) brings every library module.
    .library(name: "LotteryKit", targets: ["LotteryKit"]),
    .executable(name: "lth", targets: ["lth"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // SHA-256 for run hashes (Crypto is CryptoKit's API; on Linux it builds BoringSSL).
    .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    // `make docs`: the DocC catalog Sources/LotteryKit/LotteryKit.docc (a plugin, built only then).
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
  ],
  targets: [
    // BLAS through a system-library target (Debian's OpenBLAS by default).
    .systemLibrary(
      name: "CBLAS", path: "Sources/CBLAS",
      providers: [.apt(["libopenblas-dev"])]),
    // oneDNN (Debian's libdnnl-dev, v2 C API) for convolution; Linux only, optional backend.
    .systemLibrary(
      name: "CDNNL", path: "Sources/CDNNL",
      providers: [.apt(["libdnnl-dev"])]),
    .target(name: "EngineAVX512", swiftSettings: avx512Settings),
    .target(
      name: "Engine",
      dependencies: [
        "CBLAS", "EngineAVX512", .target(name: "CDNNL", condition: .when(platforms: [.linux])),
      ],
      swiftSettings: kernelSettings),
    .target(name: "NN", dependencies: ["Engine"]),
    .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
    .target(name: "Datasets", dependencies: ["Engine", "CZlib"]),
    // Files: safetensors, atomic writes, locks, and the run store's names (RunLayout).
    .target(name: "Storage", dependencies: ["Engine"]),
    .target(name: "Training", dependencies: ["Engine", "NN", "Datasets", "Storage"]),
    .target(name: "Pruning", dependencies: ["Engine", "NN", "Storage"]),
    // Model families, one file each in Sources/Families/Families, and their registry.
    .target(name: "Families", dependencies: ["Engine", "NN", "Pruning"]),
    // The git commit of the checkout, embedded at build time (Plugins/GitCommit: a prebuild
    // command that runs `git rev-parse HEAD`; "unknown" outside a git checkout).
    .plugin(name: "GitCommit", capability: .buildTool()),
    .target(name: "BuildInfo", plugins: ["GitCommit"]),
    .target(
      name: "Experiments",
      dependencies: [
        "Engine", "NN", "Datasets", "Training", "Pruning", "Families", "BuildInfo",
        .product(name: "Crypto", package: "swift-crypto"),
      ]),
    .target(name: "Analysis", dependencies: ["Engine", "NN", "Datasets", "Training", "Pruning", "Families", "Experiments"]),
    .target(name: "Reports", dependencies: ["Training", "Experiments", "Analysis"]),
    .target(name: "Cluster", dependencies: ["Storage"]),
    .target(
      name: "LotteryKit",
      dependencies: [
        "Engine", "NN", "Datasets", "Storage", "Training", "Pruning", "Families", "Experiments", "Analysis",
        "Reports", "Cluster",
      ]),
    .executableTarget(
      name: "lth",
      dependencies: [
        "Engine", "NN", "Datasets", "Training", "Pruning", "Families", "Experiments", "Analysis", "Reports",
        "Cluster", .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    .testTarget(name: "EngineTests", dependencies: ["Engine", "NN", "Families", "TestSupport"]),
    .testTarget(name: "DatasetsTests", dependencies: ["Engine", "NN", "Families", "Datasets", "CZlib", "TestSupport"]),
    .testTarget(name: "NNTests", dependencies: ["Engine", "NN", "Families", "Pruning", "Datasets", "TestSupport"]),
    .target(name: "TestSupport", dependencies: ["Engine"], path: "Tests/TestSupport"),
    .testTarget(
      name: "TrainingTests",
      dependencies: ["Engine", "NN", "Families", "Datasets", "Training", "Experiments", "TestSupport", "BuildInfo"]),
    .testTarget(
      name: "PruningTests",
      dependencies: ["Engine", "NN", "Families", "Datasets", "Training", "Pruning", "Experiments", "TestSupport"]),
    .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Experiments", "TestSupport"]),
    .testTarget(
      name: "ReportsTests",
      dependencies: ["Engine", "Training", "Experiments", "Analysis", "Reports", "TestSupport"]),
    .testTarget(
      name: "AnalysisTests",
      dependencies: ["Engine", "NN", "Families", "Datasets", "Training", "Pruning", "Experiments", "Analysis", "TestSupport"]),
  ],
  swiftLanguageModes: [.v6]
)

// `make fuzz` only (LTH_FUZZ=1 in the environment): libFuzzer targets for the parsers of
// outside bytes, built with `-sanitize=fuzzer,address` into `.build-fuzz`. Ordinary builds
// never see them (without libFuzzer's `main` they would not link).
if Context.environment["LTH_FUZZ"] == "1" {
  package.targets.append(.target(name: "FuzzSupport", path: "Tests/Fuzz/FuzzSupport"))
  let fuzzTargets: [(String, [Target.Dependency])] = [
    ("FuzzIDX", ["Datasets"]), ("FuzzCIFAR", ["Datasets"]), ("FuzzSafetensors", ["Training"]),
    ("FuzzRunJSON", ["Training", "Experiments"]), ("FuzzSteps", ["NN", "Experiments"]),
    ("FuzzPatterns", ["Pruning"]),
  ]
  for (name, deps) in fuzzTargets {
    package.targets.append(
      .executableTarget(name: name, dependencies: deps + ["FuzzSupport"], path: "Tests/Fuzz/\(name)"))
  }
}
