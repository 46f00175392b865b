import Engine
import Experiments
import Foundation
import TestSupport
import Testing
import Training

/// Experiments as library types: a plan (kind, hyperparameters, root, phases, what is
/// unfinished) and a runner that trains one phase at a time, the same bytes as `lth`.
@Suite("Experiment plans and phases", .serialized, .tags(.endToEnd), .endToEnd)
struct ExperimentPlanTests {
  static let flags = [
    "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1", "--training-steps",
    "2ep", "--quiet", "--threads", "2",
  ]

  func hparams() throws -> LotteryHParams {
    var o = TrainingOverrides()
    o.dataset = "synthetic"
    o.subsampleFraction = 0.1
    o.trainingSteps = "2ep"
    return try LotteryHParams.resolve(try TrainingHParams.resolve(model: "mnist_lenet_64_32", o))
  }

  @Test("a lottery plan's phases, run one at a time through the library, match lth lottery's files")
  func lotteryPhases() throws {
    let out = CLI.tempDir()
    let plan = LotteryPlan(try hparams(), output: out, replicates: [1, 2], levels: 2)
    #expect(plan.kind == .lottery && plan.root.hasPrefix(out + "/lottery_"))
    #expect(plan.hyperparameters.hash == (try hparams()).hash)
    let phases = plan.phases()
    #expect(phases.map(\.id) == ["r1.L0", "r1.L1", "r1.L2", "r2.L0", "r2.L1", "r2.L2"])
    #expect(phases[1].dependencies == ["r1.L0"] && phases[3].dependencies.isEmpty)
    #expect(plan.unfinished().count == 6)

    // Run replicate 1's phases through the library (holding the worker pool alone, so that
    // tests timing their own parallel loops are not disturbed).
    try withExclusiveThreads(2) {
      let runner = try LotteryRunner(plan.hparams, dataDir: nil, output: out, progress: .quiet)
      try runner.open()
      runner.releaseRoot()
      for phase in plan.unfinished() where phase.replicate == 1 { try runner.run(phase) }
    }
    #expect(plan.unfinished().map(\.id) == ["r2.L0", "r2.L1", "r2.L2"])

    // The same experiment through lth: same folder, same trained bytes.
    let cli = CLI.tempDir()
    let r = try CLI.run(["lottery"] + Self.flags + ["--output", cli, "--levels", "2", "--replicate", "1"])
    #expect(r.status == 0, "\(r.stderr)")
    let other = LotteryPlan(plan.hparams, output: cli, replicates: [1], levels: 2)
    #expect(other.unfinished().isEmpty)
    for l in 0...2 {
      let a = RunFile.modelFinal.path(in: RunLayout.main(RunLayout.level(plan.root, replicate: 1, level: l)))
      let b = RunFile.modelFinal.path(in: RunLayout.main(RunLayout.level(other.root, replicate: 1, level: l)))
      #expect(FileManager.default.contents(atPath: a) == FileManager.default.contents(atPath: b), "level \(l)")
    }
  }

  @Test("a branch plan runs after its source phases; prune-init phases are independent")
  func branchAndPaI() throws {
    let h = try hparams()
    let b = BranchHParams(kind: .randomReinit, layout: nil, training: nil)
    let plan = BranchPlan(lottery: h, output: "/o", replicates: [1, 2], levels: [1], branch: b)
    #expect(
      plan.phases().map(\.id) == [
        "r1.L0", "r1.L1", "r1.L1.random-reinit", "r2.L0", "r2.L1", "r2.L1.random-reinit",
      ])
    #expect(plan.phases()[2].dependencies == ["r1.L1"] && plan.phases()[2].branch == b)
    let pai = try PaIHParams(
      training: h.training, method: "magnitude", allocation: .global, rounds: nil, scoreBatch: nil, atStep: nil,
      ignore: [], minDensity: nil, retrain: nil, rewindStep: nil, finetuneSteps: nil)
    let p = PaIPlan(pai, output: "/o", replicates: [1], densities: [0.5, 0.1])
    #expect(p.kind == .pai && p.phases().map(\.id) == ["r1.d0.5", "r1.d0.1"])
    #expect(p.phases().allSatisfy { $0.dependencies.isEmpty && !$0.isDone })
  }

  @Test("a branch refused for a corrupt mask is recorded as failed in commands.jsonl, with its error")
  func refusedBranchRecorded() throws {
    let out = CLI.tempDir()
    let args = Self.flags + ["--output", out, "--levels", "1"]
    #expect(try CLI.run(["lottery"] + args).status == 0)
    let plan = LotteryPlan(try hparams(), output: out, replicates: [1], levels: 1)
    let mask = RunFile.mask.path(in: RunLayout.main(RunLayout.level(plan.root, replicate: 1, level: 1)))
    try AtomicFile.write(Array("not a mask".utf8), to: mask)
    let r = try CLI.run(["branch", "random-reinit"] + args)
    #expect(r.status != 0 && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    let lines = try AtomicFile.read(RunFile.commands.path(in: plan.root)).split(separator: 10)
    let last = try #require(JSONValue.parse(Array(lines.last ?? [])))
    #expect(last["outcome"]?.string == "failed", "\(last)")
    #expect(last["argv"]?.array?.contains(.string("random-reinit")) == true)
    #expect(last["error"]?.string?.contains("mask") == true, "\(last)")
  }

  @Test("controls retrain the way the main line does: under learning-rate rewinding from level L-1's trained weights")
  func controlsFollowTheMainLine() throws {
    let out = CLI.tempDir()
    let args = Self.flags + ["--output", out, "--levels", "1", "--retrain", "lr-rewind", "--rewind-step", "1ep"]
    #expect(try CLI.run(["lottery"] + args).status == 0)
    let r = try CLI.run(["branch", "random-prune"] + args)
    #expect(r.status == 0, "\(r.stderr)")
    var o = LotteryOverrides()
    o.retrain = .lrRewind
    o.rewindStep = "1ep"
    let h = try LotteryHParams.resolve(try hparams().training, o)
    let b = h.branch(BranchHParams(kind: .randomPrune, layout: .layerwise, training: nil))
    #expect(b.retrain == .lrRewind)
    // Weight rewinding keeps the branch identity (and hash) it always had.
    #expect(try hparams().branch(BranchHParams(kind: .randomPrune, layout: nil, training: nil)).retrain == nil)
    let root = LotteryRunner.root(h, output: out)
    let dir = LotteryRunner.branchDir(root, 1, 1, b)
    let start = try load(RunFile.modelStart.path(in: dir))
    let mask = try load(RunFile.mask.path(in: dir))
    let source = try load(RunFile.modelFinal.path(in: LotteryRunner.levelDir(root, 1, 0)))
    for (name, m) in mask {
      #expect(start[name]! == zip(source[name]!, m).map { $0 * $1 }, "\(name)")
    }
  }
}
