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
  static func errors(_ o: [String: Any]) -> [Double] {
    (o["per_replicate"] as? [[String: Any]] ?? []).compactMap {
      ($0["test_accuracy"] as? Double).map { 1 - $0 }
    }
  }

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
      let levels = try Results.collect(root)["levels"] as? [[String: Any]] ?? []
      guard let dense = levels.first(where: { $0["level"] as? Int == 0 }), !errors(dense).isEmpty else {
        missing.append(config.label)
        continue
      }
      let e0 = errors(dense)
      let eNP = e0.reduce(0, +) / Double(e0.count)
      for row in levels {
        let e = errors(row)
        guard !e.isEmpty, let d = row["density"] as? Double else { continue }
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
    -> [String: Any]
  {
    var o: [String: Any] = [:]
    let values: [(String, Double, Bool)] = [
      ("e_up", law.eUp, true), ("gamma", law.gamma, true), ("p", law.p, true), ("phi", law.phi, free.phi),
      ("psi", law.psi, free.psi),
    ]
    for (name, v, fitted) in values where joint || ["e_up", "gamma", "p"].contains(name) {
      o[name] = ["value": v, "std": std[name] ?? NSNull(), "fitted": fitted] as [String: Any]
    }
    return o
  }

  public static func law(from params: [String: Any]) -> ScalingLaw? {
    func v(_ k: String) -> Double? { (params[k] as? [String: Any])?["value"] as? Double }
    guard let eUp = v("e_up"), let g = v("gamma"), let p = v("p") else { return nil }
    return ScalingLaw(eUp: eUp, gamma: g, p: p, phi: v("phi") ?? 0, psi: v("psi") ?? 0)
  }

  /// The fit object (`fit.json`, `lth scaling fit --json`). Joint when `joint` or with a
  /// holdout; single-network fits of every configuration always.
  public static func fit(sweep: String, joint: Bool, holdout: Holdout?, resamples: Int = 100) throws
    -> [String: Any]
  {
    let (manifest, all, missing) = try points(sweep)
    guard !all.isEmpty else {
      throw RunError("\(sweep): no configuration has finished level 0 yet; run lth scaling sweep first")
    }
    let joint = joint || holdout != nil
    let configs = Array(Set(all.map(\.configuration))).sorted()
    let held = Set(configs.filter { holdout?.holds($0) ?? false })
    if let holdout {
      guard !held.isEmpty else { throw EngineError("--holdout \"\(holdout.text)\" matches no configuration") }
      guard held.count < configs.count else {
        throw EngineError("--holdout \"\(holdout.text)\" leaves no configuration to fit")
      }
    }
    let train = all.filter { !held.contains($0.configuration) }
    let seedNoise = ScalingFit.seedNoise(all)

    // One fit per configuration.
    var singles: [[String: Any]] = []
    var singleLaw: [Configuration: ScalingLaw] = [:]
    var singleDeviations: [Double] = []
    for c in configs {
      let pts = all.filter { $0.configuration == c }
      var o: [String: Any] = [
        "depth": c.depth, "width_factor": c.width, "data_fraction": c.data, "e_np": pts[0].eNP,
        "points": pts.count, "held_out": held.contains(c), "label": c.label,
      ]
      do {
        let f = try ScalingFit.fit(pts, free: .single)
        let std = ScalingFit.bootstrap(pts, free: .single, from: f.law, resamples: resamples)
        o["parameters"] = parameters(f.law, free: .single, std: std, joint: false)
        o["mean_relative_deviation"] = f.meanDeviation
        o["mean_abs_relative_deviation"] = f.meanAbsoluteDeviation
        o["std_relative_deviation"] = f.deviationStd
        singleLaw[c] = f.law
        singleDeviations += f.deviations
      } catch {
        o["error"] = "\(error)"
      }
      singles.append(o)
    }
    guard joint || !singleLaw.isEmpty else {
      throw EngineError(
        "no configuration can be fitted: \((singles.first?["error"] as? String) ?? "too few points")")
    }

    var out: [String: Any] = [
      "kind": "scaling", "sweep": sweep, "family": manifest.family, "law": "rosenfeld2021",
      "mode": joint ? "joint" : "single", "seed_noise": seedNoise ?? NSNull(), "configurations": singles,
      "unfinished_configurations": missing, "levels": manifest.levels, "replicates": manifest.replicates,
      "single_mean_relative_deviation": singleDeviations.isEmpty
        ? NSNull() : singleDeviations.reduce(0, +) / Double(singleDeviations.count),
      "single_mean_abs_relative_deviation": singleDeviations.isEmpty
        ? NSNull() : singleDeviations.map(abs).reduce(0, +) / Double(singleDeviations.count),
      "single_std_relative_deviation": singleDeviations.isEmpty ? NSNull() : ScalingFit.std(singleDeviations),
      "bootstrap": [
        "resamples": resamples,
        "over": all.allSatisfy { $0.replicateErrors.count >= 2 } ? "replicates" : "points",
      ] as [String: Any],
    ]
    func range(_ f: (ScalingPoint) -> Double) -> [Double] { [train.map(f).min()!, train.map(f).max()!] }
    out["ranges"] = [
      "depth": range(\.depth), "width_factor": range(\.width), "data_fraction": range(\.data),
      "density": range(\.density),
    ]
    let measured = Dictionary(all.map { ($0.configuration, $0.eNP) }, uniquingKeysWith: { a, _ in a })
    let model = UnprunedErrorModel.fit(
      measured.filter { !held.contains($0.key) }.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 })
    out["e_np_model"] =
      model.map { ["intercept": $0.intercept, "depth": $0.depth, "width": $0.width, "data": $0.data] }
      ?? NSNull()
    out["e_np_measured"] = measured.keys.sorted().map {
      ["depth": $0.depth, "width_factor": $0.width, "data_fraction": $0.data, "e_np": measured[$0]!]
    }

    var jointLaw: ScalingLaw?
    if joint {
      let free = ScalingFit.Free(
        phi: Set(train.map(\.depth)).count > 1, psi: Set(train.map(\.width)).count > 1)
      let f = try ScalingFit.fit(train, free: free)
      let std = ScalingFit.bootstrap(train, free: free, from: f.law, resamples: resamples)
      jointLaw = f.law
      out["parameters"] = parameters(f.law, free: free, std: std, joint: true)
      out["fitted_parameters"] = free.names
      out["starts"] = ScalingFit.starts(for: train, free: free).count
      out["best_start"] = f.start
      out["mean_relative_deviation"] = f.meanDeviation
      out["mean_abs_relative_deviation"] = f.meanAbsoluteDeviation
      out["std_relative_deviation"] = f.deviationStd
    } else {
      var params: [String: Any] = [:]
      for s in singles { if let p = s["parameters"] { params[s["label"] as! String] = p } }
      out["parameters"] = params
      out["fitted_parameters"] = ScalingFit.Free.single.names
      out["starts"] = ScalingFit.starts(for: all, free: .single).count
      out["mean_relative_deviation"] = out["single_mean_relative_deviation"]
      out["mean_abs_relative_deviation"] = out["single_mean_abs_relative_deviation"]
      out["std_relative_deviation"] = out["single_std_relative_deviation"]
    }

    var rows: [[String: Any]] = []
    var heldDeviations: [Double] = []
    for pt in all {
      var o: [String: Any] = [
        "depth": pt.depth, "width_factor": pt.width, "data_fraction": pt.data, "density": pt.density,
        "error": pt.error, "replicate_errors": pt.replicateErrors, "e_np": pt.eNP,
        "held_out": held.contains(pt.configuration),
      ]
      let law = jointLaw ?? singleLaw[pt.configuration]
      if let law {
        let e = law.error(eNP: pt.eNP, density: pt.density, depth: pt.depth, width: pt.width)
        o["predicted"] = e
        o["relative_deviation"] = (e - pt.error) / pt.error
        if held.contains(pt.configuration) { heldDeviations.append((e - pt.error) / pt.error) }
      }
      if let s = singleLaw[pt.configuration] {
        o["single_predicted"] = s.error(eNP: pt.eNP, density: pt.density)
      }
      rows.append(o)
    }
    out["points"] = rows
    if let holdout {
      out["holdout"] = holdout.text
      out["held_out_configurations"] = held.sorted().map(\.label)
      out["holdout_mean_relative_error"] = heldDeviations.map(abs).reduce(0, +) / Double(heldDeviations.count)
      out["holdout_mean_relative_deviation"] = heldDeviations.reduce(0, +) / Double(heldDeviations.count)
      out["holdout_std_relative_error"] = ScalingFit.std(heldDeviations)
      out["holdout_points"] = heldDeviations.count
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

  public static func predict(fit: [String: Any], depth: Double, width: Double, data: Double, density: Double)
    throws
    -> Prediction
  {
    guard density > 0, density <= 1 else { throw EngineError("--density must be in (0, 1], got \(density)") }
    let c = Configuration(depth: depth, width: width, data: data)
    let measured = (fit["e_np_measured"] as? [[String: Any]] ?? []).first {
      Configuration(
        depth: $0["depth"] as? Double ?? 0, width: $0["width_factor"] as? Double ?? 0,
        data: $0["data_fraction"] as? Double ?? 0) == c
    }
    let fitted: ScalingLaw
    if fit["mode"] as? String == "joint" {
      guard let l = law(from: fit["parameters"] as? [String: Any] ?? [:]) else {
        throw RunError("the fit file has no joint parameters")
      }
      fitted = l
    } else {
      let entry = (fit["configurations"] as? [[String: Any]] ?? []).first {
        $0["label"] as? String == c.label
      }
      guard let p = entry?["parameters"] as? [String: Any], let l = law(from: p) else {
        throw EngineError(
          "the fit holds single-network fits only, none for \(c.label); refit with lth scaling fit --joint to predict other configurations"
        )
      }
      fitted = l
    }
    var eNP: Double
    var source: String
    if let m = measured, let e = m["e_np"] as? Double {
      (eNP, source) = (e, "measured")
    } else if let model = fit["e_np_model"] as? [String: Any], let i = model["intercept"] as? Double {
      let um = UnprunedErrorModel(
        intercept: i, depth: model["depth"] as? Double ?? 0, width: model["width"] as? Double ?? 0,
        data: model["data"] as? Double ?? 0)
      (eNP, source) = (um.eNP(c), "log-linear fit over the measured configurations")
    } else {
      throw EngineError("e_np of \(c.label) was not measured and the fit has no e_np model")
    }
    eNP = min(eNP, 1)
    var outside: [String] = []
    let ranges = fit["ranges"] as? [String: [Double]] ?? [:]
    for (key, v) in [
      ("depth", depth), ("width_factor", width), ("data_fraction", data), ("density", density),
    ] {
      if let r = ranges[key], r.count == 2, v < r[0] * (1 - 1e-9) || v > r[1] * (1 + 1e-9) {
        outside.append(
          "\(key) \(ScalingFit.text(v)) outside the fitted \(ScalingFit.text(r[0]))...\(ScalingFit.text(r[1]))"
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
  public static func smallest(fit: [String: Any], target: Double, data: Double) throws -> [String: Any] {
    guard fit["mode"] as? String == "joint" else {
      throw EngineError("--target-error needs a joint fit (lth scaling fit --joint)")
    }
    let family = try ScalingFamily(fit["family"] as? String ?? "")
    let ranges = fit["ranges"] as? [String: [Double]] ?? [:]
    guard let dr = ranges["depth"], let wr = ranges["width_factor"], let densr = ranges["density"] else {
      throw RunError("the fit file has no ranges")
    }
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
    var best: [String: Any]?
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
            best = [
              "depth": family.lawDepth(d), "width_factor": w, "density": density, "model": model,
              "prunable_weights": Int(total), "remaining_weights": Int((total * density).rounded()),
              "predicted_error": p.error, "e_np_source": p.eNPSource,
            ]
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
