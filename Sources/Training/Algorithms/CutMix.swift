import Engine
import Foundation
import NN

/// CutMix (Yun et al. 2019; Composer `cutmix`): one box per batch, of side ratio
/// `sqrt(1 - lambda)` with `lambda ~ Beta(alpha, alpha)` and a uniformly drawn centre
/// (clipped at the border), is pasted into every example from a permutation of the batch;
/// the targets mix in proportion to the areas, `l onehot(y) + (1 - l) onehot(y[perm])` with
/// `l = 1 - box area / image area`. Images `[N, C, H, W]` (or feature-major).
public final class CutMix: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "cutmix"
  public static let summary =
    "paste a box of area (1 - lambda) from a permuted example; targets mixed by area"
  public static let parameters = [
    AlgorithmParameter("alpha", "1.0", "Beta(alpha, alpha) concentration, positive")
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    CutMix(alpha: try p.double("alpha", "positive") { $0 > 0 && $0.isFinite })
  }

  public let name = CutMix.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .batchLoaded, .afterLoss]
  public let alpha: Double
  private var image: (c: Int, h: Int, w: Int) = (0, 0, 0)
  private let mixture = LabelMixture()
  private var kept: Float = 1
  public init(alpha: Double) { self.alpha = alpha }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    image = try imageShape(of: network, for: Self.algorithmName)
    return network
  }

  /// The box `(top, left, height, width)` for `lambda` and a centre, clipped to the image.
  public static func box(lambda: Double, h: Int, w: Int, cy: Int, cx: Int) -> (
    top: Int, left: Int, height: Int, width: Int
  ) {
    let ratio = (1 - lambda).squareRoot()
    let (bh, bw) = (Int(Double(h) * ratio), Int(Double(w) * ratio))
    let top = max(0, cy - bh / 2)
    let left = max(0, cx - bw / 2)
    return (top, left, min(h, cy + bh / 2) - top, min(w, cx + bw / 2) - left)
  }

  /// The function form: every example `i` of `x` gets the box from `source[perm[i]]`.
  public static func paste(
    _ x: Tensor<Float>, source: Tensor<Float>, n: Int, perm: [Int], image: (c: Int, h: Int, w: Int),
    box: (top: Int, left: Int, height: Int, width: Int)
  ) {
    let (c, h, w) = image
    let ld = x.layout.featureMajorBatch != nil ? x.shape[1] : 0
    for i in 0..<n {
      for ch in 0..<c {
        for r in box.top..<(box.top + box.height) {
          for q in box.left..<(box.left + box.width) {
            let f = (ch * h + r) * w + q
            if ld > 0 {
              x.data[f * ld + i] = source.data[f * ld + perm[i]]
            } else {
              x.data[i * c * h * w + f] = source.data[perm[i] * c * h * w + f]
            }
          }
        }
      }
    }
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    let n = state.labels.count
    if event == .batchLoaded {
      var r = state.random(for: self)
      let (lambda, perm) = MixUp.draw(alpha: alpha, n: n, &r)
      let b = Self.box(
        lambda: Double(lambda), h: image.h, w: image.w, cy: r.int(below: image.h), cx: r.int(below: image.w))
      kept = 1 - Float(b.height * b.width) / Float(image.h * image.w)
      mixture.begin(state, perm: perm)
      Self.paste(mixture.mixed, source: mixture.original, n: n, perm: perm, image: image, box: b)
    } else if event == .afterLoss {
      mixture.loss(state, weight: kept)
    }
  }
}
