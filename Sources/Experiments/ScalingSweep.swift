import Engine
import Families
import Foundation
import NN
import Training

/// A model family with size knobs for scaling sweeps: which depths it has (from its family
/// file, ``Families/ModelFamily/model(depth:)``), and the model name of a (depth, width
/// factor) point. The width factor scales every hidden width
/// (``NN/ModelZoo/scaled(_:widthFactor:)``), so it means the same in every family.
///
/// | family | depths (l) | l in the law |
/// |---|---|---|
/// | `mnist_lenet` or `mnist_lenet_N1_N2...` | none (the hidden widths fix it; default 300, 100) | number of linear layers |
/// | `mnist_lenet5` | none (one network) | 4 |
/// | `cifar_conv` | 2, 4, 6 | N of Conv-N |
/// | `cifar_resnet` | 8, 14, 20, ... ((D - 2) % 6 == 0) | D |
/// | `cifar_vgg` | 11, 13, 16, 19 | N of VGG-N |
public struct ScalingFamily: Sendable, Equatable {
  public let name: String
  /// The fixed base model of a family without a depth knob (LeNet's hidden widths, or the
  /// family's one network); nil for families with depths.
  let fixedBase: String?

  public init(_ name: String) throws {
    self.name = name
    if name == "mnist_lenet" {
      fixedBase = "mnist_lenet_300_100"
    } else if name.hasPrefix("mnist_lenet_") {
      _ = try ModelZoo.make(name) as Network<Float>
      fixedBase = name
    } else if let f = ModelZoo.family(named: name) {
      fixedBase = f.hasDepthKnob ? nil : f.examples[0]
    } else {
      let names = ModelZoo.all.map(\.name).filter { $0 != "mnist_lenet" }
      throw EngineError(
        "unknown family '\(name)'; use mnist_lenet (or mnist_lenet_N1_N2...), \(names.joined(separator: ", "))")
    }
  }

  public var hasDepthKnob: Bool { fixedBase == nil }

  /// Throws unless the family has depth `d` (its family file says which depths exist).
  public func checkDepth(_ d: Int) throws { _ = try base(depth: d) }

  /// The family's base model at depth `d` (see ``Families/ModelFamily/model(depth:)``).
  func base(depth d: Int) throws -> String {
    guard let f = ModelZoo.family(named: name), let m = try f.model(depth: d) else {
      throw EngineError(
        "family \(name) has no depth knob (--depths): its depth is fixed by its hidden widths")
    }
    return m
  }

  /// The depth `l` of the law for a point (LeNet: its number of linear layers).
  public func lawDepth(_ depth: Int?) -> Double {
    if let base = fixedBase { return (try? ModelZoo.family(of: base).lawDepth(base)) ?? 0 }
    return Double(depth!)
  }

  /// The model name of (depth, width factor).
  public func model(depth: Int?, widthFactor: Double) throws -> String {
    let base: String
    if let b = fixedBase {
      base = b
    } else {
      guard let depth else { throw EngineError("family \(name) needs --depths") }
      base = try self.base(depth: depth)
    }
    return try ModelZoo.scaled(base, widthFactor: widthFactor)
  }
}

/// What names a scaling sweep (`scaling_<hash>`): the family, the grid, and the hash of
/// every point's lottery experiment (which carries every training and pruning flag).
/// Levels and replicates are not part of it: a sweep grows like a lottery run does.
public struct ScalingSweepHParams: Codable, Equatable, Sendable, CanonicalJSON {
  public var family: String
  public var depths: [Int]
  public var widthFactors: [Double]
  public var dataFractions: [Double]
  public var pointRuns: [String]
  enum CodingKeys: String, CodingKey {
    case family, depths
    case widthFactors = "width_factors"
    case dataFractions = "data_fractions"
    case pointRuns = "point_runs"
  }
  public init(
    family: String, depths: [Int], widthFactors: [Double], dataFractions: [Double], pointRuns: [String]
  ) {
    (self.family, self.depths, self.widthFactors, self.dataFractions, self.pointRuns) =
      (family, depths, widthFactors, dataFractions, pointRuns)
  }
}

/// `scaling_<hash>/manifest.json`: the sweep's points, each with its knobs, its model, the
/// lottery run folder (inside the sweep folder) and the `lth lottery` arguments that run
/// it; rewritten atomically by every `lth scaling sweep` (levels and replicates are the
/// latest asked for).
public struct ScalingManifest: Codable, Equatable, Sendable {
  public struct Point: Codable, Equatable, Sendable {
    public var depth: Double
    public var widthFactor: Double
    public var dataFraction: Double
    public var model: String
    public var run: String
    public var arguments: [String]
    enum CodingKeys: String, CodingKey {
      case depth, model, run, arguments
      case widthFactor = "width_factor"
      case dataFraction = "data_fraction"
    }
    public init(
      depth: Double, widthFactor: Double, dataFraction: Double, model: String, run: String,
      arguments: [String]
    ) {
      (self.depth, self.widthFactor, self.dataFraction, self.model, self.run, self.arguments) =
        (depth, widthFactor, dataFraction, model, run, arguments)
    }
  }
  public var family: String
  public var levels: Int
  public var replicates: Int
  public var points: [Point]

  public init(family: String, levels: Int, replicates: Int, points: [Point]) {
    (self.family, self.levels, self.replicates, self.points) = (family, levels, replicates, points)
  }

  public static func read(_ sweep: String) throws -> ScalingManifest {
    let path = RunFile.manifest.path(in: sweep)
    guard let bytes = try? AtomicFile.read(path) else {
      throw RunError("\(sweep) is not a scaling sweep folder (no readable \(RunFile.manifest.rawValue))")
    }
    guard let m = try? JSONDecoder().decode(ScalingManifest.self, from: Data(bytes)) else {
      throw RunError("\(path) is unreadable or truncated")
    }
    return m
  }

  public func write(to sweep: String) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .prettyPrinted]
    try AtomicFile.write([UInt8](try e.encode(self)) + [10], to: RunFile.manifest.path(in: sweep))
  }
}

/// Parses a comma-separated list of positive numbers (`--width-factors 0.25,0.5,1`).
public func parsePositiveList(_ text: String, flag: String) throws -> [Double] {
  let parts = text.split(separator: ",", omittingEmptySubsequences: false).map {
    $0.trimmingCharacters(in: .whitespaces)
  }
  var out: [Double] = []
  for p in parts {
    guard let v = Double(p), v > 0, v.isFinite else {
      throw EngineError(
        "\(flag): '\(p)' is not a positive number (give a comma-separated list, e.g. 0.25,0.5,1)")
    }
    guard !out.contains(v) else { throw EngineError("\(flag): \(p) is listed twice") }
    out.append(v)
  }
  return out
}

/// A scaling sweep: one lottery experiment per grid point, all inside the sweep's folder.
/// Its phases are the points' lottery levels, ids prefixed by the point (`MODEL.nN.r1.L3`);
/// each runs as that point's lottery phase.
public struct ScalingSweepPlan: ExperimentPlan {
  public let sweep: ScalingSweepHParams
  public let root: String
  /// Each point's id prefix and its lottery plan (output: the sweep folder).
  public let points: [(prefix: String, plan: LotteryPlan)]

  public init(_ sweep: ScalingSweepHParams, root: String, points: [(prefix: String, plan: LotteryPlan)]) {
    (self.sweep, self.root, self.points) = (sweep, root, points)
  }

  public var kind: RunLayout.Kind { .scaling }
  public var hyperparameters: any CanonicalJSON & Sendable { sweep }

  public func phases() -> [ExperimentPhase] {
    points.flatMap { point in
      point.plan.phases().map { p in
        var q = p
        q.id = point.prefix + "." + p.id
        q.dependencies = p.dependencies.map { point.prefix + "." + $0 }
        return q
      }
    }
  }
}
