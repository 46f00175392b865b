import Engine
import Foundation

/// An optimizer updates parameters from their `grad` with `torch.optim` semantics.
///
/// Masks: before the update each gradient is multiplied by its parameter's mask; after it,
/// the value and every state tensor are multiplied by the mask, so pruned weights stay
/// exactly zero and momentum or Adam moments never revive them. A weight whose layer runs
/// sparse kernels (``Parameter/updatePositions``) is updated at its surviving entries only:
/// the same numbers, without touching the pruned ones.
public protocol Optimizer<T>: AnyObject {
  associatedtype T: Scalar
  /// Learning rate for the next step (schedules set it every iteration).
  var learningRate: Double { get set }
  /// One update of every parameter.
  func step()
  /// Named state tensors (for checkpoints), e.g. `fc.weight.momentum_buffer`.
  var namedState: [(String, Tensor<T>)] { get }
  /// Number of steps taken (Adam's bias correction uses it).
  var stepCount: Int { get set }
}

/// `torch.optim.SGD`: `g += wd * w`; with momentum `mu`: `buf = g` on the first step, then
/// `buf = mu * buf + (1 - dampening) * g`; Nesterov uses `g + mu * buf`, otherwise `buf`;
/// `w -= lr * update`.
public final class SGD<T: Scalar>: Optimizer {
  public let parameters: [(String, Parameter<T>)]
  public var learningRate: Double
  public let momentum: Double
  public let dampening: Double
  public let nesterov: Bool
  public let weightDecay: Double
  public var stepCount = 0
  private let buffers: [Tensor<T>]

  public init(
    _ parameters: [(String, Parameter<T>)], learningRate: Double, momentum: Double = 0,
    dampening: Double = 0, nesterov: Bool = false, weightDecay: Double = 0
  ) throws {
    guard learningRate > 0, learningRate.isFinite else {
      throw EngineError("SGD: learning rate must be positive, got \(learningRate)")
    }
    guard momentum >= 0, weightDecay >= 0 else {
      throw EngineError("SGD: momentum and weight decay must be non-negative")
    }
    if nesterov && (momentum <= 0 || dampening != 0) {
      throw EngineError("SGD: Nesterov momentum requires momentum > 0 and zero dampening")
    }
    self.parameters = parameters
    self.learningRate = learningRate
    self.momentum = momentum
    self.dampening = dampening
    self.nesterov = nesterov
    self.weightDecay = weightDecay
    buffers = momentum > 0 ? parameters.map { Tensor<T>(zeros: $0.1.value.shape) } : []
  }

  public var namedState: [(String, Tensor<T>)] {
    compact.flush()
    return zip(parameters, buffers).map { ("\($0.0.0).momentum_buffer", $0.1) }
  }

  @_specialize(where T == Float)
  public func step() {
    // Masks can change between steps (pruning), so targets are gathered per step.
    let targets = compact.targets(parameters) { k in momentum > 0 ? [buffers[k]] : [] }
    Updates.sgd(
      targets, chunks: chunks.chunks(targets), lr: T(learningRate), weightDecay: T(weightDecay),
      momentum: T(momentum), dampening: T(dampening), nesterov: nesterov,
      firstStep: stepCount == 0)
    stepCount += 1
  }
  private let chunks = Updates.ChunkCache()
  private let compact = CompactState<T>()
}

/// `torch.optim.Adam` (L2 weight decay added to the gradient, not AdamW):
/// `g += wd * w`, `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
public final class Adam<T: Scalar>: Optimizer {
  public let parameters: [(String, Parameter<T>)]
  public var learningRate: Double
  public let beta1: Double
  public let beta2: Double
  public let eps: Double
  public let weightDecay: Double
  public var stepCount = 0
  private let m: [Tensor<T>]
  private let v: [Tensor<T>]

  public init(
    _ parameters: [(String, Parameter<T>)], learningRate: Double, beta1: Double = 0.9,
    beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0
  ) throws {
    guard learningRate > 0, learningRate.isFinite else {
      throw EngineError("Adam: learning rate must be positive, got \(learningRate)")
    }
    guard (0..<1).contains(beta1), (0..<1).contains(beta2), eps > 0, weightDecay >= 0 else {
      throw EngineError("Adam: betas must lie in [0, 1), eps > 0, weight decay >= 0")
    }
    self.parameters = parameters
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.eps = eps
    self.weightDecay = weightDecay
    m = parameters.map { Tensor<T>(zeros: $0.1.value.shape) }
    v = parameters.map { Tensor<T>(zeros: $0.1.value.shape) }
  }

  public var namedState: [(String, Tensor<T>)] {
    compact.flush()
    return parameters.indices.flatMap { k in
      [("\(parameters[k].0).exp_avg", m[k]), ("\(parameters[k].0).exp_avg_sq", v[k])]
    }
  }

  @_specialize(where T == Float)
  public func step() {
    stepCount += 1
    let t = Double(stepCount)
    let bc1 = 1 - _pow(beta1, t)
    let bc2 = 1 - _pow(beta2, t)
    let targets = compact.targets(parameters) { k in [m[k], v[k]] }
    Updates.adam(
      targets, chunks: chunks.chunks(targets), stepSize: T(learningRate / bc1), beta1: T(beta1),
      beta2: T(beta2),
      eps: T(eps), weightDecay: T(weightDecay), sqrtBiasCorrection2: T(bc2.squareRoot()))
  }
  private let chunks = Updates.ChunkCache()
  private let compact = CompactState<T>()
}

/// The compact form of pruned weights for an optimizer (see ``Engine/UpdateTarget``): per
/// parameter with ``Parameter/updatePositions``, compact weight, gradient and state tensors,
/// the state gathered from the dense state when the positions change. ``flush()`` writes
/// the compact state back into the dense tensors (checkpoints read and write those) and
/// makes the next step gather it again.
final class CompactState<T: Scalar> {
  final class Slot {
    let generation: Int
    let positions: [Int]
    let weight, grad: Tensor<T>
    let state: [Tensor<T>]
    let dense: [Tensor<T>]
    init(
      generation: Int, positions: [Int], weight: Tensor<T>, grad: Tensor<T>, state: [Tensor<T>],
      dense: [Tensor<T>]
    ) {
      (self.generation, self.positions, self.weight, self.grad) = (generation, positions, weight, grad)
      (self.state, self.dense) = (state, dense)
    }
  }
  /// Per parameter index; nil for a parameter updated in dense form.
  private var slots: [Slot?] = []
  /// The targets of the last step and what they were built from (per parameter: the
  /// positions' generation, the compact gradient and the mask, by identity); rebuilt only
  /// when one of those changes, since this runs every step (rebuilding cost about 0.7 us
  /// per parameter).
  private var cached: [UpdateTarget<T>] = []
  private var keys: [Key] = []
  struct Key: Equatable {
    var generation: Int
    var compactGradient, mask, compactValue: ObjectIdentifier?
    init(_ p: Parameter<T>) {
      generation = p.updatePositions?.generation ?? -1
      compactGradient = p.compactGradient.map(ObjectIdentifier.init)
      mask = p.mask.map(ObjectIdentifier.init)
      compactValue = p.compactValue.map(ObjectIdentifier.init)
    }
  }

  /// The update targets for `parameters`; `denseState(k)` lists parameter `k`'s state tensors.
  /// A weight whose layer's backward pass ran sparse kernels (it left a compact gradient)
  /// enters the compact form (``Parameter/compactValue``): the update writes the surviving
  /// entries there and the kernels read them, with no gather or scatter per step.
  @_specialize(where T == Float)
  func targets(_ parameters: [(String, Parameter<T>)], denseState: (Int) -> [Tensor<T>]) -> [UpdateTarget<T>]
  {
    for (_, p) in parameters where p.compactValue == nil {
      if let g = p.compactGradient, let u = p.updatePositions, g.count == u.positions.count {
        p.enterCompactForm()
      }
    }
    var same = cached.count == parameters.count
    for k in parameters.indices where same { same = Key(parameters[k].1) == keys[k] }
    if same { return cached }
    if slots.count < parameters.count {
      slots += Array(repeating: nil, count: parameters.count - slots.count)
    }
    cached = parameters.indices.map { k in target(k, parameters[k].1, denseState: denseState(k)) }
    keys = parameters.map { Key($0.1) }
    return cached
  }

  private func target(_ k: Int, _ p: Parameter<T>, denseState: [Tensor<T>]) -> UpdateTarget<T> {
    guard let (positions, generation) = p.updatePositions else {
      flush(k)
      return UpdateTarget(weight: p.value, grad: p.grad, mask: p.mask, state: denseState)
    }
    if slots[k]?.generation != generation {
      flush(k)
      let n = positions.count
      slots[k] = Slot(
        generation: generation, positions: Array(positions), weight: Tensor(zeros: [n]),
        grad: Tensor(zeros: [n]),
        state: denseState.map { d in Tensor<T>(positions.map { d.data[$0] }, shape: [n]) }, dense: denseState)
    }
    let s = slots[k]!
    let compactGrad = p.compactGradient.flatMap { $0.count == positions.count ? $0 : nil }
    if let compactGrad, let w = p.compactValue, w.count == positions.count {
      return UpdateTarget(
        compactWeight: w, grad: compactGrad, state: s.state, positions: positions, denseWeight: nil,
        denseGrad: nil)
    }
    return UpdateTarget(
      compactWeight: s.weight, grad: compactGrad ?? s.grad, state: s.state, positions: positions,
      denseWeight: p.storage, denseGrad: compactGrad == nil ? p.grad : nil)
  }

  /// Writes slot `k`'s state into the dense tensors and drops the slot.
  private func flush(_ k: Int) {
    guard k < slots.count, let s = slots[k] else { return }
    slots[k] = nil
    for (c, d) in zip(s.state, s.dense) {
      for (j, i) in s.positions.enumerated() { d.data[i] = c.data[j] }
    }
  }

  /// Writes every slot's state into the dense tensors; the next step gathers it again.
  func flush() {
    for k in slots.indices { flush(k) }
    cached = []
  }
}

@inline(__always) private func _pow(_ a: Double, _ b: Double) -> Double { Foundation.pow(a, b) }
