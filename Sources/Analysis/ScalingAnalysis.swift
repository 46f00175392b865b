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

  /// The paper's mu, mean |deviation| and sigma over the *pruned* points only: a dense point's
  /// deviation is about 0 by construction (the law passes through e_np), so counting them
  /// flatters a fit. The dense points' mean |deviation| comes separately.
  public struct DeviationStatistics: Equatable, Sendable {
    public var mean: Double?
    public var meanAbs: Double?
    public var std: Double?
    public var denseMeanAbs: Double?
  }

  public static func statistics(deviations: [Double], densities: [Double]) -> DeviationStatistics {
    let pruned = zip(deviations, densities).filter { $0.1 < 1 - 1e-12 }.map(\.0)
    let dense = zip(deviations, densities).filter { $0.1 >= 1 - 1e-12 }.map(\.0)
    func mean(_ x: [Double]) -> Double? { x.isEmpty ? nil : x.reduce(0, +) / Double(x.count) }
    return DeviationStatistics(
      mean: mean(pruned), meanAbs: mean(pruned.map(abs)), std: pruned.isEmpty ? nil : ScalingFit.std(pruned),
      denseMeanAbs: mean(dense.map(abs)))
  }

  /// Sentences on what the fit cannot tell: parameters whose bootstrap standard deviation
  /// exceeds their value (not identified by the data), and configurations whose errors
  /// never rise clearly above their dense error (the sweep stops on the low-error plateau,
  /// before the power-law region that fixes gamma and p).
  public static func warnings(
    parameters: [(label: String?, LawParameters)], points: [ScalingPoint], seedNoise: Double?
  ) -> [String] {
    var out: [String] = []
    for (label, p) in parameters {
      for k in ["e_up", "gamma", "p", "phi", "psi"] {
        guard let v = p[k], v.fitted, let s = v.std, s > abs(v.value) else { continue }
        out.append(
          "\(label.map { $0 + ": " } ?? "")\(k) = \(ScalingFit.text(v.value)) ± \(ScalingFit.text(s)) is not identified: its bootstrap standard deviation exceeds its value"
        )
      }
    }
    // The plateau: a rise above e_np smaller than twice the seed noise (5% without replicates).
    let margin = max(2 * (seedNoise ?? 0), 0.05)
    let configs = Array(Set(points.map(\.configuration))).sorted()
    let flat = configs.filter { c in
      points.filter { $0.configuration == c }.allSatisfy { $0.error <= $0.eNP * (1 + margin) }
    }
    if !configs.isEmpty && flat.count == configs.count {
      let lowest = points.map(\.density).min() ?? 1
      out.append(
        "no configuration's error rises more than \(Int((margin * 100).rounded()))% above its dense error down to density \(ScalingFit.text(lowest)): the sweep stays on the low-error plateau and never reaches the power-law region, so gamma and p are not identified (prune further: more --levels)"
      )
    } else if !flat.isEmpty {
      out.append(
        "\(flat.map(\.label).joined(separator: "; ")): the error never rises more than \(Int((margin * 100).rounded()))% above the dense error (still on the plateau); their single fits are not identified"
      )
    }
    return out
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
    var singleDensities: [Double] = []
    for c in configs {
      let pts = all.filter { $0.configuration == c }
      var o = ConfigurationFit(
        depth: c.depth, widthFactor: c.width, dataFraction: c.data, eNP: pts[0].eNP, points: pts.count,
        heldOut: held.contains(c), label: c.label)
      do {
        let f = try ScalingFit.fit(pts, free: .single)
        let std = ScalingFit.bootstrap(pts, free: .single, from: f.law, resamples: resamples)
        o.parameters = parameters(f.law, free: .single, std: std, joint: false)
        let st = statistics(deviations: f.deviations, densities: pts.map(\.density))
        o.meanRelativeDeviation = st.mean
        o.meanAbsRelativeDeviation = st.meanAbs
        o.stdRelativeDeviation = st.std
        singleLaw[c] = f.law
        singleDeviations += f.deviations
        singleDensities += pts.map(\.density)
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
    let singleStats = statistics(deviations: singleDeviations, densities: singleDensities)
    out.singleMeanRelativeDeviation = singleStats.mean
    out.singleMeanAbsRelativeDeviation = singleStats.meanAbs
    out.singleStdRelativeDeviation = singleStats.std
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
      let st = statistics(deviations: f.deviations, densities: train.map(\.density))
      out.meanRelativeDeviation = st.mean
      out.meanAbsRelativeDeviation = st.meanAbs
      out.stdRelativeDeviation = st.std
      out.denseMeanAbsRelativeDeviation = st.denseMeanAbs
    } else {
      var params: [String: LawParameters] = [:]
      for s in singles { if let p = s.parameters { params[s.label] = p } }
      out.parameters = .perConfiguration(params)
      out.fittedParameters = ScalingFit.Free.single.names
      out.starts = ScalingFit.starts(for: all, free: .single).count
      out.meanRelativeDeviation = out.singleMeanRelativeDeviation
      out.meanAbsRelativeDeviation = out.singleMeanAbsRelativeDeviation
      out.stdRelativeDeviation = out.singleStdRelativeDeviation
      out.denseMeanAbsRelativeDeviation = singleStats.denseMeanAbs
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
    var named: [(label: String?, LawParameters)] = []
    if case .joint(let p) = out.parameters { named.append((nil, p)) }
    for c in singles { if let p = c.parameters { named.append((c.label, p)) } }
    out.warnings = warnings(parameters: named, points: all, seedNoise: out.seedNoise)
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
    guard let m = measured else {
      // A pure power law in depth, width and data has no irreducible-error term (the dense
      // scaling law's c_inf), so it is no basis for an unmeasured configuration's e_np.
      throw EngineError(
        "e_np of \(c.label) was not measured, and LotteryKit does not extrapolate it (a power law without the irreducible error term is no basis); add the configuration to the sweep and fit again"
      )
    }
    (eNP, source) = (m.eNP, "measured")
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
          // Only measured configurations: e_np is not extrapolated.
          guard
            let p = try? predict(fit: fit, depth: family.lawDepth(d), width: w, data: data, density: density)
          else { break }
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
