import Engine
import NN

/// Squeeze-and-excitation (Hu et al. 2018; Composer `squeeze_excite`), surgery: every
/// convolution with at least `min_channels` input and output channels gets an SE block on
/// its output (``NN/SqueezeExcite2d``: `y = x sigmoid(W2 relu(W1 mean_HW(x)))`, `h` latent
/// channels: `latent_channels` itself when at least 1, else that fraction of the output
/// channels). Composer's default `min_channels` is 128, which no layer of this zoo (16-64
/// channels at most, before width scaling) reaches, so LotteryKit's is 16; its `latent_channels`
/// is 64, LotteryKit's 0.125 (Composer's `SqueezeExcite2d` default). The conv keeps its
/// parameter names; the block's weights are `<conv>.se.fc1.weight` and `<conv>.se.fc2.weight`,
/// initialised as PyTorch's linear layers from a stream keyed by the convolution's initial
/// weights (so by the run's seed), not prunable. A model without
/// convolutions is refused; one none of whose convolutions reach `min_channels` gets a warning.
public final class SqueezeExcite: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "squeeze_excite"
  public static let summary = "channel gates sigmoid(W2 relu(W1 mean(x))) after wide convolutions"
  public static let parameters = [
    AlgorithmParameter("latent_channels", "0.125", "latent width: a count (>= 1) or a fraction of the channels"),
    AlgorithmParameter("min_channels", "16", "only convolutions with at least this many input and output channels"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    SqueezeExcite(
      latent: try p.double("latent_channels", "positive") { $0 > 0 },
      minChannels: Int(try p.double("min_channels", "a whole number >= 1") { $0 >= 1 && $0 == $0.rounded() }))
  }

  public let name = SqueezeExcite.algorithmName
  public let events: Set<TrainingEvent> = [.initialize]
  public let latent: Double
  public let minChannels: Int
  public init(latent: Double, minChannels: Int) { (self.latent, self.minChannels) = (latent, minChannels) }

  /// The function form: adds the blocks (initialised, see the type's comment); returns the
  /// network with its new parameters (a new ``NN/Network`` over the same body) and how many
  /// blocks it has.
  public static func apply(to network: Network<Float>, latent: Double, minChannels: Int) -> (
    network: Network<Float>, blocks: Int, convolutions: Int
  ) {
    var blocks = 0
    for (_, c) in network.convolutions
    where min(c.geometry.inChannels, c.geometry.outChannels) >= minChannels && c.squeezeExcite == nil {
      let out = c.geometry.outChannels
      let se = SqueezeExcite2d<Float>(channels: out, latent: max(1, latent >= 1 ? Int(latent) : Int(latent * Double(out))))
      // PyTorch's default for a linear layer, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from a
      // stream keyed by the convolution's own (already initialised) weights: another seed,
      // other gates, and the network's other weights are those of a run without the blocks.
      var key: UInt64 = 0xcbf2_9ce4_8422_2325
      for v in c.weight.value.array { key = (key ^ UInt64(v.bitPattern)) &* 0x100_0000_01b3 }
      var r = RandomStream(seed: key, purpose: "squeeze_excite")
      for p in [se.fc1, se.fc2] {
        let b = 1 / Double(p.fanIn).squareRoot()
        for i in 0..<p.value.count { p.value[i] = Float(r.uniform(-b, b)) }
      }
      c.squeezeExcite = se
      blocks += 1
    }
    let convolutions = network.convolutions.count
    guard blocks > 0 else { return (network, 0, convolutions) }
    let net = Network(
      name: network.name, body: network.body, inputShape: network.inputShape, classes: network.classes,
      outputLayer: network.outputLayer)
    net.convolutionPolicy = network.convolutionPolicy
    net.sparseKernels = network.sparseKernels
    return (net, blocks, convolutions)
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    let r = Self.apply(to: network, latent: latent, minChannels: minChannels)
    guard r.convolutions > 0 else {
      throw EngineError("--algorithms squeeze_excite needs convolutions; \(network.name) has none")
    }
    if r.blocks == 0 {
      warnChangesNothing(name, "no convolution of \(network.name) has min_channels=\(minChannels) input and output channels")
    }
    return r.network
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {}
}
