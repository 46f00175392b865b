import Engine
import Foundation
import NN

// Speed-up methods (MosaicML Composer's "algorithms"): each is a training callback built
// from a name and parameters, plus a pure-function form usable outside the trainer. One
// file per method, registered in ``Algorithms/all``; this file holds the registry and the
// `name:key=value;key=value,...` syntax of `--algorithms`.

/// One parameter of a method: its name (Composer's), default and what it means.
public struct AlgorithmParameter: Sendable {
  public var name: String
  public var defaultValue: String
  public var help: String
  public init(_ name: String, _ defaultValue: String, _ help: String) {
    (self.name, self.defaultValue, self.help) = (name, defaultValue, help)
  }
}

/// A speed-up method that `--algorithms` can name.
public protocol AlgorithmKind {
  /// Composer's name in snake case (`label_smoothing`).
  static var algorithmName: String { get }
  /// One sentence: what it does, with its formula.
  static var summary: String { get }
  static var parameters: [AlgorithmParameter] { get }
  /// The callback, from every parameter's value (defaults filled in); throws a one-line
  /// error for a value out of range.
  static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback
}

/// A method and its parameter values as `--algorithms` gives them, with the defaults filled
/// in: `label_smoothing:smoothing=0.1`. Its ``text`` is what the hyperparameters record.
public struct AlgorithmSpec: Equatable, Sendable {
  public var name: String
  public var values: [String: String]

  /// `name:key=value;key=value` with every parameter, in the method's order.
  public var text: String {
    guard let kind = Algorithms.kind(name) else { return name }
    let params = kind.parameters.map { "\($0.name)=\(values[$0.name] ?? $0.defaultValue)" }
    return params.isEmpty ? name : name + ":" + params.joined(separator: ";")
  }

  /// A numeric parameter; `check` says what values are allowed (one line when not).
  public func double(_ key: String, _ allowed: String = "", _ check: (Double) -> Bool = { $0.isFinite })
    throws
    -> Double
  {
    let text = values[key] ?? ""
    guard let v = Double(text), check(v) else {
      throw EngineError(
        "--algorithms \(name): \(key) must be \(allowed.isEmpty ? "a number" : allowed), got '\(text)'")
    }
    return v
  }

  /// A parameter from a closed set.
  public func choice(_ key: String, _ options: [String]) throws -> String {
    let v = values[key] ?? ""
    guard options.contains(v) else {
      throw EngineError(
        "--algorithms \(name): \(key) must be one of \(options.joined(separator: ", ")), got '\(v)'")
    }
    return v
  }

  /// A fraction of the run: `0.7dur` (Composer's) or `0.7`, in [0, 1].
  public func fraction(_ key: String) throws -> Double {
    var t = values[key] ?? ""
    if t.hasSuffix("dur") { t = String(t.dropLast(3)) }
    guard let v = Double(t), v >= 0, v <= 1 else {
      throw EngineError(
        "--algorithms \(name): \(key) must be a fraction of the run such as 0.7dur, got '\(values[key] ?? "")'"
      )
    }
    return v
  }

  /// A length in steps: `100`, `100ba` (Composer's batches) or `100it`.
  public func steps(_ key: String) throws -> Int {
    var t = values[key] ?? ""
    for suffix in ["ba", "it"] where t.hasSuffix(suffix) { t = String(t.dropLast(suffix.count)) }
    guard let v = Int(t), v >= 1 else {
      throw EngineError(
        "--algorithms \(name): \(key) must be a number of steps such as 1000ba, got '\(values[key] ?? "")'")
    }
    return v
  }
}

/// The registry of speed-up methods.
public enum Algorithms {
  public static var all: [any AlgorithmKind.Type] {
    [
      LabelSmoothing.self, MixUp.self, CutMix.self, CutOut.self, ColOut.self, EMA.self, SWA.self,
      SAM.self, ProgressiveResizing.self, BlurPool.self, StochasticDepth.self, LayerFreezing.self,
      SelectiveBackprop.self, GradientClipping.self, GhostBatchNorm.self, SqueezeExcite.self,
      WeightStandardization.self,
    ]
  }
  public static var names: [String] { all.map { $0.algorithmName } }
  public static func kind(_ name: String) -> (any AlgorithmKind.Type)? {
    all.first { $0.algorithmName == name }
  }

  /// Parses `name[:key=value;key=value],...`: known names and parameters only, each method
  /// once, defaults filled in, in the order given.
  public static func parse(_ text: String) throws -> [AlgorithmSpec] {
    var out: [AlgorithmSpec] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: true) {
      let pieces = part.split(separator: ":", maxSplits: 1)
      let name = String(pieces[0]).trimmingCharacters(in: .whitespaces)
      guard let kind = kind(name) else {
        throw EngineError("--algorithms: unknown method '\(name)'; known: \(names.joined(separator: ", "))")
      }
      guard !out.contains(where: { $0.name == name }) else {
        throw EngineError("--algorithms: \(name) is given twice")
      }
      var values = Dictionary(uniqueKeysWithValues: kind.parameters.map { ($0.name, $0.defaultValue) })
      if pieces.count == 2 {
        for kv in pieces[1].split(separator: ";", omittingEmptySubsequences: true) {
          let e = kv.split(separator: "=", maxSplits: 1).map {
            String($0).trimmingCharacters(in: .whitespaces)
          }
          guard e.count == 2, values[e[0]] != nil else {
            throw EngineError(
              "--algorithms \(name): unknown parameter '\(kv)'; it takes \(kind.parameters.map(\.name).joined(separator: ", "))"
            )
          }
          values[e[0]] = e[1]
        }
      }
      let spec = AlgorithmSpec(name: name, values: values)
      _ = try kind.make(spec)  // every value checked now, before any training
      out.append(spec)
    }
    return out
  }

  /// The callbacks of recorded specs (``AlgorithmSpec/text`` values).
  public static func callbacks(_ texts: [String]) throws -> [any TrainingCallback] {
    try parse(texts.joined(separator: ",")).map { try kind($0.name)!.make($0) }
  }
}

/// The image shape `(C, H, W)` of a network's input, for methods that cut or paste
/// regions (CutOut, CutMix); any other input is refused in one line.
func imageShape(of network: Network<Float>, for method: String) throws -> (c: Int, h: Int, w: Int) {
  let s = network.inputShape
  guard s.count == 3, s[1] > 1, s[2] > 1 else {
    throw EngineError("--algorithms \(method) needs image input (C x H x W); this model's input is \(s)")
  }
  return (s[0], s[1], s[2])
}

/// What MixUp and CutMix share: the batch as loaded and a copy for the mixed one (the
/// loader keeps its own buffer), the permuted labels, and the loss against
/// `weight onehot(y) + (1 - weight) onehot(y[perm])` on `afterLoss`.
final class LabelMixture {
  let original = Tensor<Float>(zeros: [0])
  let mixed = Tensor<Float>(zeros: [0])
  private let targets = Tensor<Float>(zeros: [0])
  private var weight: Float = 1
  private var permuted: [Int32] = []

  /// On `batchLoaded`: copies the batch into ``original`` and ``mixed`` (feature-major
  /// padding lanes stay zero), remembers the permuted labels, and hands ``mixed`` to the
  /// trainer; the caller then mixes into it.
  func begin(_ state: TrainingState, perm: [Int]) {
    original.copy(from: state.input)
    mixed.copy(from: original)
    state.input = mixed
    permuted = perm.map { state.labels[$0] }
  }

  /// On `afterLoss`: the loss and its gradient against the mixed targets.
  func loss(_ state: TrainingState, weight: Float) {
    SoftCrossEntropy.targets(
      labels: state.labels, other: permuted, weight: weight, classes: state.logits.shape[1], into: targets)
    state.loss = SoftCrossEntropy.loss(logits: state.logits, targets: targets, dLogits: state.dLogits)
  }
}

/// Softmax cross-entropy against soft targets (label smoothing, MixUp, CutMix), the
/// function form those methods share: for logits `z[n, k]` and targets `q[n, k]` (rows
/// summing to 1), `L = (1/N) sum_n sum_k q[n,k] (logsumexp(z[n]) - z[n,k])` and
/// `dL/dz[n,k] = (softmax(z[n])[k] - q[n,k]) / N`.
public enum SoftCrossEntropy {
  /// The mean loss; writes the gradient into `dLogits` (resized to `[N, K]`).
  public static func loss(logits: Tensor<Float>, targets: Tensor<Float>, dLogits: Tensor<Float>) -> Double {
    let (n, k) = (logits.shape[0], logits.shape[1])
    dLogits.resize([n, k])
    var total = 0.0
    for i in 0..<n {
      let z = logits.data + i * k
      let q = targets.data + i * k
      let g = dLogits.data + i * k
      let lse = logSumExp(z, k)
      for j in 0..<k {
        total += Double(q[j]) * (lse - Double(z[j]))
        g[j] = Float((Foundation.exp(Double(z[j]) - lse) - Double(q[j])) / Double(n))
      }
    }
    return total / Double(n)
  }

  /// `log sum_j exp(z[j])` of one row of `k` logits, shifted by its maximum.
  static func logSumExp(_ z: UnsafeMutablePointer<Float>, _ k: Int) -> Double {
    var mx = z[0]
    for j in 1..<k where z[j] > mx { mx = z[j] }
    var sum = 0.0
    for j in 0..<k { sum += Foundation.exp(Double(z[j] - mx)) }
    return Double(mx) + Foundation.log(sum)
  }

  /// One-hot rows of `labels` mixed: `weight * onehot(labels) + (1 - weight) * onehot(other)`
  /// (`other` nil: one-hot of `labels`), then smoothed: `(1 - s) q + s / K`.
  public static func targets(
    labels: [Int32], other: [Int32]? = nil, weight: Float = 1, classes k: Int, smoothing s: Float = 0,
    into q: Tensor<Float>
  ) {
    q.resize([labels.count, k])
    for i in 0..<labels.count {
      let row = q.data + i * k
      for j in 0..<k { row[j] = s / Float(k) }
      row[Int(labels[i])] += (1 - s) * weight
      if let o = other {
        row[Int(o[i])] += (1 - s) * (1 - weight)
      } else {
        row[Int(labels[i])] += (1 - s) * (1 - weight)
      }
    }
  }
}

/// A surgery that changes nothing in a model is a warning, not an error: one line on
/// standard error, and training goes on.
func warnChangesNothing(_ method: String, _ why: String) {
  Algorithms.changedNothing?.value = true
  if Algorithms.silent { return }
  FileHandle.standardError.write(Data("warning: --algorithms \(method) changes nothing: \(why)\n".utf8))
}

/// A yes/no parameter (`true`/`false`).
extension AlgorithmSpec {
  public func bool(_ key: String) throws -> Bool { try choice(key, ["true", "false"]) == "true" }
}

/// Refuses, in one line, a model whose classifier needs one fixed image size: methods
/// that shrink the images (progressive resizing, ColOut) need global pooling before it.
func requireAnyImageSize(_ network: Network<Float>, for method: String) throws -> (c: Int, h: Int, w: Int) {
  let image = try imageShape(of: network, for: method)
  guard network.acceptsAnyImageSize else {
    throw EngineError(
      "--algorithms \(method) needs a model that takes any image size (global average pooling before its classifier); \(network.name) needs \(image.h)x\(image.w)"
    )
  }
  return image
}

/// Copies rows `rows` and columns `cols` of every image of `x` (`[N, C, H, W]`, NCHW) into
/// `y` (`[N, C, rows.count, cols.count]`); `perExample` (when non-nil) gives example `n`'s
/// own rows and columns instead. What ColOut and the crop of progressive resizing share.
func gatherPixels(
  _ x: Tensor<Float>, rows: [Int], cols: [Int], perExample: ((Int) -> ([Int], [Int]))? = nil,
  into y: Tensor<Float>
) {
  let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
  y.resize([n, c, rows.count, cols.count])
  let (oh, ow) = (rows.count, cols.count)
  for e in 0..<n {
    let (r, q) = perExample?(e) ?? (rows, cols)
    for ch in 0..<c {
      let src = x.data + (e * c + ch) * h * w
      let dst = y.data + (e * c + ch) * oh * ow
      for i in 0..<oh { for j in 0..<ow { dst[i * ow + j] = src[r[i] * w + q[j]] } }
    }
  }
}
