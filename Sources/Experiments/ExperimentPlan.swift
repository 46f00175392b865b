import Engine
import Foundation
import Training

/// One phase of an experiment: the unit that `lth run --jobs N` and Slurm schedule, that a
/// runner trains with ``Experiment/run(_:)``, and that a marker file declares finished.
public struct ExperimentPhase: Equatable, Sendable {
  /// What the phase covers within its replicate.
  public enum Scope: Equatable, Sendable {
    /// Lottery level L (levels before it are earlier phases).
    case level(Int)
    /// A pruning-at-initialisation target density.
    case density(Double)
    /// An LMC spawn step k, in iterations: its parent, `copies` children and their
    /// interpolations.
    case spawn(Int, copies: Int)
  }
  /// Unique within the experiment: `r1.L3`, `r2.d0.1`, `r1.k500`, `r1.L3.random-reinit`.
  public var id: String
  /// `level`, `density`, `spawn` or `branch`.
  public var kind: String
  public var replicate: Int
  public var scope: Scope
  /// The branch a `branch` phase trains (nil for the experiment's own phases).
  public var branch: BranchHParams?
  /// Phases that must be finished first.
  public var dependencies: [String]
  /// The file whose presence means the phase is finished.
  public var marker: String

  public init(
    id: String, kind: String, replicate: Int, scope: Scope, branch: BranchHParams? = nil, dependencies: [String] = [],
    marker: String
  ) {
    (self.id, self.kind, self.replicate, self.scope, self.branch) = (id, kind, replicate, scope, branch)
    (self.dependencies, self.marker) = (dependencies, marker)
  }

  public var isDone: Bool { FileManager.default.fileExists(atPath: marker) }
}

/// What an experiment is before any data is loaded: its kind, its resolved hyperparameters
/// (whose hash names ``root``), and its phases. `lth plan`, `lth run` and `lth submit`
/// build their job graphs from it; a runner (``Experiment``) trains its phases.
public protocol ExperimentPlan: Sendable {
  var kind: RunLayout.Kind { get }
  var hyperparameters: any CanonicalJSON & Sendable { get }
  var root: String { get }
  /// Every phase, in an order that respects the dependencies.
  func phases() -> [ExperimentPhase]
}

extension ExperimentPlan {
  /// The phases without their marker yet.
  public func unfinished() -> [ExperimentPhase] { phases().filter { !$0.isDone } }
}

/// A lottery experiment: levels 0...`levels` of every replicate, each after the one before.
public struct LotteryPlan: ExperimentPlan {
  public let hparams: LotteryHParams
  public let output: String
  public let replicates: [Int]
  public let levels: Int

  public init(_ hparams: LotteryHParams, output: String, replicates: [Int], levels: Int) {
    (self.hparams, self.output, self.replicates, self.levels) = (hparams, output, replicates, max(0, levels))
  }

  public var kind: RunLayout.Kind { .lottery }
  public var hyperparameters: any CanonicalJSON & Sendable { hparams }
  public var root: String { LotteryRunner.root(hparams, output: output) }

  public static func id(_ r: Int, level l: Int) -> String { "r\(r).L\(l)" }

  public func phases() -> [ExperimentPhase] {
    let root = self.root
    return replicates.flatMap { r in
      (0...levels).map { l in
        ExperimentPhase(
          id: Self.id(r, level: l), kind: "level", replicate: r, scope: .level(l),
          dependencies: l > 0 ? [Self.id(r, level: l - 1)] : [],
          marker: LotteryRunner.marker(LotteryRunner.levelDir(root, r, l)))
      }
    }
  }
}

/// A pruning-at-initialisation experiment: every (replicate, target density), independent.
public struct PaIPlan: ExperimentPlan {
  public let hparams: PaIHParams
  public let output: String
  public let replicates: [Int]
  public let densities: [Double]

  public init(_ hparams: PaIHParams, output: String, replicates: [Int], densities: [Double]) {
    (self.hparams, self.output, self.replicates, self.densities) = (hparams, output, replicates, densities)
  }

  public var kind: RunLayout.Kind { .pai }
  public var hyperparameters: any CanonicalJSON & Sendable { hparams }
  public var root: String { PaIRunner.root(hparams, output: output) }

  public static func id(_ r: Int, density d: Double) -> String { "r\(r).d\(d)" }

  public func phases() -> [ExperimentPhase] {
    let root = self.root
    return replicates.flatMap { r in
      densities.map { d in
        ExperimentPhase(
          id: Self.id(r, density: d), kind: "density", replicate: r, scope: .density(d),
          marker: LotteryRunner.marker(RunLayout.main(PaIRunner.densityDir(root, r, d))))
      }
    }
  }
}

/// A branch (ablation or control) of a lottery or prune-init experiment: the source's
/// phases it needs, and one branch phase per (replicate, level or density), each after its
/// source phase, so that one graph runs both.
public struct BranchPlan: ExperimentPlan {
  public enum Source: Sendable {
    /// The lottery and the levels to branch off.
    case lottery(LotteryPlan, levels: [Int])
    case pai(PaIPlan)
  }
  public let source: Source
  public let branch: BranchHParams

  /// `levels`: the lottery levels to branch off (the source plan runs up to the highest).
  public init(lottery h: LotteryHParams, output: String, replicates: [Int], levels: [Int], branch: BranchHParams) {
    source = .lottery(LotteryPlan(h, output: output, replicates: replicates, levels: levels.max() ?? 0), levels: levels)
    self.branch = branch
  }

  public init(pai: PaIPlan, branch: BranchHParams) {
    source = .pai(pai)
    self.branch = branch
  }

  public var kind: RunLayout.Kind {
    switch source {
    case .lottery: return .lottery
    case .pai: return .pai
    }
  }
  public var hyperparameters: any CanonicalJSON & Sendable { branch }
  public var root: String {
    switch source {
    case .lottery(let p, _): return p.root
    case .pai(let p): return p.root
    }
  }

  public func phases() -> [ExperimentPhase] {
    let suffix = "." + branch.kind.rawValue
    switch source {
    case .lottery(let p, let levels):
      var out: [ExperimentPhase] = []
      let root = p.root
      let sourcePhases = p.phases()
      for r in p.replicates {
        out += sourcePhases.filter { $0.replicate == r }
        for l in levels {
          let source = LotteryPlan.id(r, level: l)
          out.append(
            ExperimentPhase(
              id: source + suffix, kind: "branch", replicate: r, scope: .level(l), branch: branch,
              dependencies: [source], marker: LotteryRunner.marker(LotteryRunner.branchDir(root, r, l, branch))))
        }
      }
      return out
    case .pai(let p):
      let root = p.root
      return p.phases().flatMap { phase -> [ExperimentPhase] in
        guard case .density(let d) = phase.scope else { return [phase] }
        return [
          phase,
          ExperimentPhase(
            id: phase.id + suffix, kind: "branch", replicate: phase.replicate, scope: phase.scope, branch: branch,
            dependencies: [phase.id],
            marker: LotteryRunner.marker(PaIRunner.densityDir(root, phase.replicate, d) + "/" + branch.folderName)),
        ]
      }
    }
  }
}

extension LotteryRunner {
  /// Trains one lottery phase: its level (the levels before it must be finished; a finished
  /// level is skipped), or the branch of a branch phase.
  public func run(_ phase: ExperimentPhase) throws { try run(phase, retrainSetup: nil) }

  /// ``run(_:)`` for a `retrain` branch, whose retraining uses another set-up.
  public func run(_ phase: ExperimentPhase, retrainSetup: RunSetup?) throws {
    guard case .level(let l) = phase.scope else { throw EngineError("\(phase.id) is not a lottery phase") }
    if let b = phase.branch {
      try runBranch(b, replicate: phase.replicate, level: l, retrainSetup: retrainSetup)
    } else {
      try runReplicate(phase.replicate, levels: l)
    }
  }
}

extension PaIRunner {
  /// Trains one prune-init phase: its density, or the branch of a branch phase.
  public func run(_ phase: ExperimentPhase) throws {
    guard case .density(let d) = phase.scope else { throw EngineError("\(phase.id) is not a prune-init phase") }
    if let b = phase.branch {
      try runBranch(b, replicate: phase.replicate, density: d)
    } else {
      try runReplicate(phase.replicate, densities: [d])
    }
  }
}
