import Engine
import Experiments
import Foundation
import Training

/// Rosenfeld, Frankle, Carbin & Shavit (ICML 2021), On the Predictability of Pruning
/// Across Scales: the joint law's fit against seed-to-seed noise, and its prediction of a
/// width it was not fitted on.
///
/// - `quick`: LeNet-300-100 at widths 0.25, 0.5, 1 and 2, 2 epochs a level, global pruning
///   of 20% a level to level 32 (0.08%), 2 replicates; width 2 is held out for the prediction.
/// - `full`: CIFAR ResNet-20 at widths 0.25-2 (the paper: depths 8-98, widths 2^-4..2^2,
///   data 1/1..1/64), 160 epochs, levels 0-30, 3 replicates.
public struct ScalingPaper: PaperReproduction {
  public init() {}
  public var id: String { "scaling" }
  public var title: String { "On the Predictability of Pruning Across Scales (Rosenfeld et al., ICML 2021)" }
  public var quickRecipe: String {
    "LeNet-300-100 widths 0.25-2, 2 epochs a level, global pruning to level 32 (0.08%), 2 replicates (the paper: CIFAR ResNets of depths 8-98)"
  }

  static let heldOut = "width>=2"

  public func experiments(_ s: ReproductionSettings) throws -> [ReproductionExperiment] {
    let quick = s.scale == .quick
    let grid: [String] =
      quick
      ? ["--family", "mnist_lenet", "--levels", "32", "--training-steps", "2ep"]
      : ["--family", "cifar_resnet", "--depths", "20", "--levels", "30"]
    // Global pruning of 20% a level, as the paper's sweeps: LeNet's layerwise default keeps
    // its output layer at 90% a level and never leaves the low-error plateau.
    return [
      ReproductionExperiment(
        "sweep",
        ["scaling", "sweep"] + grid + [
          "--width-factors", "0.25,0.5,1,2", "--replicates", "\(s.replicateCount(quick: 2, full: 3))",
        ] + s.datasetArguments + ["--pruning-strategy", "global", "--pruning-fraction", "0.2"])
    ]
  }

  public func findings(_ runs: ReproductionRuns, _ s: ReproductionSettings) throws -> [Finding] {
    let sweep = try run(runs, "sweep")
    let fit = try ScalingAnalysis.fit(sweep: sweep, joint: true, holdout: nil, resamples: 20)
    if let e = fit.error { throw RunError("reproduction scaling: the joint fit failed: \(e)") }
    let reps = fit.replicates ?? 0
    let mu = fit.meanRelativeDeviation ?? .nan
    let sigma = fit.stdRelativeDeviation ?? .nan
    let noise = fit.seedNoise
    let warnings =
      (fit.warnings ?? []).isEmpty ? "" : "; fit warnings: " + (fit.warnings ?? []).joined(separator: " ")
    let pruned = (fit.points ?? []).filter { $0.density < 1 && !$0.heldOut }.count
    var out = [
      Finding(
        id: "scaling.fit-mean", claim: "The joint law fits with a mean relative deviation under 2%.",
        unit: "%",
        paperValue: 2, paperText: "under 2% (CIFAR-10 ResNets, joint fit over depth, width and data)",
        lotterykitValue: mu * 100,
        lotterykitDetail: "mean (err_hat - err) / err over \(pruned) pruned points (dense points excluded)"
          + warnings,
        tolerance: "holds when |mean relative deviation| < 2%",
        verdict: Claims.verdict(abs(mu) < 0.02, replicates: reps), replicates: reps),
      Finding(
        id: "scaling.fit-std-vs-noise", claim: "The fit's spread is comparable to seed-to-seed noise.",
        unit: "%",
        paperValue: 6, paperText: "standard deviation under 6% (joint) against seed noise of about 3.4%",
        lotterykitValue: sigma * 100,
        lotterykitDetail:
          "standard deviation of the relative deviation \(String(format: "%.2f", sigma * 100))%; seed noise \(noise.map { String(format: "%.2f", $0 * 100) } ?? "-")% (replicates' relative deviation from their mean)",
        tolerance:
          "holds when the standard deviation is at most twice this run's seed noise (the paper's ratio is 6/3.4 = 1.8)",
        verdict: Claims.verdict(noise.map { sigma <= 2 * $0 } ?? false, replicates: reps), replicates: reps),
    ]
    let h = try ScalingAnalysis.fit(
      sweep: sweep, joint: true, holdout: try Holdout(parsing: Self.heldOut), resamples: 0)
    if let held = h.holdout {
      out.append(
        Finding(
          id: "scaling.held-out-width",
          claim: "The law fitted on smaller widths predicts the error of a wider network.",
          unit: "%", paperValue: nil,
          paperText: "extrapolation to larger networks within the fit's deviation (Section 6)",
          lotterykitValue: held.meanRelativeError * 100,
          lotterykitDetail:
            "fitted on widths 0.25-1, predicted width 2 (\(held.points) points, its measured e_np): mean |relative error| \(String(format: "%.2f", held.meanRelativeError * 100))%, std \(String(format: "%.2f", held.stdRelativeError * 100))%",
          tolerance:
            "holds when the mean |relative error| on the held-out width is under 6% (the paper's joint fit bound)",
          verdict: Claims.verdict(held.meanRelativeError < 0.06, replicates: reps), replicates: reps))
    }
    return out
  }
}
