/// Reports: `lth report`'s self-contained HTML page and `lth results --csv`.
///
/// Owns a small SVG toolkit (``Scale`` maps data to pixels and picks ticks, ``Chart`` draws
/// axes, lines with markers, mean ± std bands, error bars, reference lines and a legend),
/// the page (``Report``: one section per experiment kind, built from the same result
/// objects `lth results --json` prints) and the tidy CSV (``TidyCSV``). Nothing here reads
/// a network or fetches a file: the page is one HTML file with inline CSS and SVG and no
/// JavaScript.
import Foundation

/// A map from data values to pixels along one axis, and its ticks.
///
/// Linear: `px = r0 + (v - lo) / (hi - lo) * (r1 - r0)`; log: the same on `log10 v`. A
/// reversed axis (density falling from left to right, as in the papers) is the same map
/// with `r0 > r1`.
public struct Scale: Sendable, Equatable {
  public enum Kind: String, Sendable { case linear, log }
  public var kind: Kind
  public var lo: Double
  public var hi: Double
  /// Pixels at `lo` and at `hi`.
  public var r0: Double
  public var r1: Double

  public init(_ kind: Kind, lo: Double, hi: Double, r0: Double, r1: Double) {
    precondition(
      hi > lo && (kind == .linear || lo > 0), "scale domain \(lo)...\(hi) is empty or not positive")
    (self.kind, self.lo, self.hi, self.r0, self.r1) = (kind, lo, hi, r0, r1)
  }

  func f(_ v: Double) -> Double { kind == .log ? log10(v) : v }

  /// Pixel of a data value.
  public func callAsFunction(_ v: Double) -> Double {
    r0 + (f(v) - f(lo)) / (f(hi) - f(lo)) * (r1 - r0)
  }

  /// Data value of a pixel.
  public func invert(_ px: Double) -> Double {
    let t = f(lo) + (px - r0) / (r1 - r0) * (f(hi) - f(lo))
    return kind == .log ? pow(10, t) : t
  }

  /// Tick values inside the domain, ascending.
  ///
  /// Linear: multiples of a step of 1, 2 or 5 times a power of ten, about `target` of them.
  /// Log: the powers of ten; over less than 2.5 decades also 2x and 5x; under one decade
  /// every integer multiple (1x ... 9x); and where that leaves fewer than two (a range
  /// inside one decade such as 12%-16%), the linear ticks. Every axis gets at least two.
  public func ticks(target: Int = 5) -> [Double] {
    let eps = 1e-9
    func linear() -> [Double] {
      let step = Self.niceStep((hi - lo) / Double(max(1, target)))
      var out: [Double] = []
      var k = (lo / step - eps).rounded(.up)
      while k * step <= hi + eps * step {
        // k * step, rounded to 12 significant digits (0.6, not 0.6000000000000001).
        let v = Double(String(format: "%.12g", k * step))!
        out.append(abs(v) < step * eps ? 0 : v)
        k += 1
      }
      return out
    }
    switch kind {
    case .linear:
      return linear()
    case .log:
      // A range inside one decade may hold fewer than two of 1..9 x 10^k (12%-16% holds
      // none): evenly spaced ticks then, drawn at their log positions.
      let out = logTicks(eps)
      return out.count >= 2 ? out : linear().filter { $0 > 0 }
    }
  }

  /// The step to label `ticks` with: their spacing when evenly spaced (every linear axis,
  /// and a log axis inside one decade), nil for 1-2-5 ticks across decades.
  public static func labelStep(_ ticks: [Double]) -> Double? {
    guard ticks.count > 1 else { return nil }
    let d = ticks[1] - ticks[0]
    let even = zip(ticks.dropFirst(), ticks).allSatisfy { abs(($0 - $1) - d) <= 1e-6 * abs(d) }
    return even ? d : nil
  }

  private func logTicks(_ eps: Double) -> [Double] {
    switch kind {
    case .linear: return []
    case .log:
      let decades = log10(hi / lo)
      let multiples: [Double] =
        decades >= 2.5 ? [1] : decades >= 0.9 ? [1, 2, 5] : Array(1...9).map(Double.init)
      var out: [Double] = []
      for e in Int(floor(log10(lo)))...Int(ceil(log10(hi))) {
        for m in multiples {
          let v = m * pow(10, Double(e))
          if v >= lo * (1 - eps) && v <= hi * (1 + eps) { out.append(v) }
        }
      }
      return out
    }
  }

  /// 1, 2 or 5 times a power of ten, the nearest at or above `raw`'s scale.
  public static func niceStep(_ raw: Double) -> Double {
    guard raw > 0, raw.isFinite else { return 1 }
    let mag = pow(10, floor(log10(raw)))
    let n = raw / mag
    return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag
  }

  /// A linear domain around `[lo, hi]` that starts and ends on ticks (a single value gets
  /// a width of 10% of itself, or 1 around zero).
  public static func niceLinear(_ lo: Double, _ hi: Double, target: Int = 5) -> (Double, Double) {
    var (a, b) = (lo, hi)
    if b - a < 1e-12 * max(1, abs(a)) {
      let pad = a == 0 ? 1 : abs(a) * 0.1
      (a, b) = (a - pad, b + pad)
    }
    let step = niceStep((b - a) / Double(target))
    return ((a / step).rounded(.down) * step, (b / step).rounded(.up) * step)
  }

  /// A log domain that holds `[lo, hi]` with a margin of `pad` (a factor) on both sides.
  public static func paddedLog(_ lo: Double, _ hi: Double, pad: Double = 1.15) -> (Double, Double) {
    lo == hi ? (lo / 2, hi * 2) : (lo / pad, hi * pad)
  }
}

/// How tick labels and tooltips print values.
public enum TickFormat: Sendable {
  /// A fraction shown as percent (0.125 -> "12.5%").
  case percent
  /// A plain number.
  case number

  /// Text for `v` among ticks `step` apart (nil: as many digits as `v` needs, up to 4).
  public func text(_ v: Double, step: Double? = nil) -> String {
    let x = self == .percent ? v * 100 : v
    let s = step.map { self == .percent ? $0 * 100 : $0 }
    let digits: Int
    if let s, s > 0 {
      // The fewest decimals that write the step exactly (0.25 -> 2, 0.2 -> 1, 5 -> 0).
      digits =
        (0...6).first { d in
          let v = s * pow(10, Double(d))
          return abs(v - v.rounded()) < 1e-6 * max(1, v)
        } ?? 6
    } else {
      let a = abs(x)
      digits = a == 0 || a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : min(6, 2 - Int(floor(log10(a))))
    }
    var t = String(format: "%.\(digits)f", x)
    if t.contains(".") {
      while t.hasSuffix("0") { t.removeLast() }
      if t.hasSuffix(".") { t.removeLast() }
    }
    if t == "-0" { t = "0" }
    return self == .percent ? t + "%" : t
  }
}

/// Text safe inside HTML or SVG content and in double- or single-quoted attributes.
public func escapeMarkup(_ s: String) -> String {
  var out = ""
  out.reserveCapacity(s.count)
  for c in s.unicodeScalars {
    switch c {
    case "&": out += "&amp;"
    case "<": out += "&lt;"
    case ">": out += "&gt;"
    case "\"": out += "&quot;"
    case "'": out += "&#39;"
    default:
      // Control characters other than tab and newline are not allowed in XML at all.
      if c.value < 0x20 && c != "\t" && c != "\n" { out += "\u{FFFD}" } else { out.unicodeScalars.append(c) }
    }
  }
  return out
}

/// The Okabe-Ito palette (distinguishable with the common colour-vision deficiencies),
/// without its yellow, which is unreadable on white.
public enum Palette {
  public static let colors = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
  public static func color(_ i: Int) -> String { colors[((i % colors.count) + colors.count) % colors.count] }
  /// Reference lines (the dense network, IMP beside PaI).
  public static let reference = "#555555"
}

/// One plotted value; `spread` is the half-height of its band or error bar (a standard
/// deviation), `note` the end of its tooltip.
public struct Point: Sendable {
  public var x: Double
  public var y: Double
  public var spread: Double?
  public var note: String
  /// Drawn hollow: fewer replicates than the run has, or otherwise unfinished.
  public var partial: Bool
  public init(x: Double, y: Double, spread: Double? = nil, note: String = "", partial: Bool = false) {
    (self.x, self.y, self.spread, self.note, self.partial) = (x, y, spread, note, partial)
  }
}

/// A line with markers; `band` shades y ± spread, `errorBars` draws it as bars. Without
/// `line` it is a scatter; without `markers` a curve (a fitted law).
public struct Series: Sendable {
  public var name: String
  public var color: String
  public var dashed: Bool
  public var band: Bool
  public var errorBars: Bool
  public var line: Bool
  public var markers: Bool
  public var points: [Point]
  public init(
    _ name: String, color: String, dashed: Bool = false, band: Bool = true, errorBars: Bool = false,
    line: Bool = true, markers: Bool = true, points: [Point]
  ) {
    (self.name, self.color, self.dashed, self.band, self.errorBars, self.points) =
      (name, color, dashed, band, errorBars, points)
    (self.line, self.markers) = (line, markers)
  }
}

/// An axis: its label, scale kind, direction and tick format.
public struct Axis: Sendable {
  public var label: String
  public var kind: Scale.Kind
  public var reversed: Bool
  public var format: TickFormat
  /// A fixed domain (nil: fitted to the data).
  public var domain: (Double, Double)?
  public init(
    _ label: String, kind: Scale.Kind = .linear, reversed: Bool = false, format: TickFormat = .number,
    domain: (Double, Double)? = nil
  ) {
    (self.label, self.kind, self.reversed, self.format, self.domain) = (label, kind, reversed, format, domain)
  }
  /// Density as in the papers: log scale, from 100% on the left down to the sparsest.
  public static func density(_ label: String = "density (fraction of weights left)") -> Axis {
    Axis(label, kind: .log, reversed: true, format: .percent)
  }
}

/// A horizontal reference line at `y` (the dense network's accuracy).
public struct Reference: Sendable {
  public var y: Double
  public var label: String
  public init(y: Double, label: String) { (self.y, self.label) = (y, label) }
}

/// One SVG chart.
///
/// The `<svg>` element carries each axis's map as `data-x-scale`/`data-x-domain`/
/// `data-x-range` (and `y`), each series is a `<g class="series" data-series=NAME>` and
/// each marker a `<circle class="point" data-x data-y>` with the exact value (shortest
/// round-trip text), so a browser test can check both the numbers and where they landed.
public struct Chart: Sendable {
  public var title: String
  public var x: Axis
  public var y: Axis
  public var series: [Series]
  public var references: [Reference]
  public var width: Double
  public var height: Double
  public var legend: Bool

  public init(
    title: String, x: Axis, y: Axis, series: [Series], references: [Reference] = [],
    width: Double = 820, height: Double = 360, legend: Bool = true
  ) {
    (self.title, self.x, self.y, self.series, self.references) = (title, x, y, series, references)
    (self.width, self.height, self.legend) = (width, height, legend)
  }

  /// Whether the chart has anything to draw.
  public var isEmpty: Bool { series.allSatisfy { $0.points.isEmpty } }

  static let legendWidth = 190.0

  /// The plot rectangle: left, top, right, bottom.
  var frame: (l: Double, t: Double, r: Double, b: Double) {
    let small = width < 400
    return (
      small ? 44 : 64, small ? 22 : 30, width - (legend ? Self.legendWidth : 0) - (small ? 8 : 16),
      height - (small ? 30 : 46)
    )
  }

  /// The scales fitted to the data (and the reference lines).
  public func scales() -> (x: Scale, y: Scale) {
    let pts = series.flatMap(\.points)
    let f = frame
    func fit(_ axis: Axis, _ values: [Double], _ lo: Double, _ hi: Double, _ a: Double, _ b: Double) -> Scale
    {
      var (dlo, dhi): (Double, Double)
      if let d = axis.domain {
        (dlo, dhi) = d
      } else {
        let v = values.filter { $0.isFinite && (axis.kind == .linear || $0 > 0) }
        let (mn, mx) = (v.min() ?? lo, v.max() ?? hi)
        (dlo, dhi) = axis.kind == .log ? Scale.paddedLog(mn, mx) : Scale.niceLinear(mn, mx)
      }
      return axis.reversed
        ? Scale(axis.kind, lo: dlo, hi: dhi, r0: b, r1: a) : Scale(axis.kind, lo: dlo, hi: dhi, r0: a, r1: b)
    }
    let xs = pts.map(\.x)
    var ys = pts.flatMap { p in [p.y, p.y + (p.spread ?? 0), p.y - (p.spread ?? 0)] }
    ys += references.map(\.y)
    let xScale = fit(x, xs, 0.1, 1, f.l, f.r)
    // y grows upwards: pixel f.b at lo.
    return (xScale, fit(y, ys, 0, 1, f.b, f.t))
  }

  static func n(_ v: Double) -> String { String(format: "%.2f", v) }

  /// The chart as an `<svg>` element.
  public func svg() -> String {
    let (sx, sy) = scales()
    let f = frame
    let small = width < 400
    let e = escapeMarkup
    var o = ""
    o +=
      "<svg class=\"chart\" viewBox=\"0 0 \(Self.n(width)) \(Self.n(height))\" width=\"\(Self.n(width))\" height=\"\(Self.n(height))\" role=\"img\" aria-label=\"\(e(title))\""
    for (name, s) in [("x", sx), ("y", sy)] {
      o +=
        " data-\(name)-scale=\"\(s.kind.rawValue)\" data-\(name)-domain=\"\(s.lo) \(s.hi)\" data-\(name)-range=\"\(s.r0) \(s.r1)\""
    }
    o += ">\n<title>\(e(title))</title>\n"
    o += "<text class=\"chart-title\" x=\"\(Self.n(f.l))\" y=\"\(small ? 14 : 18)\">\(e(title))</text>\n"
    // Grid and ticks.
    let xt = sx.ticks(target: small ? 3 : 6)
    let yt = sy.ticks(target: small ? 3 : 5)
    let xStep = Scale.labelStep(xt)
    let yStep = Scale.labelStep(yt)
    o += "<g class=\"axis x\">"
    // Every tick gets a grid line; a label closer than its width to one already drawn is
    // left out (the crowded end of a log axis). Powers of ten are labelled first, then 2x
    // and 5x, then the rest.
    var labelled: [Double] = []
    let minGap = small ? 30.0 : 40.0
    func rank(_ v: Double, _ s: Scale) -> Int {
      guard s.kind == .log else { return 0 }
      let m = (v / pow(10, floor(log10(v) + 1e-9))).rounded()
      return m == 1 ? 0 : m == 2 || m == 5 ? 1 : 2
    }
    for v in xt.sorted(by: { (rank($0, sx), $0) < (rank($1, sx), $1) }) {
      let px = Self.n(sx(v))
      o += "<line class=\"grid\" x1=\"\(px)\" x2=\"\(px)\" y1=\"\(Self.n(f.t))\" y2=\"\(Self.n(f.b))\"/>"
      guard labelled.allSatisfy({ abs($0 - sx(v)) >= minGap }) else { continue }
      labelled.append(sx(v))
      let label = x.format.text(v, step: xStep)
      o +=
        "<text class=\"tick\" x=\"\(px)\" y=\"\(Self.n(f.b + 14))\" text-anchor=\"middle\">\(e(label))</text>"
    }
    o +=
      "<line class=\"frame\" x1=\"\(Self.n(f.l))\" x2=\"\(Self.n(f.r))\" y1=\"\(Self.n(f.b))\" y2=\"\(Self.n(f.b))\"/>"
    o +=
      "<text class=\"axis-label\" x=\"\(Self.n((f.l + f.r) / 2))\" y=\"\(Self.n(height - 6))\" text-anchor=\"middle\">\(e(x.label))</text></g>\n"
    o += "<g class=\"axis y\">"
    var labelledY: [Double] = []
    for v in yt.sorted(by: { (rank($0, sy), $0) < (rank($1, sy), $1) }) {
      let py = Self.n(sy(v))
      o += "<line class=\"grid\" x1=\"\(Self.n(f.l))\" x2=\"\(Self.n(f.r))\" y1=\"\(py)\" y2=\"\(py)\"/>"
      guard labelledY.allSatisfy({ abs($0 - sy(v)) >= 13 }) else { continue }
      labelledY.append(sy(v))
      let label = y.format.text(v, step: yStep)
      o +=
        "<text class=\"tick\" x=\"\(Self.n(f.l - 5))\" y=\"\(py)\" dy=\"0.32em\" text-anchor=\"end\">\(e(label))</text>"
    }
    o +=
      "<line class=\"frame\" x1=\"\(Self.n(f.l))\" x2=\"\(Self.n(f.l))\" y1=\"\(Self.n(f.t))\" y2=\"\(Self.n(f.b))\"/>"
    let cy = (f.t + f.b) / 2
    o +=
      "<text class=\"axis-label\" x=\"12\" y=\"\(Self.n(cy))\" transform=\"rotate(-90 12 \(Self.n(cy)))\" text-anchor=\"middle\">\(e(y.label))</text></g>\n"
    for r in references {
      let py = Self.n(sy(r.y))
      o +=
        "<g class=\"reference\" data-y=\"\(r.y)\"><line x1=\"\(Self.n(f.l))\" x2=\"\(Self.n(f.r))\" y1=\"\(py)\" y2=\"\(py)\" stroke=\"\(Palette.reference)\" stroke-dasharray=\"2 3\"/>"
      o +=
        "<text class=\"ref-label\" x=\"\(Self.n(f.r - 4))\" y=\"\(py)\" dy=\"-0.35em\" text-anchor=\"end\">\(e(r.label))</text><title>\(e(r.label)): \(e(y.format.text(r.y)))</title></g>\n"
    }
    for s in series where !s.points.isEmpty {
      o += "<g class=\"series\" data-series=\"\(e(s.name))\">"
      let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
      if s.band, s.points.contains(where: { ($0.spread ?? 0) > 0 }) {
        let up = s.points.map { "\(Self.n(sx($0.x))),\(Self.n(sy($0.y + ($0.spread ?? 0))))" }
        let down = s.points.reversed().map { "\(Self.n(sx($0.x))),\(Self.n(sy($0.y - ($0.spread ?? 0))))" }
        o += "<path class=\"band\" d=\"M\((up + down).joined(separator: "L"))Z\" fill=\"\(s.color)\"/>"
      }
      if s.line, s.points.count > 1 {
        let d = s.points.map { "\(Self.n(sx($0.x))),\(Self.n(sy($0.y)))" }.joined(separator: "L")
        o += "<path class=\"line\" d=\"M\(d)\" stroke=\"\(s.color)\"\(dash)/>"
      }
      for p in s.points where s.markers {
        let (px, py) = (Self.n(sx(p.x)), Self.n(sy(p.y)))
        if s.errorBars, let sp = p.spread, sp > 0 {
          o +=
            "<line class=\"errorbar\" x1=\"\(px)\" x2=\"\(px)\" y1=\"\(Self.n(sy(p.y - sp)))\" y2=\"\(Self.n(sy(p.y + sp)))\" stroke=\"\(s.color)\"/>"
        }
        var tip = "\(s.name): \(x.label) \(x.format.text(p.x)), \(y.label) \(y.format.text(p.y))"
        if let sp = p.spread { tip += " ± \(y.format.text(sp))" }
        if !p.note.isEmpty { tip += " " + p.note }
        let fill = p.partial ? "#ffffff" : s.color
        o +=
          "<circle class=\"point\(p.partial ? " partial" : "")\" cx=\"\(px)\" cy=\"\(py)\" r=\"\(small ? 2.5 : 3.5)\" fill=\"\(fill)\" stroke=\"\(s.color)\" data-x=\"\(p.x)\" data-y=\"\(p.y)\"\(p.spread.map { " data-spread=\"\($0)\"" } ?? "")><title>\(e(tip))</title></circle>"
      }
      o += "</g>\n"
    }
    if legend {
      // One row per drawn series, then one per reference line: (name, line attributes, marker colour).
      var rows: [(String, String?, String?)] = series.filter { !$0.points.isEmpty }.map { s in
        (
          s.name,
          s.line
            ? "stroke=\"\(s.color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")" : nil,
          s.markers ? s.color : nil
        )
      }
      rows += references.map { ($0.label, "stroke=\"\(Palette.reference)\" stroke-dasharray=\"2 3\"", nil) }
      o += "<g class=\"legend\">"
      for (i, (name, stroke, marker)) in rows.enumerated() {
        let (lx, ly) = (f.r + 14, f.t + 8 + Double(i) * 18)
        if let stroke {
          o +=
            "<line x1=\"\(Self.n(lx))\" x2=\"\(Self.n(lx + 24))\" y1=\"\(Self.n(ly))\" y2=\"\(Self.n(ly))\" \(stroke)/>"
        }
        if let marker {
          o += "<circle cx=\"\(Self.n(lx + 12))\" cy=\"\(Self.n(ly))\" r=\"3\" fill=\"\(marker)\"/>"
        }
        o += "<text x=\"\(Self.n(lx + 30))\" y=\"\(Self.n(ly))\" dy=\"0.32em\">\(e(name))</text>"
      }
      o += "</g>\n"
    }
    o += "</svg>"
    return o
  }
}
