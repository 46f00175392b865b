import Engine
import Experiments
import Families
import Foundation
import NN

/// The error of IMP-pruned networks as a function of density, depth and width (Rosenfeld,
/// Frankle, Carbin, Shavit, "On the Predictability of Pruning Across Scales", ICML 2021):
///
///     err = e_np * | (m - j p (e_up/e_np)^(1/g)) / (m - j p) |^g,   j = sqrt(-1),
///     m = l^phi * w^psi * d
///
/// With `a = p (e_up/e_np)^(1/g)` the modulus is real:
/// `err = e_np * ((m^2 + a^2) / (m^2 + p^2))^(g/2)`. Limits: `err -> e_np` for `m >> a`;
/// `err ~ e_up (p/m)^g` for `p << m << a` (a power law of slope `-g` on log-log axes);
/// `err -> e_up` as `m -> 0`. `e_np` is the measured error of the unpruned network of the
/// configuration (depth l, width factor w, data fraction n), never fitted; n enters only
/// through it. For one network (`phi = psi = 0`) `m` is the density.
public struct ScalingLaw: Sendable, Equatable, Codable {
  /// The high-error plateau at tiny density.
  public var eUp: Double
  /// The slope of the power-law region.
  public var gamma: Double
  /// Where the plateau bends into the power law (in units of m).
  public var p: Double
  /// Exponents of depth and width in the invariant m (0 when not fitted).
  public var phi: Double
  public var psi: Double

  public init(eUp: Double, gamma: Double, p: Double, phi: Double = 0, psi: Double = 0) {
    (self.eUp, self.gamma, self.p, self.phi, self.psi) = (eUp, gamma, p, phi, psi)
  }

  /// The invariant `m = l^phi w^psi d`.
  public func invariant(depth: Double, width: Double, density: Double) -> Double {
    pow(depth, phi) * pow(width, psi) * density
  }

  /// The predicted error of a configuration with unpruned error `eNP` at `density`.
  public func error(eNP: Double, density: Double, depth: Double = 1, width: Double = 1) -> Double {
    let m = invariant(depth: depth, width: width, density: density)
    let a2 = p * p * pow(eUp / eNP, 2 / gamma)
    return eNP * pow((m * m + a2) / (m * m + p * p), gamma / 2)
  }
}

/// One measured point: a configuration (depth l, width factor w, data fraction n) at one
/// density, its error averaged over replicates (and each replicate's error), and the
/// configuration's unpruned error e_np (the mean over replicates of level 0).
public struct ScalingPoint: Sendable, Equatable {
  public var depth: Double
  public var width: Double
  public var data: Double
  public var density: Double
  public var error: Double
  public var replicateErrors: [Double]
  public var eNP: Double
  public init(
    depth: Double, width: Double, data: Double, density: Double, error: Double, replicateErrors: [Double],
    eNP: Double
  ) {
    (self.depth, self.width, self.data, self.density, self.error) = (depth, width, data, density, error)
    (self.replicateErrors, self.eNP) = (replicateErrors, eNP)
  }
  /// The configuration's knobs.
  public var configuration: Configuration { Configuration(depth: depth, width: width, data: data) }
}

/// A point of the sweep grid.
public struct Configuration: Hashable, Sendable, Comparable, Codable {
  public var depth: Double
  public var width: Double
  public var data: Double
  public init(depth: Double, width: Double, data: Double) {
    (self.depth, self.width, self.data) = (depth, width, data)
  }
  public static func < (a: Self, b: Self) -> Bool { (a.depth, a.width, a.data) < (b.depth, b.width, b.data) }
  public var label: String {
    "l=\(ScalingFit.text(depth)) w=\(ScalingFit.text(width)) n=\(ScalingFit.text(data))"
  }
}

/// Least-squares fits of ``ScalingLaw`` to measured points, minimising the squared relative
/// deviation `(err_hat - err) / err`, by Levenberg-Marquardt in the parameters
/// `(ln e_up, ln g, ln p, phi, psi)` (logarithms keep the first three positive) from a
/// fixed grid of starts (``starts(for:joint:)``); the best end point wins, ties to the
/// first start, so a fit is deterministic. Normal equations are solved by LAPACK.
public enum ScalingFit {
  public struct Result: Sendable {
    public var law: ScalingLaw
    /// Sum of squared relative deviations.
    public var cost: Double
    /// Relative deviation per point, in input order.
    public var deviations: [Double]
    /// Which start gave the result, and LM iterations from it.
    public var start: Int
    public var iterations: Int
    /// The paper's mu: the mean of the signed relative deviation (a bias).
    public var meanDeviation: Double { deviations.reduce(0, +) / Double(deviations.count) }
    public var meanAbsoluteDeviation: Double { deviations.map(abs).reduce(0, +) / Double(deviations.count) }
    public var deviationStd: Double { ScalingFit.std(deviations) }
  }

  /// Which parameters a fit frees: the single-network law has `e_up, g, p`; the joint law
  /// adds `phi` when the points span several depths and `psi` when they span several widths.
  public struct Free: Sendable, Equatable {
    public var phi: Bool
    public var psi: Bool
    public init(phi: Bool, psi: Bool) { (self.phi, self.psi) = (phi, psi) }
    public var count: Int { 3 + (phi ? 1 : 0) + (psi ? 1 : 0) }
    public var names: [String] { ["e_up", "gamma", "p"] + (phi ? ["phi"] : []) + (psi ? ["psi"] : []) }
    public static let single = Free(phi: false, psi: false)
  }

  static func law(_ theta: [Double], _ free: Free) -> ScalingLaw {
    var k = 3
    var law = ScalingLaw(eUp: exp(theta[0]), gamma: exp(theta[1]), p: exp(theta[2]))
    if free.phi {
      law.phi = theta[k]
      k += 1
    }
    if free.psi { law.psi = theta[k] }
    return law
  }

  static func theta(_ law: ScalingLaw, _ free: Free) -> [Double] {
    [log(law.eUp), log(law.gamma), log(law.p)] + (free.phi ? [law.phi] : []) + (free.psi ? [law.psi] : [])
  }

  static func deviations(_ law: ScalingLaw, _ points: [ScalingPoint]) -> [Double] {
    points.map { pt in
      (law.error(eNP: pt.eNP, density: pt.density, depth: pt.depth, width: pt.width) - pt.error) / pt.error
    }
  }

  /// The documented starts: e_up in {max error, (max error + 1) / 2}, g in {0.5, 1, 2, 4},
  /// p at three log-spaced densities from the smallest density measured to the geometric
  /// middle of the range, and, for the joint law, phi and psi each in {0, 1}.
  public static func starts(for points: [ScalingPoint], free: Free) -> [ScalingLaw] {
    let maxErr = points.map(\.error).max()!
    let (dMin, dMax) = (points.map(\.density).min()!, points.map(\.density).max()!)
    let mid = (dMin * dMax).squareRoot()
    let ps = [dMin, pow(dMin, 2.0 / 3) * pow(mid, 1.0 / 3), pow(dMin, 1.0 / 3) * pow(mid, 2.0 / 3)]
    var out: [ScalingLaw] = []
    for eUp in [maxErr, (maxErr + 1) / 2] {
      for g in [0.5, 1, 2, 4] {
        for p in ps {
          for phi in free.phi ? [0.0, 1] : [0] {
            for psi in free.psi ? [0.0, 1] : [0] {
              out.append(ScalingLaw(eUp: eUp, gamma: g, p: p, phi: phi, psi: psi))
            }
          }
        }
      }
    }
    return out
  }

  /// Checks that `points` can determine `free`'s parameters; the error says why not.
  public static func validate(_ points: [ScalingPoint], free: Free) throws {
    guard points.count >= free.count + 1 else {
      throw EngineError(
        "\(points.count) points for \(free.count) parameters (\(free.names.joined(separator: ", "))): a fit needs more points than parameters; run more levels or configurations"
      )
    }
    if let bad = points.first(where: { !($0.error > 0) || !($0.eNP > 0) || !$0.error.isFinite }) {
      throw EngineError(
        "error \(bad.error) at density \(bad.density) (\(bad.configuration.label)) is not positive: the relative deviation is undefined (a perfect test set?)"
      )
    }
    guard Set(points.map(\.density)).count >= 2 else {
      throw EngineError(
        "every point has density \(points[0].density): the law needs several densities (run more levels)")
    }
    let errs = points.map(\.error)
    guard errs.max()! - errs.min()! > 1e-12 * errs.max()! else {
      throw EngineError(
        "every error equals \(errs[0]): the law needs the error to change with density")
    }
  }

  /// Levenberg-Marquardt from one start. Stops when the cost changes by less than 1e-12
  /// of itself, the step is below 1e-10, or after `maxIterations`.
  public static func refine(
    _ start: ScalingLaw, _ points: [ScalingPoint], free: Free, maxIterations: Int = 400
  )
    -> (law: ScalingLaw, cost: Double, iterations: Int)
  {
    var theta = theta(start, free)
    let k = theta.count
    func cost(_ t: [Double]) -> Double {
      let d = deviations(law(t, free), points)
      let c = d.reduce(0) { $0 + $1 * $1 }
      return c.isFinite ? c : .infinity
    }
    var current = cost(theta)
    var lambda = 1e-3
    var it = 0
    while it < maxIterations {
      it += 1
      // Central-difference Jacobian of the deviations.
      let r = deviations(law(theta, free), points)
      var jac = [[Double]](repeating: [Double](repeating: 0, count: k), count: points.count)
      for j in 0..<k {
        let h = 1e-6 * max(1, abs(theta[j]))
        var up = theta
        var dn = theta
        up[j] += h
        dn[j] -= h
        let (ru, rd) = (deviations(law(up, free), points), deviations(law(dn, free), points))
        for i in points.indices { jac[i][j] = (ru[i] - rd[i]) / (2 * h) }
      }
      var a = [Double](repeating: 0, count: k * k)
      var g = [Double](repeating: 0, count: k)
      for i in points.indices where r[i].isFinite {
        for u in 0..<k {
          g[u] += jac[i][u] * r[i]
          for v in 0..<k { a[u * k + v] += jac[i][u] * jac[i][v] }
        }
      }
      var improved = false
      while lambda < 1e12 {
        var damped = a
        for u in 0..<k { damped[u * k + u] += lambda * max(a[u * k + u], 1e-12) }
        guard let step = try? LinearAlgebra.solve(damped, g.map { -$0 }, n: k), step.allSatisfy(\.isFinite)
        else {
          lambda *= 10
          continue
        }
        let next = zip(theta, step).map { $0 + $1 }
        let c = cost(next)
        if c < current {
          let change = current - c
          theta = next
          current = c
          lambda = max(lambda / 3, 1e-12)
          improved = true
          if change <= 1e-12 * max(c, 1e-300) || step.map(abs).max()! < 1e-10 {
            return (law(theta, free), current, it)
          }
          break
        }
        lambda *= 4
      }
      if !improved { break }
    }
    return (law(theta, free), current, it)
  }

  /// The best fit over every start (ties: the first).
  public static func fit(_ points: [ScalingPoint], free: Free, starts: [ScalingLaw]? = nil) throws -> Result {
    try validate(points, free: free)
    var best: Result?
    for (i, s) in (starts ?? Self.starts(for: points, free: free)).enumerated() {
      let (law, cost, its) = refine(s, points, free: free)
      if cost.isFinite, best == nil || cost < best!.cost {
        best = Result(law: law, cost: cost, deviations: deviations(law, points), start: i, iterations: its)
      }
    }
    guard let best else { throw EngineError("the fit diverged from every start") }
    return best
  }

  /// Standard deviations of the fitted parameters over `resamples` bootstrap fits
  /// (each from the full fit's result): replicates are resampled with replacement within
  /// every (configuration, density) when points have at least 2 replicates, else points
  /// are resampled. Deterministic: the resampling stream is seeded.
  public static func bootstrap(
    _ points: [ScalingPoint], free: Free, from fit: ScalingLaw, resamples: Int = 100
  )
    -> [String: Double]
  {
    var rng = RandomStream(seed: 0, purpose: "scaling-bootstrap")
    let byReplicate = points.allSatisfy { $0.replicateErrors.count >= 2 }
    var samples: [[Double]] = []
    for _ in 0..<resamples {
      var sample: [ScalingPoint] = []
      if byReplicate {
        for pt in points {
          var q = pt
          let n = pt.replicateErrors.count
          let draw = (0..<n).map { _ in pt.replicateErrors[min(n - 1, Int(rng.uniform(0, Double(n))))] }
          q.error = draw.reduce(0, +) / Double(n)
          sample.append(q)
        }
      } else {
        for _ in points.indices {
          sample.append(points[min(points.count - 1, Int(rng.uniform(0, Double(points.count))))])
        }
      }
      guard (try? validate(sample, free: free)) != nil else { continue }
      let (law, cost, _) = refine(fit, sample, free: free)
      if cost.isFinite { samples.append(theta(law, free)) }
    }
    var out: [String: Double] = [:]
    guard samples.count >= 2 else { return out }
    // Parameters in their natural units (e_up, g, p, not their logarithms).
    let natural = samples.map { t -> [Double] in
      t.enumerated().map { $0.offset < 3 ? exp($0.element) : $0.element }
    }
    for (j, name) in free.names.enumerated() { out[name] = std(natural.map { $0[j] }) }
    return out
  }

  /// Seed-to-seed noise: the pooled relative standard deviation of one replicate's error
  /// around the mean of its (configuration, density),
  /// `sqrt(sum (e_r - mean)^2 / mean^2 / sum (k - 1))` over points with k >= 2 replicates
  /// (nil without any).
  public static func seedNoise(_ points: [ScalingPoint]) -> Double? {
    var (sum, dof) = (0.0, 0)
    for pt in points where pt.replicateErrors.count >= 2 {
      let m = pt.replicateErrors.reduce(0, +) / Double(pt.replicateErrors.count)
      guard m > 0 else { continue }
      for e in pt.replicateErrors { sum += (e - m) * (e - m) / (m * m) }
      dof += pt.replicateErrors.count - 1
    }
    return dof > 0 ? (sum / Double(dof)).squareRoot() : nil
  }

  /// The sample standard deviation (``Experiments/Results/std(_:)``), 0 for fewer than 2.
  public static func std(_ x: [Double]) -> Double { Results.std(x) ?? 0 }

  /// A knob value as short text (0.5, 2, 20), as in model names.
  public static func text(_ v: Double) -> String { ModelZoo.formatFactor(v) }
}

/// `--holdout "width>=1"`: configurations left out of a fit, by conditions on `depth`,
/// `width` and `data` (`>=`, `<=`, `>`, `<`, `==`), all of which must hold; several are
/// separated by commas (`"depth>=20,width<1"`).
public struct Holdout: Sendable, Equatable {
  public struct Condition: Sendable, Equatable {
    public var knob: String
    public var op: String
    public var value: Double
  }
  public var conditions: [Condition]
  public let text: String

  public init(parsing text: String) throws {
    self.text = text
    var out: [Condition] = []
    for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
      guard let op = [">=", "<=", "==", ">", "<", "="].first(where: { part.contains($0) }),
        let r = part.range(of: op)
      else {
        throw SettingError("holdout", "'\(part)' is not a condition such as width>=1, depth<20 or data==0.5")
      }
      let knob = part[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
      guard ["depth", "width", "data"].contains(knob) else {
        throw SettingError("holdout", "unknown knob '\(knob)'; use depth, width or data")
      }
      guard let v = Double(part[r.upperBound...].trimmingCharacters(in: .whitespaces)) else {
        throw SettingError("holdout", "'\(part)' needs a number after \(op)")
      }
      out.append(Condition(knob: knob, op: op == "=" ? "==" : op, value: v))
    }
    guard !out.isEmpty else { throw SettingError("holdout", "is empty") }
    conditions = out
  }

  public func holds(_ c: Configuration) -> Bool {
    conditions.allSatisfy { cond in
      let x = cond.knob == "depth" ? c.depth : cond.knob == "width" ? c.width : c.data
      switch cond.op {
      case ">=": return x >= cond.value - 1e-12
      case "<=": return x <= cond.value + 1e-12
      case ">": return x > cond.value + 1e-12
      case "<": return x < cond.value - 1e-12
      default: return abs(x - cond.value) <= 1e-12 * max(1, abs(x))
      }
    }
  }
}

/// `e_np` of configurations that were not measured: least squares of
/// `ln e_np = c0 + c_l ln l + c_w ln w + c_n ln n` over the measured configurations, each
/// knob only when it varies.
public struct UnprunedErrorModel: Sendable, Equatable, Codable {
  public var intercept: Double
  public var depth: Double
  public var width: Double
  public var data: Double

  public init(intercept: Double, depth: Double, width: Double, data: Double) {
    (self.intercept, self.depth, self.width, self.data) = (intercept, depth, width, data)
  }

  public func eNP(_ c: Configuration) -> Double {
    exp(intercept + depth * log(c.depth) + width * log(c.width) + data * log(c.data))
  }

  public static func fit(_ measured: [(Configuration, Double)]) -> UnprunedErrorModel? {
    let knobs: [(Configuration) -> Double] = [{ $0.depth }, { $0.width }, { $0.data }]
    let varying = knobs.indices.filter { k in Set(measured.map { knobs[k]($0.0) }).count > 1 }
    let n = 1 + varying.count
    guard measured.count >= n else { return nil }
    var a = [Double](repeating: 0, count: n * n)
    var b = [Double](repeating: 0, count: n)
    for (c, e) in measured {
      let x = [1.0] + varying.map { log(knobs[$0](c)) }
      for u in 0..<n {
        b[u] += x[u] * log(e)
        for v in 0..<n { a[u * n + v] += x[u] * x[v] }
      }
    }
    guard let coef = try? LinearAlgebra.solve(a, b, n: n) else { return nil }
    var m = UnprunedErrorModel(intercept: coef[0], depth: 0, width: 0, data: 0)
    for (i, k) in varying.enumerated() {
      switch k {
      case 0: m.depth = coef[i + 1]
      case 1: m.width = coef[i + 1]
      default: m.data = coef[i + 1]
      }
    }
    return m
  }
}
