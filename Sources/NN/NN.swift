/// # NN: modules, layers, initialisers, losses, optimizers and the model zoo
///
/// A ``Module`` owns named parameters and buffers and computes `forward` and `backward`.
/// Backpropagation is explicit (as in llm.c): `forward` keeps what `backward` needs, and
/// `backward(dy)` returns `dL/dx` while *writing* `dL/dtheta` into each ``Parameter``'s
/// `grad`. Containers (``Sequential``, ``BasicBlock``) chain their children, so gradients of
/// any network built from these layers, residual networks included, come out of one call
/// (``Network/lossAndGradients(input:labels:inputGradient:)``).
///
/// Names are those of the equivalent PyTorch `state_dict` (`fc_layers.0.weight`,
/// `blocks.0.conv1.weight`, `blocks.3.shortcut.1.running_mean`): a checkpoint loads
/// straight into the matching PyTorch module. Prunable tensors are the weights of
/// ``Linear`` and ``Conv2d``, never biases or batch norm.
///
/// Optimizers (``SGD``, ``Adam``) follow `torch.optim` exactly and honour each parameter's
/// `mask`: pruned entries of weights, gradients and optimizer state stay exactly zero.
import Engine

/// A trainable tensor with its gradient and an optional pruning mask (1 keep, 0 pruned).
public final class Parameter<T: Scalar> {
  /// The value, dense, in PyTorch's layout. While the optimizer holds this weight in compact
  /// form (``compactValue``), reading it first writes the surviving entries back and ends
  /// the compact form; so every reader outside the training step sees the current weights.
  /// (Keep the returned tensor only as long as no training step runs. Reading it may write,
  /// so read it from one thread at a time, as every caller does.)
  public var value: Tensor<T> {
    if compactValue != nil { leaveCompactForm() }
    return storage
  }
  /// The dense tensor behind ``value``, without synchronising (this module's kernels only).
  let storage: Tensor<T>
  public let grad: Tensor<T>
  /// True for linear and convolution weights: the tensors pruning may touch.
  public let isPrunable: Bool
  /// `fan_in`/`fan_out` used by initialisers (weights only).
  public let fanIn: Int
  public let fanOut: Int
  /// Pruning mask, same shape as `value`; nil means dense.
  public var mask: Tensor<T>? { willSet { leaveCompactForm() } }

  public init(shape: [Int], prunable: Bool, fanIn: Int = 0, fanOut: Int = 0) {
    storage = Tensor(zeros: shape)
    grad = Tensor(zeros: shape)
    isPrunable = prunable
    self.fanIn = fanIn
    self.fanOut = fanOut
  }

  /// The surviving positions of ``mask`` once the owning layer planned sparse kernels for it
  /// (``SparseKernelPolicy``): optimizers then keep this weight in compact form, always when
  /// `always` (low density), else while the layer's backward pass runs sparse kernels.
  var sparsePositions:
    (mask: Tensor<T>, positions: UnsafeMutableBufferPointer<Int>, generation: Int, always: Bool)?
  {
    willSet {
      leaveCompactForm()
      sparsePositions?.positions.deallocate()
    }
  }
  deinit { sparsePositions?.positions.deallocate() }
  /// Whether the owning layer's last backward pass ran sparse kernels (set by the layer).
  var backwardRanSparse = false
  /// The gradient at ``updatePositions`` from the last backward pass when that pass ran on
  /// sparse kernels (else nil: the gradient is only in `grad`).
  public internal(set) var compactGradient: Tensor<T>?

  /// The surviving positions of the current mask (row-major order), when the optimizer may
  /// update this weight in compact form, and a number that changes with them.
  public var updatePositions: (positions: UnsafeBufferPointer<Int>, generation: Int)? {
    guard let s = sparsePositions, let m = mask, s.mask === m, s.always || backwardRanSparse else {
      return nil
    }
    return (UnsafeBufferPointer(s.positions), s.generation)
  }

  /// The weight itself while the owning layer trains on sparse kernels: the surviving
  /// entries in ``updatePositions`` order (the kernels' row order). The sparse kernels read
  /// it and the optimizer updates it, so a training step neither gathers the weights from
  /// the dense tensor nor scatters them back (LeNet-300-100 at 3.6%: about 6 of 59 us a
  /// step). Nil when the dense tensor is current. The optimizer enters the compact form
  /// (``enterCompactForm()``) after a step whose backward pass ran sparse kernels; reading
  /// ``value``, a new mask or new positions end it.
  public private(set) var compactValue: Tensor<T>?
  private var compactBuffer: Tensor<T>?

  /// Leaves this parameter without gradient for the step (a layer that did not run:
  /// stochastic depth's skipped block): `grad` zero, no compact gradient, the dense value current.
  public func clearGradient() {
    leaveCompactForm()
    grad.zero()
    compactGradient = nil
    backwardRanSparse = false
  }

  /// Gathers the surviving entries into ``compactValue`` (no-op without positions or when
  /// already compact). Returns the compact tensor, or nil.
  @discardableResult
  func enterCompactForm() -> Tensor<T>? {
    if let compactValue { return compactValue }
    guard let positions = updatePositions?.positions else { return nil }
    let c =
      compactBuffer.flatMap { $0.count == positions.count ? $0 : nil } ?? Tensor(zeros: [positions.count])
    let (w, d) = (c.data, storage.data)
    for (j, i) in positions.enumerated() { w[j] = d[i] }
    (compactBuffer, compactValue) = (c, c)
    return c
  }

  /// Writes ``compactValue`` back into the dense tensor and ends the compact form.
  private func leaveCompactForm() {
    guard let c = compactValue else { return }
    // The positions go only through `willSet`, which comes here first.
    guard let s = sparsePositions else { preconditionFailure("compact weights without their positions") }
    compactValue = nil
    let (w, d) = (c.data, storage.data)
    for (j, i) in s.positions.enumerated() { d[i] = w[j] }
  }

  /// Zeroes pruned entries of the value (no-op without a mask).
  public func applyMask() {
    guard let m = mask else { return }
    Updates.multiply(value, by: m)
  }
}

/// Two tensors used alternately for the input gradients of consecutive layers.
public final class GradientBuffers<T: Scalar> {
  let a = Tensor<T>(zeros: [0])
  let b = Tensor<T>(zeros: [0])
  public init() {}
  /// The buffer that is not `t`.
  public func other(than t: Tensor<T>) -> Tensor<T> { t === a ? b : a }
}

/// Converts a layer's input to the layout the layer computes in, and its input gradient
/// back to the layout the input came in (see ``Engine/TensorLayout``).
public final class LayoutAdapter<T: Scalar> {
  private let input = Tensor<T>(zeros: [0])
  private let gradient = Tensor<T>(zeros: [0])
  private var original: TensorLayout?
  public init() {}
  /// `x` itself when it already has `layout`, else a converted copy (kept for backward).
  public func input(_ x: Tensor<T>, as layout: TensorLayout = .nchw) -> Tensor<T> {
    if x.layout == layout {
      original = nil
      return x
    }
    original = x.layout
    Layouts.convert(x, to: layout, into: input)
    return input
  }
  /// The gradient with respect to the original input: `dx` converted back if needed.
  public func gradient(_ dx: Tensor<T>) -> Tensor<T> {
    guard let original, dx.layout != original else { return dx }
    Layouts.convert(dx, to: original, into: gradient)
    return gradient
  }
}

/// Base class of all layers and containers.
open class Module<T: Scalar> {
  /// Training mode (batch statistics in batch norm) or evaluation mode.
  public private(set) var isTraining = true

  /// Gradient buffers shared across a network (set by ``Network``): backward runs one layer
  /// after another, so two buffers used alternately replace one per layer. Nil: the
  /// module's own buffer.
  public var gradientBuffers: GradientBuffers<T>?
  private let ownGradInput = Tensor<T>(zeros: [0])

  /// Where `backward` writes `dL/dx` for a given `dy`: the shared buffer that does not hold
  /// `dy`, or the module's own.
  public func gradInputBuffer(for dy: Tensor<T>) -> Tensor<T> {
    gradientBuffers?.other(than: dy) ?? ownGradInput
  }

  public init() {}

  /// Child modules with their attribute names, in `state_dict` order.
  open var children: [(String, Module<T>)] { [] }
  /// This module's own parameters (not its children's), in `state_dict` order.
  open var localParameters: [(String, Parameter<T>)] { [] }
  /// This module's own non-trainable state (batch-norm running statistics).
  open var localBuffers: [(String, Tensor<T>)] { [] }

  /// Computes the output; keeps what ``backward(_:needInputGradient:)`` needs. The
  /// returned tensor is owned by the module and overwritten by the next call.
  open func forward(_ x: Tensor<T>) throws -> Tensor<T> {
    throw EngineError("\(type(of: self)) does not implement forward")
  }

  /// Given `dy = dL/d(output)` of the last forward call, writes parameter gradients and
  /// returns `dL/d(input)` (nil when `needInputGradient` is false). A layer that does not
  /// override it throws: a missing backward pass must never leave the previous step's
  /// gradients in place silently.
  open func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws -> Tensor<T>? {
    throw EngineError("\(type(of: self)) does not implement backward")
  }

  /// ``backward(_:needInputGradient:)`` when the input gradient is needed: nil is an error.
  public func inputGradient(_ dy: Tensor<T>) throws -> Tensor<T> {
    guard let dx = try backward(dy, needInputGradient: true) else {
      throw EngineError("\(type(of: self)).backward returned no input gradient")
    }
    return dx
  }

  public func callAsFunction(_ x: Tensor<T>) throws -> Tensor<T> { try forward(x) }

  /// Switches this module and all descendants between training and evaluation mode.
  public func setTraining(_ on: Bool) {
    isTraining = on
    for (_, c) in children { c.setTraining(on) }
  }

  /// All parameters with dotted names, depth first, in `state_dict` order.
  public func namedParameters(prefix: String = "") -> [(String, Parameter<T>)] {
    var out = localParameters.map { (prefix + $0.0, $0.1) }
    for (n, c) in children { out += c.namedParameters(prefix: prefix + n + ".") }
    return out
  }

  /// This module and every descendant with its dotted name (`""` for this one), depth
  /// first in `state_dict` order.
  public func namedModules(prefix: String = "") -> [(String, Module<T>)] {
    var out: [(String, Module<T>)] = [(prefix, self)]
    for (n, c) in children { out += c.namedModules(prefix: prefix.isEmpty ? n : prefix + "." + n) }
    return out
  }

  /// All buffers with dotted names, depth first.
  public func namedBuffers(prefix: String = "") -> [(String, Tensor<T>)] {
    var out = localBuffers.map { (prefix + $0.0, $0.1) }
    for (n, c) in children { out += c.namedBuffers(prefix: prefix + n + ".") }
    return out
  }
}
