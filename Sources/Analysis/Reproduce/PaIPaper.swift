import Engine
import Experiments
import Foundation
import Training

/// Frankle, Dziugaite, Roy & Carbin (ICLR 2021), Pruning at Initialization: Why Are We
/// Missing the Mark? Random, magnitude, SNIP, GraSP and SynFlow against magnitude pruning
/// after training (retrained with learning-rate rewinding) and IMP, each with the
/// shuffle, reinit and invert ablations.
///
/// - `quick`: LeNet-300-100 (the paper: ResNet-20, VGG-16, ResNet-18/50), 2 epochs,
///   densities 10% and 3.2%, 2 replicates; IMP (rewound to step 0) to levels 10 (11%) and
///   15 (3.6%) with its shuffle and reinit ablations; SynFlow at 0.1% (99.9% sparsity).
/// - `full`: ResNet-20 on CIFAR-10 with the recipe of the project's defaults (160 epochs),
///   densities 10%, 3.2%, 1% (IMP levels 10, 15, 20), 3 replicates.
public struct PaIPaper: PaperReproduction {
  public init() {}
  public var id: String { "pai" }
  public var title: String {
    "Pruning at Initialization: Why Are We Missing the Mark? (Frankle et al., ICLR 2021)"
  }
  public var quickRecipe: String {
    "LeNet-300-100 for 2 epochs (the paper: ResNet-20 and larger on CIFAR-10 and ImageNet), densities 10% and 3.2%, 2 replicates"
  }

  static let methods = ["magnitude", "snip", "grasp", "synflow"]
  static let collapseDensity = 0.001

  func training(_ s: ReproductionSettings) -> [String] {
    let model: [String] =
      s.scale == .quick
      ? ["--model", "mnist_lenet_300_100", "--training-steps", "2ep"] : ["--model", "cifar_resnet_20"]
    return model + s.datasetArguments + ["--replicates", "\(s.replicateCount(quick: 2, full: 3))"]
  }
  func densities(_ s: ReproductionSettings) -> String { s.scale == .quick ? "0.1,0.032" : "0.1,0.032,0.01" }
  func impLevels(_ s: ReproductionSettings) -> [Int] { s.scale == .quick ? [10, 15] : [10, 15, 20] }

  public func experiments(_ s: ReproductionSettings) throws -> [ReproductionExperiment] {
    let t = training(s)
    let d = ["--densities", densities(s)]
    var out = [
      ReproductionExperiment("random", ["prune-init", "--method", "random"] + t + d),
      ReproductionExperiment(
        "after-training", ["prune-init", "--method", PaIHParams.afterTraining] + t + d),
    ]
    for m in Self.methods {
      out.append(ReproductionExperiment(m, ["prune-init", "--method", m] + t + d))
      for b in ["shuffle", "reinit", "invert"] {
        // An inverted mask may cut every path (SynFlow's at 3.2% on LeNet): it trains anyway,
        // at chance, which is the finding.
        let collapse = b == "invert" ? ["--allow-collapse"] : []
        out.append(ReproductionExperiment("\(m)-\(b)", ["branch", b, "--method", m] + t + d + collapse))
      }
    }
    let levels = impLevels(s)
    out.append(ReproductionExperiment("imp", ["lottery"] + t + ["--levels", "\(levels.max()!)"]))
    for b in ["shuffle", "reinit"] {
      out.append(
        ReproductionExperiment(
          "imp-\(b)", ["branch", b] + t + ["--levels", levels.map(String.init).joined(separator: ",")]))
    }
    out.append(
      ReproductionExperiment(
        "synflow-collapse",
        ["prune-init", "--method", "synflow"] + t + ["--densities", "\(Self.collapseDensity)"]))
    return out
  }

  /// Target density -> main row of a prune-init run (with its branches).
  func rows(_ runs: ReproductionRuns, _ name: String) throws -> [Double: ResultRow] {
    var out: [Double: ResultRow] = [:]
    for r in try Results.collect(try run(runs, name)).rows { if let d = r.targetDensity { out[d] = r } }
    return out
  }

  public func findings(_ runs: ReproductionRuns, _ s: ReproductionSettings) throws -> [Finding] {
    let targets = try parseDensities(densities(s))
    let random = try rows(runs, "random")
    let after = try rows(runs, "after-training")
    var method: [String: [Double: ResultRow]] = [:]
    for m in Self.methods { method[m] = try rows(runs, m) }
    func acc(_ r: ResultRow?) -> Sample { r.map(Claims.accuracy) ?? Sample([]) }
    func label(_ d: Double) -> String { ReproductionResult.format(d * 100) + "%" }
    var out: [Finding] = []

    // 1. Every method beats random; 2. none reaches magnitude pruning after training.
    var beat: [Double] = []
    var below: [Double] = []
    var beatParts: [String] = []
    var belowParts: [String] = []
    var reps = Int.max
    for d in targets {
      let r = acc(random[d])
      let a = acc(after[d])
      for m in Self.methods {
        let x = acc(method[m]![d])
        reps = min(reps, r.n, a.n, x.n)
        beat.append(x.mean - r.mean)
        below.append(x.mean - a.mean)
        beatParts.append("\(m) \(label(d)): \(Claims.pts(x.mean - r.mean))")
        belowParts.append("\(m) \(label(d)): \(Claims.pts(x.mean - a.mean))")
      }
      beatParts.append("random \(label(d)): \(r.percentText)%")
      belowParts.append("after training \(label(d)): \(a.percentText)%")
    }
    if reps == Int.max { reps = 0 }
    out.append(
      Finding(
        id: "pai.beats-random", claim: "Every method (magnitude, SNIP, GraSP, SynFlow) beats random pruning.",
        unit: "points", paperValue: nil, paperText: "all methods beat random at every density (Figure 2)",
        lotterykitValue: beat.min().map { $0 * 100 }, lotterykitDetail: beatParts.joined(separator: "; "),
        tolerance:
          "holds when every method's mean accuracy exceeds random's at every density (value: the smallest gap)",
        verdict: Claims.verdict(beat.allSatisfy { $0 > 0 }, replicates: reps), replicates: reps))
    out.append(
      Finding(
        id: "pai.below-after-training",
        claim: "No method reaches magnitude pruning after training (retrained with learning-rate rewinding).",
        unit: "points", paperValue: nil,
        paperText: "every method falls short of pruning after training (Figure 2)",
        lotterykitValue: below.max().map { $0 * 100 }, lotterykitDetail: belowParts.joined(separator: "; "),
        tolerance:
          "holds when every method's mean accuracy is below that of pruning after training at every density (value: the largest gap, negative when it holds)",
        verdict: Claims.verdict(below.allSatisfy { $0 < 0 }, replicates: reps), replicates: reps))

    // 3. Shuffling and reinitialising do not hurt the methods.
    var keep: [Double] = []
    var keepParts: [String] = []
    var n3 = Int.max
    for m in Self.methods {
      for d in targets {
        let x = acc(method[m]![d])
        for b in ["shuffle", "reinit"] {
          let y = acc(method[m]![d]?.branches?[b])
          n3 = min(n3, x.n, y.n)
          keep.append(y.mean - x.mean)
          keepParts.append("\(m) \(b) \(label(d)): \(Claims.pts(y.mean - x.mean))")
        }
      }
    }
    if n3 == Int.max { n3 = 0 }
    out.append(
      Finding(
        id: "pai.ablations-keep-pai",
        claim: "Shuffling the mask within layers or reinitialising does not hurt pruning at initialisation.",
        unit: "points", paperValue: nil, paperText: "no loss for SNIP, GraSP, SynFlow, magnitude (Figure 3)",
        lotterykitValue: keep.min().map { $0 * 100 }, lotterykitDetail: keepParts.joined(separator: "; "),
        tolerance:
          "holds when every ablation's mean accuracy is at least the method's - 1 point (value: the largest loss)",
        verdict: Claims.verdict(keep.allSatisfy { $0 >= -0.01 }, replicates: n3), replicates: n3))

    // 4. They do hurt IMP.
    let imp = try Claims.split(try Results.collect(try run(runs, "imp")))
    var hurt: [Double] = []
    var hurtParts: [String] = []
    var n4 = Int.max
    var hurtOK = true
    for r in imp.pruned where r.branches?["shuffle"] != nil || r.branches?["reinit"] != nil {
      let x = Claims.accuracy(r)
      for b in ["shuffle", "reinit"] {
        guard let br = r.branches?[b] else { continue }
        let y = Claims.accuracy(br)
        let se = Sample.standardError(x, y)
        n4 = min(n4, x.n, y.n)
        hurt.append(y.mean - x.mean)
        if !(se.map { y.mean - x.mean < -2 * $0 } ?? false) { hurtOK = false }
        hurtParts.append(
          "IMP \(b) at \(Claims.pct(r.density ?? 0))%: \(Claims.pts(y.mean - x.mean)) (IMP \(x.percentText)%)"
        )
      }
    }
    if n4 == Int.max { n4 = 0 }
    out.append(
      Finding(
        id: "pai.ablations-hurt-imp", claim: "Shuffling or reinitialising hurts IMP.", unit: "points",
        paperValue: nil,
        paperText: "IMP loses accuracy under both ablations (Figure 3)",
        lotterykitValue: hurt.max().map { $0 * 100 },
        lotterykitDetail: hurtParts.joined(separator: "; "),
        tolerance:
          "holds when every ablation's mean accuracy is below IMP's by more than twice the standard error of the difference (value: the smallest loss)",
        verdict: Claims.verdict(hurtOK && !hurt.isEmpty, replicates: n4), replicates: n4))

    // 5. Inversion ruins every method but GraSP.
    var invParts: [String] = []
    var invOK = true
    var n5 = Int.max
    var worst = -Double.infinity
    for m in Self.methods {
      for d in targets {
        let x = acc(method[m]![d])
        let y = acc(method[m]![d]?.branches?["invert"])
        n5 = min(n5, x.n, y.n)
        let gap = y.mean - x.mean
        if m == "grasp" {
          if gap < -0.01 { invOK = false }
        } else {
          worst = max(worst, gap)
          if gap > -0.05 { invOK = false }
        }
        invParts.append("\(m) \(label(d)): \(Claims.pts(gap))")
      }
    }
    if n5 == Int.max { n5 = 0 }
    out.append(
      Finding(
        id: "pai.inversion", claim: "Inverting the scores ruins every method but GraSP.", unit: "points",
        paperValue: nil,
        paperText:
          "inverted magnitude, SNIP and SynFlow collapse; inverted GraSP does as well or better (Figure 4)",
        lotterykitValue: worst.isFinite ? worst * 100 : nil,
        lotterykitDetail: invParts.joined(separator: "; "),
        tolerance:
          "holds when inversion costs magnitude, SNIP and SynFlow at least 5 points and GraSP at most 1 point, at every density (value: the smallest cost outside GraSP)",
        verdict: Claims.verdict(invOK, replicates: n5), replicates: n5))

    // 6. SynFlow avoids layer collapse at 99.9% sparsity.
    if let row = try rows(runs, "synflow-collapse")[Self.collapseDensity] {
      let perReplicate = row.perReplicate.map(\.density)
      let minLayer = row.layers.map(\.density).min() ?? 0
      out.append(
        Finding(
          id: "pai.synflow-no-collapse",
          claim: "SynFlow keeps every layer at 99.9% sparsity (no layer collapse).",
          unit: "% of the sparsest layer", paperValue: nil,
          paperText: "SynFlow avoids layer collapse (tested to 99.99% sparsity)",
          lotterykitValue: minLayer * 100,
          lotterykitDetail:
            "sparsest layer \(String(format: "%.3f", minLayer * 100))% (\(row.layers.min { $0.density < $1.density }?.name ?? "-")); overall density \(perReplicate.map { String(format: "%.3f%%", $0 * 100) }.joined(separator: ", ")); accuracy \(Claims.accuracy(row).percentText)%",
          tolerance: "holds when every pruned tensor keeps at least one weight in every replicate",
          verdict: Claims.verdict(minLayer > 0, replicates: row.replicates), replicates: row.replicates))
    }
    return out
  }
}
