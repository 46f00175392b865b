import Engine
import Experiments
import Families
import Foundation
import NN
import Training

/// `lth scaling fit` and `lth scaling predict`: the measured points of a sweep, the fits
/// (one per configuration, and the joint law), bootstrap uncertainty, seed noise, held-out
/// prediction error, and predictions, as the JSON object written to `fit.json`.
public enum ScalingAnalysis {
  /// The error of a finished level: 1 - final test accuracy.
  static func errors(_ o: ResultRow) -> [Double] { o.perReplicate.map { 1 - $0.testAccuracy } }

  /// Every finished (configuration, level) of a sweep, with the configuration's e_np (the
  /// mean error of its finished level-0 replicates). Points of a configuration without a
  /// finished level 0 are left out; the returned list names them.
  public static func points(_ sweep: String) throws -> (ScalingManifest, [ScalingPoint], missing: [String]) {
    let m = try ScalingManifest.read(sweep)
    var out: [ScalingPoint] = []
    var missing: [String] = []
    for p in m.points {
      let root = sweep + "/" + p.run
      let config = Configuration(depth: p.depth, width: p.widthFactor, data: p.dataFraction)
      guard FileManager.default.fileExists(atPath: RunFile.hparams.path(in: root)) else {
        missing.append(config.label)
        continue
      }
      let levels = try Results.collect(root).rows
      guard let dense = levels.first(where: { $0.level == 0 }), !errors(dense).isEmpty else {
        missing.append(config.label)
        continue
      }
      let e0 = errors(dense)
      let eNP = e0.reduce(0, +) / Double(e0.count)
      for row in levels {
        let e = errors(row)
        guard !e.isEmpty, let d = row.density else { continue }
        out.append(
          ScalingPoint(
            depth: p.depth, width: p.widthFactor, data: p.dataFraction, density: d,
            error: e.reduce(0, +) / Double(e.count),
            replicateErrors: e, eNP: eNP))
      }
    }
    return (m, out, missing)
  }

  static func parameters(_ law: ScalingLaw, free: ScalingFit.Free, std: [String: Double], joint: Bool)
    -> LawParameters
  {
    var o: LawParameters = [:]
    let values: [(String, Double, Bool)] = [
      ("e_up", law.eUp, true), ("gamma", law.gamma, true), ("p", law.p, true), ("phi", law.phi, free.phi),
      ("psi", law.psi, free.psi),
    ]
    for (name, v, fitted) in values where joint || ["e_up", "gamma", "p"].contains(name) {
      o[name] = LawParameter(value: v, std: std[name], fitted: fitted)
    }
    return o
  }

  /// The fit object (`fit.json`, `lth scaling fit --json`). Joint when `joint` or with a
  /// holdout; single-network fits of every configuration always.
  public static func fit(sweep: String, joint: Bool, holdout: Holdout?, resamples: Int = 100) throws
    -> ScalingFitResult
  {
    let (manifest, all, missing) = try points(sweep)
    guard !all.isEmpty else {
      throw RunError("\(sweep): no configuration has finished level 0 yet; run lth scaling sweep first")
    }
    let joint = joint || holdout != nil
    let configs = Array(Set(all.map(\.configuration))).sorted()
    let held = Set(configs.filter { holdout?.holds($0) ?? false })
    if let holdout {
      guard !held.isEmpty else { throw SettingError("holdout", "\"\(holdout.text)\" matches no configuration") }
      guard held.count < configs.count else {
        throw SettingError("holdout", "\"\(holdout.text)\" leaves no configuration to fit")
      }
    }
    let train = all.filter { !held.contains($0.configuration) }

    // One fit per configuration.
    var singles: [ConfigurationFit] = []
    var singleLaw: [Configuration: ScalingLaw] = [:]
    var singleDeviations: [Double] = []
    for c in configs {
      let pts = all.filter { $0.configuration == c }
      var o = ConfigurationFit(
        depth: c.depth, widthFactor: c.width, dataFraction: c.data, eNP: pts[0].eNP, points: pts.count,
        heldOut: held.contains(c), label: c.label)
      do {
        let f = try ScalingFit.fit(pts, free: .single)
        let std = ScalingFit.bootstrap(pts, free: .single, from: f.law, resamples: resamples)
        o.parameters = parameters(f.law, free: .single, std: std, joint: false)
        o.meanRelativeDeviation = f.meanDeviation
        o.meanAbsRelativeDeviation = f.meanAbsoluteDeviation
        o.stdRelativeDeviation = f.deviationStd
        singleLaw[c] = f.law
        singleDeviations += f.deviations
      } catch {
        o.error = "\(error)"
      }
      singles.append(o)
    }
    guard joint || !singleLaw.isEmpty else {
      throw EngineError("no configuration can be fitted: \(singles.first?.error ?? "too few points")")
    }

    var out = ScalingFitResult(family: manifest.family)
    out.sweep = sweep
    out.law = "rosenfeld2021"
    out.mode = joint ? "joint" : "single"
    out.seedNoise = ScalingFit.seedNoise(all)
    out.configurations = singles
    out.unfinishedConfigurations = missing
    out.levels = manifest.levels
    out.replicates = manifest.replicates
    if !singleDeviations.isEmpty {
      out.singleMeanRelativeDeviation = singleDeviations.reduce(0, +) / Double(singleDeviations.count)
      out.singleMeanAbsRelativeDeviation = singleDeviations.map(abs).reduce(0, +) / Double(singleDeviations.count)
      out.singleStdRelativeDeviation = ScalingFit.std(singleDeviations)
    }
    out.bootstrap = .init(
      resamples: resamples, over: all.allSatisfy { $0.replicateErrors.count >= 2 } ? "replicates" : "points")
    func range(_ f: (ScalingPoint) -> Double) -> [Double] { [train.map(f).min()!, train.map(f).max()!] }
    out.ranges = FitRanges(
      depth: range(\.depth), widthFactor: range(\.width), dataFraction: range(\.data), density: range(\.density))
    let measured = Dictionary(all.map { ($0.configuration, $0.eNP) }, uniquingKeysWith: { a, _ in a })
    out.eNPModel = UnprunedErrorModel.fit(
      measured.filter { !held.contains($0.key) }.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 })
    out.eNPMeasured = measured.keys.sorted().map {
      MeasuredENP(depth: $0.depth, widthFactor: $0.width, dataFraction: $0.data, eNP: measured[$0]!)
    }

    var jointLaw: ScalingLaw?
    if joint {
      let free = ScalingFit.Free(
        phi: Set(train.map(\.depth)).count > 1, psi: Set(train.map(\.width)).count > 1)
      let f = try ScalingFit.fit(train, free: free)
      let std = ScalingFit.bootstrap(train, free: free, from: f.law, resamples: resamples)
      jointLaw = f.law
      out.parameters = .joint(parameters(f.law, free: free, std: std, joint: true))
      out.fittedParameters = free.names
      out.starts = ScalingFit.starts(for: train, free: free).count
      out.bestStart = f.start
      out.meanRelativeDeviation = f.meanDeviation
      out.meanAbsRelativeDeviation = f.meanAbsoluteDeviation
      out.stdRelativeDeviation = f.deviationStd
    } else {
      var params: [String: LawParameters] = [:]
      for s in singles { if let p = s.parameters { params[s.label] = p } }
      out.parameters = .perConfiguration(params)
      out.fittedParameters = ScalingFit.Free.single.names
      out.starts = ScalingFit.starts(for: all, free: .single).count
      out.meanRelativeDeviation = out.singleMeanRelativeDeviation
      out.meanAbsRelativeDeviation = out.singleMeanAbsRelativeDeviation
      out.stdRelativeDeviation = out.singleStdRelativeDeviation
    }

    var rows: [FitPoint] = []
    var heldDeviations: [Double] = []
    for pt in all {
      var o = FitPoint(
        depth: pt.depth, widthFactor: pt.width, dataFraction: pt.data, density: pt.density, error: pt.error,
        replicateErrors: pt.replicateErrors, eNP: pt.eNP, heldOut: held.contains(pt.configuration))
      if let law = jointLaw ?? singleLaw[pt.configuration] {
        let e = law.error(eNP: pt.eNP, density: pt.density, depth: pt.depth, width: pt.width)
        o.predicted = e
        o.relativeDeviation = (e - pt.error) / pt.error
        if held.contains(pt.configuration) { heldDeviations.append((e - pt.error) / pt.error) }
      }
      if let s = singleLaw[pt.configuration] {
        o.singlePredicted = s.error(eNP: pt.eNP, density: pt.density)
      }
      rows.append(o)
    }
    out.points = rows
    if let holdout {
      let n = Double(heldDeviations.count)
      let meanAbs: Double = heldDeviations.map { abs($0) }.reduce(0, +) / n
      let mean: Double = heldDeviations.reduce(0, +) / n
      out.holdout = ScalingFitResult.HeldOut(
        text: holdout.text, configurations: held.sorted().map(\.label), meanRelativeError: meanAbs,
        meanRelativeDeviation: mean, stdRelativeError: ScalingFit.std(heldDeviations), points: heldDeviations.count)
    }
    return out
  }

  /// A prediction: the error, where e_np came from, and what lies outside the fitted ranges.
  public struct Prediction {
    public var error: Double
    public var eNP: Double
    public var eNPSource: String
    public var extrapolation: [String]
  }

  public static func predict(fit: ScalingFitResult, depth: Double, width: Double, data: Double, density: Double)
    throws -> Prediction
  {
    guard density > 0, density <= 1 else { throw SettingError("density", "must be in (0, 1], got \(density)") }
    let c = Configuration(depth: depth, width: width, data: data)
    let measured = (fit.eNPMeasured ?? []).first {
      Configuration(depth: $0.depth, width: $0.widthFactor, data: $0.dataFraction) == c
    }
    let fitted: ScalingLaw
    if fit.mode == "joint" {
      guard let l = fit.jointLaw else { throw RunError("the fit file has no joint parameters") }
      fitted = l
    } else {
      let entry = (fit.configurations ?? []).first { $0.label == c.label }
      guard let l = entry?.parameters?.law else {
        throw EngineError(
          "the fit holds single-network fits only, none for \(c.label); refit with lth scaling fit --joint to predict other configurations"
        )
      }
      fitted = l
    }
    var eNP: Double
    var source: String
    if let m = measured {
      (eNP, source) = (m.eNP, "measured")
    } else if let model = fit.eNPModel {
      (eNP, source) = (model.eNP(c), "log-linear fit over the measured configurations")
    } else {
      throw EngineError("e_np of \(c.label) was not measured and the fit has no e_np model")
    }
    eNP = min(eNP, 1)
    var outside: [String] = []
    if let r = fit.ranges {
      for (key, v, range) in [
        ("depth", depth, r.depth), ("width_factor", width, r.widthFactor), ("data_fraction", data, r.dataFraction),
        ("density", density, r.density),
      ] where range.count == 2 && (v < range[0] * (1 - 1e-9) || v > range[1] * (1 + 1e-9)) {
        outside.append(
          "\(key) \(ScalingFit.text(v)) outside the fitted \(ScalingFit.text(range[0]))...\(ScalingFit.text(range[1]))"
        )
      }
    }
    return Prediction(
      error: fitted.error(eNP: eNP, density: density, depth: depth, width: width), eNP: eNP,
      eNPSource: source,
      extrapolation: outside)
  }

  /// The smallest network (remaining prunable weights) of the family, within the fitted
  /// depths and widths and at densities 0.8^k down to the smallest fitted density, whose
  /// predicted error at data fraction `data` is at most `target`.
  public static func smallest(fit: ScalingFitResult, target: Double, data: Double) throws -> SmallestNetwork {
    guard fit.mode == "joint" else {
      throw SettingError("target_error", "needs a joint fit (lth scaling fit --joint)")
    }
    let family = try ScalingFamily(fit.family)
    guard let ranges = fit.ranges, ranges.depth.count == 2, ranges.widthFactor.count == 2,
      ranges.density.count == 2
    else { throw RunError("the fit file has no ranges") }
    let (dr, wr, densr) = (ranges.depth, ranges.widthFactor, ranges.density)
    var depths: [Int?] = [nil]
    if family.hasDepthKnob {
      depths = (Int(dr[0])...Int(dr[1])).filter { (try? family.checkDepth($0)) != nil }.map { $0 }
    }
    // Widths: 8 per octave across the fitted range, plus its ends.
    var widths: [Double] = []
    var w = wr[0]
    while w <= wr[1] * (1 + 1e-9) {
      widths.append(w)
      w *= pow(2, 1.0 / 8)
    }
    if !widths.contains(wr[1]) { widths.append(wr[1]) }
    var best: SmallestNetwork?
    var bestRemaining = Double.infinity
    for d in depths {
      for w in widths {
        let model = try family.model(depth: d, widthFactor: w)
        let shape = ModelZoo.nativeInputShape(model)
        let total = Double((try ModelZoo.make(model, inputShape: shape) as Network<Float>).prunableCount)
        var density = 1.0
        while density >= densr[0] * (1 - 1e-9) {
          let p = try predict(fit: fit, depth: family.lawDepth(d), width: w, data: data, density: density)
          if p.error <= target, total * density < bestRemaining {
            bestRemaining = total * density
            best = SmallestNetwork(
              depth: family.lawDepth(d), widthFactor: w, density: density, model: model,
              prunableWeights: Int(total), remainingWeights: Int((total * density).rounded()),
              predictedError: p.error, eNPSource: p.eNPSource)
          }
          density *= 0.8
        }
      }
    }
    guard let best else {
      throw EngineError(
        "no network of the family within the fitted depths, widths and densities is predicted to reach error \(target)"
      )
    }
    return best
  }
}
