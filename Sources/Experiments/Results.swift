import Foundation
import Pruning
import Training

/// `lth results`: per level (lottery runs) or per target density (prune-init runs), density,
/// effective density and accuracies as mean ± sample standard deviation over the replicates
/// present, with each branch beside the main line; several runs side by side by density.
///
/// Branch columns are named by kind (`random-reinit %`); only when one run holds two
/// branches of the same kind with different flags do their names get the first 8 hex
/// digits of their hash (`random-prune_1a2b3c4d %`, the start of the folder name). Runs
/// continued on another machine (``MachineCheck``) are marked `machine_changed` in JSON
/// and by a `*` line under the table.
public enum Results {
  /// One row's runs (the main line or one branch at one level or density), a value per
  /// replicate present, in replicate order.
  struct Cell {
    var replicate: [Int] = []
    var density: [Double] = []
    var final: [Double] = []
    var stopAccuracy: [Double] = []
    var stopAccuracies: [Double?] = []
    var earlyStop: [Int] = []
    var earlyStops: [Int?] = []
    var effective: [Double] = []
    var effectives: [Double?] = []
    var seconds: [Double] = []
    /// Per replicate: (tensor name, density) in the order of `sparsity.json`.
    var layers: [[(String, Double)]] = []
    /// Per replicate: the test evaluations (step, accuracy).
    var curves: [[(Int, Double)]] = []
  }

  /// Keys whose values differ between two runs of one experiment: wall-clock time, when
  /// and how it was invoked, and where its folder is. Everything else in a result object
  /// is the same, bit for bit, at any thread count and after any resume.
  public static let volatileKeys: Set<String> = [
    "seconds", "seconds_mean", "commands", "provenance", "run_dir",
  ]

  /// A result object without ``volatileKeys``, at every depth (for identity checks).
  public static func reproducible(_ value: Any) -> Any {
    if let d = value as? [String: Any] {
      return d.filter { !volatileKeys.contains($0.key) }.mapValues(reproducible)
    }
    if let a = value as? [Any] { return a.map(reproducible) }
    return value
  }

  public static func mean(_ x: [Double]) -> Double? { x.isEmpty ? nil : x.reduce(0, +) / Double(x.count) }
  public static func std(_ x: [Double]) -> Double? {
    guard x.count > 1, let m = mean(x) else { return nil }
    return (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count - 1)).squareRoot()
  }

  static func read(_ dir: String, replicate: Int, into cell: inout Cell) throws {
    guard let s = try TrainSummary.read(in: dir) else { return }
    let sp = RunFile.sparsity.path(in: dir)
    let density: Double
    var effective: Double? = nil
    var layers: [(String, Double)] = []
    if let bytes = try? AtomicFile.read(sp), let report = SparsityReport.parse(bytes) {
      density = report.density
      effective = report.effectiveDensity
      for t in report.tensors where t.total > 0 { layers.append((t.name, Double(t.remaining) / Double(t.total))) }
    } else if let fromMask = try? maskDensity(RunFile.mask.path(in: dir)) {
      // A folder killed between its mask and sparsity.json by an older build; the runner
      // rewrites sparsity.json when it next visits the folder.
      density = fromMask
    } else {
      throw RunError("\(sp) is missing or unreadable")
    }
    var curve: [(Int, Double)] = []
    if let bytes = try? AtomicFile.read(RunFile.metrics.path(in: dir)),
      let records = try? MetricsLog.parse(bytes, path: RunFile.metrics.path(in: dir))
    {
      curve = records.filter { $0.split == "test" }.map { ($0.step, $0.accuracy) }
    }
    cell.replicate.append(replicate)
    cell.density.append(density)
    cell.final.append(s.testAccuracy)
    // Runs of builds before early_stop_test_accuracy: the test evaluation at the step.
    let atStop = s.earlyStopTestAccuracy ?? s.earlyStopStep.flatMap { e in curve.last { $0.0 == e }?.1 }
    if let a = atStop { cell.stopAccuracy.append(a) }
    cell.stopAccuracies.append(atStop)
    cell.seconds.append(s.seconds)
    if let e = s.earlyStopStep { cell.earlyStop.append(e) }
    cell.earlyStops.append(s.earlyStopStep)
    if let e = effective { cell.effective.append(e) }
    cell.effectives.append(effective)
    cell.layers.append(layers)
    cell.curves.append(curve)
  }

  /// The `density` of a `sparsity.json`'s contents (nil: unreadable or not a number in [0, 1]).
  public static func sparsityDensity(_ bytes: [UInt8]) -> Double? { SparsityReport.parse(bytes)?.density }

  /// Fraction of ones over every tensor of a mask file.
  static func maskDensity(_ path: String) throws -> Double {
    let (tensors, _) = try Safetensors.read(path)
    var (kept, total) = (0.0, 0.0)
    for (_, e) in tensors {
      let v = e.values(Float.self)
      kept += v.reduce(0) { $0 + Double($1) }
      total += Double(v.count)
    }
    guard total > 0 else { throw RunError("\(path) holds no tensors") }
    return kept / total
  }

  static func row(_ c: Cell) -> ResultRow {
    var perReplicate: [ReplicateResult] = []
    for i in c.final.indices {
      perReplicate.append(
        ReplicateResult(
          replicate: c.replicate[i], density: c.density[i], testAccuracy: c.final[i], seconds: c.seconds[i],
          earlyStopStep: c.earlyStops[i], earlyStopTestAccuracy: c.stopAccuracies[i],
          effectiveDensity: c.effectives[i]))
    }
    // Layer densities and the learning curve: means over the replicates that have them.
    var layers: [LayerDensity] = []
    if let first = c.layers.first(where: { !$0.isEmpty }) {
      for (name, _) in first {
        let values = c.layers.compactMap { $0.first { $0.0 == name }?.1 }
        layers.append(LayerDensity(name: name, density: mean(values)!))
      }
    }
    var steps = c.curves.first.map { $0.map(\.0) } ?? []
    for curve in c.curves.dropFirst() { steps = steps.filter { s in curve.contains { $0.0 == s } } }
    var curve = LearningCurve()
    for s in steps {
      let values = c.curves.compactMap { $0.last { $0.0 == s }?.1 }
      curve.step.append(s)
      curve.testAccuracyMean.append(mean(values)!)
      curve.testAccuracyStd.append(std(values))
    }
    return ResultRow(
      density: mean(c.density), testAccuracyMean: mean(c.final), testAccuracyStd: std(c.final),
      earlyStopStepMean: mean(c.earlyStop.map(Double.init)), earlyStopTestAccuracyMean: mean(c.stopAccuracy),
      earlyStopTestAccuracyStd: std(c.stopAccuracy),
      replicates: c.final.count,
      effectiveDensity: c.effective.count == c.final.count ? mean(c.effective) : nil, testAccuracyValues: c.final,
      secondsMean: mean(c.seconds), perReplicate: perReplicate, layers: layers, learningCurve: curve)
  }

  /// The results object of a lottery folder (`lottery_<hash>`).
  public static func collect(_ root: String) throws -> RunResults {
    let fm = FileManager.default
    guard fm.fileExists(atPath: RunFile.hparams.path(in: root)) else {
      throw RunError("\(root) is not a lottery run folder (no \(RunFile.hparams.rawValue))")
    }
    var main: [Int: Cell] = [:]
    // Branches by identity (the hash of their hyperparameters under the current scheme, so a
    // folder not yet migrated from the old hash is the same branch as a migrated one).
    var branches: [Int: [String: Cell]] = [:]
    var kinds: [String: String] = [:]
    var branchIDs: [String: String] = [:]  // folder name -> identity
    func identity(_ dir: String, folder: String) -> (id: String, kind: String) {
      if let id = branchIDs[folder] { return (id, kinds[id]!) }
      let name = String(folder.dropFirst("branch_".count))
      let cut = name.lastIndex(of: "_")
      var kind = cut.map { String(name[..<$0]) } ?? name
      var id = cut.map { String(name[name.index(after: $0)...]) } ?? name
      if let stored = try? RunStore.storedHParams(dir)?.hparams, let b = try? stored.decode(BranchHParams.self) {
        (kind, id) = (b.kind.rawValue, b.hash)
      }
      branchIDs[folder] = id
      kinds[id] = kind
      return (id, kind)
    }
    let isPaI = RunLayout.kind(ofFolder: root) == .pai
    let rowPrefix = isPaI ? "density_" : "level_"
    // Rows: level numbers, or target densities (their folder text, ordered by value).
    var rowNames: [Int: String] = [:]
    func rowKey(_ folder: String) -> Int? {
      let text = String(folder.dropFirst(rowPrefix.count))
      if isPaI {
        guard let d = Double(text) else { return nil }
        let key = -Int((d * 1e12).rounded())  // dense first
        rowNames[key] = text
        return key
      }
      return Int(text)
    }
    let reps = (try fm.contentsOfDirectory(atPath: root)).filter { $0.hasPrefix("replicate_") }.sorted()
    // Folders begun but without a summary (a phase killed or still running).
    var unfinished: [(replicate: Int, row: Int, branch: String)] = []
    var present: [Int] = []
    for rep in reps {
      guard let r = Int(rep.dropFirst("replicate_".count)) else { continue }
      present.append(r)
      for lv in (try fm.contentsOfDirectory(atPath: root + "/" + rep)).filter({ $0.hasPrefix(rowPrefix) }) {
        guard let level = rowKey(lv) else { continue }
        let ldir = "\(root)/\(rep)/\(lv)"
        var cell = main[level] ?? Cell()
        try read(RunLayout.main(ldir), replicate: r, into: &cell)
        main[level] = cell
        if fm.fileExists(atPath: RunLayout.main(ldir)), !fm.fileExists(atPath: RunFile.summary.path(in: RunLayout.main(ldir))) {
          unfinished.append((r, level, "main"))
        }
        for b in (try fm.contentsOfDirectory(atPath: ldir)).filter({ $0.hasPrefix("branch_") }).sorted() {
          let id = identity(ldir + "/" + b, folder: b).id
          var bc = branches[level, default: [:]][id] ?? Cell()
          try read(ldir + "/" + b, replicate: r, into: &bc)
          branches[level, default: [:]][id] = bc
          if !fm.fileExists(atPath: ldir + "/" + RunFile.summary.path(in: b)) { unfinished.append((r, level, id)) }
        }
      }
    }
    // Column names: the kind, plus 8 hash digits where a kind has more than one identity.
    var perKind: [String: Int] = [:]
    for (_, kind) in kinds { perKind[kind, default: 0] += 1 }
    func columnName(_ id: String) -> String {
      let kind = kinds[id]!
      return perKind[kind]! > 1 ? kind + "_" + String(id.prefix(8)) : kind
    }
    var levels: [ResultRow] = []
    func label(_ o: inout ResultRow, _ level: Int) {
      if isPaI { o.targetDensity = Double(rowNames[level]!)! } else { o.level = level }
    }
    for level in main.keys.sorted() where !main[level]!.final.isEmpty {
      var o = row(main[level]!)
      label(&o, level)
      var bo: [String: ResultRow] = [:]
      for (id, c) in branches[level] ?? [:] where !c.final.isEmpty {
        var x = row(c)
        label(&x, level)
        x.kind = kinds[id]!
        x.hash = id
        bo[columnName(id)] = x
      }
      o.branches = bo
      levels.append(o)
    }
    let changes = try MachineCheck.entries(in: root)
    var out = RunResults(
      kind: isPaI ? "pai" : "lottery", method: "imp", runDir: root, machineChanged: !changes.isEmpty,
      machineChanges: changes.isEmpty ? nil : changes, replicatesPresent: present.sorted(),
      unfinished: unfinished.sorted { ($0.replicate, $0.row) < ($1.replicate, $1.row) }.map {
        UnfinishedPhase(
          replicate: $0.replicate, branch: $0.branch == "main" ? "main" : columnName($0.branch),
          level: isPaI ? nil : $0.row, targetDensity: isPaI ? Double(rowNames[$0.row]!)! : nil)
      },
      rows: levels, record: RunStore.record(of: root))
    if isPaI {
      out.method = out.record.hparams?["method"]?.string ?? "unknown"
      out.allocation = out.record.hparams?["allocation"]?.string ?? "global"
    }
    return out
  }

  /// "onednn_isa a -> b, conv_backends" for the `*` line of a run continued elsewhere.
  static func changeSummary(_ changes: [JSONValue]) -> String {
    var parts: [String] = []
    for entry in changes {
      let c = entry["changes"]?.object ?? [:]
      for field in MachineCheck.comparedFields where c[field] != nil {
        let part =
          field == "conv_backends"
          ? "conv_backends"
          : "\(field) \(c[field]?["from"]?.text ?? "none") -> \(c[field]?["to"]?.text ?? "none")"
        if !parts.contains(part) { parts.append(part) }
      }
    }
    return parts.joined(separator: ", ")
  }

  /// Percent with 3 significant digits.
  static func pct3(_ x: Double) -> String {
    let p = x * 100
    let digits = p >= 100 ? 0 : p >= 10 ? 1 : p >= 1 ? 2 : 3
    return String(format: "%.\(digits)f", p)
  }

  static func acc(_ o: ResultRow) -> String { pm(o.testAccuracyMean, o.testAccuracyStd) }

  /// `mean ± std` scaled (percent by default; `-` without a mean, the mean alone without
  /// a std).
  public static func pm(_ m: Double?, _ s: Double?, scale: Double = 100, digits: Int = 2) -> String {
    guard let m else { return "-" }
    let f = "%.\(digits)f"
    if let s { return String(format: f, m * scale) + " ± " + String(format: f, s * scale) }
    return String(format: f, m * scale)
  }

  static func eff(_ o: ResultRow) -> String { o.effectiveDensity.map(pct3) ?? "-" }

  /// A table for people (percentages).
  public static func table(_ obj: RunResults) -> String {
    let isPaI = obj.isPaI
    let levels = obj.rows
    let names = Array(Set(levels.flatMap { ($0.branches ?? [:]).keys })).sorted()
    let header =
      [
        isPaI ? "target %" : "level", "density %", "effective %", "test acc %", "early stop", "acc at stop %",
        "reps",
      ]
      + names.map { $0 + " %" }
    var rows: [[String]] = []
    for l in levels {
      let name: String = isPaI ? (l.targetDensity.map(pct3) ?? "?") : (l.level.map(String.init) ?? "?")
      let density: String = l.density.map(pct3) ?? "-"
      let early: String = l.earlyStopStepMean.map { String(format: "%.0f", $0) } ?? "-"
      let atStop = pm(l.earlyStopTestAccuracyMean, l.earlyStopTestAccuracyStd)
      var row: [String] = [name, density, eff(l), acc(l), early, atStop, "\(l.replicates)"]
      let b = l.branches ?? [:]
      for n in names { row.append(b[n].map(acc) ?? "-") }
      rows.append(row)
    }
    var lines = grid(header, rows)
    if isPaI { lines.insert("method \(obj.method), allocation \(obj.allocation ?? "?")", at: 0) }
    if obj.machineChanged {
      lines.append(
        "* part of this run was trained on another machine (\(changeSummary(obj.machineChanges ?? []))); see \(obj.runDir)/\(MachineCheck.fileName)"
      )
    }
    return lines.joined(separator: "\n")
  }

  /// Aligned columns; the last column is not padded (no trailing blanks).
  public static func grid(_ header: [String], _ rows: [[String]]) -> [String] {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    func fmt(_ r: [String]) -> String {
      r.enumerated().map {
        $0.offset == r.count - 1
          ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0)
      }
      .joined(separator: "  ")
    }
    return ([fmt(header)] + rows.map(fmt)).map { line in
      String(line.reversed().drop(while: { $0 == " " }).reversed())
    }
  }

  /// Several runs on one table by measured density (3 significant digits): one column per
  /// run (its method; `imp` for lottery runs), and under each density one row for the main
  /// line (`mean ± std` test accuracy, percent), one for its effective density and one per
  /// ablation (`shuffle`, `reinit`, `invert`, ...).
  public static func sideBySide(_ runs: [RunResults]) -> String {
    var columns: [String] = []
    var variants: [String] = []
    var cells: [String: [String: [String: String]]] = [:]  // density -> variant -> column -> cell
    var order: [String: Double] = [:]
    var used: [String: Int] = [:]
    for run in runs {
      var name = run.method
      used[name, default: 0] += 1
      if used[name]! > 1 { name += "#\(used[name]!)" }
      columns.append(name)
      for row in run.rows {
        guard let d = row.density else { continue }
        let key = pct3(d)
        order[key] = d
        cells[key, default: [:]]["main", default: [:]][name] = acc(row)
        cells[key, default: [:]]["effective %", default: [:]][name] = eff(row)
        for (b, o) in row.branches ?? [:] {
          if !variants.contains(b) { variants.append(b) }
          cells[key, default: [:]][b, default: [:]][name] = acc(o)
        }
      }
    }
    variants.sort()
    let keys = order.keys.sorted { order[$0]! > order[$1]! }
    var rows: [[String]] = []
    for k in keys {
      for (i, v) in (["main", "effective %"] + variants).enumerated() {
        guard let byColumn = cells[k]?[v] else { continue }
        rows.append([i == 0 ? k : "", v] + columns.map { byColumn[$0] ?? "" })
      }
    }
    return grid(["density %", "row"] + columns, rows).joined(separator: "\n")
  }
}
