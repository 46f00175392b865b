import Engine
import Experiments
import Foundation
import Training

/// Frankle & Carbin (ICLR 2019), the Lottery Ticket Hypothesis, on LeNet-300-100: IMP
/// with rewinding to initialisation, the random-reinit control, early stopping on a
/// held-out validation split.
///
/// - `quick`: 5 epochs a level, levels 0-16 (density down to 2.9%), 3 replicates; the
///   random-reinit control at levels 3, 7, 11 and 15 (51%, 21%, 8.6%, 3.6%).
/// - `full`: the paper's 50,000 iterations a level, levels 0-20, 5 replicates, the control
///   at levels 3, 7, 11, 15 and 19.
public struct LTHPaper: PaperReproduction {
  public init() {}
  public var id: String { "lth" }
  public var title: String { "The Lottery Ticket Hypothesis (Frankle & Carbin, ICLR 2019)" }
  public var quickRecipe: String {
    "LeNet-300-100, 5 epochs a level (the paper: 50,000 iterations), levels 0-16, 3 replicates"
  }

  func flags(_ s: ReproductionSettings) -> [String] {
    ["--model", "mnist_lenet_300_100"] + s.datasetArguments + [
      "--training-steps", s.scale == .quick ? "5ep" : "50000it", "--validation-size", "\(s.validationSize)",
      "--eval-every", "100it", "--replicates", "\(s.replicateCount(quick: 3, full: 5))",
    ]
  }
  var reinitLevels: (quick: String, full: String) { ("3,7,11,15", "3,7,11,15,19") }

  public func experiments(_ s: ReproductionSettings) throws -> [ReproductionExperiment] {
    let f = flags(s)
    return [
      ReproductionExperiment("ticket", ["lottery"] + f + ["--levels", s.scale == .quick ? "16" : "20"]),
      ReproductionExperiment(
        "reinit",
        ["branch", "random-reinit"] + f + [
          "--levels", s.scale == .quick ? reinitLevels.quick : reinitLevels.full,
        ]),
    ]
  }

  public func findings(_ runs: ReproductionRuns, _ s: ReproductionSettings) throws -> [Finding] {
    let results = try Results.collect(try run(runs, "ticket"))
    let (dense, pruned) = try Claims.split(results)
    let d = Claims.accuracy(dense)
    var out: [Finding] = []

    // 1. Tickets match the dense network down to about 3.6%.
    do {
      let last = Claims.lowest(pruned) { Claims.accuracy($0).mean >= d.mean - 0.01 }
      let reps = min(d.n, pruned.map(\.replicates).min() ?? 0)
      let value = last?.density.map { $0 * 100 }
      let detail =
        last.map { r in
          "level \(r.level ?? 0) (\(Claims.pct(r.density ?? 0))%): \(Claims.accuracy(r).percentText)% against dense \(d.percentText)% (test accuracy at the early-stopping step, \(reps) replicates)"
        } ?? "level 1 is already more than 1 point below dense (\(d.percentText)%)"
      out.append(
        Finding(
          id: "lth.matching-density",
          claim:
            "IMP tickets stay within 1 point of the dense network's accuracy down to about 3.6% density (LeNet).",
          unit: "% density", paperValue: 3.6, paperText: "3.6% (LeNet-300-100 on MNIST, Figure 3)",
          lotterykitValue: value, lotterykitDetail: detail,
          tolerance:
            "holds when the lowest density whose level, and every denser level, has mean accuracy at least the dense mean - 1 point is at most twice the paper's (7.2%)",
          verdict: Claims.verdict((value ?? 100) <= 7.2, replicates: reps), replicates: reps))
    }

    // 2. Random reinitialisation falls below the ticket at low density.
    if let row = pruned.filter({ $0.branches?["random-reinit"] != nil }).min(by: {
      ($0.density ?? 1) < ($1.density ?? 1)
    }),
      let reinit = row.branches?["random-reinit"]
    {
      let t = Claims.accuracy(row)
      let r = Claims.accuracy(reinit)
      let gap = t.mean - r.mean
      let se = Sample.standardError(t, r)
      let reps = Claims.replicates(t, r)
      out.append(
        Finding(
          id: "lth.reinit-below",
          claim: "Randomly reinitialised tickets fall below the tickets at low density.",
          unit: "points", paperValue: nil,
          paperText:
            "reinitialised tickets learn slower and lose accuracy where tickets still match (Figures 3-4)",
          lotterykitValue: gap * 100,
          lotterykitDetail:
            "at \(Claims.pct(row.density ?? 0))% (level \(row.level ?? 0)): ticket \(t.percentText)%, random reinit \(r.percentText)%; standard error of the gap \(se.map { String(format: "%.2f", $0 * 100) } ?? "-") points",
          tolerance:
            "holds when ticket mean - reinit mean exceeds twice the standard error of that difference",
          verdict: Claims.verdict(se.map { gap > 2 * $0 } ?? false, replicates: reps), replicates: reps))
    }

    // 3. Tickets reach their early-stopping iteration sooner than dense down to about 21%.
    do {
      let e = Claims.earlyStop(dense)
      let reps = min(e.n, pruned.map(\.replicates).min() ?? 0)
      if e.n == 0 {
        out.append(
          .moved(
            id: "lth.faster-down-to",
            claim: "Tickets stop early sooner than the dense network down to about 21%.",
            unit: "% density", paperValue: 21, paperText: "21% (LeNet-300-100, Figure 3)",
            why: "needs a validation split"))
      } else {
        let last = Claims.lowest(pruned) { Claims.earlyStop($0).n > 0 && Claims.earlyStop($0).mean < e.mean }
        let value = last?.density.map { $0 * 100 }
        let detail =
          last.map { r in
            "level \(r.level ?? 0) (\(Claims.pct(r.density ?? 0))%): early stop at \(Int(Claims.earlyStop(r).mean.rounded())) iterations against dense \(Int(e.mean.rounded())) (means over \(reps) replicates)"
          } ?? "level 1 stops no sooner than dense (\(Int(e.mean.rounded())) iterations)"
        let end = dense.learningCurve.step.last ?? 0
        let short =
          end > 0 && e.mean >= 0.75 * Double(end)
          ? "; the dense network's validation loss is still falling late in training (minimum at \(Int(e.mean.rounded())) of \(end) iterations), so this schedule is too short to show the paper's early stopping"
          : ""
        out.append(
          Finding(
            id: "lth.faster-down-to",
            claim: "Tickets stop early sooner than the dense network down to about 21%.",
            unit: "% density", paperValue: 21, paperText: "21% (LeNet-300-100 on MNIST, Figure 3)",
            lotterykitValue: value, lotterykitDetail: detail + short,
            tolerance:
              "holds when the lowest density whose level, and every denser level, has a mean early-stopping iteration (minimum validation loss) below the dense mean is at most twice the paper's (42%)",
            verdict: Claims.verdict((value ?? 100) <= 42, replicates: reps), replicates: reps))
      }
    }
    return out
  }
}
