import Engine
import Experiments
import Foundation
import Training

/// Renda, Frankle & Carbin (ICLR 2020), Comparing Rewinding and Fine-tuning: iterative
/// global magnitude pruning (20% a level) retrained three ways with the same budget:
/// learning-rate rewinding (the full schedule again from the trained weights), weight
/// rewinding to T/16, and fine-tuning for T at the final learning rate.
///
/// - `quick`: LeNet-300-100 with SGD (momentum 0.9, lr 0.05, weight decay 1e-4, batch 128)
///   and step decay (x0.1 after epochs 2 and 3 of 4), so that the three modes differ (under
///   LeNet's constant-rate Adam, learning-rate rewinding and fine-tuning coincide); levels
///   0-20 (1.2%), 2 replicates.
/// - `full`: the paper's ResNet-20 recipe (batch 128, lr 0.1, momentum 0.9, weight decay
///   2e-4, 182 epochs, x0.1 at 91 and 136), levels 0-20, 3 replicates.
public struct RendaPaper: PaperReproduction {
  public init() {}
  public var id: String { "renda" }
  public var title: String { "Comparing Rewinding and Fine-tuning (Renda, Frankle & Carbin, ICLR 2020)" }
  public var quickRecipe: String {
    "LeNet-300-100, SGD with step decay over 4 epochs (the paper: ResNet-20, 182 epochs), levels 0-20, 2 replicates"
  }

  /// The three modes: experiment name, paper's lowest matching density, flags.
  static let modes: [(name: String, label: String, paper: Double)] = [
    ("lr-rewind", "learning-rate rewinding", 16.8), ("weight-rewind", "weight rewinding", 21.0),
    ("finetune", "fine-tuning", 64.0),
  ]

  public func experiments(_ s: ReproductionSettings) throws -> [ReproductionExperiment] {
    let quick = s.scale == .quick
    let common: [String] =
      quick
      ? [
        "--model", "mnist_lenet_300_100", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
        "--weight-decay", "1e-4", "--batch-size", "128", "--schedule", "step", "--milestones", "2ep,3ep",
        "--gamma", "0.1", "--training-steps", "4ep", "--levels", "20",
      ]
      : [
        "--model", "cifar_resnet_20", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
        "--weight-decay",
        "2e-4", "--batch-size", "128", "--schedule", "step", "--milestones", "91ep,136ep", "--gamma", "0.1",
        "--training-steps", "182ep", "--levels", "20",
      ]
    let flags =
      common + s.datasetArguments + [
        "--pruning-strategy", "global", "--pruning-fraction", "0.2", "--replicates",
        "\(s.replicateCount(quick: 2, full: 3))",
      ]
    return [
      ReproductionExperiment(
        "lr-rewind", ["lottery"] + flags + ["--retrain", "lr-rewind", "--rewind-step", "0it"]),
      ReproductionExperiment(
        "weight-rewind", ["lottery"] + flags + ["--retrain", "weight-rewind", "--rewind-step", "T/16"]),
      ReproductionExperiment(
        "finetune",
        ["lottery"] + flags + ["--retrain", "finetune", "--finetune-steps", quick ? "4ep" : "182ep"]),
    ]
  }

  public func findings(_ runs: ReproductionRuns, _ s: ReproductionSettings) throws -> [Finding] {
    var lowest: [String: (row: ResultRow, dense: ResultRow, pruned: [ResultRow])] = [:]
    for m in Self.modes {
      let (dense, pruned) = try Claims.split(try Results.collect(try run(runs, m.name)))
      guard let last = pruned.max(by: { ($0.level ?? 0) < ($1.level ?? 0) }) else {
        throw RunError("reproduction renda: \(m.name) has no pruned level")
      }
      lowest[m.name] = (last, dense, pruned)
    }
    var out: [Finding] = []

    // 1. At the highest sparsity: LR rewinding >= weight rewinding >= fine-tuning.
    let acc = Self.modes.map { Claims.finalAccuracy(lowest[$0.name]!.row) }
    let diffs = [(acc[0], acc[1]), (acc[1], acc[2])].map { (a, b) in
      (a.mean - b.mean, Sample.standardError(a, b))
    }
    let reps = Claims.replicates(acc[0], acc[1], acc[2])
    let ok = diffs.allSatisfy { d, se in se.map { d >= -2 * $0 } ?? false }
    let density = lowest["lr-rewind"]!.row.density ?? 0
    out.append(
      Finding(
        id: "renda.order",
        claim: "At high sparsity, learning-rate rewinding >= weight rewinding >= fine-tuning.",
        unit: "points", paperValue: nil,
        paperText:
          "LR rewinding matches or beats weight rewinding, and both beat fine-tuning (ResNet-20 and others on CIFAR-10, Figure 3)",
        lotterykitValue: diffs.map(\.0).min()! * 100,
        lotterykitDetail:
          "at \(Claims.pct(density))%: LR rewinding \(acc[0].percentText)%, weight rewinding \(acc[1].percentText)%, fine-tuning \(acc[2].percentText)% (final test accuracy); the value is the smaller of the two gaps",
        tolerance:
          "holds when each gap (LR - weight, weight - fine-tuning) is at least minus twice its standard error",
        verdict: Claims.verdict(ok, replicates: reps), replicates: reps))

    // 2-4. Per mode: the lowest density within one standard deviation of dense.
    var found: [Double] = []
    for m in Self.modes {
      let (_, dense, pruned) = lowest[m.name]!
      let d = Claims.finalAccuracy(dense)
      let reps = min(d.n, pruned.map(\.replicates).min() ?? 0)
      let sd = d.std ?? 0
      let last = Claims.lowest(pruned) { Claims.finalAccuracy($0).mean >= d.mean - sd }
      let value = (last?.density ?? 1) * 100
      found.append(value)
      out.append(
        Finding(
          id: "renda.matching-\(m.name)",
          claim:
            "With \(m.label), the lowest density within one standard deviation of dense is about \(ReproductionResult.format(m.paper))%.",
          unit: "% density", paperValue: m.paper,
          paperText:
            "\(ReproductionResult.format(m.paper))% (ResNet-20 on CIFAR-10, dense 91.7%, released data)",
          lotterykitValue: value,
          lotterykitDetail:
            last.map { r in
              "level \(r.level ?? 0): \(Claims.finalAccuracy(r).percentText)% against dense \(d.percentText)% (final test accuracy, \(reps) replicates)"
                + (r.level == pruned.compactMap(\.level).max()
                  ? "; the sparsest level run still matches, so the true value is lower" : "")
            } ?? "level 1 is already below dense - 1 std (\(d.percentText)%)",
          tolerance:
            "holds when this density is within a factor of 2 of the paper's (another network and data set at quick scale: expect a difference)",
          verdict: Claims.verdict(value >= m.paper / 2 && value <= m.paper * 2, replicates: reps),
          replicates: reps))
    }
    // 5. The order of those densities.
    let n =
      Self.modes.map { m in min(Claims.finalAccuracy(lowest[m.name]!.dense).n, lowest[m.name]!.row.replicates)
      }.min() ?? 0
    out.append(
      Finding(
        id: "renda.matching-order",
        claim: "LR rewinding stays matching to the lowest density, then weight rewinding, then fine-tuning.",
        unit: "% density", paperValue: nil, paperText: "16.8% <= 21.0% <= 64% (ResNet-20 on CIFAR-10)",
        lotterykitValue: found[0],
        lotterykitDetail:
          "lowest matching density: LR rewinding \(ReproductionResult.format(found[0]))%, weight rewinding \(ReproductionResult.format(found[1]))%, fine-tuning \(ReproductionResult.format(found[2]))% (value: LR rewinding's)",
        tolerance:
          "holds when the three lowest matching densities are in this order (ties count as in order)",
        verdict: Claims.verdict(found[0] <= found[1] && found[1] <= found[2], replicates: n), replicates: n))
    return out
  }
}
