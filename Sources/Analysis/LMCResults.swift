import Experiments
import Foundation
import Training

/// One (replicate, pair) curve of an LMC run as `lth results` lists it.
public struct PairCurve: Codable, Equatable, Sendable {
  @Nullable public var replicate: Int?
  @Nullable public var pair: String?
  public var alpha: [Double]
  public var testError: [Double]
  public var testLoss: [Double]
  public var trainError: [Double]
  public var trainLoss: [Double]
  @Nullable public var testErrorBarrier: Double?
  @Nullable public var trainErrorBarrier: Double?
  @Nullable public var testLossBarrier: Double?

  public init(_ c: CurveRecord) {
    replicate = c.replicate
    pair = c.pair
    (alpha, testError, testLoss, trainError, trainLoss) = (c.alpha, c.testError, c.testLoss, c.trainError, c.trainLoss)
    testErrorBarrier = c.testErrorBarrier
    trainErrorBarrier = c.trainErrorBarrier
    testLossBarrier = c.testLossBarrier
  }

  enum CodingKeys: String, CodingKey {
    case replicate, pair, alpha
    case testError = "test_error"
    case testLoss = "test_loss"
    case trainError = "train_error"
    case trainLoss = "train_loss"
    case testErrorBarrier = "test_error_barrier"
    case trainErrorBarrier = "train_error_barrier"
    case testLossBarrier = "test_loss_barrier"
  }
}

/// One spawn step k of an LMC run: the mean path over every (replicate, pair) curve, the
/// barriers' mean ± sample standard deviation, and the children's final test accuracy.
public struct SpawnStepResult: Codable, Equatable, Sendable {
  public var k: Int
  public var alpha: [Double]
  public var testErrorMean: [Double]
  public var testErrorStd: [Double?]
  public var trainErrorMean: [Double]
  public var trainErrorStd: [Double?]
  public var endpointTestAccuracyValues: [Double]
  public var endpointReplicates: [Int]
  @Nullable public var testErrorBarrierMean: Double?
  @Nullable public var testErrorBarrierStd: Double?
  @Nullable public var trainErrorBarrierMean: Double?
  @Nullable public var trainErrorBarrierStd: Double?
  @Nullable public var testLossBarrierMean: Double?
  @Nullable public var endpointTestAccuracyMean: Double?
  @Nullable public var endpointTestAccuracyStd: Double?
  public var curves: [PairCurve]

  public init(
    k: Int, alpha: [Double], testErrorMean: [Double], testErrorStd: [Double?], trainErrorMean: [Double],
    trainErrorStd: [Double?], endpointTestAccuracyValues: [Double], endpointReplicates: [Int],
    testErrorBarrierMean: Double? = nil, testErrorBarrierStd: Double? = nil, trainErrorBarrierMean: Double? = nil,
    trainErrorBarrierStd: Double? = nil, testLossBarrierMean: Double? = nil, endpointTestAccuracyMean: Double? = nil,
    endpointTestAccuracyStd: Double? = nil, curves: [PairCurve]
  ) {
    (self.k, self.alpha, self.testErrorMean, self.testErrorStd) = (k, alpha, testErrorMean, testErrorStd)
    (self.trainErrorMean, self.trainErrorStd) = (trainErrorMean, trainErrorStd)
    (self.endpointTestAccuracyValues, self.endpointReplicates) = (endpointTestAccuracyValues, endpointReplicates)
    self.testErrorBarrierMean = testErrorBarrierMean
    self.testErrorBarrierStd = testErrorBarrierStd
    self.trainErrorBarrierMean = trainErrorBarrierMean
    self.trainErrorBarrierStd = trainErrorBarrierStd
    self.testLossBarrierMean = testLossBarrierMean
    self.endpointTestAccuracyMean = endpointTestAccuracyMean
    self.endpointTestAccuracyStd = endpointTestAccuracyStd
    self.curves = curves
  }

  enum CodingKeys: String, CodingKey {
    case k, alpha, curves
    case testErrorMean = "test_error_mean"
    case testErrorStd = "test_error_std"
    case trainErrorMean = "train_error_mean"
    case trainErrorStd = "train_error_std"
    case endpointTestAccuracyValues = "endpoint_test_accuracy_values"
    case endpointReplicates = "endpoint_replicates"
    case testErrorBarrierMean = "test_error_barrier_mean"
    case testErrorBarrierStd = "test_error_barrier_std"
    case trainErrorBarrierMean = "train_error_barrier_mean"
    case trainErrorBarrierStd = "train_error_barrier_std"
    case testLossBarrierMean = "test_loss_barrier_mean"
    case endpointTestAccuracyMean = "endpoint_test_accuracy_mean"
    case endpointTestAccuracyStd = "endpoint_test_accuracy_std"
  }
}

/// `lth results` of an LMC run (`kind` `lmc`).
public struct LMCRunResults: Codable, Equatable, Sendable {
  public var kind = "lmc"
  public var runDir: String
  public var bn: String
  public var spawnSteps: [SpawnStepResult]
  public var maskRun: String?
  public var maskLevel: Int?
  public var randomMask: Bool
  public var unfinished: [UnfinishedPhase]
  public var replicatesPresent: [Int]
  public var record: RunRecord
  public var schemaVersion = ResultSchema.version

  enum CodingKeys: String, CodingKey {
    case kind, bn, unfinished, hparams, provenance, commands
    case runDir = "run_dir"
    case spawnSteps = "spawn_steps"
    case maskRun = "mask_run"
    case maskLevel = "mask_level"
    case randomMask = "random_mask"
    case replicatesPresent = "replicates_present"
    case schemaVersion = "schema_version"
  }

  public init(
    runDir: String, bn: String, spawnSteps: [SpawnStepResult], maskRun: String?, maskLevel: Int?,
    randomMask: Bool, unfinished: [UnfinishedPhase], replicatesPresent: [Int], record: RunRecord
  ) {
    (self.runDir, self.bn, self.spawnSteps, self.maskRun, self.maskLevel) =
      (runDir, bn, spawnSteps, maskRun, maskLevel)
    (self.randomMask, self.unfinished, self.replicatesPresent, self.record) =
      (randomMask, unfinished, replicatesPresent, record)
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    runDir = try c.decodeIfPresent(String.self, forKey: .runDir) ?? ""
    bn = try c.decodeIfPresent(String.self, forKey: .bn) ?? "?"
    spawnSteps = try c.decodeIfPresent([SpawnStepResult].self, forKey: .spawnSteps) ?? []
    maskRun = try c.decodeIfPresent(String.self, forKey: .maskRun)
    maskLevel = try c.decodeIfPresent(Int.self, forKey: .maskLevel)
    randomMask = try c.decodeIfPresent(Bool.self, forKey: .randomMask) ?? false
    unfinished = try c.decodeIfPresent([UnfinishedPhase].self, forKey: .unfinished) ?? []
    replicatesPresent = try c.decodeIfPresent([Int].self, forKey: .replicatesPresent) ?? []
    record = try RunRecord.decode(from: c, hparams: .hparams, provenance: .provenance, commands: .commands)
    schemaVersion = try c.decodeIfPresent(Int.self, forKey: .schemaVersion) ?? ResultSchema.version
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encode(runDir, forKey: .runDir)
    try c.encode(bn, forKey: .bn)
    try c.encode(spawnSteps, forKey: .spawnSteps)
    try c.encode(maskRun, forKey: .maskRun)
    try c.encode(maskLevel, forKey: .maskLevel)
    try c.encode(randomMask, forKey: .randomMask)
    try c.encode(unfinished, forKey: .unfinished)
    try c.encode(replicatesPresent, forKey: .replicatesPresent)
    try record.encode(into: &c, hparams: .hparams, provenance: .provenance, commands: .commands)
    try c.encode(schemaVersion, forKey: .schemaVersion)
  }
}

/// `lth results LMC_RUN`: instability against the spawn step k, mean ± sample standard
/// deviation over every (replicate, pair) curve, and the children's final test accuracy.
public enum LMCResults {
  static func mean(_ x: [Double]) -> Double? { Results.mean(x) }
  static func std(_ x: [Double]) -> Double? { Results.std(x) }

  public static func collect(_ root: String) throws -> LMCRunResults {
    let fm = FileManager.default
    guard fm.fileExists(atPath: RunFile.hparams.path(in: root)) else {
      throw RunError("\(root) is not an lmc run folder (no \(RunFile.hparams.rawValue))")
    }
    var byK: [Int: (curves: [CurveRecord], endpoints: [Double], endpointReplicates: [Int])] = [:]
    var unfinished: [UnfinishedPhase] = []
    let reps = (try fm.contentsOfDirectory(atPath: root)).filter { $0.hasPrefix("replicate_") }.sorted()
    for rep in reps {
      let r = Int(rep.dropFirst("replicate_".count)) ?? -1
      for sp in (try fm.contentsOfDirectory(atPath: root + "/" + rep)).filter({ $0.hasPrefix("spawn_") }) {
        guard let k = Int(sp.dropFirst("spawn_".count)) else { continue }
        let dir = "\(root)/\(rep)/\(sp)"
        let path = RunFile.interpolation.path(in: dir)
        guard let bytes = try? AtomicFile.read(path) else {
          unfinished.append(UnfinishedPhase(replicate: r, k: k))
          continue
        }
        guard let file = try? JSONDecoder().decode(InterpolationFile.self, from: Data(bytes)) else {
          throw RunError("\(path) is unreadable")
        }
        var entry = byK[k] ?? ([], [], [])
        entry.curves += file.curves
        for c in (try fm.contentsOfDirectory(atPath: dir)).filter({ $0.hasPrefix("child_") }).sorted() {
          if let s = try TrainSummary.read(in: dir + "/" + c) {
            entry.endpoints.append(s.testAccuracy)
            entry.endpointReplicates.append(r)
          }
        }
        byK[k] = entry
      }
    }
    var rows: [SpawnStepResult] = []
    for k in byK.keys.sorted() {
      let (curves, endpoints, endpointReplicates) = byK[k]!
      // The mean path over every curve (all curves of a run share the alpha grid).
      let alpha = curves.first?.alpha ?? []
      func path(_ key: KeyPath<CurveRecord, [Double]>) -> (mean: [Double], std: [Double?]) {
        let all = curves.map { $0[keyPath: key] }.filter { $0.count == alpha.count }
        guard !all.isEmpty else { return ([], []) }
        return (alpha.indices.map { i in mean(all.map { $0[i] })! }, alpha.indices.map { i in std(all.map { $0[i] }) })
      }
      let (testMean, testStd) = path(\.testError)
      let (trainMean, trainStd) = path(\.trainError)
      let test = curves.compactMap(\.testErrorBarrier)
      let train = curves.compactMap(\.trainErrorBarrier)
      rows.append(
        SpawnStepResult(
          k: k, alpha: alpha, testErrorMean: testMean, testErrorStd: testStd, trainErrorMean: trainMean,
          trainErrorStd: trainStd, endpointTestAccuracyValues: endpoints, endpointReplicates: endpointReplicates,
          testErrorBarrierMean: mean(test), testErrorBarrierStd: std(test), trainErrorBarrierMean: mean(train),
          trainErrorBarrierStd: std(train), testLossBarrierMean: mean(curves.compactMap(\.testLossBarrier)),
          endpointTestAccuracyMean: mean(endpoints), endpointTestAccuracyStd: std(endpoints),
          curves: curves.map(PairCurve.init)))
    }
    let record = RunStore.record(of: root)
    let h = record.hparams
    return LMCRunResults(
      runDir: root, bn: h?["bn"]?.string ?? "?", spawnSteps: rows, maskRun: h?["mask_run"]?.string,
      maskLevel: h?["mask_level"]?.int, randomMask: h?["random_mask"]?.bool ?? false,
      unfinished: unfinished.sorted { ($0.replicate, $0.k ?? 0) < ($1.replicate, $1.k ?? 0) },
      replicatesPresent: reps.compactMap { Int($0.dropFirst("replicate_".count)) }.sorted(), record: record)
  }

  static func pm(_ m: Double?, _ s: Double?) -> String { Results.pm(m, s) }

  public static func table(_ obj: LMCRunResults) -> String {
    var lines = [
      "batch norm: \(obj.bn) (running statistics \(obj.bn == "recompute" ? "re-estimated at every point" : "interpolated"))"
    ]
    if let run = obj.maskRun {
      lines.append(
        "subnetwork: \(obj.randomMask ? "random mask with the per-tensor counts of" : "mask of") \(run) level \(obj.maskLevel.map(String.init) ?? "?"), rewound to k"
      )
    }
    let header = [
      "k", "test error barrier %", "train error barrier %", "test loss barrier", "endpoint test acc %",
      "curves",
    ]
    var cells: [[String]] = []
    for r in obj.spawnSteps {
      cells.append([
        "\(r.k)", pm(r.testErrorBarrierMean, r.testErrorBarrierStd), pm(r.trainErrorBarrierMean, r.trainErrorBarrierStd),
        r.testLossBarrierMean.map { String(format: "%.4f", $0) } ?? "-",
        pm(r.endpointTestAccuracyMean, r.endpointTestAccuracyStd), "\(r.curves.count)",
      ])
    }
    lines += Results.grid(header, cells)
    return lines.joined(separator: "\n")
  }
}
