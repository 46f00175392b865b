import Engine
import Foundation
import NN

/// Progressive resizing (Composer `progressive_resizing`): training images are shrunk by a
/// scale that grows over the run. At fraction `t` of the run,
/// `f = 0` before `delay_fraction`, else `min((t - delay) / (1 - finetune - delay), 1)`, and
/// `s = initial_scale + (1 - initial_scale) f`; the width is rounded to a multiple of
/// `size_increment` (`W' = round(W s / inc) inc`, ties to even) and `s' = W' / W` (no change
/// once `s' >= 1`). `resize`: nearest-neighbour to `floor(H s') x floor(W s')`, source pixel
/// `floor(i / s')` (PyTorch's `interpolate(scale_factor=s', mode='nearest')`); `crop`: one
/// random `int(s' H) x int(s' W)` window for the whole batch. Evaluation sees full-size images.
/// Needs a model that takes any image size (the ResNets).
public final class ProgressiveResizing: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "progressive_resizing"
  public static let summary = "train on images scaled from initial_scale up to full size, full size at the end"
  public static let parameters = [
    AlgorithmParameter("mode", "resize", "resize (nearest neighbour) or crop (one random window per batch)"),
    AlgorithmParameter("initial_scale", "0.5", "scale at the start, in (0, 1]"),
    AlgorithmParameter("finetune_fraction", "0.2", "final fraction of the run at full size"),
    AlgorithmParameter("delay_fraction", "0.5", "initial fraction of the run at initial_scale"),
    AlgorithmParameter("size_increment", "4", "widths are multiples of this, at least 1"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    let finetune = try p.fraction("finetune_fraction")
    let delay = try p.fraction("delay_fraction")
    guard delay + finetune <= 1 else {
      throw EngineError("--algorithms progressive_resizing: delay_fraction + finetune_fraction must be at most 1")
    }
    return ProgressiveResizing(
      crop: try p.choice("mode", ["resize", "crop"]) == "crop",
      initialScale: try p.double("initial_scale", "in (0, 1]") { $0 > 0 && $0 <= 1 }, finetune: finetune,
      delay: delay,
      increment: Int(try p.double("size_increment", "a whole number >= 1") { $0 >= 1 && $0 == $0.rounded() }))
  }

  public let name = ProgressiveResizing.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .batchLoaded]
  public let crop: Bool
  public let initialScale, finetune, delay: Double
  public let increment: Int
  private let buffer = Tensor<Float>(zeros: [0])
  public init(crop: Bool, initialScale: Double, finetune: Double, delay: Double, increment: Int) {
    (self.crop, self.initialScale, self.finetune, self.delay, self.increment) =
      (crop, initialScale, finetune, delay, increment)
  }

  /// The function form of the schedule: the scale `s'` at fraction `t` for images `width`
  /// wide (1: full size).
  public static func scale(
    at t: Double, width: Int, initialScale: Double, finetune: Double, delay: Double, increment: Int
  ) -> Double {
    let ramp = 1 - finetune - delay
    let f = t < delay ? 0 : (ramp <= 0 ? 1 : min((t - delay) / ramp, 1))
    let s = initialScale + (1 - initialScale) * f
    let w = (Double(width) * s / Double(increment)).rounded(.toNearestOrEven) * Double(increment)
    return min(1, w / Double(width))
  }

  /// Nearest-neighbour resize of `[N, C, H, W]` by `s`: `[N, C, floor(H s), floor(W s)]`,
  /// output pixel `(i, j)` from input `(floor(i / s), floor(j / s))` (clamped).
  public static func resize(_ x: Tensor<Float>, scale s: Double, into y: Tensor<Float>) {
    let (h, w) = (x.shape[2], x.shape[3])
    let rows = (0..<max(1, Int(Double(h) * s))).map { min(h - 1, Int(Double($0) / s)) }
    let cols = (0..<max(1, Int(Double(w) * s))).map { min(w - 1, Int(Double($0) / s)) }
    gatherPixels(x, rows: rows, cols: cols, into: y)
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    _ = try requireAnyImageSize(network, for: name)
    return network
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    guard event == .batchLoaded else { return }
    let (h, w) = (state.input.shape[2], state.input.shape[3])
    let t = Double(state.step) / Double(max(state.lastStep, 1))
    let s = Self.scale(
      at: t, width: w, initialScale: initialScale, finetune: finetune, delay: delay, increment: increment)
    guard s < 1 else { return }
    if crop {
      let (ch, cw) = (max(1, Int(s * Double(h))), max(1, Int(s * Double(w))))
      var r = state.random(for: self)
      let top = r.int(below: h - ch + 1)
      let left = r.int(below: w - cw + 1)
      gatherPixels(state.input, rows: Array(top..<top + ch), cols: Array(left..<left + cw), into: buffer)
    } else {
      Self.resize(state.input, scale: s, into: buffer)
    }
    state.input = buffer
  }
}
