import Analysis
import Experiments
import Foundation
import Training
import Reports
import Testing

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// Every element's attributes of an XML document (the SVG of a chart).
final class Elements: NSObject, XMLParserDelegate {
  var found: [(name: String, attributes: [String: String])] = []
  var text: [String: String] = [:]
  private var current = ""
  func parser(
    _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
    attributes: [String: String] = [:]
  ) {
    found.append((name, attributes))
    current = name
  }
  func parser(_ parser: XMLParser, foundCharacters string: String) { text[current, default: ""] += string }

  static func parse(_ xml: String) -> Elements? {
    let e = Elements()
    let p = XMLParser(data: Data(xml.utf8))
    p.delegate = e
    return p.parse() ? e : nil
  }
}

@Suite("Reports: scales, ticks, escaping, charts")
struct ScaleTests {
  @Test("linear ticks are multiples of 1, 2 or 5 times a power of ten inside the domain")
  func linearTicks() {
    let s = Scale(.linear, lo: 0, hi: 1, r0: 0, r1: 100)
    #expect(s.ticks(target: 5) == [0, 0.2, 0.4, 0.6, 0.8, 1])
    let t = Scale(.linear, lo: 0.7812, hi: 0.8129, r0: 0, r1: 100).ticks(target: 5)
    #expect(t.count >= 3 && t.count <= 7)
    #expect(t.allSatisfy { $0 >= 0.7812 && $0 <= 0.8129 })
    let steps = zip(t.dropFirst(), t).map { $0 - $1 }
    #expect(steps.allSatisfy { abs($0 - 0.005) < 1e-12 })
    #expect(Scale.niceStep(0.0031) == 0.005)
    #expect(Scale.niceStep(17) == 20)
    #expect(Scale.niceStep(0.8) == 1)
    // A nice domain starts and ends on ticks and holds the data; one value gets a width.
    let (a, b) = Scale.niceLinear(0.7812, 0.8129)
    #expect(a <= 0.7812 && b >= 0.8129 && a == 0.78 && abs(b - 0.815) < 1e-12)
    let (c, d) = Scale.niceLinear(5, 5)
    #expect(c < 5 && d > 5)
    #expect(Scale(.linear, lo: -1, hi: 1, r0: 0, r1: 1).ticks(target: 4).contains(0))
  }

  @Test("a reversed log density axis from 100% down to 0.1%: decades, labels, pixels")
  func reversedDensityAxis() {
    // 100% at the left (pixel 100), 0.1% at the right (pixel 400).
    let s = Scale(.log, lo: 0.001, hi: 1, r0: 400, r1: 100)
    #expect(s.ticks() == [0.001, 0.01, 0.1, 1])
    #expect(s.ticks().map { TickFormat.percent.text($0) } == ["0.1%", "1%", "10%", "100%"])
    #expect(s(1) == 100 && s(0.001) == 400)
    #expect(abs(s(0.01) - 300) < 1e-9 && abs(s(0.1) - 200) < 1e-9)
    // Half-way in pixels is the geometric mean.
    #expect(abs(s.invert(250) - 0.001.squareRoot() * 1) < 1e-12)
    for v in [0.002, 0.0513, 0.33, 0.8] { #expect(abs(s.invert(s(v)) / v - 1) < 1e-12) }
    // Fewer decades: 2x and 5x, then every multiple.
    #expect(Scale(.log, lo: 0.04, hi: 1, r0: 0, r1: 1).ticks() == [0.05, 0.1, 0.2, 0.5, 1])
    let short = Scale(.log, lo: 0.3, hi: 1.1, r0: 0, r1: 1).ticks()
    #expect(short.map { ($0 * 10).rounded() } == [3, 4, 5, 6, 7, 8, 9, 10])
    let (lo, hi) = Scale.paddedLog(0.0107, 1)
    #expect(lo < 0.0107 && hi > 1)
  }

  @Test("tick and value labels")
  func labels() {
    #expect(TickFormat.percent.text(0.125) == "12.5%")
    #expect(TickFormat.percent.text(1) == "100%")
    #expect(TickFormat.percent.text(0.0005) == "0.05%")
    #expect(TickFormat.percent.text(0.8, step: 0.005) == "80%")
    #expect(TickFormat.percent.text(0.805, step: 0.005) == "80.5%")
    #expect(TickFormat.number.text(2000, step: 500) == "2000")
    #expect(TickFormat.number.text(0.25, step: 0.25) == "0.25")
    #expect(TickFormat.number.text(-0.0, step: 1) == "0")
  }

  @Test("names are escaped in SVG and HTML, control characters replaced")
  func escaping() {
    #expect(escapeMarkup("a<b & \"c\" 'd'>") == "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;")
    #expect(escapeMarkup("x\u{1}y") == "x\u{FFFD}y")
    let name = "rand<om> & \"reinit\" </svg>"
    let chart = Chart(
      title: "t </title><script>", x: .density(), y: Axis("acc", format: .percent),
      series: [Series(name, color: Palette.color(0), points: [Point(x: 1, y: 0.5), Point(x: 0.2, y: 0.4)])])
    let svg = chart.svg()
    #expect(!svg.contains("<script>"))
    let parsed = Elements.parse(svg)
    #expect(parsed != nil, "the chart is not well-formed XML")
    let series = parsed?.found.first { $0.name == "g" && $0.attributes["class"] == "series" }
    #expect(series?.attributes["data-series"] == name)
    let page = Report.html(
      title: "<b>&", runs: [.rows(RunResults(kind: "lottery", method: "imp", runDir: "/x/</script><script>alert(1)"))])
    #expect(!page.contains("</script><script>alert"))
    #expect(page.contains("<title>&lt;b&gt;&amp;</title>"))
    // The embedded data is still the same JSON.
    let start = page.range(of: "id=\"lth-results\">")!.upperBound
    let end = page.range(of: "</script>", range: start..<page.endIndex)!.lowerBound
    let obj = try? JSONSerialization.jsonObject(with: Data(page[start..<end].utf8)) as? [String: Any]
    let runs = obj?["runs"] as? [[String: Any]]
    #expect(runs?.first?["run_dir"] as? String == "/x/</script><script>alert(1)")
  }

  @Test("markers land at the scale's pixels; the svg records the maps; partial points are hollow")
  func dataToPixels() throws {
    let pts = [Point(x: 1, y: 0.9, spread: 0.01), Point(x: 0.512, y: 0.92, spread: 0.02, partial: true)]
    let chart = Chart(
      title: "acc", x: .density(), y: Axis("acc", format: .percent),
      series: [Series("main", color: Palette.color(0), points: pts)],
      references: [Reference(y: 0.88, label: "dense")])
    let (sx, sy) = chart.scales()
    // Reversed: the dense end is on the left; the domain holds every point, band and reference.
    #expect(sx(1) < sx(0.512))
    #expect(sy.lo <= 0.88 && sy.hi >= 0.94)
    let e = try #require(Elements.parse(chart.svg()))
    let svg = try #require(e.found.first { $0.name == "svg" })
    #expect(svg.attributes["data-x-scale"] == "log" && svg.attributes["data-y-scale"] == "linear")
    let dom = svg.attributes["data-x-domain"]!.split(separator: " ").map { Double($0)! }
    #expect(dom == [sx.lo, sx.hi])
    let circles = e.found.filter { $0.name == "circle" && ($0.attributes["class"] ?? "").hasPrefix("point") }
    #expect(circles.count == 2)
    for (c, p) in zip(circles, pts) {
      #expect(Double(c.attributes["data-x"]!) == p.x && Double(c.attributes["data-y"]!) == p.y)
      #expect(abs(Double(c.attributes["cx"]!)! - sx(p.x)) < 0.006)
      #expect(abs(Double(c.attributes["cy"]!)! - sy(p.y)) < 0.006)
    }
    #expect(circles[1].attributes["class"] == "point partial" && circles[1].attributes["fill"] == "#ffffff")
    #expect(e.found.contains { $0.name == "path" && $0.attributes["class"] == "band" })
  }

  @Test("tidy CSV: one row per run, replicate, level, branch and metric; quoting")
  func tidyCSV() {
    let rep: (Int, Double) -> ReplicateResult = { r, acc in
      ReplicateResult(
        replicate: r, density: 0.8, testAccuracy: acc, seconds: 1.5, earlyStopStep: nil,
        effectiveDensity: 0.8)
    }
    let run = RunResult.rows(
      RunResults(
        kind: "lottery", method: "imp", runDir: "runs/a,b",
        rows: [
          ResultRow(
            level: 1, perReplicate: [rep(1, 0.9), rep(2, 0.91)],
            branches: ["random-reinit": ResultRow(perReplicate: [rep(1, 0.85)])])
        ]))
    var curve = PairCurve(CurveRecord(replicate: 1, pair: "1-2"))
    curve.testErrorBarrier = 0.02
    let lmc = RunResult.lmc(
      LMCRunResults(
        runDir: "l", bn: "recompute",
        spawnSteps: [
          SpawnStepResult(
            k: 10, alpha: [], testErrorMean: [], testErrorStd: [], trainErrorMean: [], trainErrorStd: [],
            endpointTestAccuracyValues: [0.9], endpointReplicates: [1], curves: [curve])
        ], maskRun: nil, maskLevel: nil, randomMask: false, unfinished: [], replicatesPresent: [1],
        record: RunRecord()))
    let lines = TidyCSV.text([run, lmc]).split(separator: "\n").map(String.init)
    #expect(lines[0] == TidyCSV.header)
    // 3 runs x 4 metrics (early stop and the accuracy there are null) + 1 barrier + 1 endpoint.
    #expect(lines.count == 1 + 12 + 2)
    #expect(lines.contains("\"runs/a,b\",lottery,2,1,,,,main,test_accuracy,0.91"))
    #expect(lines.contains("\"runs/a,b\",lottery,1,1,,,,random-reinit,test_accuracy,0.85"))
    #expect(lines.contains("l,lmc,1,,,10,1-2,main,test_error_barrier,0.02"))
    #expect(lines.contains("l,lmc,1,,,10,,main,endpoint_test_accuracy,0.9"))
    #expect(!lines.contains { $0.contains("early_stop_step") })
  }

  @Test("every axis gets numbered ticks: narrow and wide, linear and log ranges")
  func ticksOnEveryRange() throws {
    let ranges: [(Scale.Kind, Double, Double)] = [
      (.log, 0.12, 0.16), (.log, 0.1201, 0.1203), (.log, 0.5, 0.55), (.log, 0.3, 0.9), (.log, 0.001, 1),
      (.log, 1e-6, 1e6), (.log, 0.8, 1.25), (.linear, 0.12, 0.1201), (.linear, 0, 1e6), (.linear, -3, 3),
      (.linear, 0.9995, 1.0005), (.linear, 2000, 2001),
    ]
    for (kind, lo, hi) in ranges {
      let s = Scale(kind, lo: lo, hi: hi, r0: 0, r1: 1)
      let t = s.ticks()
      #expect(t.count >= 2, "\(kind) \(lo)...\(hi): \(t)")
      let tol = 1e-9 * max(abs(lo), abs(hi))
      #expect(t.allSatisfy { $0 >= lo - tol && $0 <= hi + tol }, "\(kind) \(lo)...\(hi): \(t)")
      // Drawn: at least two distinct numbered labels on each axis.
      let pts = [Point(x: lo, y: lo), Point(x: hi, y: hi)]
      let chart = Chart(
        title: "t", x: Axis("x", kind: kind, format: .number, domain: (lo, hi)),
        y: Axis("y", kind: kind, format: .percent, domain: (lo, hi)),
        series: [Series("s", color: Palette.color(0), points: pts)])
      let svg = chart.svg()
      #expect(Elements.parse(svg) != nil)
      for axis in ["x", "y"] {
        let group = svg.components(separatedBy: "<g class=\"axis \(axis)\">")[1].components(separatedBy: "</g>")[0]
        let labels = group.components(separatedBy: "<text class=\"tick\"").dropFirst().map {
          $0.components(separatedBy: ">")[1].components(separatedBy: "<")[0]
        }
        #expect(Set(labels).count >= 2, "\(axis) \(kind) \(lo)...\(hi): \(labels)")
      }
    }
  }

  @Test("LMC runs that differ only in the batch-norm mode are drawn together")
  func bothBatchNormModes() {
    func run(_ bn: String, _ barrier: Double) -> RunResult {
      let step = SpawnStepResult(
        k: 100, alpha: [0, 1], testErrorMean: [0.1, 0.1], testErrorStd: [nil, nil], trainErrorMean: [],
        trainErrorStd: [], endpointTestAccuracyValues: [0.9], endpointReplicates: [1], testErrorBarrierMean: barrier,
        curves: [])
      let h: JSONValue = .object(["bn": .string(bn), "points": .int(5), "training": .object(["model": .string("m")])])
      return .lmc(
        LMCRunResults(
          runDir: "lmc_\(bn)", bn: bn, spawnSteps: [step], maskRun: nil, maskLevel: nil, randomMask: false,
          unfinished: [], replicatesPresent: [1], record: RunRecord(hparams: h)))
    }
    let page = Report.html(title: "t", runs: [run("recompute", 0.01), run("interpolate", 0.2)])
    #expect(page.contains("Instability with both batch-norm modes"))
    #expect(page.contains("data-series=\"batch norm recompute\"") && page.contains("data-series=\"batch norm interpolate\""))
    // One mode alone: no combined section.
    #expect(!Report.html(title: "t", runs: [run("recompute", 0.01)]).contains("both batch-norm modes"))
  }
}
