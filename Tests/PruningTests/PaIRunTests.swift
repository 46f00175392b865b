import Engine
import Experiments
import Foundation
import NN
import Pruning
import TestSupport
import Testing
import Training

/// A small prune-init run on synthetic data (SNIP: exercises the score batch).
let paiBase = [
  "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1", "--training-steps",
  "3ep", "--eval-every", "3ep", "--quiet", "--method", "snip", "--densities", "0.2,0.05", "--score-batch",
  "4",
]

func paiRoot(_ out: String) throws -> String {
  let d = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("pai_") }
  return out + "/" + d.first!
}

/// The initial network of replicate 1 of `paiBase` (seed 0).
func initialNetwork() throws -> Network<Float> {
  var o = TrainingOverrides()
  o.dataset = "synthetic"
  o.subsampleFraction = 0.1
  return try RunSetup(try TrainingHParams.resolve(model: "mnist_lenet_64_32", o), dataDir: nil)
    .makeNetwork(seed: replicateSeed(0, 1))
}

@Suite("Pruning at initialisation: experiments", .serialized, .tags(.endToEnd), .endToEnd)
struct PaIRunTests {
  func lastJSON(_ r: CLI.Result) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
  }

  @Test("prune-init and its ablations: store, JSON shape, shuffle counts, inverted order, reinit weights")
  func runAndAblations() throws {
    let out = CLI.tempDir()
    let a = paiBase + ["--output", out, "--threads", "2"]
    let r = try CLI.run(["prune-init"] + a + ["--json"])
    #expect(r.status == 0, "\(r.stderr)")
    for kind in ["shuffle", "reinit", "invert"] {
      let b = try CLI.run(["branch", kind] + a)
      #expect(b.status == 0, "\(kind): \(b.stderr)")
    }
    let root = try paiRoot(out)
    let obj = try lastJSON(try CLI.run(["results", root, "--json"]))
    #expect(obj["method"] as? String == "snip")
    let rows = obj["densities"] as! [[String: Any]]
    #expect(rows.count == 2)
    for key in [
      "density", "effective_density", "test_accuracy_mean", "test_accuracy_std", "early_stop_test_accuracy_mean",
      "replicates", "branches",
    ] {
      #expect(rows[0].keys.contains(key), "\(key)")
    }
    #expect(abs((rows[1]["density"] as! Double) - 0.05) < 0.001)
    #expect((rows[1]["branches"] as! [String: Any]).keys.sorted() == ["invert", "reinit", "shuffle"])

    let dir = root + "/replicate_1/density_0.05"
    let branches = try branchFolders(dir)
    func folder(_ kind: String) -> String { dir + "/" + branches.first { $0.hasPrefix("branch_\(kind)_") }! }
    let main = try load(dir + "/main/mask.safetensors")
    // Shuffle: the same count in every tensor, other positions.
    let shuffled = try load(folder("shuffle") + "/mask.safetensors")
    for (n, m) in main {
      #expect(shuffled[n]!.reduce(0, +) == m.reduce(0, +))
      #expect(shuffled[n]! != m)
    }
    // Invert: the same total, and every kept weight scores at most every weight SNIP kept
    // (the complement order), recomputed here from the stored initial weights.
    let inverted = try load(folder("invert") + "/mask.safetensors")
    func kept(_ m: [String: [Float]]) -> Float { m.values.reduce(Float(0)) { $0 + $1.reduce(0, +) } }
    #expect(kept(inverted) == kept(main))
    // Reinit: the same mask, and every surviving weight starts elsewhere.
    #expect(try load(folder("reinit") + "/mask.safetensors") == main)
    let start = try load(folder("reinit") + "/model_start.safetensors")
    let mainStart = try load(dir + "/main/model_start.safetensors")
    for (n, m) in main { for i in m.indices where m[i] == 1 { #expect(start[n]![i] != mainStart[n]![i]) } }
    // The main line starts from the very weights it scored: the initial ones, masked.
    let initNet = try initialNetwork()
    for (n, p) in initNet.prunableParameters {
      for i in 0..<p.value.count { #expect(mainStart[n]![i] == p.value[i] * main[n]![i]) }
    }
    // sparsity.json carries the effective density; the table shows it.
    let sparsity = try jsonObject(dir + "/main/sparsity.json")
    #expect((sparsity["effective_density"] as! Double) <= (sparsity["density"] as! Double))
    let table = try CLI.run(["results", root]).stdout
    #expect(table.contains("effective %") && table.contains("method snip"))
    // Side by side with a lottery run.
    let lot = try CLI.run(["lottery"] + lotteryBase + ["--output", out, "--levels", "1"])
    #expect(lot.status == 0, "\(lot.stderr)")
    let both = try CLI.run(["results", root, try lotteryRoot(out), "--json"])
    #expect(both.status == 0)
    let runs = try lastJSON(both)["runs"] as! [[String: Any]]
    #expect(runs.map { $0["method"] as! String } == ["snip", "imp"])
    let side = try CLI.run(["results", root, try lotteryRoot(out)]).stdout
    #expect(side.contains("snip") && side.contains("imp") && side.contains("shuffle"))
  }

  @Test("the inverted ablation keeps the lowest scores: magnitude at init, layerwise")
  func invertOrder() throws {
    let out = CLI.tempDir()
    let a = paiBase.map { $0 == "snip" ? "magnitude" : $0 } + ["--output", out, "--allocation", "layerwise"]
    #expect(try CLI.run(["prune-init"] + a).status == 0)
    #expect(try CLI.run(["branch", "invert"] + a).status == 0)
    let dir = try paiRoot(out) + "/replicate_1/density_0.2"
    let main = try load(dir + "/main/mask.safetensors")
    let inv = try load(
      dir + "/" + (try branchFolders(dir)).first { $0.hasPrefix("branch_invert") }! + "/mask.safetensors")
    let net = try initialNetwork()
    for (n, m) in main {
      let w = net.parameter(n)!.value
      let kept = m.indices.filter { m[$0] == 1 }.map { abs(w[$0]) }
      let invKept = m.indices.filter { inv[n]![$0] == 1 }.map { abs(w[$0]) }
      let invDropped = m.indices.filter { inv[n]![$0] == 0 }.map { abs(w[$0]) }
      #expect(kept.count == invKept.count)
      #expect(invKept.max()! <= invDropped.min()!, "\(n)")
      #expect(invKept.max()! <= kept.min()!, "\(n): at density 0.2 the two sets are disjoint")
    }
  }

  @Test("the same bits at 1, 2 and 3 threads; SIGKILL and rerun give identical results")
  func threadsAndKills() throws {
    var files: [[String: Data]] = []
    for t in ["1", "2", "3"] {
      let out = CLI.tempDir()
      let r = try CLI.run(["prune-init"] + paiBase + ["--output", out, "--threads", t, "--replicates", "2"])
      #expect(r.status == 0, "\(r.stderr)")
      files.append(try LotteryTests().modelFiles(try paiRoot(out)))
    }
    #expect(files[0].count == 2 * 2 * 2)
    #expect(files[1] == files[0] && files[2] == files[0])
    // Kill at a few moments (scaled by a whole run's duration), rerun to the end: the same bytes.
    let t0 = Date()
    _ = try CLI.run(
      ["prune-init"] + paiBase + ["--output", CLI.tempDir(), "--threads", "2", "--replicates", "2"])
    let duration = Date().timeIntervalSince(t0)
    var rng = RandomStream(seed: 11, purpose: "pai-kills")
    let out = try CLI.killAndRerun(kills: 3, duration: duration, rng: &rng) { out, t in
      let r = try CLI.run(
        ["prune-init"] + paiBase + ["--output", out, "--threads", "2", "--replicates", "2"], killAfter: t)
      if !r.signaled { #expect(r.status == 0, "\(r.stderr)") }
      return !r.signaled
    }.output
    #expect(try LotteryTests().modelFiles(try paiRoot(out)) == files[0])
  }

  @Test("bad input: one clear line, non-zero exit, nothing finished lost")
  func badInput() throws {
    let out = CLI.tempDir()
    let a = paiBase + ["--output", out]
    func without(_ flag: String, _ args: [String]) -> [String] {
      guard let i = args.firstIndex(of: flag) else { return args }
      return Array(args[..<i] + args[(i + 2)...])
    }
    expectOneLineError(try CLI.run(["branch", "shuffle"] + a), "no prune-init run for these flags")
    expectOneLineError(
      try CLI.run(["prune-init"] + without("--method", a) + ["--method", "obd"]), "unknown method 'obd'")
    expectOneLineError(
      try CLI.run(["prune-init"] + without("--densities", a) + ["--densities", "0.5,1.5"]),
      "density must be in (0, 1]")
    expectOneLineError(
      try CLI.run(["prune-init"] + without("--densities", a) + ["--densities", "0"]),
      "density must be in (0, 1]")
    expectOneLineError(try CLI.run(["prune-init"] + a + ["--rounds", "0"]), "--rounds must be at least 1")
    expectOneLineError(
      try CLI.run(["prune-init"] + without("--score-batch", a) + ["--score-batch", "100000"]),
      "larger than the training set")
    expectOneLineError(
      try CLI.run(["prune-init"] + without("--densities", a) + ["--densities", "0.00001"]), "layer collapse")
    #expect(try CLI.run(["prune-init"] + a).status == 0)
    let root = try paiRoot(out)
    let before = CLI.snapshot(root + "/replicate_1")
    expectOneLineError(
      try CLI.run(["branch", "invert"] + without("--densities", a) + ["--densities", "0.2,0.01"]),
      "density 0.01 of replicate 1 is unfinished or missing")
    expectOneLineError(
      try CLI.run(["branch", "reinit"] + a + ["--replicate", "2"]), "of replicate 2 is unfinished or missing")
    #expect(CLI.snapshot(root + "/replicate_1") == before)
    // --allow-collapse trains anyway.
    let c = try CLI.run(
      ["prune-init"] + without("--densities", a) + ["--densities", "0.00001", "--allow-collapse"])
    #expect(c.status == 0, "\(c.stderr)")
  }

  @Test("references: --at-step and magnitude-after-training; lottery ablations shuffle and invert")
  func referencesAndLotteryAblations() throws {
    let out = CLI.tempDir()
    let a = paiBase + ["--output", out]
    func with(_ method: String, _ extra: [String]) -> [String] {
      ["prune-init"] + a.map { $0 == "snip" ? method : $0 } + extra
    }
    let early = try CLI.run(with("magnitude", ["--at-step", "1ep"]))
    #expect(early.status == 0, "\(early.stderr)")
    for mode in ["weight-rewind", "lr-rewind", "finetune"] {
      let r = try CLI.run(with("magnitude-after-training", ["--retrain", mode, "--json"]))
      #expect(r.status == 0, "\(mode): \(r.stderr)")
      #expect(try lastJSON(r)["method"] as? String == "magnitude-after-training")
    }
    // The three retraining modes share nothing but the data: three runs, each with its dense run.
    let runs = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("pai_") }
    #expect(runs.count == 4)
    // Lottery: invert keeps the smallest magnitudes of level 0's trained weights, per tensor.
    let la = lotteryBase + ["--output", out]
    #expect(try CLI.run(["lottery"] + la + ["--levels", "1"]).status == 0)
    for kind in ["shuffle", "invert"] {
      #expect(try CLI.run(["branch", kind] + la + ["--levels", "1"]).status == 0)
    }
    let level = try lotteryRoot(out) + "/replicate_1/level_1"
    let main = try load(level + "/main/mask.safetensors")
    let trained = try load(try lotteryRoot(out) + "/replicate_1/level_0/main/model_final.safetensors")
    let folders = try branchFolders(level)
    let inv = try load(level + "/" + folders.first { $0.hasPrefix("branch_invert") }! + "/mask.safetensors")
    let shuf = try load(level + "/" + folders.first { $0.hasPrefix("branch_shuffle") }! + "/mask.safetensors")
    for (n, m) in main {
      #expect(inv[n]!.reduce(0, +) == m.reduce(0, +) && shuf[n]!.reduce(0, +) == m.reduce(0, +))
      let pruned = m.indices.filter { m[$0] == 0 }
      guard !pruned.isEmpty else { continue }
      // The complement order: everything the inverted mask drops is at least as large as
      // everything it keeps.
      let invKept = m.indices.filter { inv[n]![$0] == 1 }.map { abs(trained[n]![$0]) }
      let invDropped = m.indices.filter { inv[n]![$0] == 0 }.map { abs(trained[n]![$0]) }
      #expect(invKept.max()! <= invDropped.min()!, "\(n)")
    }
  }

  @Test("pruning after training retrains the trained weights by default (learning-rate rewinding), not a one-shot ticket")
  func afterTrainingKeepsTrainedWeights() throws {
    let out = CLI.tempDir()
    let args = ["prune-init"] + paiBase.map { $0 == "snip" ? "magnitude-after-training" : $0 } + ["--output", out]
    let r = try CLI.run(args + ["--densities", "0.2", "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let root = try paiRoot(out)
    let stored = try #require(JSONValue.parse(try AtomicFile.read(RunFile.hparams.path(in: root))))
    #expect(stored["hparams"]?["retrain"]?.string == "lr-rewind")
    // The pruned phase starts from the dense run's trained weights times the mask.
    let trained = try load(root + "/replicate_1/dense/" + RunFile.modelFinal.rawValue)
    let level = root + "/replicate_1/density_0.2/main/"
    let start = try load(level + RunFile.modelStart.rawValue)
    let mask = try load(level + RunFile.mask.rawValue)
    for (name, m) in mask {
      let expected = zip(trained[name]!, m).map { $0 * $1 }
      #expect(start[name]! == expected, "\(name)")
    }
  }
}
