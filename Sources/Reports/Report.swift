import Analysis
import Experiments
import Foundation
import Training

/// The result of any run folder, typed by its kind: what `lth results --json` prints and
/// `lth report` draws (the same JSON, embedded in the page).
public enum RunResult: Codable, Equatable, Sendable {
  /// Lottery (`lottery`) and pruning-at-initialisation (`pai`) runs.
  case rows(RunResults)
  case lmc(LMCRunResults)
  case scaling(ScalingFitResult)
  /// `lth reproduce`'s findings (`reproduce_<hash>/findings.json`).
  case reproduce(ReproductionResult)
  /// `lth speedup`'s study (`speedup_<hash>/speedup.json`).
  case speedup(SpeedupResult)

  public var kind: String {
    switch self {
    case .rows(let r): return r.kind
    case .lmc(let r): return r.kind
    case .scaling(let r): return r.kind
    case .reproduce(let r): return r.kind
    case .speedup(let r): return r.kind
    }
  }
  public var runDir: String {
    switch self {
    case .rows(let r): return r.runDir
    case .lmc(let r): return r.runDir
    case .scaling(let r): return r.runDir ?? r.sweep ?? "?"
    case .reproduce(let r): return r.runDir ?? "?"
    case .speedup(let r): return r.runDir ?? "?"
    }
  }
  public var record: RunRecord {
    switch self {
    case .rows(let r): return r.record
    case .lmc(let r): return r.record
    case .scaling(let r): return r.record ?? RunRecord()
    case .reproduce(let r): return RunRecord(provenance: r.provenance)
    case .speedup(let r): return RunRecord(provenance: r.provenance)
    }
  }
  public var unfinished: [UnfinishedPhase] {
    switch self {
    case .rows(let r): return r.unfinished
    case .lmc(let r): return r.unfinished
    case .scaling, .reproduce, .speedup: return []
    }
  }
  public var rowsResult: RunResults? {
    if case .rows(let r) = self { return r }
    return nil
  }
  public var machineChanged: Bool { rowsResult?.machineChanged ?? false }

  private enum KindKey: String, CodingKey { case kind }

  public init(from decoder: Decoder) throws {
    let kind = try decoder.container(keyedBy: KindKey.self).decode(String.self, forKey: .kind)
    switch kind {
    case "lottery", "pai": self = .rows(try RunResults(from: decoder))
    case "lmc": self = .lmc(try LMCRunResults(from: decoder))
    case "scaling": self = .scaling(try ScalingFitResult(from: decoder))
    case "reproduce": self = .reproduce(try ReproductionResult(from: decoder))
    case "speedup": self = .speedup(try SpeedupResult(from: decoder))
    default:
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown kind \(kind)"))
    }
  }

  public func encode(to encoder: Encoder) throws {
    switch self {
    case .rows(let r): try r.encode(to: encoder)
    case .lmc(let r): try r.encode(to: encoder)
    case .scaling(let r): try r.encode(to: encoder)
    case .reproduce(let r): try r.encode(to: encoder)
    case .speedup(let r): try r.encode(to: encoder)
    }
  }
}

/// Several runs' results: `lth results --json` of more than one folder, and the data
/// embedded in a report.
public struct RunResultList: Codable, Equatable, Sendable {
  public var runs: [RunResult]
  public var schemaVersion = ResultSchema.version
  public init(_ runs: [RunResult]) { self.runs = runs }
  enum CodingKeys: String, CodingKey {
    case runs
    case schemaVersion = "schema_version"
  }
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    runs = try c.decode([RunResult].self, forKey: .runs)
    schemaVersion = try c.decodeIfPresent(Int.self, forKey: .schemaVersion) ?? ResultSchema.version
  }
}

/// One section of the page for one experiment kind (`lottery`, `pai`, `lmc`, ...): a new
/// kind is one file with a type conforming to this, plus its line in ``Report/sections``.
public protocol ReportSection: Sendable {
  /// The `kind` of the results this section draws.
  static var kind: String { get }
  /// HTML for the runs of this kind; `all` holds every run of the page (a section may
  /// draw another kind's runs as references, as PaI draws IMP tickets).
  static func html(_ runs: [RunResult], all: [RunResult]) -> String
}

/// `lth report`: one self-contained HTML page (inline CSS and SVG, no JavaScript, nothing
/// fetched) for the result objects of one or more runs, the same objects `lth results
/// --json` prints. The objects are embedded in the page as
/// `<script type="application/json" id="lth-results">` (data, never executed), so the page
/// and the JSON cannot disagree.
public enum Report {
  /// The sections in page order; provenance comes last for every run.
  public static let sections: [any ReportSection.Type] = [
    ReproduceSection.self, SpeedupSection.self, LotterySection.self, PaISection.self, LMCSection.self,
    ScalingSection.self,
  ]

  public static func html(title: String, runs: [RunResult], generated: Date = Date()) -> String {
    let e = escapeMarkup
    var body = ""
    let kinds = Set(runs.map(\.kind))
    let known = Set(sections.map { $0.kind })
    for section in sections {
      let mine = runs.filter { $0.kind == section.kind }
      if !mine.isEmpty { body += section.html(mine, all: runs) }
    }
    for k in kinds.subtracting(known).sorted() {
      body += "<section><h2>\(e(k))</h2><p>This page has no section for runs of kind \(e(k)).</p></section>\n"
    }
    body += ProvenanceSection.html(runs)
    let stamp = ISO8601DateFormatter().string(from: generated)
    var data = jsonLine(RunResultList(runs))
    // Inside <script>, only "</" can end the element early; "<\/" is the same JSON string.
    data = data.replacingOccurrences(of: "</", with: "<\\/")
    return """
      <!DOCTYPE html>
      <html lang="en">
      <head>
      <meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <meta name="generator" content="LotteryKit \(e(runs.first?.record.version ?? ""))">
      <title>\(e(title))</title>
      <style>
      \(css)
      </style>
      </head>
      <body>
      <header><h1>\(e(title))</h1>
      <p class="meta">Generated \(e(stamp)) by <code>lth report</code> from \(runs.count) run folder\(runs.count == 1 ? "" : "s"). \
      Hover a point for its exact values. Regenerating the page while an experiment runs is safe; unfinished parts are marked.</p>
      </header>
      <main>
      \(body)
      </main>
      <script type="application/json" id="lth-results">\(data)</script>
      </body>
      </html>

      """
  }

  static let css = """
    body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;color:#222;margin:0 auto;max-width:1100px;padding:0 24px 48px}
    h1{font-size:24px;margin:24px 0 4px}h2{font-size:20px;margin:36px 0 8px;border-bottom:2px solid #ddd;padding-bottom:4px}
    h3{font-size:16px;margin:20px 0 6px}p.meta,.note{color:#555}code,pre{font:12px/1.4 "DejaVu Sans Mono",Menlo,Consolas,monospace}
    pre{background:#f6f6f6;padding:8px;overflow-x:auto}
    .warn{background:#fff4e0;border-left:4px solid #E69F00;padding:6px 10px}
    table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{padding:3px 8px;text-align:right;border-bottom:1px solid #e4e4e4}
    th{background:#f2f2f2}td.name,th.name{text-align:left}
    svg.chart{display:block;margin:8px 0;overflow:visible}
    svg.chart text{font-size:11px;fill:#333}svg.chart .chart-title{font-size:13px;font-weight:600}
    svg.chart .axis-label{font-size:12px}svg.chart .grid{stroke:#e8e8e8}svg.chart .frame{stroke:#888}
    svg.chart .line{fill:none;stroke-width:2}svg.chart .band{opacity:.16;stroke:none}
    svg.chart .errorbar{stroke-width:1.2}svg.chart .point{stroke-width:1.4}svg.chart .ref-label{fill:#555;font-size:10px}
    .multiples{display:flex;flex-wrap:wrap;gap:4px 12px}.legend-row span{margin-right:14px;white-space:nowrap}
    .swatch{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:4px}
    details{margin:6px 0}summary{cursor:pointer;color:#0072B2}
    @media print{body{max-width:none;padding:0}section{break-inside:avoid-page}h2{break-after:avoid}details{display:block}}
    """

  // MARK: helpers shared by the sections

  static func folder(_ run: RunResult) -> String { folder(run.runDir) }
  static func folder(_ dir: String) -> String { (dir as NSString).lastPathComponent }
  /// A training hyperparameter the run recorded, as text ("?" when absent).
  static func training(_ record: RunRecord, _ key: String) -> String {
    record.hparams?["training"]?[key]?.text ?? "?"
  }

  /// An HTML table (`header` and `rows` are escaped; a cell may carry a background colour).
  static func table(_ header: [String], _ rows: [[(text: String, background: String?)]], nameColumns: Int = 1)
    -> String
  {
    let e = escapeMarkup
    var o = "<table><thead><tr>"
    for (i, h) in header.enumerated() { o += "<th\(i < nameColumns ? " class=\"name\"" : "")>\(e(h))</th>" }
    o += "</tr></thead><tbody>"
    for r in rows {
      o += "<tr>"
      for (i, c) in r.enumerated() {
        let cls = i < nameColumns ? " class=\"name\"" : ""
        let bg = c.background.map { " style=\"background:\($0)\"" } ?? ""
        o += "<td\(cls)\(bg)>\(e(c.text))</td>"
      }
      o += "</tr>"
    }
    return o + "</tbody></table>\n"
  }

  static func plain(_ cells: [String]) -> [(text: String, background: String?)] { cells.map { ($0, nil) } }

  /// `(1 of 2 replicates)` for a row with fewer replicates than the run has.
  static func partialNote(_ row: ResultRow, _ run: RunResults) -> (partial: Bool, note: String) {
    let have = row.replicates
    let all = run.replicatesPresent.count
    return have < all
      ? (true, "(\(have) of \(all) replicates finished)")
      : (false, "(\(have) replicate\(have == 1 ? "" : "s"))")
  }

  /// A banner listing a run's unfinished phases (nothing when finished).
  static func unfinishedBanner(_ list: [UnfinishedPhase]) -> String {
    guard !list.isEmpty else { return "" }
    let items = list.prefix(12).map { u -> String in
      var parts = ["replicate \(u.replicate)"]
      if let l = u.level { parts.append("level \(l)") }
      if let d = u.targetDensity { parts.append("density \(TickFormat.percent.text(d))") }
      if let k = u.k { parts.append("k = \(k)") }
      if let b = u.branch { parts.append(b) }
      return parts.joined(separator: " ")
    }
    let more = list.count > 12 ? " and \(list.count - 12) more" : ""
    return
      "<p class=\"warn unfinished\">Unfinished (begun, no result yet): \(escapeMarkup(items.joined(separator: "; ")))\(more). Points drawn hollow have fewer replicates than the run.</p>\n"
  }
}

extension Report {
  /// The result object of any experiment folder, by the `kind` its `hparams.json` records:
  /// `lottery` and `pai` (``Results``), `lmc` (``LMCResults``).
  public static func collect(_ dir: String) throws -> RunResult {
    if RunLayout.kind(ofFolder: dir) == .reproduce {
      guard let bytes = try? AtomicFile.read(RunFile.findings.path(in: dir)) else {
        throw RunError("\(dir) has no readable \(RunFile.findings.rawValue) (run lth reproduce to the end)")
      }
      var r = try JSONDecoder().decode(ReproductionResult.self, from: Data(bytes))
      r.runDir = dir
      return .reproduce(r)
    }
    if RunLayout.kind(ofFolder: dir) == .speedup {
      guard let bytes = try? AtomicFile.read(RunFile.speedup.path(in: dir)) else {
        throw RunError("\(dir) has no readable \(RunFile.speedup.rawValue) (run lth speedup to the end)")
      }
      var r = try JSONDecoder().decode(SpeedupResult.self, from: Data(bytes))
      r.runDir = dir
      return .speedup(r)
    }
    let path = RunFile.hparams.path(in: dir)
    guard let bytes = try? AtomicFile.read(path) else {
      throw RunError("\(dir) is not a run folder (no readable \(RunFile.hparams.rawValue))")
    }
    let kind = JSONValue.parse(bytes)?["kind"]?.string
    switch kind {
    case "lottery", "pai": return .rows(try Results.collect(dir))
    case "lmc": return .lmc(try LMCResults.collect(dir))
    case "scaling":
      // The fit the user made (fit.json), else a fit now: joint across several
      // configurations, no bootstrap. A sweep too young to fit is drawn as such.
      var fit: ScalingFitResult
      if let bytes = try? AtomicFile.read(RunFile.fit.path(in: dir)),
        let stored = try? JSONDecoder().decode(ScalingFitResult.self, from: Data(bytes))
      {
        fit = stored
      } else {
        do {
          let configs = try ScalingManifest.read(dir).points.count
          fit = try ScalingAnalysis.fit(sweep: dir, joint: configs > 1, holdout: nil, resamples: 0)
        } catch {
          fit = ScalingFitResult(family: (try? ScalingManifest.read(dir).family) ?? "?", error: "\(error)")
        }
      }
      fit.runDir = dir
      fit.record = RunStore.record(of: dir)
      return .scaling(fit)
    default:
      throw RunError(
        "\(dir) holds a \(kind ?? "unknown") run; results and reports read lottery, prune-init (pai), lmc and scaling runs"
      )
    }
  }
}
