import Analysis
import ArgumentParser
import Datasets
import Engine
import Experiments
import Foundation
import NN
import Pruning
import Training

/// Flags every interpolation shares.
struct InterpolationFlags: ParsableArguments {
  typealias K = LMCHParams.CodingKeys
  @Option(name: .key(K.points), help: .key(K.points)) var points = 30
  @Option(name: .key(K.bn), help: .key(K.bn)) var bn = BatchNormMode.recompute
  @Option(name: .key(K.trainEvalSize), help: .key(K.trainEvalSize)) var trainEvalSize = 10_000
  @Option(name: .key(K.bnExamples), help: .key(K.bnExamples)) var bnExamples = 2000

  func mode() throws -> BatchNormMode { bn }
}

struct Interpolate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Test and train error along the line between two saved models of one architecture.",
    discussion: """
      Evaluates W(a) = (1 - a) A + a B at --points values of a in [0, 1]. Both files are \
      state_dicts as safetensors (LotteryKit's model_*.safetensors, or PyTorch's with the same \
      names). A mask (--mask, or a \(RunFile.mask.rawValue) next to either file) must be shared by both. \
      Prints the curve and the error barriers: max_a E(a) - (E(0) + E(1)) / 2.
      """)
  @Argument(help: "The first model (a = 0).") var a: String
  @Argument(help: "The second model (a = 1).") var b: String
  @Option(help: "Model name (see `lth models`).") var model: String
  @Option(help: "Data set (default: the model family's).") var dataset: String?
  @Option(help: "Folder with the data set's files.") var dataDir: String?
  @Option(help: "A mask both models share (\(RunFile.mask.rawValue)).") var mask: String?
  @Option(help: "Seed of the fixed training subset.") var seed: UInt64 = 0
  @OptionGroup var interp: InterpolationFlags
  @Option(help: "Worker threads (results do not depend on it).") var threads = MachineInfo.defaultThreads
  @Flag(help: "Print one JSON object.") var json = false

  func run() throws {
    runOrFail {
      guard threads >= 1 else { throw EngineError("--threads must be at least 1") }
      Parallel.threads = threads
      let bnMode = try interp.mode()
      guard interp.points >= 2 else { throw EngineError("--points must be at least 2, got \(interp.points)") }
      var o = TrainingOverrides()
      o.dataset = dataset
      let h = try TrainingHParams.resolve(model: model, o)
      let setup = try RunSetup(h, dataDir: dataDir)
      let netA = try setup.makeNetwork(seed: 0)
      let netB = try setup.makeNetwork(seed: 0)
      for (net, path) in [(netA, a), (netB, b)] {
        guard FileManager.default.fileExists(atPath: path) else { throw RunError("\(path): no such file") }
        try ModelState.load(net, from: path)
      }
      // The shared mask: --mask, else the mask.safetensors beside each file; two must agree.
      var masks: [(String, Mask)] = []
      let candidates =
        mask.map { [$0] } ?? [a, b].map { RunFile.mask.path(in: ($0 as NSString).deletingLastPathComponent) }
      for path in Set(candidates).sorted() where FileManager.default.fileExists(atPath: path) {
        masks.append((path, try Mask.load(path, for: netA)))
      }
      if mask != nil && masks.isEmpty { throw RunError("\(mask!): no such file") }
      if masks.count == 2 && masks[0].1 != masks[1].1 {
        throw EngineError("the endpoints have different masks (\(masks[0].0) and \(masks[1].0))")
      }
      let ip = try Interpolation(net: try setup.makeNetwork(seed: 0), a: netA, b: netB, mask: masks.first?.1)
      let trainIdx = Interpolation.trainSubset(
        count: setup.train.count, size: interp.trainEvalSize, seed: seed)
      let curve = try ip.curve(
        points: interp.points, bn: bnMode, test: setup.test, train: setup.train, trainIndices: trainIdx,
        bnExamples: interp.bnExamples)
      if json {
        print(jsonLine(curve.record()))
        return
      }
      print("batch norm: \(bnMode.rawValue)")
      print("alpha   test error %  test loss  train error %  train loss")
      for i in curve.alpha.indices {
        print(
          String(
            format: "%.3f   %12.2f  %9.4f  %13.2f  %10.4f", curve.alpha[i], curve.testError[i] * 100,
            curve.testLoss[i], curve.trainError[i] * 100, curve.trainLoss[i]))
      }
      print(
        String(
          format: "test error barrier %.2f%%, train error barrier %.2f%%, test loss barrier %.4f",
          curve.testErrorBarrier * 100, curve.trainErrorBarrier * 100, curve.testLossBarrier))
    }
  }
}

struct LMC: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "lmc",
    abstract: "Instability analysis: spawn copies at step k with other data orders, interpolate them.",
    discussion: """
      For every spawn step k: a parent trains from initialisation to k (its checkpoint holds \
      weights, batch-norm state and optimizer state), --copies children resume from it with \
      data orders drawn from (seed, replicate, k, child) and train to the end, and every pair \
      is interpolated. --mask-from LOTTERY_RUN --level L trains the subnetwork of that level, \
      its surviving weights rewound to k (--random-mask: a random mask with the same per-tensor \
      counts). Results: <output>/lmc_<hash>/replicate_R/spawn_<k>/; re-running resumes.
      """)
  @OptionGroup var training: TrainingFlags
  @Option(help: "Spawn steps (iterations or 1ep-style), e.g. 0,100,500,2000.") var spawnSteps: String
  @Option(help: "Children per spawn step.") var copies = 2
  @Option(help: "Number of replicates, numbered 1...R.") var replicates = 1
  @Option(help: "Run only replicate K (a phase of lth run or an array task).") var replicate: Int?
  @Option(name: .key(LMCHParams.CodingKeys.maskRun), help: .key(LMCHParams.CodingKeys.maskRun)) var maskFrom:
    String?
  @Option(name: .key(LMCHParams.CodingKeys.maskLevel), help: .key(LMCHParams.CodingKeys.maskLevel)) var level:
    Int?
  @Flag(name: .key(LMCHParams.CodingKeys.randomMask), help: .key(LMCHParams.CodingKeys.randomMask))
  var randomMask = false
  @OptionGroup var interp: InterpolationFlags

  /// The hyperparameters (no data loaded, the mask run need not exist yet).
  func hparams() throws -> LMCHParams {
    let t = try training.resolve()
    let maskRun = maskFrom.map { (($0 as NSString).standardizingPath as NSString).lastPathComponent }
    return try LMCHParams(
      training: t, maskRun: maskRun, maskLevel: level, randomMask: randomMask, bn: try interp.mode(),
      points: interp.points, trainEvalSize: interp.trainEvalSize, bnExamples: interp.bnExamples)
  }

  func replicateList() throws -> [Int] {
    guard replicates >= 1 else { throw EngineError("--replicates must be at least 1, got \(replicates)") }
    if let k = replicate, k < 1 { throw EngineError("--replicate must be at least 1, got \(k)") }
    return replicate.map { [$0] } ?? Array(1...replicates)
  }

  /// The spawn steps in iterations, sorted; `perEpoch` is asked only for 1ep-style steps.
  func spawnIterations(perEpoch: () throws -> Int) throws -> [Int] {
    var ks: [Int] = []
    for part in spawnSteps.split(separator: ",", omittingEmptySubsequences: false) {
      // Plain numbers are iterations; 1ep-style strings work too.
      let plain = part.allSatisfy(\.isNumber) && !part.isEmpty
      let k = try StepSpec(parsing: plain ? part + "it" : String(part)).iterations(
        perEpoch: plain ? 1 : try perEpoch())
      if !ks.contains(k) { ks.append(k) }
    }
    return ks.sorted()
  }

  /// The runner, the spawn steps in iterations and the replicates of this command, checked.
  func prepare() throws -> (LMCRunner, [Int], [Int]) {
    let reps = try replicateList()
    let runner = try LMCRunner(
      try hparams(), maskFrom: maskFrom, dataDir: training.dataDir, output: training.output,
      progress: training.progress)
    let ks = try spawnIterations { runner.setup.iterationsPerEpoch }
    try runner.validate(spawnSteps: ks, copies: copies)
    for r in reps { _ = try runner.mask(replicate: r) }  // a missing level fails before training
    return (runner, ks, reps)
  }

  func run() throws {
    runOrFail {
      try training.applyThreads()
      let (runner, ks, reps) = try prepare()
      let record = try RunStore.begin(runner, command: "lmc", requireSameCPU: training.requireSameCPU) {
        runner.hasUnfinished(replicates: reps, spawnSteps: ks)
      }
      try CommandRecord.perform(record) {
        for r in reps { for k in ks { try runner.run(replicate: r, spawn: k, copies: copies) } }
      }
      let results = try LMCResults.collect(runner.root)
      if !training.json { print(LMCResults.table(results)) }
      print(training.json ? jsonLine(results) : "results: \(runner.root)")
    }
  }
}
