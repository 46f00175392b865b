import Analysis
import Datasets
import Engine
import Experiments
import Foundation
import NN
import Pruning
import TestSupport
import Testing
import Training

/// A small synthetic setup: LeNet 64-32 on 10% of the synthetic set.
let lmcTraining = [
  "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1", "--training-steps",
  "3ep", "--quiet",
]

func lmcSetup(_ model: String = "mnist_lenet_64_32") throws -> RunSetup {
  var o = TrainingOverrides()
  o.dataset = "synthetic"
  o.subsampleFraction = 0.1
  return try RunSetup(try TrainingHParams.resolve(model: model, o), dataDir: nil)
}

func loadTensors(_ path: String) throws -> [String: [Float]] {
  let (t, _) = try Safetensors.read(path)
  return t.mapValues { $0.values(Float.self) }
}

func lastJSONObject(_ r: CLI.Result) throws -> [String: Any] {
  try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
}

/// Trains `lth train` once and returns the run folder.
func trainedRun(_ out: String, extra: [String] = []) throws -> String {
  let r = try CLI.run(["train"] + lmcTraining + ["--output", out, "--json"] + extra)
  #expect(r.status == 0, "\(r.stderr)")
  return try lastJSONObject(r)["run_dir"] as! String
}

@Suite("Linear mode connectivity: interpolation", .serialized, .tags(.endToEnd), .endToEnd)
struct InterpolationTests {
  @Test("a network with itself: barrier exactly 0; endpoints bit-identical to direct evaluation")
  func selfInterpolation() throws {
    let setup = try lmcSetup()
    let a = try setup.makeNetwork(seed: 1)
    let b = try setup.makeNetwork(seed: 2)
    let ip = try Interpolation(net: try setup.makeNetwork(seed: 0), a: a, b: a, mask: nil)
    let idx = Interpolation.trainSubset(count: setup.train.count, size: 300, seed: 0)
    let c = try ip.curve(points: 7, bn: .interpolate, test: setup.test, train: setup.train, trainIndices: idx)
    #expect(c.testErrorBarrier == 0 && c.trainErrorBarrier == 0 && c.testLossBarrier == 0)
    let ip2 = try Interpolation(net: try setup.makeNetwork(seed: 0), a: a, b: b, mask: nil)
    let c2 = try ip2.curve(points: 4, bn: .recompute, test: setup.test, train: setup.train, trainIndices: idx)
    let da = try Evaluation.evaluate(a, on: setup.test)
    let db = try Evaluation.evaluate(b, on: setup.test)
    #expect(c2.testError.first == da.error && c2.testLoss.first == da.loss)
    #expect(c2.testError.last == db.error && c2.testLoss.last == db.loss)
    #expect(c2.alpha == [0, 1.0 / 3, 2.0 / 3, 1])
  }

  @Test("a hidden-unit permutation: equal endpoints, a non-zero barrier computed independently")
  func permutation() throws {
    let out = CLI.tempDir()
    let run = try trainedRun(out)
    let setup = try lmcSetup()
    let net = try setup.makeNetwork(seed: 0)
    try ModelState.load(net, from: run + "/model_final.safetensors")
    // Reverse the 64 hidden units of the first layer: rows of its weight and bias, columns
    // of the next weight.
    let perm = try setup.makeNetwork(seed: 0)
    try ModelState.load(perm, from: run + "/model_final.safetensors")
    let (w0, b0, w1) = (
      perm.parameter("fc_layers.0.weight")!.value, perm.parameter("fc_layers.0.bias")!.value,
      perm.parameter("fc_layers.1.weight")!.value
    )
    let (h, inF, outF) = (64, w0.shape[1], w1.shape[0])
    let (ow0, ob0, ow1) = (w0.clone(), b0.clone(), w1.clone())
    for u in 0..<h {
      let v = h - 1 - u
      for i in 0..<inF { w0[u * inF + i] = ow0[v * inF + i] }
      b0[u] = ob0[v]
      for o in 0..<outF { w1[o * h + u] = ow1[o * h + v] }
    }
    let permPath = out + "/permuted.safetensors"
    try ModelState.save(perm, step: 0, to: permPath)
    let r = try CLI.run(
      [
        "interpolate", run + "/model_final.safetensors", permPath, "--model", "mnist_lenet_64_32",
        "--dataset",
        "synthetic", "--points", "3", "--train-eval-size", "400", "--json",
      ])
    #expect(r.status == 0, "\(r.stderr)")
    let c = try lastJSONObject(r)
    let test = c["test_error"] as! [Double]
    #expect(test[0] == test[2])
    #expect((c["test_error_barrier"] as! Double) > 0)
    // Independently: the average of the two weight sets, evaluated directly (no batch norm here).
    let mid = try setup.makeNetwork(seed: 0)
    for (k, (_, p)) in mid.parameters.enumerated() {
      let (x, y) = (net.parameters[k].1.value, perm.parameters[k].1.value)
      for i in 0..<p.value.count { p.value[i] = x[i] + 0.5 * (y[i] - x[i]) }
    }
    let direct = try Evaluation.evaluate(mid, on: setup.test)
    #expect(test[1] == direct.error)
    #expect(abs((c["test_error_barrier"] as! Double) - (direct.error - test[0])) < 1e-12)
  }

  @Test(
    "masks: every interpolated network keeps zeros at masked positions; a mask the endpoints break is refused"
  )
  func masks() throws {
    let setup = try lmcSetup()
    let a = try setup.makeNetwork(seed: 1)
    let b = try setup.makeNetwork(seed: 2)
    let mask = RandomPruner.like(
      try MagnitudePruner.prune(
        a, mask: Mask(ones: a), policy: .init(strategy: .layerwise, fraction: 0.7), level: 1),
      layout: .layerwise, seed: 3)
    try mask.apply(to: a)
    #expect(throws: EngineError.self) {
      try Interpolation(net: try setup.makeNetwork(seed: 0), a: a, b: b, mask: mask)
    }
    try mask.apply(to: b)
    let ip = try Interpolation(net: try setup.makeNetwork(seed: 0), a: a, b: b, mask: mask)
    for alpha in [0.0, 0.25, 0.5, 0.9, 1.0] {
      ip.set(alpha: alpha, bn: .interpolate)
      for (n, p) in ip.net.prunableParameters {
        let m = mask.values[n]!
        for i in 0..<m.count where m[i] == 0 { #expect(p.value[i] == 0) }
      }
    }
  }

  @Test("batch norm: recompute restores sensible statistics; interpolate is plain interpolation")
  func batchNorm() throws {
    let out = CLI.tempDir()
    let args = [
      "--model", "cifar_resnet_8", "--dataset", "synthetic", "--subsample-fraction", "0.05",
      "--training-steps", "2ep", "--batch-size", "32", "--quiet", "--output", out, "--json",
    ]
    let r1 = try CLI.run(["train"] + args)
    let r2 = try CLI.run(["train"] + args + ["--seed", "5"])
    #expect(r1.status == 0 && r2.status == 0, "\(r1.stderr)\(r2.stderr)")
    var o = TrainingOverrides()
    o.dataset = "synthetic"
    o.subsampleFraction = 0.05
    o.batchSize = 32
    let setup = try RunSetup(try TrainingHParams.resolve(model: "cifar_resnet_8", o), dataDir: nil)
    let a = try setup.makeNetwork(seed: 0)
    let b = try setup.makeNetwork(seed: 0)
    try ModelState.load(a, from: (try lastJSONObject(r1)["run_dir"] as! String) + "/model_final.safetensors")
    try ModelState.load(b, from: (try lastJSONObject(r2)["run_dir"] as! String) + "/model_final.safetensors")
    let idx = Interpolation.trainSubset(count: setup.train.count, size: setup.train.count, seed: 0)
    let ip = try Interpolation(net: try setup.makeNetwork(seed: 0), a: a, b: b, mask: nil)
    let rec = try ip.curve(points: 3, bn: .recompute, test: setup.test, train: setup.train, trainIndices: idx)
    let plain = try ip.curve(
      points: 3, bn: .interpolate, test: setup.test, train: setup.train, trainIndices: idx)
    // Endpoints with re-estimated statistics stay close to the originals.
    let (ea, eb) = (try Evaluation.evaluate(a, on: setup.test), try Evaluation.evaluate(b, on: setup.test))
    #expect(plain.testError.first == ea.error && plain.testError.last == eb.error)
    #expect(abs(rec.testError.first! - ea.error) < 0.05 && abs(rec.testError.last! - eb.error) < 0.05)
    // `interpolate` at a = 0.5 is exactly the network whose every tensor (buffers too) is the mean.
    let mid = try setup.makeNetwork(seed: 0)
    for (k, (_, p)) in mid.parameters.enumerated() {
      let (x, y) = (a.parameters[k].1.value, b.parameters[k].1.value)
      for i in 0..<p.value.count { p.value[i] = x[i] + 0.5 * (y[i] - x[i]) }
    }
    for (k, (_, t)) in mid.buffers.enumerated() {
      let (x, y) = (a.buffers[k].1, b.buffers[k].1)
      for i in 0..<t.count { t[i] = x[i] + 0.5 * (y[i] - x[i]) }
    }
    let direct = try Evaluation.evaluate(mid, on: setup.test)
    #expect(plain.testError[1] == direct.error && plain.testLoss[1] == direct.loss)
    // Recomputed statistics of the midpoint are the batch statistics, not the mean of the endpoints'.
    #expect(rec.testLoss[1] != plain.testLoss[1])
  }
}

@Suite("Linear mode connectivity: the lmc experiment", .serialized, .tags(.endToEnd), .endToEnd)
struct LMCExperimentTests {
  func lmcRoot(_ out: String) throws -> String {
    out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first { $0.hasPrefix("lmc_") }!
  }

  @Test("children share the parent's bits and differ in data order; JSON and CSV shapes")
  func children() throws {
    let out = CLI.tempDir()
    let r = try CLI.run(
      ["lmc"] + lmcTraining + [
        "--output", out, "--spawn-steps", "0,1ep", "--points", "5", "--train-eval-size", "300",
        "--replicates", "2", "--json",
      ])
    #expect(r.status == 0, "\(r.stderr)")
    let obj = try lastJSONObject(r)
    let rows = obj["spawn_steps"] as! [[String: Any]]
    #expect(rows.map { $0["k"] as! Int } == [0, 10])
    for key in [
      "test_error_barrier_mean", "test_error_barrier_std", "train_error_barrier_mean",
      "train_error_barrier_std", "test_loss_barrier_mean", "curves",
    ] {
      #expect(rows[1].keys.contains(key), "\(key)")
    }
    let curves = rows[1]["curves"] as! [[String: Any]]
    #expect(curves.count == 2 && (curves[0]["alpha"] as! [Double]).count == 5)
    #expect((curves[0]["test_error"] as! [Double]).allSatisfy { $0 >= 0 && $0 <= 1 })
    let spawn = try lmcRoot(out) + "/replicate_1/spawn_10"
    let s1 = try Data(contentsOf: URL(fileURLWithPath: spawn + "/child_1/model_start.safetensors"))
    let s2 = try Data(contentsOf: URL(fileURLWithPath: spawn + "/child_2/model_start.safetensors"))
    #expect(s1 == s2)
    let f1 = try Data(contentsOf: URL(fileURLWithPath: spawn + "/child_1/model_final.safetensors"))
    let f2 = try Data(contentsOf: URL(fileURLWithPath: spawn + "/child_2/model_final.safetensors"))
    #expect(f1 != f2)
    // The data orders differ from the first batch on.
    let root = try lmcRoot(out)
    let stored =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/hparams.json")))
      as! [String: Any]
    _ = stored
    let setup = try lmcSetup()
    var h = try JSONDecoder().decode(
      LMCHParams.self, from: JSONSerialization.data(withJSONObject: stored["hparams"]!))
    h.points = 5
    let runner = try LMCRunner(h, maskFrom: nil, dataDir: nil, output: out, progress: .quiet)
    let l1 = try BatchLoader(
      dataset: setup.train, batchSize: 60, seed: runner.childDataSeed(replicate: 1, spawn: 10, child: 1),
      augment: false)
    let l2 = try BatchLoader(
      dataset: setup.train, batchSize: 60, seed: runner.childDataSeed(replicate: 1, spawn: 10, child: 2),
      augment: false)
    #expect(Array(l1.indices(step: 10)) != Array(l2.indices(step: 10)))
    // Tidy CSV: one header, 7 columns, test and train rows per point.
    let csv = try String(contentsOfFile: spawn + "/interpolation.csv", encoding: .utf8).split(separator: "\n")
    #expect(csv[0] == "k,replicate,pair,alpha,split,error,loss" && csv.count == 1 + 5 * 2)
    #expect(csv.dropFirst().allSatisfy { $0.split(separator: ",").count == 7 })
    let table = try CLI.run(["results", root]).stdout
    #expect(table.contains("batch norm: recompute") && table.contains("test error barrier %"))
  }

  @Test("the same bits at 1, 2 and 3 threads; SIGKILL and rerun give the same results")
  func identity() throws {
    func results(_ out: String) throws -> NSDictionary {
      let o = try lastJSONObject(try CLI.run(["results", try lmcRoot(out), "--json"]))
      return Results.reproducible(o) as! NSDictionary
    }
    let a = lmcTraining + ["--spawn-steps", "0,5", "--points", "4", "--train-eval-size", "200"]
    var ref: NSDictionary?
    for t in ["1", "2", "3"] {
      let out = CLI.tempDir()
      let r = try CLI.run(["lmc"] + a + ["--output", out, "--threads", t])
      #expect(r.status == 0, "\(r.stderr)")
      let res = try results(out)
      if let ref { #expect(res == ref, "threads \(t)") } else { ref = res }
    }
    let t0 = Date()
    _ = try CLI.run(["lmc"] + a + ["--output", CLI.tempDir()])
    let duration = Date().timeIntervalSince(t0)
    var rng = RandomStream(seed: 3, purpose: "lmc-kills")
    let out = try CLI.killAndRerun(kills: 3, duration: duration, rng: &rng) { out, t in
      let r = try CLI.run(["lmc"] + a + ["--output", out], killAfter: t)
      if !r.signaled { #expect(r.status == 0, "\(r.stderr)") }
      return !r.signaled
    }.output
    #expect(try results(out) == ref!)
  }

  @Test("subnetworks from a lottery level, and bad input")
  func masksAndBadInput() throws {
    let out = CLI.tempDir()
    let lot = [
      "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1",
      "--training-steps", "3ep", "--quiet", "--output", out,
    ]
    // IMP rewound to the spawn step analysed below (5 iterations), with the same training.
    #expect(try CLI.run(["lottery"] + lot + ["--levels", "2", "--rewind-step", "5it"]).status == 0)
    let lotteryDir =
      out + "/" + (try FileManager.default.contentsOfDirectory(atPath: out)).first {
        $0.hasPrefix("lottery_")
      }!
    let a =
      lmcTraining + ["--output", out, "--spawn-steps", "5", "--points", "3", "--train-eval-size", "200"]
    for extra in [[String](), ["--random-mask"]] {
      let r = try CLI.run(["lmc"] + a + ["--mask-from", lotteryDir, "--level", "2", "--json"] + extra)
      #expect(r.status == 0, "\(r.stderr)")
    }
    // Children of the subnetwork keep the mask.
    let lmcs = (try FileManager.default.contentsOfDirectory(atPath: out)).filter { $0.hasPrefix("lmc_") }
      .sorted()
    #expect(lmcs.count == 2)
    // The second run reused the first one's parent (same training): the same metrics bytes,
    // wall-clock seconds included, which a retrained parent would not reproduce.
    let parents = try lmcs.map {
      try Data(contentsOf: URL(fileURLWithPath: out + "/" + $0 + "/replicate_1/spawn_5/parent/metrics.csv"))
    }
    #expect(parents[0] == parents[1])
    let mask = try loadTensors(lotteryDir + "/replicate_1/level_2/main/mask.safetensors")
    for l in lmcs {
      let f = try loadTensors(out + "/" + l + "/replicate_1/spawn_5/child_1/model_final.safetensors")
      let pruned = mask.keys.reduce(0) { acc, n in acc + mask[n]!.indices.filter { f[n]![$0] == 0 }.count }
      #expect(pruned >= mask.values.reduce(0) { $0 + $1.filter { $0 == 0 }.count })
    }
    // The subnetwork's children start at k with a fresh optimizer, as the lottery level did.
    let stored = try #require(JSONValue.parse(try AtomicFile.read(out + "/" + lmcs[0] + "/hparams.json")))
    #expect(stored["hparams"]?["child_optimizer_state"]?.string == "fresh")
    // The premise is checked: the spawn step is where IMP rewound, the training is the same.
    expectOneLineError(
      try CLI.run(
        ["lmc"] + lmcTraining + ["--output", out, "--spawn-steps", "0", "--mask-from", lotteryDir, "--level", "2"]),
      "differs from the step the mask run rewound to")
    expectOneLineError(
      try CLI.run(
        ["lmc"] + lmcTraining.map { $0 == "3ep" ? "4ep" : $0 } + [
          "--output", out, "--spawn-steps", "5", "--mask-from", lotteryDir, "--level", "2",
        ]), "trained with other hyperparameters (training_steps)")
    // Bad input.
    expectOneLineError(
      try CLI.run(["lmc"] + lmcTraining + ["--output", out, "--spawn-steps", "100ep"]),
      "is not before the end of training")
    expectOneLineError(try CLI.run(["lmc"] + a + ["--points", "1"]), "--points must be at least 2")
    expectOneLineError(
      try CLI.run(["lmc"] + a + ["--mask-from", lotteryDir, "--level", "7"]),
      "level 7 of replicate 1 is unfinished or missing")
    expectOneLineError(
      try CLI.run(["lmc"] + a + ["--mask-from", out + "/nothing", "--level", "1"]), "not a lottery run folder"
    )
    let run = try trainedRun(out)
    let other = try trainedRun(out, extra: ["--model", "mnist_lenet_300_100"])
    let interp = ["interpolate", run + "/model_final.safetensors"]
    expectOneLineError(
      try CLI.run(
        interp + [
          other + "/model_final.safetensors", "--model", "mnist_lenet_64_32", "--dataset", "synthetic",
        ]),
      "holds a mnist_lenet_300_100 model")
    expectOneLineError(
      try CLI.run(
        interp + [
          run + "/model_final.safetensors", "--model", "mnist_lenet_64_32", "--dataset", "synthetic",
          "--points", "1",
        ]),
      "--points must be at least 2")
    // A file missing a tensor.
    let (t, _) = try Safetensors.read(run + "/model_final.safetensors")
    let partial = out + "/partial.safetensors"
    try Safetensors.write(
      t.filter { $0.key != "fc.bias" }.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }, metadata: [:],
      to: partial)
    expectOneLineError(
      try CLI.run(interp + [partial, "--model", "mnist_lenet_64_32", "--dataset", "synthetic"]),
      "fc.bias is missing")
    // Masks that differ between the endpoints.
    let l1 = lotteryDir + "/replicate_1/level_1/main"
    let l2 = lotteryDir + "/replicate_1/level_2/main"
    expectOneLineError(
      try CLI.run([
        "interpolate", l1 + "/model_final.safetensors", l2 + "/model_final.safetensors", "--model",
        "mnist_lenet_64_32", "--dataset", "synthetic",
      ]),
      "the endpoints have different masks")
  }
}

@Suite("LMC hyperparameters declared once")
struct LMCKeyTests {
  @Test("LMCHParams' declared keys are its JSON keys and lth lmc's flags", .tags(.endToEnd), .endToEnd)
  func keys() throws {
    let h = try LMCHParams(
      training: try lmcSetup().hparams, maskRun: "lottery_x", maskLevel: 1, randomMask: true, bn: .recompute,
      points: 3, trainEvalSize: 10, bnExamples: 10)
    let o = try JSONSerialization.jsonObject(with: Data(h.canonicalJSON().utf8)) as! [String: Any]
    #expect(Set(o.keys) == Set(LMCHParams.CodingKeys.allCases.map(\.stringValue)))
    let help = try CLI.run(["lmc", "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    for k in LMCHParams.CodingKeys.allCases {
      guard let flag = k.flagName else { continue }
      #expect(help.contains("--\(flag) "), "--\(flag)")
      #expect(help.contains(k.help.split(whereSeparator: \.isWhitespace).joined(separator: " ")), "\(k)")
    }
    #expect {
      _ = try LMCHParams(
        training: try lmcSetup().hparams, maskRun: nil, maskLevel: nil, randomMask: false, bn: .recompute, points: 1,
        trainEvalSize: 10, bnExamples: 10)
    } throws: { ($0 as? SettingError)?.flag == "--points" }
  }
}
