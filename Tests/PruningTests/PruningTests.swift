import Engine
import Experiments
import Families
import Foundation
import NN
import Pruning
import TestSupport
import Testing
import Training

/// Runs `levels` levels of magnitude pruning on random weights (no training).
func densities(_ model: String, policy: PruningPolicy, levels: Int) throws -> [Mask] {
  let net: Network<Float> = try ModelZoo.make(model)
  var masks = [Mask(ones: net)]
  for l in 1...levels {
    net.initialize(seed: UInt64(l), weights: .kaimingNormal)
    try masks.last!.apply(to: net)
    masks.append(try MagnitudePruner.prune(net, mask: masks.last!, policy: policy, level: l))
  }
  return masks
}

@Suite("Pruning", .tags(.endToEnd), .endToEnd)
struct PruningTests {
  @Test("LeNet's default policy: 51.3%, 21.1%, 13.5%, 3.6% after levels 3, 7, 9, 15; nested masks")
  func lenetDensities() throws {
    let policy = try Recipe.forModel("mnist_lenet_300_100").pruning
    let masks = try densities("mnist_lenet_300_100", policy: policy, levels: 15)
    for (level, expected) in [(3, 51.3), (7, 21.1), (9, 13.5), (15, 3.6)] {
      #expect(abs(masks[level].density * 100 - expected) < 0.05, "level \(level): \(masks[level].density)")
    }
    for l in 1...15 { #expect(masks[l].isNested(in: masks[l - 1])) }
    // The pruned weights are the smallest surviving ones of each tensor.
    let net: Network<Float> = try ModelZoo.make("mnist_lenet_300_100")
    net.initialize(seed: 1, weights: .kaimingNormal)
    let m1 = try MagnitudePruner.prune(net, mask: Mask(ones: net), policy: policy, level: 1)
    let w = net.parameter("fc_layers.1.weight")!.value.array.map(abs)
    let kept = zip(w, m1.values["fc_layers.1.weight"]!).filter { $0.1 == 1 }.map(\.0)
    let dropped = zip(w, m1.values["fc_layers.1.weight"]!).filter { $0.1 == 0 }.map(\.0)
    #expect(dropped.count == 6000 && dropped.max()! <= kept.min()!)
    #expect(m1.remaining("fc.weight") == 900)
  }

  @Test("global 20% leaves 0.8^L of the weights to within L")
  func global() throws {
    let policy = PruningPolicy(strategy: .global, fraction: 0.2)
    let masks = try densities("cifar_resnet_8", policy: policy, levels: 6)
    let total = Double(masks[0].totalCount)
    for l in 1...6 {
      #expect(abs(Double(masks[l].remainingCount) - total * pow(0.8, Double(l))) <= Double(l))
      #expect(masks[l].isNested(in: masks[l - 1]))
    }
    // Output layer never pruned (VGG's policy), and ignore patterns.
    let vgg = PruningPolicy(strategy: .global, fraction: 0.2, outputFraction: 0, ignore: ["conv.*"])
    let m = try densities("cifar_resnet_8", policy: vgg, levels: 2)[2]
    #expect(
      m.remaining("fc.weight") == m.total("fc.weight") && m.remaining("conv.weight") == m.total("conv.weight")
    )
  }

  /// The up-front schedule check agrees with real pruning: a layerwise schedule passes for
  /// exactly the levels that pruning completes, and fails at the first one it cannot.
  @Test("the whole pruning schedule is checked before training, with pruning's own counts")
  func schedule() throws {
    let net: Network<Float> = try ModelZoo.make("mnist_lenet_6_4", inputShape: [1, 3, 3], classes: 3)
    net.initialize(seed: 1, weights: .kaimingNormal, batchNorm: .uniform)
    let policy = PruningPolicy(strategy: .layerwise, fraction: 0.3, outputFraction: 0.25)
    var mask = Mask(ones: net)
    var failedAt = 0
    for level in 1...100 {
      do { mask = try MagnitudePruner.prune(net, mask: mask, policy: policy, level: level) } catch {
        failedAt = level
        break
      }
    }
    #expect(failedAt > 3)
    try policy.validateSchedule(for: net, levels: failedAt - 1)
    #expect(throws: PruningError.self) { try policy.validateSchedule(for: net, levels: failedAt) }
    do { try policy.validateSchedule(for: net, levels: 100) } catch {
      #expect("\(error)".contains("level \(failedAt) would prune every remaining weight"), "\(error)")
    }
  }

  @Test("an impossible lottery plan fails before any training, in one line")
  func impossiblePlan() throws {
    let out = CLI.tempDir()
    let r = try CLI.run(["lottery", "--model", "mnist_lenet_300_100", "--levels", "60", "--output", out])
    #expect(r.status != 0)
    #expect(
      r.stderr.contains("level 42 would prune every remaining weight of fc_layers.1.weight"), "\(r.stderr)")
    #expect(r.stderr.split(separator: "\n").count == 1)
    // Nothing was trained: no lottery folder exists.
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
    #expect(!entries.contains { $0.hasPrefix("lottery_") }, "\(entries)")
  }

  @Test("random pruning keeps per-tensor counts (layerwise) or the total (global)")
  func random() throws {
    let masks = try densities(
      "mnist_lenet_300_100", policy: try Recipe.forModel("mnist_lenet_300_100").pruning, levels: 3)
    let m = masks[3]
    let rl = RandomPruner.like(m, layout: .layerwise, seed: 1)
    for n in m.names { #expect(rl.remaining(n) == m.remaining(n)) }
    #expect(rl != m)
    let rg = RandomPruner.like(m, layout: .global, seed: 1)
    #expect(rg.remainingCount == m.remainingCount)
  }

  @Test("bad policies: fractions outside (0, 1), patterns that match nothing, too many levels")
  func badPolicies() throws {
    let net: Network<Float> = try ModelZoo.make("mnist_lenet_2")
    for f in [0.0, 1.0, -0.5, 1.5] {
      #expect(throws: SettingError.self) {
        try PruningPolicy(strategy: .layerwise, fraction: f).fractions(for: net)
      }
    }
    #expect(throws: SettingError.self) {
      try PruningPolicy(strategy: .layerwise, fraction: 0.2, ignore: ["conv*"]).fractions(for: net)
    }
    #expect(throws: PruningError.self) {
      try PruningPolicy(strategy: .global, fraction: 0.2, outputFraction: 0.1).fractions(for: net)
    }
    #expect(throws: PruningError.self) {
      _ = try densities(
        "mnist_lenet_2", policy: PruningPolicy(strategy: .layerwise, fraction: 0.9), levels: 5)
    }
    #expect(wildcardMatch("blocks.*.conv1.weight", "blocks.3.conv1.weight"))
    #expect(!wildcardMatch("blocks.*.conv1.weight", "blocks.3.conv2.weight"))
    #expect(wildcardMatch("fc*", "fc.weight") && !wildcardMatch("fc", "fc.weight"))
  }
}

let lotteryBase = [
  "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1", "--training-steps",
  "6ep",
  "--eval-every", "3ep", "--threads", "2", "--quiet", "--schedule", "step", "--milestones", "3ep", "--gamma",
  "0.5",
]

func lotteryRoot(_ out: String) throws -> String {
  let d = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("lottery_") }
  #expect(d.count == 1)
  return out + "/" + d[0]
}

func load(_ path: String) throws -> [String: [Float]] {
  try Safetensors.read(path).tensors.filter { $0.value.dtype == .F32 }.mapValues { $0.values() }
}

@Suite("Lottery experiments", .serialized, .tags(.endToEnd), .endToEnd)
struct LotteryTests {
  @Test("weight rewinding, LR rewinding and fine-tuning start where they should; saved models obey masks")
  func retrainModes() throws {
    let out = CLI.tempDir()
    for mode in ["weight-rewind", "lr-rewind", "finetune"] {
      let r = try CLI.run(
        ["lottery"] + lotteryBase + [
          "--levels", "2", "--rewind-step", "1ep", "--retrain", mode, "--output", out,
        ])
      #expect(r.status == 0, "\(r.stderr)")
    }
    let roots = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("lottery_") }
    #expect(roots.count == 3)
    for root in roots.map({ out + "/" + $0 }) {
      let hp =
        try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: root + "/hparams.json")!)
        as! [String: Any]
      let mode = (hp["hparams"] as! [String: Any])["retrain"] as! String
      let r1 = root + "/replicate_1"
      let rewind = try load(r1 + "/level_0/main/model_rewind.safetensors")
      for level in 1...2 {
        let dir = "\(r1)/level_\(level)/main"
        let mask = try load(dir + "/mask.safetensors")
        let start = try load(dir + "/model_start.safetensors")
        let prevFinal = try load("\(r1)/level_\(level - 1)/main/model_final.safetensors")
        let source = mode == "weight-rewind" ? rewind : prevFinal
        for (name, m) in mask {
          let expected = zip(source[name]!, m).map { $0 * $1 }
          #expect(start[name]! == expected, "\(mode) level \(level) \(name)")
          let final = try load(dir + "/model_final.safetensors")[name]!
          #expect(zip(final, m).allSatisfy { $1 != 0 || $0 == 0 })
        }
        // Non-mask tensors (biases) come from the source too.
        #expect(start["fc.bias"] == source["fc.bias"])
        let lrs = try CLI.metricsWithoutSeconds(dir + "/metrics.jsonl").map { Double($0["lr"]!)! }
        let steps = try CLI.metricsWithoutSeconds(dir + "/metrics.jsonl").map { Int($0["step"]!)! }
        switch mode {
        case "finetune":
          // Final learning rate throughout, continuing after step T = 60.
          #expect(lrs.allSatisfy { abs($0 - 0.0006) < 1e-12 } && steps.first == 60)
        default:
          // Replays from the rewind step (10) at the rate of that step.
          #expect(steps.first == 10 && abs(lrs.first! - 0.0012) < 1e-12 && abs(lrs.last! - 0.0006) < 1e-12)
        }
      }
    }
  }

  @Test("branches: random-prune keeps counts, random-reinit keeps the mask and changes every weight")
  func branches() throws {
    let out = CLI.tempDir()
    let args = lotteryBase + ["--output", out]
    #expect(try CLI.run(["lottery"] + args + ["--levels", "2"]).status == 0)
    let rp = try CLI.run(["branch", "random-prune"] + args + ["--levels", "1-2", "--layout", "layerwise"])
    #expect(rp.status == 0, "\(rp.stderr)")
    let rr = try CLI.run(["branch", "random-reinit"] + args + ["--levels", "2", "--json"])
    #expect(rr.status == 0, "\(rr.stderr)")
    let root = try lotteryRoot(out)
    let level2 = root + "/replicate_1/level_2"
    let mainMask = try load(level2 + "/main/mask.safetensors")
    let branchDirs = try FileManager.default.contentsOfDirectory(atPath: level2).filter {
      $0.hasPrefix("branch_")
    }
    let prune = level2 + "/" + branchDirs.first { $0.contains("random-prune") }!
    let reinit = level2 + "/" + branchDirs.first { $0.contains("random-reinit") }!
    let pm = try load(prune + "/mask.safetensors")
    for (n, m) in mainMask {
      #expect(pm[n]!.reduce(0, +) == m.reduce(0, +))
      #expect(pm[n]! != m)
    }
    #expect(try load(reinit + "/mask.safetensors") == mainMask)
    let start = try load(reinit + "/model_start.safetensors")
    let mainStart = try load(level2 + "/main/model_start.safetensors")
    for (n, m) in mainMask {
      for i in m.indices where m[i] == 1 { #expect(start[n]![i] != mainStart[n]![i]) }
    }
    // The JSON line has the documented shape.
    let obj =
      try JSONSerialization.jsonObject(with: Data(rr.stdout.split(separator: "\n").last!.utf8))
      as! [String: Any]
    let levels = obj["levels"] as! [[String: Any]]
    #expect(levels.count == 3 && obj["run_dir"] as? String == root)
    for key in [
      "level", "density", "test_accuracy_mean", "test_accuracy_std", "early_stop_test_accuracy_mean",
      "early_stop_step_mean", "replicates", "branches",
    ] {
      #expect(levels[2].keys.contains(key), "\(key)")
    }
    #expect(levels[2]["test_accuracy_std"] is NSNull)
    #expect((levels[2]["branches"] as! [String: Any]).count == 2)
    #expect(abs((levels[2]["density"] as! Double) - 0.64) < 0.01)
  }

  /// Every `mask.safetensors` and `model_final.safetensors` under `root`, by relative path.
  func modelFiles(_ root: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let e = FileManager.default.enumerator(atPath: root)!
    while let rel = e.nextObject() as? String {
      let name = (rel as NSString).lastPathComponent
      guard name == "mask.safetensors" || name == "model_final.safetensors" else { continue }
      out[rel] = FileManager.default.contents(atPath: root + "/" + rel)
    }
    return out
  }

  @Test("SIGKILL during a multi-level run with branches, then rerun: identical results")
  func killAndResume() throws {
    let ref = CLI.tempDir()
    func steps(_ out: String, kill: Double?) throws -> Bool {
      let a = lotteryBase + ["--output", out, "--replicates", "2"]
      for cmd in [
        ["lottery"] + a + ["--levels", "3"], ["branch", "random-reinit"] + a + ["--levels", "0-3"],
        ["branch", "random-prune"] + a + ["--levels", "2,3"],
      ] {
        let r = try CLI.run(cmd, killAfter: kill)
        if r.signaled { return false }
        #expect(r.status == 0, "\(r.stderr)")
      }
      return true
    }
    func results(_ out: String) throws -> NSDictionary {
      let text = try CLI.run(["results", try lotteryRoot(out), "--json"]).stdout
      let obj = try JSONSerialization.jsonObject(with: Data(text.utf8))
      return Results.reproducible(obj) as! NSDictionary
    }
    let t0 = Date()
    #expect(
      try CLI.run(
        ["lottery"] + lotteryBase + ["--output", CLI.tempDir(), "--replicates", "2", "--levels", "3"]
      ).status == 0)
    let lotteryDuration = Date().timeIntervalSince(t0)
    #expect(try steps(ref, kill: nil))
    let refResults = try results(ref)
    var rng = RandomStream(seed: 7, purpose: "lottery-kills")
    for _ in 0..<2 {
      // Each command of the steps is killed at a time scaled by the lottery's duration.
      let out = try CLI.killAndRerun(kills: 2, duration: lotteryDuration, rng: &rng) { out, t in
        try steps(out, kill: t)
      }.output
      #expect(try results(out) == refResults)
      // Not only the means: every mask and final model, byte for byte.
      let (a, b) = (try modelFiles(try lotteryRoot(ref)), try modelFiles(try lotteryRoot(out)))
      #expect(a.count >= 2 * (4 + 4 + 2) * 2, "\(a.keys.sorted())")
      #expect(a.keys.sorted() == b.keys.sorted())
      for (name, bytes) in a { #expect(b[name] == bytes, "\(name) differs after kills") }
    }
  }

  @Test(
    "SIGKILL during levels on sparse kernels (compact weights, feature-major batches), then rerun: identical results"
  )
  func killAndResumeSparse() throws {
    // `on`: every level's layers run sparse kernels, so the weights live in compact form
    // between checkpoints and the loader writes feature-major batches.
    let a = lotteryBase + ["--levels", "2", "--sparse-kernels", "on"]
    let ref = CLI.tempDir()
    let t0 = Date()
    let r = try CLI.run(["lottery"] + a + ["--output", ref])
    #expect(r.status == 0, "\(r.stderr)")
    let duration = Date().timeIntervalSince(t0)
    let refFiles = try modelFiles(try lotteryRoot(ref))
    #expect(refFiles.count == 6, "\(refFiles.keys.sorted())")
    let refText = try CLI.run(["results", try lotteryRoot(ref), "--json"]).stdout
    let refResults =
      Results.reproducible(try JSONSerialization.jsonObject(with: Data(refText.utf8))) as! NSDictionary
    var rng = RandomStream(seed: 11, purpose: "sparse-lottery-kills")
    let out = try CLI.killAndRerun(kills: 2, duration: duration, rng: &rng, fraction: 0.1...0.9) { out, t in
      let run = try CLI.run(["lottery"] + a + ["--output", out], killAfter: t)
      if !run.signaled { #expect(run.status == 0, "\(run.stderr)") }
      return !run.signaled
    }.output
    let text = try CLI.run(["results", try lotteryRoot(out), "--json"]).stdout
    #expect(
      Results.reproducible(try JSONSerialization.jsonObject(with: Data(text.utf8))) as! NSDictionary
        == refResults)
    let files = try modelFiles(try lotteryRoot(out))
    #expect(files.keys.sorted() == refFiles.keys.sorted())
    for (name, bytes) in refFiles { #expect(files[name] == bytes, "\(name) differs after kills") }
  }

  /// Older builds saved mask.safetensors before sparsity.json; a SIGKILL between the two
  /// left a folder that every later command (which prints the results table) failed on.
  @Test("a mask without its sparsity.json (killed between the two writes) is repaired on rerun")
  func maskWithoutSparsity() throws {
    let out = CLI.tempDir()
    let a = lotteryBase + ["--output", out]
    #expect(try CLI.run(["lottery"] + a + ["--levels", "1"]).status == 0)
    #expect(try CLI.run(["branch", "random-prune"] + a + ["--levels", "1"]).status == 0)
    let root = try lotteryRoot(out)
    let level1 = root + "/replicate_1/level_1"
    let branch = try FileManager.default.contentsOfDirectory(atPath: level1).first {
      $0.hasPrefix("branch_")
    }!
    let files = [
      root + "/replicate_1/level_0/main/sparsity.json", level1 + "/main/sparsity.json",
      level1 + "/" + branch + "/sparsity.json",
    ]
    let before = files.map { FileManager.default.contents(atPath: $0) }
    #expect(before.allSatisfy { $0 != nil })
    for f in files { try FileManager.default.removeItem(atPath: f) }
    // Training is done, so only the mask paths run; results need every sparsity.json.
    for cmd in [["lottery"] + a + ["--levels", "1"], ["branch", "random-prune"] + a + ["--levels", "1"]] {
      let r = try CLI.run(cmd)
      #expect(r.status == 0, "\(r.stderr)")
    }
    #expect(files.map { FileManager.default.contents(atPath: $0) } == before)
  }

  @Test(
    "bad input: rewind beyond training, missing lottery run, unfinished level, corrupted mask, bad fraction")
  func badInput() throws {
    let out = CLI.tempDir()
    let a = lotteryBase + ["--output", out]
    expectOneLineError(
      try CLI.run(["lottery"] + a + ["--levels", "1", "--rewind-step", "100ep"]),
      "is not before the end of training")
    expectOneLineError(
      try CLI.run(["lottery"] + a + ["--levels", "1", "--pruning-fraction", "1.5"]),
      "--pruning-fraction must be in (0, 1)")
    expectOneLineError(
      try CLI.run(["lottery"] + a + ["--levels", "1", "--prune-ignore", "nothing*"]),
      "matches no prunable tensor")
    expectOneLineError(
      try CLI.run(["branch", "random-reinit"] + a + ["--levels", "0"]), "no lottery run for these flags")
    expectOneLineError(
      try CLI.run([
        "lottery", "--model", "mnist_lenet_2", "--dataset", "synthetic", "--subsample-fraction", "0.05",
        "--training-steps", "1ep", "--quiet", "--output", CLI.tempDir(), "--levels", "6",
        "--pruning-fraction", "0.9",
      ]),
      "would prune every remaining weight")
    #expect(try CLI.run(["lottery"] + a + ["--levels", "1"]).status == 0)
    expectOneLineError(
      try CLI.run(["branch", "random-reinit"] + a + ["--levels", "2"]),
      "level 2 of replicate 1 is unfinished or missing")
    // A corrupted mask of an unfinished level: clear error, finished levels untouched.
    let root = try lotteryRoot(out)
    let l1 = root + "/replicate_1/level_1/main"
    try FileManager.default.removeItem(atPath: l1 + "/summary.json")
    let before = CLI.snapshot(root + "/replicate_1/level_0")
    let mask = FileManager.default.contents(atPath: l1 + "/mask.safetensors")!
    _ = FileManager.default.createFile(
      atPath: l1 + "/mask.safetensors", contents: mask.prefix(mask.count - 7))
    expectOneLineError(try CLI.run(["lottery"] + a + ["--levels", "1"]), "mask.safetensors")
    #expect(CLI.snapshot(root + "/replicate_1/level_0") == before)
  }
}

@Suite("Layer-name patterns and level lists: fuzzing regressions")
struct PatternEdgeTests {
  @Test("wildcards that match the empty run, repeated and adjacent stars")
  func wildcards() {
    // libFuzzer input (FuzzPatterns): "**" did not match "" (Foundation's range(of: "")
    // finds nothing, so an empty middle part failed every match).
    #expect(wildcardMatch("**", ""))
    #expect(wildcardMatch("*", "") && wildcardMatch("***", "fc.weight"))
    #expect(wildcardMatch("blocks.**.weight", "blocks.1.conv.weight"))
    #expect(wildcardMatch("a*a", "aa") && !wildcardMatch("a*a", "a"))
    #expect(wildcardMatch("*.weight", "fc.weight") && !wildcardMatch("*.weight", "fc.bias"))
    #expect(wildcardMatch("a*b*c", "aXbYbZc") && !wildcardMatch("a*b*c", "aXcYb"))
    #expect(!wildcardMatch("", "a") && wildcardMatch("", ""))
  }

  @Test("level lists: huge ranges and control characters are one-line errors")
  func levels() throws {
    #expect(try parseLevels("0-3,5,7") == [0, 1, 2, 3, 5, 7])
    #expect(try parseLevels("1000") == [1000])
    // Allocated 10^13 integers before the limit.
    #expect(throws: EngineError.self) { try parseLevels("0-9999999999999") }
    do {
      _ = try parseLevels("1\n2")
      Issue.record("parsed")
    } catch {
      #expect(!"\(error)".contains("\n") && "\(error)".contains(#"'1\n2'"#), "\(error)")
    }
  }
}
