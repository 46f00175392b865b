import Engine
import Foundation
import NN

/// CutOut (DeVries & Taylor 2017; Composer `cutout`): for every example, `num_holes`
/// squares of side `length * min(H, W)` (clipped at the border) are set to 0, each centred
/// at a uniformly drawn pixel. Images `[N, C, H, W]` (or a feature-major batch of them);
/// the squares come from the callback's random stream of the step.
public final class CutOut: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "cutout"
  public static let summary = "num_holes squares of side length * min(H, W) per image set to 0"
  public static let parameters = [
    AlgorithmParameter("num_holes", "1", "squares per image, at least 1"),
    AlgorithmParameter("length", "0.5", "side as a fraction of the image's smaller side, in (0, 1]"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    CutOut(
      holes: Int(try p.double("num_holes", "a whole number of at least 1") { $0 >= 1 && $0 == $0.rounded() }),
      length: try p.double("length", "in (0, 1]") { $0 > 0 && $0 <= 1 })
  }

  public let name = CutOut.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .batchLoaded]
  public let holes: Int
  public let length: Double
  private var image: (c: Int, h: Int, w: Int) = (0, 0, 0)
  private let buffer = Tensor<Float>(zeros: [0])
  public init(holes: Int, length: Double) { (self.holes, self.length) = (holes, length) }

  /// A model whose input is not an image (C x H x W with H, W > 1) is refused.
  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    image = try imageShape(of: network, for: Self.algorithmName)
    return network
  }

  /// The function form: zeroes, in example `n` of `x`, the square `[top, top + side) x
  /// [left, left + side)` clipped to the image, in every channel.
  public static func cut(
    _ x: Tensor<Float>, example n: Int, batch: Int, image: (c: Int, h: Int, w: Int), top: Int, left: Int,
    side: Int
  ) {
    let (c, h, w) = image
    let ld = x.layout.featureMajorBatch != nil ? x.shape[1] : 0
    for ch in 0..<c {
      for i in max(0, top)..<min(h, top + side) {
        for j in max(0, left)..<min(w, left + side) {
          let f = (ch * h + i) * w + j
          if ld > 0 { x.data[f * ld + n] = 0 } else { x.data[n * c * h * w + f] = 0 }
        }
      }
    }
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    guard event == .batchLoaded else { return }
    var r = state.random(for: self)
    let n = state.labels.count
    let side = max(1, Int((length * Double(min(image.h, image.w))).rounded()))
    buffer.copy(from: state.input)  // the loader's own buffer stays as loaded
    for e in 0..<n {
      for _ in 0..<holes {
        let cy = r.int(below: image.h)
        let cx = r.int(below: image.w)
        Self.cut(
          buffer, example: e, batch: n, image: image, top: cy - side / 2, left: cx - side / 2, side: side)
      }
    }
    state.input = buffer
  }
}
