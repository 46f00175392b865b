import Foundation
import Reports
import TestSupport
import Testing

/// Headless Chromium (Debian's `chromium`; `make test` installs it and sets
/// LTH_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping).
enum Browser {
  static var path: String? {
    if let p = ProcessInfo.processInfo.environment["LTH_CHROMIUM"] { return p }
    return ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
      FileManager.default.isExecutableFile(atPath: $0)
    }
  }
  static var required: Bool { ProcessInfo.processInfo.environment["LTH_REQUIRE_BROWSER"] == "1" }

  struct Load {
    var dom: String
    /// Console messages the page produced (Chromium logs them as `CONSOLE` lines).
    var console: [String]
    /// URLs the page itself asked for (initiator `null`: a file:// page), from the NetLog.
    var pageRequests: [String]
  }

  static func run(_ args: [String], in dir: String) throws -> (status: Int32, stdout: String, stderr: String)
  {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path!)
    p.arguments =
      [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--user-data-dir=\(dir)/profile", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--disable-default-apps",
      ] + args
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes while it runs (a full pipe would block the browser).
    nonisolated(unsafe) var errData = Data()
    let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
    reader.start()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    while reader.isExecuting || !reader.isFinished { usleep(1000) }
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: errData, as: UTF8.self))
  }

  /// Loads `page` and returns its DOM after scripts ran, its console messages and the
  /// requests it made.
  static func load(_ page: String, in dir: String) throws -> Load {
    let net = dir + "/netlog.json"
    let r = try run(
      [
        "--enable-logging=stderr", "--v=0", "--log-net-log=\(net)", "--virtual-time-budget=3000",
        "--dump-dom", "file://" + page,
      ], in: dir)
    guard r.status == 0 else {
      throw TestFailure("chromium exited with \(r.status): \(r.stderr.suffix(2000))")
    }
    let console = r.stderr.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") }
    var requests: [String] = []
    if let data = FileManager.default.contents(atPath: net) {
      // The NetLog of a short session is a JSON object whose "events" may end unterminated
      // when the browser exits; read the URL/initiator pairs line by line instead.
      let text = String(decoding: data, as: UTF8.self)
      for line in text.split(separator: "\n") where line.contains("\"initiator\":\"null\"") {
        if let u = line.range(of: "\"url\":\"") {
          let rest = line[u.upperBound...]
          requests.append(String(rest[..<(rest.firstIndex(of: "\"") ?? rest.endIndex)]))
        }
      }
    }
    return Load(dom: r.stdout, console: console, pageRequests: requests)
  }
}

/// Equal to the last bits Foundation's JSON reader keeps (it may parse a 17-digit number to
/// the neighbouring double).
func same(_ a: [Double], _ b: [Double]) -> Bool {
  a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-12 * max(abs($0), abs($1), 1e-300) }
}

struct TestFailure: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

/// Reads every chart of the page as the browser laid it out: for each `svg.chart`, its axis
/// maps and, per series, each marker's data values and the centre of its rendered box in
/// the chart's own coordinates. The result goes into `<pre id="lth-check">`
/// (percent-encoded JSON) for `--dump-dom`.
let checkScript = """
  <script>
  (() => {
    const out = {charts: []};
    for (const svg of document.querySelectorAll('svg.chart')) {
      const box = svg.getBoundingClientRect();
      const vb = svg.viewBox.baseVal;
      const kx = vb.width / box.width, ky = vb.height / box.height;
      const axis = a => ({scale: svg.dataset[a + 'Scale'], domain: svg.dataset[a + 'Domain'], range: svg.dataset[a + 'Range']});
      const chart = {title: svg.getAttribute('aria-label'), section: svg.closest('section').id, x: axis('x'), y: axis('y'), series: []};
      for (const g of svg.querySelectorAll('g.series')) {
        const points = [];
        for (const c of g.querySelectorAll('circle.point')) {
          const r = c.getBoundingClientRect();
          points.push({x: c.dataset.x, y: c.dataset.y, px: (r.left + r.width / 2 - box.left) * kx, py: (r.top + r.height / 2 - box.top) * ky});
        }
        chart.series.push({name: g.dataset.series, points});
      }
      out.charts.push(chart);
    }
    const pre = document.createElement('pre');
    pre.id = 'lth-check';
    pre.textContent = encodeURIComponent(JSON.stringify(out));
    document.body.appendChild(pre);
  })();
  </script>
  """

@Suite(
  "Reports: the page in headless Chromium", .serialized,
  .enabled(if: Browser.path != nil || Browser.required, "no chromium (make test installs it)"), .tags(.endToEnd), .endToEnd)
struct BrowserTests {
  static let training = [
    "--model", "mnist_lenet_64_32", "--dataset", "synthetic", "--subsample-fraction", "0.1",
    "--training-steps",
    "3ep", "--eval-every", "1ep", "--quiet", "--threads", "2",
  ]

  /// Where a person finds the page and its screenshot after the run.
  static var artifacts: String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    return root.path + "/.build/test-artifacts/report"
  }

  func lastJSON(_ r: CLI.Result) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
  }

  @Test("the browser check itself sees console messages and requests (a control page)")
  func control() throws {
    try #require(Browser.path != nil, "chromium is not installed")
    let dir = CLI.tempDir()
    let page = dir + "/control.html"
    try """
    <!DOCTYPE html><html><body><img src="http://127.0.0.1:9/probe.png"><script>console.error("lth-probe")</script></body></html>
    """.write(toFile: page, atomically: true, encoding: .utf8)
    let load = try Browser.load(page, in: dir)
    #expect(load.console.contains { $0.contains("lth-probe") }, "\(load.console)")
    #expect(load.pageRequests.contains("http://127.0.0.1:9/probe.png"), "\(load.pageRequests)")
  }

  @Test(
    "a report of real lottery, prune-init and lmc runs: points and values match the JSON, no console errors, no requests"
  )
  func realReport() throws {
    try #require(Browser.path != nil, "chromium is not installed")
    let out = CLI.tempDir()
    let t = Self.training + ["--output", out]
    let lot = t + ["--replicates", "2", "--validation-size", "100"]
    for args in [
      ["lottery"] + lot + ["--levels", "2"], ["branch", "random-reinit"] + lot + ["--levels", "0-2"],
      ["prune-init"] + t + ["--method", "snip", "--densities", "0.5,0.2", "--score-batch", "4"],
      ["branch", "shuffle"] + t + ["--method", "snip", "--densities", "0.5,0.2", "--score-batch", "4"],
      ["prune-init"] + t + ["--method", "magnitude-after-training", "--densities", "0.5,0.2"],
      ["lmc"] + t + ["--spawn-steps", "0,1ep", "--points", "5", "--train-eval-size", "200"],
      [
        "scaling", "sweep", "--family", "mnist_lenet_64_32", "--width-factors", "0.5,1", "--data-fractions",
        "0.1",
        "--levels", "4", "--replicates", "2", "--dataset", "synthetic", "--training-steps", "3ep",
        "--pruning-fraction", "0.5", "--quiet", "--output", out,
      ],
    ] {
      let r = try CLI.run(args)
      try #require(r.status == 0, "\(args.prefix(2)): \(r.stderr)")
    }
    let names = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
    let dirs = ["lottery_", "pai_", "lmc_", "scaling_"].flatMap { p in names.filter { $0.hasPrefix(p) } }.map
    {
      out + "/" + $0
    }
    #expect(dirs.count == 5)
    let fitted = try CLI.run(["scaling", "fit", dirs[4], "--holdout", "width>=1", "--bootstrap", "5"])
    try #require(fitted.status == 0, "\(fitted.stderr)")
    let json = try lastJSON(try CLI.run(["results"] + dirs + ["--json"]))
    let runs = json["runs"] as! [[String: Any]]

    try FileManager.default.createDirectory(atPath: Self.artifacts, withIntermediateDirectories: true)
    let page = Self.artifacts + "/report.html"
    let made = try CLI.run(["report"] + dirs + ["--output", page, "--title", "Browser test <&>"])
    try #require(made.status == 0, "\(made.stderr)")
    let html = try String(contentsOfFile: page, encoding: .utf8)
    // Self-contained: nothing that could make a request, and no JavaScript of its own.
    for needle in ["http://", "https://", "src=", "<link", "@import", "url("] {
      #expect(!html.contains(needle), "the page contains \(needle)")
    }
    #expect(
      !html.contains("<script>") && html.contains("<script type=\"application/json\" id=\"lth-results\">"))

    // The embedded data is the JSON `lth results` printed.
    let start = html.range(of: "id=\"lth-results\">")!.upperBound
    let end = html.range(of: "</script>", range: start..<html.endIndex)!.lowerBound
    let embedded = try JSONSerialization.jsonObject(with: Data(html[start..<end].utf8)) as! NSDictionary
    #expect(embedded.isEqual(to: json), "the page's data differs from lth results --json")

    let work = CLI.tempDir()
    let harness = work + "/check.html"
    try html.replacingOccurrences(of: "</body>", with: checkScript + "\n</body>")
      .write(toFile: harness, atomically: true, encoding: .utf8)
    let load = try Browser.load(harness, in: work)
    #expect(load.console.isEmpty, "console: \(load.console)")
    #expect(load.pageRequests.isEmpty, "requests: \(load.pageRequests)")
    let pre = try #require(load.dom.range(of: "<pre id=\"lth-check\">"), "the check script did not run")
    let rest = load.dom[pre.upperBound...]
    let encoded = String(rest[..<rest.range(of: "</pre>")!.lowerBound])
    let check =
      try JSONSerialization.jsonObject(with: Data(encoded.removingPercentEncoding!.utf8)) as! [String: Any]
    let charts = check["charts"] as! [[String: Any]]

    // Every marker sits where its chart's map puts its value (within a pixel).
    var markers = 0
    for c in charts {
      func scale(_ a: [String: Any]) -> Scale {
        let d = (a["domain"] as! String).split(separator: " ").map { Double($0)! }
        let r = (a["range"] as! String).split(separator: " ").map { Double($0)! }
        return Scale(Scale.Kind(rawValue: a["scale"] as! String)!, lo: d[0], hi: d[1], r0: r[0], r1: r[1])
      }
      let (sx, sy) = (scale(c["x"] as! [String: Any]), scale(c["y"] as! [String: Any]))
      for s in c["series"] as! [[String: Any]] {
        for p in s["points"] as! [[String: Any]] {
          let (x, y) = (Double(p["x"] as! String)!, Double(p["y"] as! String)!)
          #expect(abs((p["px"] as! Double) - sx(x)) < 1, "\(c["title"]!) \(s["name"]!) x")
          #expect(abs((p["py"] as! Double) - sy(y)) < 1, "\(c["title"]!) \(s["name"]!) y")
          markers += 1
        }
      }
    }
    #expect(markers > 50)

    func chart(_ section: String, _ title: String) -> [String: [(x: Double, y: Double)]]? {
      guard
        let c = charts.first(where: { $0["section"] as? String == section && $0["title"] as? String == title }
        )
      else { return nil }
      var out: [String: [(x: Double, y: Double)]] = [:]
      for s in c["series"] as! [[String: Any]] {
        out[s["name"] as! String] = (s["points"] as! [[String: Any]]).map {
          (Double($0["x"] as! String)!, Double($0["y"] as! String)!)
        }
      }
      return out
    }

    // Lottery: one point per level on the main line and on each branch, values from the JSON.
    let lottery = runs.first { $0["kind"] as? String == "lottery" }!
    let levels = lottery["levels"] as! [[String: Any]]
    let acc = try #require(chart("lottery-0", "Test accuracy against density"))
    #expect(Set(acc.keys) == ["IMP (main)", "random-reinit"])
    #expect(same(acc["IMP (main)"]!.map(\.x), levels.map { $0["density"] as! Double }))
    #expect(same(acc["IMP (main)"]!.map(\.y), levels.map { $0["test_accuracy_mean"] as! Double }))
    let reinit = levels.map { ($0["branches"] as! [String: Any])["random-reinit"] as! [String: Any] }
    #expect(same(acc["random-reinit"]!.map(\.y), reinit.map { $0["test_accuracy_mean"] as! Double }))
    let early = try #require(
      chart("lottery-0", "Early-stopping iteration (minimum validation loss) against density"))
    #expect(same(early["IMP (main)"]!.map(\.y), levels.map { $0["early_stop_step_mean"] as! Double }))
    for (i, level) in levels.enumerated() {
      let curve = level["learning_curve"] as! [String: Any]
      let small = try #require(
        chart("lottery-0", "level \(i) (\(TickFormat.percent.text(level["density"] as! Double)))"))
      #expect(same(small["IMP (main)"]!.map(\.y), curve["test_accuracy_mean"] as! [Double]))
      #expect(small["IMP (main)"]!.map { Int($0.x) } == curve["step"] as! [Int])
    }

    // PaI: each method with its ablation, the reference after training and the IMP tickets.
    let pai = try #require(chart("pai", "Test accuracy against density, per method"))
    #expect(
      Set(pai.keys) == [
        "snip", "snip + shuffle", "magnitude-after-training",
        "IMP tickets [\((lottery["run_dir"] as! NSString).lastPathComponent)]",
      ])
    let snip = runs.first { $0["method"] as? String == "snip" }!["densities"] as! [[String: Any]]
    #expect(same(pai["snip"]!.map(\.y), snip.map { $0["test_accuracy_mean"] as! Double }))
    #expect(pai["snip + shuffle"]!.count == snip.count)
    #expect(same(pai["snip"]!.map(\.x), snip.map { $0["density"] as! Double }))

    // LMC: the mean path per k and instability against k.
    let lmc = runs.first { $0["kind"] as? String == "lmc" }!["spawn_steps"] as! [[String: Any]]
    let path = try #require(chart("lmc-0", "Test error along the linear path between two children"))
    #expect(path.count == lmc.count)
    for row in lmc {
      let s = path["k = \(row["k"]!)"]!
      #expect(
        same(s.map(\.x), row["alpha"] as! [Double]) && same(s.map(\.y), row["test_error_mean"] as! [Double]))
    }
    #expect(chart("lmc-0", "Train error along the linear path between two children")?.count == lmc.count)
    let inst = try #require(chart("lmc-0", "Instability (error barrier) against the spawn step k"))
    #expect(same(inst["test instability"]!.map(\.y), lmc.map { $0["test_error_barrier_mean"] as! Double }))
    #expect(inst["test instability"]!.map { Int($0.x) } == lmc.map { $0["k"] as! Int })

    // Scaling: measured against predicted, fitted and held-out points, from fit.json.
    let fit = runs.first { $0["kind"] as? String == "scaling" }!
    let fitPoints = fit["points"] as! [[String: Any]]
    let scatter = try #require(chart("scaling-0", "Predicted against measured test error"))
    for (name, held) in [("fitted configurations", false), ("held out", true)] {
      let mine = fitPoints.filter { $0["held_out"] as? Bool == held }
      #expect(!mine.isEmpty)
      #expect(same(scatter[name]!.map(\.x), mine.map { $0["error"] as! Double }))
      #expect(same(scatter[name]!.map(\.y), mine.map { $0["predicted"] as! Double }))
    }
    let measured = try #require(
      chart(
        "scaling-0", "Test error against density, data fraction 0.1: measured (markers) and fitted (lines)"))
    #expect(measured.values.map(\.count).reduce(0, +) == fitPoints.count)

    // A screenshot for a person to look at.
    let shot = Self.artifacts + "/report.png"
    let r = try Browser.run(
      ["--hide-scrollbars", "--window-size=1280,4200", "--screenshot=\(shot)", "file://" + page], in: work)
    #expect(r.status == 0 && FileManager.default.fileExists(atPath: shot))
    print("report page: \(page)\nscreenshot: \(shot)")
  }
}
