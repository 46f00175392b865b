import Engine
import NN

/// BlurPool (Zhang 2019; Composer `blurpool`), model surgery: every convolution with
/// stride > 1 and at least `min_channels` input channels blurs its input first
/// (``NN/Conv2d/preBlur``: the 3x3 binomial filter `[1,2,1]^T[1,2,1]/16`, stride 1), and
/// every max pool pools at stride 1 and then blurs at its stride (``NN/MaxPool2d/postBlur``).
/// Parameter names are unchanged (the filter has no parameters), so masks and checkpoints
/// carry over. A model without strided layers is refused; one whose strided layers all
/// fall under `min_channels` gets a warning.
public final class BlurPool: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "blurpool"
  public static let summary = "blur (3x3 binomial) before strided convolutions and after stride-1 max pooling"
  public static let parameters = [
    AlgorithmParameter("replace_convs", "true", "blur the input of strided convolutions"),
    AlgorithmParameter("replace_maxpools", "true", "max pool at stride 1, then blur at the pool's stride"),
    AlgorithmParameter("blur_first", "true", "blur before the convolution (the only form built)"),
    AlgorithmParameter("min_channels", "16", "only convolutions with at least this many input channels"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    guard try p.bool("blur_first") else {
      throw EngineError(
        "--algorithms blurpool: blur_first=false (a stride-1 convolution, then the blur: about 4x its cost) is not built; use true, Composer's default"
      )
    }
    let convs = try p.bool("replace_convs")
    let pools = try p.bool("replace_maxpools")
    guard convs || pools else {
      throw EngineError("--algorithms blurpool: replace_convs and replace_maxpools cannot both be false")
    }
    return BlurPool(
      convs: convs, pools: pools,
      minChannels: Int(try p.double("min_channels", "a whole number >= 1") { $0 >= 1 && $0 == $0.rounded() }))
  }

  public let name = BlurPool.algorithmName
  public let events: Set<TrainingEvent> = [.initialize]
  public let convs: Bool
  public let pools: Bool
  public let minChannels: Int
  public init(convs: Bool = true, pools: Bool = true, minChannels: Int = 16) {
    (self.convs, self.pools, self.minChannels) = (convs, pools, minChannels)
  }

  /// The function form: applies the surgery in place; returns how many strided layers the
  /// model has and how many now blur.
  @discardableResult
  public static func apply(
    to network: Network<Float>, convs: Bool = true, pools: Bool = true, minChannels: Int = 16
  ) -> (strided: Int, blurred: Int) {
    var (strided, blurred) = (0, 0)
    for (_, m) in network.body.namedModules() {
      if let c = m as? Conv2d<Float>, c.geometry.strideH > 1 || c.geometry.strideW > 1 {
        strided += 1
        if convs && c.geometry.inChannels >= minChannels {
          if c.preBlur == nil { c.preBlur = Blur2d(stride: 1) }
          blurred += 1
        }
      }
      if let p = m as? MaxPool2d<Float>, p.geometry.stride > 1 {
        strided += 1
        if pools {
          if p.postBlur == nil { p.postBlur = Blur2d(stride: p.geometry.stride) }
          blurred += 1
        }
      }
    }
    return (strided, blurred)
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    let r = Self.apply(to: network, convs: convs, pools: pools, minChannels: minChannels)
    guard r.strided > 0 else {
      throw EngineError("--algorithms blurpool needs strided convolutions or max pooling; \(network.name) has none")
    }
    if r.blurred == 0 {
      warnChangesNothing(
        name, "\(network.name)'s \(r.strided) strided layers have fewer than min_channels=\(minChannels) input channels")
    }
    return network
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {}
}
