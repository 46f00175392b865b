import Engine

/// A complete classifier: a root ``Module`` plus what experiments need to know about it
/// (input shape, class count, which layer is the output layer) and whole-network calls:
/// loss and gradients, evaluation, SynFlow gradients and gradients at perturbed weights.
public final class Network<T: Scalar> {
  /// Zoo name, e.g. `mnist_lenet_300_100`.
  public let name: String
  public let body: Module<T>
  /// Per-example input shape `[C, H, W]`.
  public let inputShape: [Int]
  public let classes: Int
  /// Module name of the output layer (`fc`); its weight is `"\(outputLayer).weight"`.
  public let outputLayer: String
  /// All parameters in `state_dict` order.
  public let parameters: [(String, Parameter<T>)]
  /// Batch-norm running statistics in `state_dict` order.
  public let buffers: [(String, Tensor<T>)]
  let batchNormParameterNames: Set<String>
  /// Modules with prunable weights but no sparse kernels: (name, kind, weights).
  private let layersWithoutSparseKernels: [(String, String, [Parameter<T>])]
  private let dLogits = Tensor<T>(zeros: [0])
  private var lastDenseGradients = true
  private func setDenseGradients(_ on: Bool) {
    guard on != lastDenseGradients else { return }
    lastDenseGradients = on
    for (_, m) in body.namedModules() {
      if let l = m as? Linear<T> { l.densePrunedGradients = on }
      if let c = m as? Conv2d<T> { c.densePrunedGradients = on }
    }
  }
  private let ones = Tensor<T>(zeros: [0])

  public init(name: String, body: Module<T>, inputShape: [Int], classes: Int, outputLayer: String = "fc") {
    self.name = name
    self.body = body
    self.inputShape = inputShape
    self.classes = classes
    self.outputLayer = outputLayer
    parameters = body.namedParameters()
    buffers = body.namedBuffers()
    // One convolution workspace for all convolutions and two alternating input-gradient
    // buffers for all layers: layers run one after another, so they can share scratch memory.
    let workspace = ConvWorkspace<T>()
    let gradients = GradientBuffers<T>()
    var bn = Set<String>()
    for (name, m) in body.namedModules() {
      if let c = m as? Conv2d<T> { c.workspace = workspace }
      // Residual blocks keep their own input gradient: it must outlive their main path.
      if !(m is BasicBlock<T>) { m.gradientBuffers = gradients }
      if m is BatchNorm<T> { bn.formUnion(["weight", "bias"].map { name.isEmpty ? $0 : name + "." + $0 }) }
    }
    batchNormParameterNames = bn
    // Layer kinds with sparse kernels: Linear and Conv2d. Any other module with a prunable
    // weight (a user's own layer) stays dense; `--sparse-kernels on` refuses it by name.
    layersWithoutSparseKernels = body.namedModules().compactMap { name, m in
      guard !(m is Linear<T>), !(m is Conv2d<T>) else { return nil }
      let weights = m.localParameters.filter { $0.1.isPrunable }.map(\.1)
      return weights.isEmpty ? nil : (name, "\(type(of: m))", weights)
    }
    applyFusion()
  }

  /// Every batch norm, linear or convolution layer directly followed by a ReLU computes both
  /// (``BatchNorm/fusedReLU``, ``Linear/fusedReLU``, ``Conv2d/fusedReLU``): one pass over
  /// the activations fewer each way where the kernel applies it. Bit for bit the same
  /// results on dense kernels and on sparse convolutions; sparse linear kernels
  /// apply the ReLU inside their transposes and sum bias gradients in their own (fixed)
  /// order. On by default.
  public var fusesReLU = true {
    didSet { applyFusion() }
  }
  private func applyFusion() {
    for (_, m) in body.namedModules() {
      var pairs: [(BatchNorm<T>, ReLU<T>)] = []
      if let s = m as? Sequential<T> {
        for (a, b) in zip(s.layers, s.layers.dropFirst()) {
          guard let r = b.1 as? ReLU<T> else { continue }
          if let bn = a.1 as? BatchNorm<T> { pairs.append((bn, r)) }
          if let l = a.1 as? Linear<T> {
            l.fusedReLU = fusesReLU
            r.isFused = fusesReLU
          }
          if let c = a.1 as? Conv2d<T>, c.squeezeExcite == nil {
            c.fusedReLU = fusesReLU
            r.isFused = fusesReLU
          }
        }
        // A linear layer whose output reaches another linear layer untouched (directly, or
        // through a fused ReLU) may hand it over feature-major.
        for (i, (_, a)) in s.layers.enumerated() {
          guard let l = a as? Linear<T> else { continue }
          var j = i + 1
          if j < s.layers.count, let r = s.layers[j].1 as? ReLU<T>, r.isFused { j += 1 }
          l.emitsFeatureMajor = j < s.layers.count && s.layers[j].1 is Linear<T>
        }
      }
      if let b = m as? BasicBlock<T> { pairs += b.batchNormReLUPairs }
      for (bn, r) in pairs {
        bn.fusedReLU = fusesReLU
        r.isFused = fusesReLU
      }
    }
  }

  /// Whether images of any height and width pass through (the classifier reads a global
  /// average pool, as in the ResNets): what progressive resizing and ColOut need.
  public lazy var acceptsAnyImageSize: Bool = {
    let modules = body.namedModules().map(\.1)
    guard let pool = modules.firstIndex(where: { $0 is GlobalAvgPool2d<T> }) else { return false }
    return !modules[..<pool].contains { $0 is Flatten<T> || $0 is Linear<T> }
  }()

  /// Convolution backends the network's layers may use (default ``ConvBackendPolicy/auto``).
  public var convolutionPolicy = ConvBackendPolicy.auto {
    didSet { for (_, c) in convolutions { c.backendPolicy = convolutionPolicy } }
  }
  /// Sparse kernels for pruned layers (default ``SparseKernelPolicy/auto``).
  public var sparseKernels = SparseKernelPolicy.auto {
    didSet {
      for (_, m) in body.namedModules() {
        if let l = m as? Linear<T> { l.sparseKernels = sparseKernels }
        if let c = m as? Conv2d<T> { c.sparseKernels = sparseKernels }
      }
    }
  }
  /// "layer: kernels" of the last forward pass for every pruned layer: `sparse-csr` (linear),
  /// `sparse-csr+im2col` (convolution) or `dense`; empty while nothing is pruned.
  public var sparseKernelNames: [String: String] {
    var out: [String: String] = [:]
    for (name, m) in body.namedModules() {
      if let l = m as? Linear<T>, l.weight.mask != nil { out[name] = l.kernelName }
      if let c = m as? Conv2d<T>, c.weight.mask != nil {
        out[name] = c.backend is SparseConvolution ? c.backend!.name : "dense"
      }
    }
    return out
  }
  /// Convolution layers by module name, in order.
  public var convolutions: [(String, Conv2d<T>)] {
    body.namedModules().compactMap { name, m in (m as? Conv2d<T>).map { (name, $0) } }
  }
  /// "layer: backend" for every convolution (after a first forward pass).
  public var convolutionBackendNames: [String: String] {
    Dictionary(uniqueKeysWithValues: convolutions.map { ($0.0, $0.1.backend?.name ?? "unplanned") })
  }

  /// The tensors pruning may touch (linear and convolution weights), in order.
  public var prunableParameters: [(String, Parameter<T>)] { parameters.filter { $0.1.isPrunable } }
  /// Total number of parameters (trainable tensors, buffers excluded).
  public var parameterCount: Int { parameters.reduce(0) { $0 + $1.1.storage.count } }
  /// Number of prunable weights.
  public var prunableCount: Int { prunableParameters.reduce(0) { $0 + $1.1.storage.count } }
  /// The parameter named `name`, if any.
  public func parameter(_ name: String) -> Parameter<T>? { parameters.first { $0.0 == name }?.1 }

  public func setTraining(_ on: Bool) { body.setTraining(on) }

  /// Whether a batch of `batch` examples should come feature-major
  /// (``Engine/TensorLayout/featureMajor(batch:)``, ``Data/Dataset/gather(_:into:featureMajor:)``):
  /// true when the first layer is a pruned ``Linear`` (after ``Flatten``) that runs sparse
  /// kernels at that batch. It then reads the batch as it is instead of transposing it
  /// every step (LeNet at 3.6%: about 4 of 47 us), and the data loader, which writes every
  /// batch anyway, writes it transposed. Same values, same bits.
  public func prefersFeatureMajorInput(batch: Int) -> Bool {
    firstLinear?.runsSparseKernels(batch: batch) ?? false
  }
  /// The first layer when it is a ``Linear`` (after containers and ``Flatten``).
  private lazy var firstLinear: Linear<T>? =
    body.namedModules().first { !($0.1 is Sequential<T>) && !($0.1 is Flatten<T>) }?.1 as? Linear<T>

  /// Logits `[N, classes]` for a batch `[N, C, H, W]` (in the current mode), or for the
  /// same batch flattened and feature-major (see ``prefersFeatureMajorInput(batch:)``).
  public func forward(_ x: Tensor<T>) throws -> Tensor<T> {
    if let n = x.layout.featureMajorBatch {
      let features = inputShape.reduce(1, *)
      guard firstLinear != nil, x.shape == [features, Sparse.paddedBatch(n)] else {
        throw EngineError(
          "\(name): a feature-major batch of \(n) needs a first linear layer and shape [\(features), \(Sparse.paddedBatch(n))], got \(x.shape)"
        )
      }
    } else if x.shape.count != 4 || x.shape[1] != inputShape[0]
      || (!acceptsAnyImageSize && Array(x.shape[1...]) != inputShape)
    {
      throw EngineError(
        "\(name): expected input [N, \(inputShape.map(String.init).joined(separator: ", "))], got shape \(x.shape)"
      )
    }
    if sparseKernels == .on,
      let (layer, kind, _) = layersWithoutSparseKernels.first(where: { $0.2.contains { $0.mask != nil } })
    {
      throw EngineError(
        "--sparse-kernels on: layer \(layer) (\(kind)) has no sparse kernels; use auto, which keeps it dense, or off"
      )
    }
    return try body.forward(x)
  }

  /// Forward, mean softmax cross-entropy, backward: afterwards every parameter's `grad`
  /// holds `dL/dtheta` for this batch. Returns the loss, the number of correct predictions
  /// and, when `inputGradient` is true, `dL/dx` (owned by the network).
  ///
  /// `temperature` divides the logits before the loss (GraSP uses 200); 1 leaves them alone.
  ///
  /// `denseGradients: false` is for a training step whose optimizer is the only reader: a
  /// pruned weight updated in compact form (``Parameter/updatePositions``) then has its
  /// gradient in ``Parameter/compactGradient`` only, and its dense `grad` tensor is left as
  /// it was (one scatter pass fewer per layer).
  /// The training step's forward pass, in three parts that a trainer can interleave with
  /// its events; together they are ``lossAndGradients(input:labels:inputGradient:temperature:denseGradients:)``
  /// without a temperature. Logits `[N, classes]` for a batch `[N, C, H, W]`.
  public func trainingForward(_ x: Tensor<T>, denseGradients: Bool) throws -> Tensor<T> {
    setDenseGradients(denseGradients)
    return try forward(x)
  }

  /// Mean softmax cross-entropy of `logits` `[N, classes]` and its gradient `dL/dlogits`
  /// `[N, classes]` (a tensor the network owns and reuses).
  public func loss(logits: Tensor<T>, labels: [Int32]) throws -> (loss: Double, dLogits: Tensor<T>) {
    let loss = try CrossEntropy.loss(logits: logits, labels: labels, dLogits: dLogits)
    return (loss, dLogits)
  }

  /// Backward pass from `dL/dlogits` `[N, classes]`: afterwards every parameter's gradient
  /// holds `dL/dtheta` for the batch of the last ``trainingForward(_:denseGradients:)``.
  public func backward(_ dLogits: Tensor<T>) throws {
    _ = try body.backward(dLogits, needInputGradient: false)
  }

  @discardableResult
  public func lossAndGradients(
    input x: Tensor<T>, labels: [Int32], inputGradient: Bool = false, temperature: Double = 1,
    denseGradients: Bool = true
  ) throws -> (loss: Double, correct: Int, inputGradient: Tensor<T>?) {
    setDenseGradients(denseGradients)
    var logits = try forward(x)
    if temperature != 1 {
      let scaled = logits.clone()
      for i in 0..<scaled.count { scaled[i] = scaled[i] / T(temperature) }
      logits = scaled
    }
    let loss = try CrossEntropy.loss(logits: logits, labels: labels, dLogits: dLogits)
    // d(loss)/d(logits) = d(loss)/d(logits / t) / t
    if temperature != 1 { for i in 0..<dLogits.count { dLogits[i] = dLogits[i] / T(temperature) } }
    let correct = CrossEntropy.correctCount(logits: logits, labels: labels)
    let dx = try body.backward(dLogits, needInputGradient: inputGradient)
    return (loss, correct, dx)
  }

  /// Mean loss and correct count without gradients (in the current mode).
  public func evaluate(input x: Tensor<T>, labels: [Int32]) throws -> (loss: Double, correct: Int) {
    let logits = try forward(x)
    let loss = try CrossEntropy.loss(logits: logits, labels: labels, dLogits: nil)
    return (loss, CrossEntropy.correctCount(logits: logits, labels: labels))
  }

  /// SynFlow's gradients (Tanaka et al. 2020): with every parameter replaced by its absolute
  /// value, evaluation mode, and an all-ones input of one example, `R = sum(logits)`;
  /// afterwards each parameter's `grad` holds `dR/dtheta` at `|theta|`. Parameters, buffers
  /// and the training mode are restored. Returns `R`. (Use `Network<Double>` as the paper.)
  @discardableResult
  public func synflowGradients() throws -> Double {
    let saved = parameters.map { $0.1.value.clone() }
    let wasTraining = body.isTraining
    defer {
      for (k, (_, p)) in parameters.enumerated() { p.value.copy(from: saved[k]) }
      body.setTraining(wasTraining)
    }
    for (_, p) in parameters { for i in 0..<p.value.count { p.value[i] = abs(p.value[i]) } }
    body.setTraining(false)
    ones.resize([1] + inputShape)
    ones.buffer.update(repeating: 1)
    let out = try body.forward(ones)
    var r = 0.0
    for i in 0..<out.count { r += Double(out[i]) }
    dLogits.resize(out.shape)
    dLogits.buffer.update(repeating: 1)
    setDenseGradients(true)
    _ = try body.backward(dLogits, needInputGradient: false)
    return r
  }

  /// Copies every parameter and buffer of `other` (the same architecture, any precision):
  /// e.g. Float weights into a Float64 network for scoring. Float to Double is exact.
  public func copyState<U: Scalar>(from other: Network<U>) throws {
    guard other.parameters.map(\.0) == parameters.map(\.0), other.buffers.map(\.0) == buffers.map(\.0) else {
      throw EngineError("copyState: \(other.name) and \(name) have different tensors")
    }
    for (k, (_, p)) in parameters.enumerated() {
      let src = other.parameters[k].1.value
      for i in 0..<p.value.count { p.value[i] = T(Double(src[i])) }
    }
    for (k, (_, b)) in buffers.enumerated() {
      let src = other.buffers[k].1
      for i in 0..<b.count { b[i] = T(Double(src[i])) }
    }
  }

  /// Runs `body` with every parameter `theta` replaced by `theta + scale * direction[k]`
  /// (`direction` in ``parameters`` order; nil entries are left alone), then restores them.
  /// GraSP's Hessian-gradient product uses it: `H g ~ (grad(theta + eps g) - grad(theta)) / eps`.
  public func withPerturbedParameters<R>(
    direction: [Tensor<T>?], scale: T, _ body: () throws -> R
  ) throws -> R {
    guard direction.count == parameters.count else {
      throw EngineError("perturbation: expected \(parameters.count) directions, got \(direction.count)")
    }
    let saved = parameters.map { $0.1.value.clone() }
    defer { for (k, (_, p)) in parameters.enumerated() { p.value.copy(from: saved[k]) } }
    for (k, (name, p)) in parameters.enumerated() {
      guard let d = direction[k] else { continue }
      guard d.count == p.value.count else {
        throw EngineError("perturbation of \(name): expected shape \(p.value.shape), got \(d.shape)")
      }
      for i in 0..<d.count { p.value[i] += scale * d[i] }
    }
    return try body()
  }
}
