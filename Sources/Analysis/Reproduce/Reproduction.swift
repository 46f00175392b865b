import Engine
import Experiments
import Foundation
import Storage
import Training

// `lth reproduce PAPER`: a paper's experiments as lth command lines, then its findings
// checked on this run's numbers. One file per paper (``LTHPaper``, ``RendaPaper``,
// ``LMCPaper``, ``PaIPaper``, ``ScalingPaper``), registered in ``Papers/all``; this file
// holds what they share: the settings, the finding and its verdict, and the statistics a
// verdict uses.

/// How much of a paper to run.
public enum ReproductionScale: String, Codable, CaseIterable, Sendable {
  /// Each paper in at most 15 minutes on 2 cores: small models and short schedules (named
  /// per paper); a finding that does not fit says so and moves to `full`.
  case quick
  /// The papers' recipes (hours to days on a laptop; see the estimate `lth reproduce` prints).
  case full
}

/// What a reproduction runs on.
public struct ReproductionSettings: Sendable, Equatable {
  public var scale: ReproductionScale
  /// The data set every experiment uses (nil: each model's own, Fashion-MNIST for LeNet).
  public var dataset: String?
  /// Examples in the data set's training split (sizes the validation split).
  public var trainSize: Int
  /// Replicates per experiment (nil: the paper's count at this scale; `quick` needs 2).
  public var replicates: Int?

  public init(scale: ReproductionScale, dataset: String?, trainSize: Int, replicates: Int? = nil) {
    (self.scale, self.dataset, self.trainSize, self.replicates) = (scale, dataset, trainSize, replicates)
  }

  /// The replicates to run: the override, else `quick`'s or `full`'s count.
  public func replicateCount(quick: Int, full: Int) -> Int { replicates ?? (scale == .quick ? quick : full) }

  /// The validation split the LTH paper held out (5,000 examples), at most a tenth of the
  /// training set (a small user file keeps most of its examples for training).
  public var validationSize: Int { min(5000, max(1, trainSize / 10)) }

  /// `--dataset NAME` when one is set.
  public var datasetArguments: [String] { dataset.map { ["--dataset", $0] } ?? [] }
}

/// One experiment of a reproduction: an `lth` experiment command (lottery, branch,
/// prune-init, lmc or scaling sweep) without `--output` or `--data-dir`, which `lth
/// reproduce` adds.
public struct ReproductionExperiment: Sendable, Equatable {
  /// Unique within the paper; the prefix of its phases' ids and the key of its run folder.
  public var name: String
  public var arguments: [String]
  /// Phases (`name.phase`, e.g. `ticket.r1.L8`) that must be finished before any of this
  /// experiment's phases start (an LMC of an IMP subnetwork needs its lottery level).
  public var needs: [String]

  public init(_ name: String, _ arguments: [String], needs: [String] = []) {
    (self.name, self.arguments, self.needs) = (name, arguments, needs)
  }
}

/// The run folder of each experiment of a reproduction, by experiment name.
public typealias ReproductionRuns = [String: String]

/// A paper that `lth reproduce` runs and checks.
public protocol PaperReproduction: Sendable {
  /// The command's argument: `lth`, `renda`, `lmc`, `pai` or `scaling`.
  var id: String { get }
  var title: String { get }
  /// What `quick` runs instead of the paper's recipe, in one sentence.
  var quickRecipe: String { get }
  /// The experiments, in an order where each comes after those it needs.
  func experiments(_ s: ReproductionSettings) throws -> [ReproductionExperiment]
  /// The findings, computed from the finished runs (never from the stored references).
  func findings(_ runs: ReproductionRuns, _ s: ReproductionSettings) throws -> [Finding]
}

extension PaperReproduction {
  /// The run folder of experiment `name`.
  func run(_ runs: ReproductionRuns, _ name: String) throws -> String {
    guard let r = runs[name] else {
      throw RunError("reproduction \(id): no run folder for experiment \(name)")
    }
    return r
  }
}

/// Every paper `lth reproduce` knows, in the order of the project's reference page.
public enum Papers {
  public static let all: [any PaperReproduction] = [
    LTHPaper(), RendaPaper(), LMCPaper(), PaIPaper(), ScalingPaper(),
  ]
  public static var ids: [String] { all.map(\.id) }

  public static func named(_ id: String) throws -> any PaperReproduction {
    guard let p = all.first(where: { $0.id == id }) else {
      throw EngineError("unknown paper '\(id)'; choose one of \(ids.joined(separator: ", "))")
    }
    return p
  }
}

/// A claim a paper states, checked on this run's numbers.
///
/// `lotterykit_value` is this run's number and decides the verdict; `reference_value` is
/// LotteryKit's own number from a stored run on the same data set and scale (its date,
/// machine and command beside it), shown for comparison and never used to decide.
public struct Finding: Codable, Equatable, Sendable {
  public enum Verdict: String, Codable, Sendable {
    /// This run's numbers satisfy the claim within its tolerance.
    case holds
    /// They do not.
    case differs
    /// The claim needs more replicates than this run has (a standard deviation needs 2).
    case tooFewReplicates = "too few replicates"
    /// The experiment the claim needs does not fit this scale (run `--scale full`).
    case movedToFull = "moved to full"

    /// The case as Swift spells it (`References.swift` is written with it).
    public var caseName: String {
      switch self {
      case .holds: "holds"
      case .differs: "differs"
      case .tooFewReplicates: "tooFewReplicates"
      case .movedToFull: "movedToFull"
      }
    }
  }

  /// `paper.claim`, e.g. `lth.matching-density`.
  public var id: String
  public var claim: String
  /// The unit of the three values (`% density`, `points`, `iterations`, ...).
  public var unit: String
  /// The paper's number (nil where the paper states the claim without one).
  @Nullable public var paperValue: Double?
  /// How the paper states it, with the setting it was measured in.
  public var paperText: String
  /// LotteryKit's stored number for this claim (nil: none stored for this data set and scale).
  @Nullable public var referenceValue: StoredReference?
  /// This run's number (nil when the verdict could not be computed).
  @Nullable public var lotterykitValue: Double?
  /// Where this run's number comes from: means, standard deviations, replicates.
  public var lotterykitDetail: String
  /// What the tolerance is and how the verdict uses the replicates.
  public var tolerance: String
  public var verdict: Verdict
  /// Replicates behind this run's number (the fewest of the runs it compares).
  public var replicates: Int

  public init(
    id: String, claim: String, unit: String, paperValue: Double?, paperText: String, lotterykitValue: Double?,
    lotterykitDetail: String, tolerance: String, verdict: Verdict, replicates: Int
  ) {
    (self.id, self.claim, self.unit, self.paperValue, self.paperText) = (
      id, claim, unit, paperValue, paperText
    )
    (self.lotterykitValue, self.lotterykitDetail, self.tolerance) = (
      lotterykitValue, lotterykitDetail, tolerance
    )
    (self.verdict, self.replicates) = (verdict, replicates)
    self.referenceValue = nil
  }

  /// A claim whose experiment does not fit `quick`.
  public static func moved(
    id: String, claim: String, unit: String, paperValue: Double?, paperText: String, why: String
  )
    -> Finding
  {
    Finding(
      id: id, claim: claim, unit: unit, paperValue: paperValue, paperText: paperText, lotterykitValue: nil,
      lotterykitDetail: why, tolerance: "-", verdict: .movedToFull, replicates: 0)
  }

  enum CodingKeys: String, CodingKey {
    case id, claim, unit, tolerance, verdict, replicates
    case paperValue = "paper_value"
    case paperText = "paper_text"
    case referenceValue = "reference_value"
    case lotterykitValue = "lotterykit_value"
    case lotterykitDetail = "lotterykit_detail"
  }
}

/// LotteryKit's own number for a claim from a stored run: what `reference_value` shows.
public struct StoredReference: Codable, Equatable, Sendable {
  public var value: Double?
  public var verdict: Finding.Verdict
  /// The day it was measured, the CPU, and the command that reproduces it.
  public var date: String
  public var machine: String
  public var command: String

  public init(value: Double?, verdict: Finding.Verdict, date: String, machine: String, command: String) {
    (self.value, self.verdict, self.date, self.machine, self.command) = (
      value, verdict, date, machine, command
    )
  }
}

/// What `lth reproduce PAPER --json` prints and writes to `findings.json`.
public struct ReproductionResult: Codable, Equatable, Sendable {
  public var kind = "reproduce"
  public var paper: String
  public var title: String
  public var scale: ReproductionScale
  /// The data set (nil: each model's own).
  @Nullable public var dataset: String?
  public var findings: [Finding]
  /// Each experiment's run folder, by experiment name.
  public var runDirs: [String: String]
  /// Wall-clock seconds of the invocation that ran the last phases (a rerun with nothing
  /// left to run keeps the number it finds in `findings.json`).
  public var seconds: Double
  /// Wall-clock seconds of every phase's training, summed over the runs (as recorded in
  /// their folders, whichever invocation trained them).
  public var trainingSeconds: Double
  public var provenance: JSONValue?
  /// The reproduction's folder (`reproduce_<hash>`).
  public var runDir: String?
  public var schemaVersion = ResultSchema.version

  public init(
    paper: any PaperReproduction, settings: ReproductionSettings, findings: [Finding],
    runDirs: [String: String],
    seconds: Double, trainingSeconds: Double, provenance: JSONValue?
  ) {
    (self.paper, self.title, self.scale, self.dataset) = (
      paper.id, paper.title, settings.scale, settings.dataset
    )
    (self.findings, self.runDirs, self.seconds, self.trainingSeconds) = (
      findings, runDirs, seconds, trainingSeconds
    )
    self.provenance = provenance
  }

  enum CodingKeys: String, CodingKey {
    case kind, paper, title, scale, dataset, findings, seconds, provenance
    case runDir = "run_dir"
    case runDirs = "run_dirs"
    case trainingSeconds = "training_seconds"
    case schemaVersion = "schema_version"
  }

  /// The findings as a fixed-width table: claim id, paper, reference, this run, verdict.
  public func table() -> String {
    func num(_ v: Double?) -> String { v.map { Self.format($0) } ?? "-" }
    var rows: [[String]] = [["finding", "unit", "paper", "reference", "this run", "verdict"]]
    for f in findings {
      rows.append([
        f.id, f.unit, num(f.paperValue), num(f.referenceValue?.value), num(f.lotterykitValue),
        f.verdict.rawValue,
      ])
    }
    let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
    return rows.map { r in
      r.indices.map { i in
        i == r.count - 1 ? r[i] : r[i].padding(toLength: widths[i], withPad: " ", startingAt: 0)
      }
      .joined(separator: "  ")
    }.joined(separator: "\n")
  }

  /// A value with three significant digits (no exponent for the magnitudes findings use).
  public static func format(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e6 { return String(Int(v)) }
    let a = abs(v)
    let digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3
    return String(format: "%.\(digits)f", v)
  }

  /// The findings as a Markdown section: the paper, the record (date, CPU, command, wall
  /// clock) and one row per finding (docs/reproduce.md is made of these).
  public func markdown(quickRecipe: String) -> String {
    func num(_ v: Double?) -> String { v.map { Self.format($0) } ?? "-" }
    let cell = { (s: String) in s.replacingOccurrences(of: "|", with: "\\|") }
    let date = provenance?["created"]?.string.map { String($0.prefix(10)) } ?? "?"
    let cpu = provenance?["cpu_model"]?.string ?? "CPU not recorded"
    let command =
      "lth reproduce \(paper) --scale \(scale.rawValue)" + (dataset.map { " --dataset \($0)" } ?? "")
    var lines = [
      "## \(title)", "",
      "> **Record:** \(date) · \(cpu) · `\(command)` · \(Self.minutes(seconds)) wall clock (\(Self.minutes(trainingSeconds)) of training summed over its phases)",
      "",
    ]
    if scale == .quick { lines += ["Quick recipe: \(quickRecipe).", ""] }
    lines += ["| finding | claim | paper | LotteryKit | verdict | tolerance |", "|---|---|---|---|---|---|"]
    for f in findings {
      lines.append(
        "| `\(f.id)` | \(cell(f.claim)) | \(cell(f.paperText)) | **\(num(f.lotterykitValue))** \(cell(f.unit)): \(cell(f.lotterykitDetail)) | **\(f.verdict.rawValue)** | \(cell(f.tolerance)) |"
      )
    }
    return lines.joined(separator: "\n")
  }

  static func minutes(_ s: Double) -> String {
    s < 120 ? String(format: "%.0f s", s) : String(format: "%.1f min", s / 60)
  }
}

/// The statistics verdicts use: mean, sample standard deviation, standard error.
public struct Sample: Sendable, Equatable {
  public var values: [Double]
  public init(_ values: [Double]) { self.values = values }
  public var n: Int { values.count }
  public var mean: Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }
  /// Sample standard deviation (n - 1); nil below 2 values.
  public var std: Double? { Results.std(values) }
  /// Standard error of the difference of two means: sqrt(s_a^2/n_a + s_b^2/n_b) (nil below
  /// 2 values on either side).
  public static func standardError(_ a: Sample, _ b: Sample) -> Double? {
    guard let sa = a.std, let sb = b.std else { return nil }
    return (sa * sa / Double(a.n) + sb * sb / Double(b.n)).squareRoot()
  }
  /// `mean ± std (n)` in percent points of a fraction.
  public var percentText: String {
    let m = String(format: "%.2f", mean * 100)
    return std.map { m + String(format: " ± %.2f", $0 * 100) } ?? m
  }
}
