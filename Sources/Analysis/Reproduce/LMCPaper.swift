import Engine
import Experiments
import Foundation
import Training

/// Frankle, Dziugaite, Roy & Carbin (ICML 2020), Linear Mode Connectivity and the LTH:
/// instability (the test-error barrier between two copies trained from the same W_k with
/// other data orders; stable below 2 points) of dense networks, IMP subnetworks and randomly
/// pruned ones.
///
/// - `quick`: LeNet-300-100 (2 epochs; dense, its IMP subnetwork at level 8 = 16.8% and a
///   random mask of the same counts, all at k = 0) and a ResNet-20 of width 8 (600
///   iterations of SGD with step decay; dense at k = 0 and k = 100; 11 points, 2,000
///   training examples per point), 2 replicates. IMP and random subnetworks of ResNet-20
///   need one lottery per k and move to `full`.
/// - `full`: the paper's recipes (LeNet 24,000 iterations; ResNet-20 63,000 iterations,
///   lr 0.1, x0.1 at 32,000 and 48,000), k in 0, 100, 250, 500, 1000, 2000, 4000 for dense
///   ResNet-20 and 0, 500, 2000 for its subnetworks (level 8 = 16.8%), 3 replicates.
public struct LMCPaper: PaperReproduction {
  public init() {}
  public var id: String { "lmc" }
  public var title: String {
    "Linear Mode Connectivity and the Lottery Ticket Hypothesis (Frankle et al., ICML 2020)"
  }
  public var quickRecipe: String {
    "LeNet-300-100 for 2 epochs and a width-8 ResNet-20 for 600 iterations (the paper: 24,000 and 63,000), 2 replicates"
  }

  static let level = 8
  /// Spawn steps of the subnetworks (dense ResNet-20 has more at full).
  static func subnetworkSteps(_ s: ReproductionSettings) -> [Int] { s.scale == .quick ? [] : [0, 500, 2000] }

  func lenet(_ s: ReproductionSettings) -> [String] {
    ["--model", "mnist_lenet_300_100"] + s.datasetArguments + [
      "--training-steps", s.scale == .quick ? "2ep" : "24000it", "--replicates", "\(reps(s))",
    ]
  }
  func resnet(_ s: ReproductionSettings) -> [String] {
    let quick = s.scale == .quick
    return [
      "--model", quick ? "cifar_resnet_20_8" : "cifar_resnet_20", "--dataset",
      s.dataset ?? (quick ? "fashion_mnist" : "cifar10"),
      "--training-steps", quick ? "600it" : "63000it", "--milestones",
      quick ? "300it,450it" : "32000it,48000it",
      "--replicates", "\(reps(s))",
    ]
  }
  func reps(_ s: ReproductionSettings) -> Int { s.replicateCount(quick: 2, full: 3) }
  func interpolation(_ s: ReproductionSettings, resnet: Bool) -> [String] {
    s.scale == .quick && resnet ? ["--points", "11", "--train-eval-size", "2000"] : []
  }
  func needs(_ lottery: String, _ s: ReproductionSettings) -> [String] {
    (1...reps(s)).map { "\(lottery).r\($0).L\(Self.level)" }
  }

  public func experiments(_ s: ReproductionSettings) throws -> [ReproductionExperiment] {
    let quick = s.scale == .quick
    let lmc = ["lmc", "--copies", "2"]
    let sub = ["--level", "\(Self.level)"]
    var out = [
      ReproductionExperiment("lenet-dense", lmc + lenet(s) + ["--spawn-steps", "0"]),
      ReproductionExperiment("lenet-lottery", ["lottery"] + lenet(s) + ["--levels", "\(Self.level)"]),
      ReproductionExperiment(
        "lenet-imp", lmc + lenet(s) + ["--spawn-steps", "0", "--mask-from", "@lenet-lottery"] + sub,
        needs: needs("lenet-lottery", s)),
      ReproductionExperiment(
        "lenet-random",
        lmc + lenet(s) + ["--spawn-steps", "0", "--mask-from", "@lenet-lottery", "--random-mask"] + sub,
        needs: needs("lenet-lottery", s)),
      ReproductionExperiment(
        "resnet-dense",
        lmc + resnet(s) + ["--spawn-steps", quick ? "0,100" : "0,100,250,500,1000,2000,4000"]
          + interpolation(s, resnet: true)),
    ]
    for k in Self.subnetworkSteps(s) {
      let lottery = "resnet-lottery-k\(k)"
      out.append(
        ReproductionExperiment(
          lottery, ["lottery"] + resnet(s) + ["--levels", "\(Self.level)", "--rewind-step", "\(k)it"]))
      for random in [false, true] {
        out.append(
          ReproductionExperiment(
            "resnet-\(random ? "random" : "imp")-k\(k)",
            lmc + resnet(s) + ["--spawn-steps", "\(k)", "--mask-from", "@" + lottery] + sub
              + (random ? ["--random-mask"] : []),
            needs: needs(lottery, s)))
      }
    }
    return out
  }

  /// Instability per spawn step: barrier samples (one per replicate's pair) and the
  /// children's final accuracies.
  struct Spawn {
    var k: Int
    var barrier: Sample
    var accuracy: Sample
  }
  func spawns(_ runs: ReproductionRuns, _ name: String) throws -> [Spawn] {
    let r = try LMCResults.collect(try run(runs, name))
    return r.spawnSteps.map { s in
      Spawn(
        k: s.k, barrier: Sample(s.curves.compactMap(\.testErrorBarrier)),
        accuracy: Sample(s.endpointTestAccuracyValues))
    }
  }

  static let stable = 0.02
  static func stableText(_ b: Sample) -> String {
    "instability \(b.percentText) points over \(b.n) pair\(b.n == 1 ? "" : "s")"
  }

  public func findings(_ runs: ReproductionRuns, _ s: ReproductionSettings) throws -> [Finding] {
    var out: [Finding] = []
    let tolStable =
      "stable when the mean test-error barrier over the replicates' pairs is below 2 points (the paper's threshold)"
    // 1. Dense LeNet is stable at k = 0.
    let lenet = try spawns(runs, "lenet-dense")
    if let k0 = lenet.first(where: { $0.k == 0 }) {
      out.append(
        Finding(
          id: "lmc.lenet-stable-k0", claim: "Dense LeNet is stable at k = 0.", unit: "points",
          paperValue: nil,
          paperText: "stable at k = 0 (LeNet-300-100 on MNIST, Figure 3)",
          lotterykitValue: k0.barrier.mean * 100,
          lotterykitDetail: Self.stableText(k0.barrier), tolerance: "holds when " + tolStable,
          verdict: Claims.verdict(k0.barrier.mean < Self.stable, replicates: k0.barrier.n),
          replicates: k0.barrier.n))
    }
    // 2-3. Dense ResNet-20: unstable at k = 0, stable later.
    let resnet = try spawns(runs, "resnet-dense")
    let net = s.scale == .quick ? "ResNet-20 (width 8)" : "ResNet-20"
    if let k0 = resnet.first(where: { $0.k == 0 }) {
      out.append(
        Finding(
          id: "lmc.resnet-unstable-k0", claim: "Dense ResNet-20 is unstable at k = 0.", unit: "points",
          paperValue: nil, paperText: "unstable at k = 0 (ResNet-20 on CIFAR-10, Figure 3)",
          lotterykitValue: k0.barrier.mean * 100, lotterykitDetail: "\(net): " + Self.stableText(k0.barrier),
          tolerance: "holds when the mean barrier is at least 2 points",
          verdict: Claims.verdict(k0.barrier.mean >= Self.stable, replicates: k0.barrier.n),
          replicates: k0.barrier.n))
    }
    if let last = resnet.filter({ $0.k > 0 }).max(by: { $0.k < $1.k }) {
      let first = resnet.filter { $0.k > 0 && $0.barrier.mean < Self.stable }.min { $0.k < $1.k }
      out.append(
        Finding(
          id: "lmc.resnet-stable-later", claim: "Dense ResNet-20 becomes stable early in training.",
          unit: "iterations",
          paperValue: 2000,
          paperText: "near iteration 2000 of 63,000 (3% of training; ResNet-20 on CIFAR-10)",
          lotterykitValue: first.map { Double($0.k) },
          lotterykitDetail:
            "\(net): " + resnet.map { "k = \($0.k): \(Self.stableText($0.barrier))" }.joined(separator: "; "),
          tolerance:
            "holds when some spawn step k > 0 is stable (value: the first); quick trains for 600 iterations, so k = 100 is 17% of training",
          verdict: Claims.verdict(first != nil, replicates: last.barrier.n), replicates: last.barrier.n))
    }
    // 4. IMP subnetworks are matching exactly where they are stable.
    var cases: [(String, Spawn, Spawn)] = []  // (label, subnetwork, dense at the same k)
    if let imp = try spawns(runs, "lenet-imp").first, let dense = lenet.first(where: { $0.k == imp.k }) {
      cases.append(("LeNet k = \(imp.k)", imp, dense))
    }
    for k in Self.subnetworkSteps(s) {
      if let imp = try spawns(runs, "resnet-imp-k\(k)").first, let dense = resnet.first(where: { $0.k == k })
      {
        cases.append(("ResNet-20 k = \(k)", imp, dense))
      }
    }
    var mismatches = 0
    var parts: [String] = []
    for (label, sub, dense) in cases {
      let stable = sub.barrier.mean < Self.stable
      let matching = sub.accuracy.mean >= dense.accuracy.mean - 0.01
      if stable != matching { mismatches += 1 }
      parts.append(
        "\(label): \(stable ? "stable" : "unstable") (\(sub.barrier.percentText)), \(matching ? "matching" : "not matching") (\(sub.accuracy.percentText)% against dense \(dense.accuracy.percentText)%)"
      )
    }
    let n = cases.map { min($0.1.barrier.n, $0.1.accuracy.n) }.min() ?? 0
    let movedNote =
      s.scale == .quick ? "; ResNet-20 subnetworks (one lottery per k) run at full scale only" : ""
    out.append(
      Finding(
        id: "lmc.imp-matching-iff-stable",
        claim: "IMP subnetworks (16.8%) are matching exactly where they are stable.",
        unit: "mismatches", paperValue: 0,
        paperText:
          "matching only when rewound to a k where stable (about 500 for ResNet-20, 1000 for VGG-16)",
        lotterykitValue: Double(mismatches), lotterykitDetail: parts.joined(separator: "; ") + movedNote,
        tolerance:
          "holds when no measured (network, k) is stable but not matching or matching but not stable; matching = children's mean final test accuracy at least the dense children's mean - 1 point at the same k",
        verdict: Claims.verdict(mismatches == 0 && !cases.isEmpty, replicates: n), replicates: n))
    // 5. Random pruning is stable only on LeNet.
    if let random = try spawns(runs, "lenet-random").first {
      out.append(
        Finding(
          id: "lmc.random-lenet-stable",
          claim: "Randomly pruned LeNet (16.8%) is stable at k = 0 (the exception).",
          unit: "points", paperValue: nil, paperText: "random pruning is never stable, except on LeNet",
          lotterykitValue: random.barrier.mean * 100, lotterykitDetail: Self.stableText(random.barrier),
          tolerance: "holds when " + tolStable,
          verdict: Claims.verdict(random.barrier.mean < Self.stable, replicates: random.barrier.n),
          replicates: random.barrier.n))
    }
    let randomResNet = try Self.subnetworkSteps(s).compactMap { k in
      try spawns(runs, "resnet-random-k\(k)").first
    }
    if randomResNet.isEmpty {
      out.append(
        .moved(
          id: "lmc.random-resnet-unstable",
          claim: "Randomly pruned ResNet-20 (16.8%) is unstable at every k.",
          unit: "points", paperValue: nil, paperText: "random pruning is never stable, except on LeNet",
          why: "needs a ResNet-20 lottery per k"))
    } else {
      let least = randomResNet.min { $0.barrier.mean < $1.barrier.mean }!
      let n = randomResNet.map(\.barrier.n).min() ?? 0
      out.append(
        Finding(
          id: "lmc.random-resnet-unstable",
          claim: "Randomly pruned ResNet-20 (16.8%) is unstable at every k.",
          unit: "points", paperValue: nil, paperText: "random pruning is never stable, except on LeNet",
          lotterykitValue: least.barrier.mean * 100,
          lotterykitDetail: randomResNet.map { "k = \($0.k): \(Self.stableText($0.barrier))" }.joined(
            separator: "; "),
          tolerance: "holds when the smallest mean barrier over k is at least 2 points",
          verdict: Claims.verdict(least.barrier.mean >= Self.stable, replicates: n), replicates: n))
    }
    return out
  }
}
