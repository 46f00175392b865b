import Engine

/// Fully-connected layer `y = x W^T + b`, `W: [out, in]` (see ``Engine/Dense``). A pruned
/// weight may run on sparse kernels (``Engine/SparseLinear``) by ``sparseKernels``.
public final class Linear<T: Scalar>: Module<T> {
  public let weight: Parameter<T>
  public let bias: Parameter<T>?
  public let inFeatures: Int
  public let outFeatures: Int
  private var input: Tensor<T>?
  private let output = Tensor<T>(zeros: [0])
  /// Sparse kernels for a pruned weight (``Network`` sets it for all its layers).
  public var sparseKernels = SparseKernelPolicy.auto
  private let plan = SparsePlan<T, SparseLinear>()
  private var sparseInUse: SparseLinear?
  /// `sparse-csr` or `dense`: the kernels of the last forward pass.
  public var kernelName: String { sparseInUse == nil ? "dense" : "sparse-csr" }
  /// Whether the last forward pass's input was feature-major (handed over by a sparse layer
  /// before it, ``Engine/TensorLayout/featureMajor(batch:)``); an input to the kernel rule.
  public private(set) var inputWasFeatureMajor = false
  /// Applies the following ReLU too (``ReLU/isFused``): `y = relu(x W^T + b)`, and ReLU's
  /// mask applied to `dy` first in the backward pass. The sparse kernels do both inside
  /// their transposes (no pass of their own); the dense path runs the ReLU kernels, bit for
  /// bit the two layers. ``Network`` sets it for every linear layer directly followed by a
  /// ReLU.
  public var fusedReLU = false
  /// Sparse kernels leave the output feature-major (``Engine/TensorLayout/featureMajor(batch:)``)
  /// for the next linear layer to read as it is; ``Network`` sets it for every linear layer
  /// followed by another (through a fused ReLU). Dense kernels always write `[N, out]`.
  public var emitsFeatureMajor = false
  /// Whether a pruned weight updated in compact form (``Parameter/updatePositions``) also
  /// gets its dense `grad` tensor written; ``Network/lossAndGradients(input:labels:inputGradient:temperature:denseGradients:)``
  /// sets it.
  public var densePrunedGradients = true
  private lazy var maskedGrad = Tensor<T>(zeros: [0])

  public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
    self.inFeatures = inFeatures
    self.outFeatures = outFeatures
    weight = Parameter(
      shape: [outFeatures, inFeatures], prunable: true, fanIn: inFeatures, fanOut: outFeatures)
    self.bias = bias ? Parameter(shape: [outFeatures], prunable: false, fanIn: inFeatures) : nil
  }
  public override var localParameters: [(String, Parameter<T>)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }
  public override func forward(_ x: Tensor<T>) throws -> Tensor<T> {
    let batch = x.layout.featureMajorBatch ?? x.shape.first ?? 0
    let features = x.layout.featureMajorBatch == nil ? x.shape.last : x.shape.first
    guard x.shape.count == 2, features == inFeatures else {
      throw EngineError(
        "Linear(\(inFeatures), \(outFeatures)): expected input [N, \(inFeatures)], got shape \(x.shape)")
    }
    sparseInUse = nil
    inputWasFeatureMajor = x.layout.featureMajorBatch != nil
    if let k = try plan.kernel(
      for: weight, policy: sparseKernels,
      build: { m in
        let k = try SparseLinear(mask: m, outFeatures: outFeatures)
        return (k, k.pattern)
      }),
      picksSparse(density: plan.density, batch: batch, featureMajorInput: inputWasFeatureMajor)
    {
      sparseInUse = k
      // The compact weights when the optimizer keeps them (``Parameter/compactValue``);
      // the dense tensor is then stale and not read.
      k.compactWeight = weight.compactValue as! Tensor<Float>?
      k.forward(
        x: x as! Tensor<Float>, weight: weight.storage as! Tensor<Float>,
        bias: bias?.value as! Tensor<Float>?,
        y: output as! Tensor<Float>, relu: fusedReLU, featureMajorOutput: emitsFeatureMajor)
      return output
    }
    // A feature-major input (from a sparse layer) is read as it is: BLAS transposes.
    input = x
    Dense.linearForward(x: x, weight: weight.value, bias: bias?.value, y: output)
    if fusedReLU { Elementwise.relu(x: output, y: output) }
    return output
  }
  /// The choice for a pruned weight of `density` once its sparse kernels exist: `on`, or
  /// the rule.
  private func picksSparse(density: Double, batch: Int, featureMajorInput: Bool) -> Bool {
    sparseKernels == .on
      || SparseKernelRule.linear(
        outFeatures: outFeatures, inFeatures: inFeatures, density: density, batch: batch,
        featureMajorInput: featureMajorInput)
  }
  /// Whether a forward pass of `batch` examples would run sparse kernels (for a batch-major
  /// input; before the first pass the density is counted from the mask).
  public func runsSparseKernels(batch: Int) -> Bool {
    guard sparseKernels != .off, T.self == Float.self, let m = weight.mask else { return false }
    var density = plan.density
    if plan.mask !== m {
      var kept = 0
      for i in 0..<m.count where m[i] != 0 { kept += 1 }
      density = Double(kept) / Double(max(m.count, 1))
    }
    return picksSparse(density: density, batch: batch, featureMajorInput: false)
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    let dx = needInputGradient ? gradInputBuffer(for: dy) : nil
    weight.compactGradient = nil
    weight.backwardRanSparse = sparseInUse != nil
    if let k = sparseInUse {
      // An optimizer that updates the surviving entries only takes the compact gradient;
      // otherwise the product writes the dense gradient directly.
      let compact = weight.updatePositions != nil
      k.writesDenseGradient = !compact || densePrunedGradients
      k.backward(
        dy: dy as! Tensor<Float>, weight: weight.storage as! Tensor<Float>,
        dWeight: weight.grad as! Tensor<Float>,
        dBias: bias?.grad as! Tensor<Float>?, dx: dx as! Tensor<Float>?, compact: compact,
        reluOutput: fusedReLU ? (output as! Tensor<Float>) : nil)
      if compact { weight.compactGradient = (k.gradients as! Tensor<T>) }
    } else {
      var d = dy
      if fusedReLU {
        Elementwise.reluBackward(y: output, dy: dy, dx: maskedGrad)
        d = maskedGrad
      }
      Dense.linearBackward(
        x: input!, weight: weight.value, dy: d, dWeight: weight.grad, dBias: bias?.grad, dx: dx)
    }
    return dx
  }
}

/// 2-D convolution, NCHW input, OIHW weight. The arithmetic is done by a
/// ``Engine/ConvolutionBackend`` chosen on the first forward pass from the input shape and
/// ``backendPolicy`` (see ``Engine/Convolution/makeBackend(_:inputShape:policy:workspace:)``),
/// or, for a pruned weight, by ``Engine/SparseConvolution`` when ``sparseKernels`` says so.
public final class Conv2d<T: Scalar>: Module<T> {
  public let geometry: ConvGeometry
  public let weight: Parameter<T>
  public let bias: Parameter<T>?
  private var input: Tensor<T>?
  private let output = Tensor<T>(zeros: [0])
  /// Scratch buffers; ``Network`` gives all its convolutions one shared workspace (they
  /// run one after another), which keeps memory at one layer's scratch buffers.
  public var workspace = ConvWorkspace<T>() {
    didSet {
      (backend, denseBackends) = (nil, [:])
      plan = SparsePlan()
    }
  }
  /// Which backends this layer may use (``Network`` sets it for all its layers).
  public var backendPolicy = ConvBackendPolicy.auto { didSet { (backend, denseBackends) = (nil, [:]) } }
  /// BlurPool's anti-aliasing filter (``Blur``, stride 1) applied to the input before the
  /// convolution (Composer's `BlurConv2d` with `blur_first`); set by the `blurpool`
  /// surgery on strided convolutions. Nil: none.
  public var preBlur: Blur2d<T>?
  /// Weight standardization (Qiao et al. 2019; Composer `weight_standardization`): the
  /// convolution uses, per output filter `o` over its surviving entries `K` (all, unpruned),
  /// `W_hat[o, i] = (W[o, i] - mean_K) / sqrt(var_K + 1e-10)` (biased variance), pruned
  /// entries 0; the parameter stays the raw `W`, and the backward pass chains through:
  /// `dW[o, i] = (g_i - mean_K(g) - W_hat_i mean_K(g W_hat)) / sigma` on `K`, 0 elsewhere.
  /// Such a layer runs dense kernels.
  public var standardizesWeights = false
  private let standardized = Tensor<T>(zeros: [0])
  private let standardizedGrad = Tensor<T>(zeros: [0])
  /// Squeeze-and-excitation on the output (``SqueezeExcite2d``; the `squeeze_excite`
  /// surgery): a child named `se`, so its weights are `<conv>.se.fc1.weight` and
  /// `<conv>.se.fc2.weight`. ``Network`` does not fuse a following ReLU into such a layer.
  public var squeezeExcite: SqueezeExcite2d<T>?
  public override var children: [(String, Module<T>)] { squeezeExcite.map { [("se", $0 as Module<T>)] } ?? [] }

  /// Filter `f`'s entries (`per` of them) that survive the mask, with their mean and
  /// `1 / sqrt(var + 1e-10)` (biased variance), as ``standardizesWeights`` uses them.
  @_specialize(where T == Float)
  private func filterStatistics(_ f: Int, per: Int) -> (kept: [Int], mean: Double, inv: Double) {
    let (w, m) = (weight.value, weight.mask)
    let kept = (f * per..<(f + 1) * per).filter { m == nil || m![$0] != 0 }
    let n = Double(max(kept.count, 1))
    let mean = kept.reduce(0.0) { $0 + Double(w[$1]) } / n
    let variance = kept.reduce(0.0) { $0 + (Double(w[$1]) - mean) * (Double(w[$1]) - mean) } / n
    return (kept, mean, 1 / (variance + 1e-10).squareRoot())
  }

  /// `W_hat` of ``standardizesWeights`` into `standardized`, per output filter.
  @_specialize(where T == Float)
  private func standardize() {
    let w = weight.value
    standardized.resize(w.shape)
    standardized.zero()
    let per = w.count / w.shape[0]
    for f in 0..<w.shape[0] {
      let (kept, mean, inv) = filterStatistics(f, per: per)
      for i in kept { standardized[i] = T((Double(w[i]) - mean) * inv) }
    }
  }

  /// `dW` from `dW_hat` (see ``standardizesWeights``).
  @_specialize(where T == Float)
  private func standardizeBackward() {
    let (w, g) = (weight.value, standardizedGrad)
    weight.grad.zero()
    let per = w.count / w.shape[0]
    for f in 0..<w.shape[0] {
      let (kept, mean, inv) = filterStatistics(f, per: per)
      let n = Double(max(kept.count, 1))
      let gm = kept.reduce(0.0) { $0 + Double(g[$1]) } / n
      let gx = kept.reduce(0.0) { $0 + Double(g[$1]) * (Double(w[$1]) - mean) * inv } / n
      for i in kept { weight.grad[i] = T((Double(g[i]) - gm - (Double(w[i]) - mean) * inv * gx) * inv) }
    }
  }

  /// Sparse kernels for a pruned weight (``Network`` sets it for all its layers).
  public var sparseKernels = SparseKernelPolicy.auto
  /// See ``Linear/densePrunedGradients``.
  public var densePrunedGradients = true
  /// The backend of the last forward pass (nil before the first).
  public private(set) var backend: ConvolutionBackend<T>?
  /// Dense backends by input height and width (oneDNN plans one per size; progressive
  /// resizing and ColOut train at sizes other than the evaluation's).
  private var denseBackends: [[Int]: ConvolutionBackend<T>] = [:]
  private var plan = SparsePlan<T, SparseConvolution>()
  /// Shape of the last input (nil before the first forward pass).
  public var lastInputShape: [Int]? { input?.shape }

  public init(
    _ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
    bias: Bool = true
  ) {
    geometry = ConvGeometry(
      inChannels: inChannels, outChannels: outChannels, kernel: (kernelSize, kernelSize),
      stride: (stride, stride), padding: (padding, padding))
    let k2 = kernelSize * kernelSize
    weight = Parameter(
      shape: [outChannels, inChannels, kernelSize, kernelSize], prunable: true,
      fanIn: inChannels * k2, fanOut: outChannels * k2)
    self.bias = bias ? Parameter(shape: [outChannels], prunable: false, fanIn: inChannels * k2) : nil
  }
  public override var localParameters: [(String, Parameter<T>)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }
  private let layout = LayoutAdapter<T>()
  /// Applies the following ReLU too (``ReLU/isFused``), as ``Linear/fusedReLU`` does:
  /// `y = relu(conv(x))`, and ReLU's mask applied to `dy` first in the backward pass. The
  /// sparse kernels (both forms) do both inside their own loops
  /// (``Engine/SparseConvolution/fusedReLU``); dense backends run the ReLU kernels after
  /// them, in place. Bit for bit the two layers either way.
  /// ``Network`` sets it for every convolution directly followed by a ReLU in a `Sequential`.
  public var fusedReLU = false
  private lazy var maskedGrad = Tensor<T>(zeros: [0])
  /// Whether the current backend (a sparse one) applies the fused ReLU itself.
  private var reluInKernel = false
  public override func forward(_ raw: Tensor<T>) throws -> Tensor<T> {
    let given = try preBlur?.forward(raw) ?? raw
    _ = try Convolution.outputShape(geometry, input: given.shape)
    let g = geometry
    if standardizesWeights && sparseKernels == .on && weight.mask != nil {
      throw EngineError(
        "--sparse-kernels on: a convolution with weight_standardization runs dense kernels; use auto or off")
    }
    if !standardizesWeights, let k = try plan.kernel(
      for: weight, policy: sparseKernels,
      build: { m in
        let k = try SparseConvolution(geometry: g, mask: m, workspace: workspace as! ConvWorkspace<Float>)
        return (k, k.pattern)
      }),
      sparseKernels == .on
        || SparseKernelRule.convolution(
          g, density: plan.density, batch: given.shape[0],
          input: (given.shape[2], given.shape[3]))
    {
      backend = (k as! ConvolutionBackend<T>)
    } else {
      let size = [given.shape[2], given.shape[3]]
      if denseBackends[size] == nil {
        denseBackends[size] = Convolution.makeBackend(
          geometry, inputShape: given.shape, policy: backendPolicy, workspace: workspace)
      }
      backend = denseBackends[size]
    }
    let x = backend!.acceptsBlocked ? given : layout.input(given)
    input = x
    if isTraining { try backend!.prepareBackward(batch: x.shape[0], inputLayout: x.layout) }
    let sparse = backend as? SparseConvolution
    reluInKernel = fusedReLU && sparse != nil
    sparse?.fusedReLU = reluInKernel
    // Sparse kernels read the compact weights when the optimizer keeps them
    // (``Parameter/compactValue``); dense ones read `value`, which ends that form.
    sparse?.compactWeight = weight.compactValue as! Tensor<Float>?
    if standardizesWeights { standardize() }
    try backend!.forward(
      x: x, weight: standardizesWeights ? standardized : sparse == nil ? weight.value : weight.storage,
      bias: bias?.value, y: output)
    if fusedReLU && !reluInKernel { Elementwise.relu(x: output, y: output) }
    return try squeezeExcite?.forward(output) ?? output
  }
  public override func backward(_ given: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    let dy = squeezeExcite?.backward(given, needInputGradient: true) ?? given
    let sparse = backend as? SparseConvolution
    weight.backwardRanSparse = sparse != nil
    sparse?.writesDenseGradient = weight.updatePositions == nil || densePrunedGradients
    var d = dy
    if fusedReLU && !reluInKernel {
      Elementwise.reluBackward(y: output, dy: dy, dx: maskedGrad)
      d = maskedGrad
    }
    if standardizesWeights { standardizedGrad.resize(weight.grad.shape) }
    backend!.backward(
      x: input!, weight: standardizesWeights ? standardized : sparse == nil ? weight.value : weight.storage, dy: d,
      dWeight: standardizesWeights ? standardizedGrad : weight.grad, dBias: bias?.grad,
      dx: needInputGradient ? gradInputBuffer(for: dy) : nil)
    if standardizesWeights { standardizeBackward() }
    weight.compactGradient = sparse?.gradients as! Tensor<T>?
    guard needInputGradient else { return nil }
    let dx = layout.gradient(gradInputBuffer(for: dy))
    return preBlur.map { $0.backward(dx) } ?? dx
  }
}

/// Batch normalisation over channels (`BatchNorm2d`; also accepts `[N, C]`), with PyTorch's
/// momentum convention and buffers `running_mean`, `running_var` (see ``Engine/BatchNormKernel``).
public final class BatchNorm<T: Scalar>: Module<T> {
  public let weight: Parameter<T>
  public let bias: Parameter<T>
  public let runningMean: Tensor<T>
  public let runningVar: Tensor<T>
  public var momentum: T
  public let eps: T
  private var input: Tensor<T>?
  private var forwardWasTraining = true
  private let output = Tensor<T>(zeros: [0])
  private let savedMean = Tensor<T>(zeros: [0])
  private let savedInvStd = Tensor<T>(zeros: [0])
  private lazy var maskedGrad = Tensor<T>(zeros: [0])
  /// Applies the following ReLU too (``ReLU/isFused``): `y = relu(bn(x))` in one pass, and
  /// ReLU's mask applied to `dy` inside the batch-norm backward pass. Bit for bit the same
  /// as the two layers (ReLU's 0/1 mask product); ``Network`` sets it for every batch norm
  /// directly followed by a ReLU.
  public var fusedReLU = false

  public init(_ channels: Int, momentum: T = 0.1, eps: T = 1e-5) {
    weight = Parameter(shape: [channels], prunable: false)
    weight.value.buffer.update(repeating: 1)
    bias = Parameter(shape: [channels], prunable: false)
    runningMean = Tensor(zeros: [channels])
    runningVar = Tensor(repeating: 1, shape: [channels])
    self.momentum = momentum
    self.eps = eps
  }
  public override var localParameters: [(String, Parameter<T>)] {
    [("weight", weight), ("bias", bias)]
  }
  public override var localBuffers: [(String, Tensor<T>)] {
    [("running_mean", runningMean), ("running_var", runningVar)]
  }
  /// Ghost batch norm (Hoffer et al. 2017; Composer `ghost_batchnorm`): in training, the
  /// batch of `N` is split as `torch.chunk(N, ceil(N / size))` does (consecutive chunks of
  /// `ceil(N / chunks)`, the last possibly smaller) and each chunk is normalised with its own
  /// statistics; the running statistics are updated once per chunk at `momentum / chunks`.
  /// Nil, or a batch no larger: ordinary batch norm. Evaluation is unchanged.
  public var ghostBatchSize: Int?
  private var ghost: GhostChunks<T>?

  public override func forward(_ x: Tensor<T>) throws -> Tensor<T> {
    input = x
    forwardWasTraining = isTraining
    if isTraining, let size = ghostBatchSize, x.shape[0] > size {
      let g = ghost ?? GhostChunks()
      ghost = g
      try g.forward(self, x: x, size: size, y: output)
      return output
    }
    ghost?.active = false
    try BatchNormKernel.forward(
      x: x, gamma: weight.value, beta: bias.value, runningMean: runningMean,
      runningVar: runningVar, training: isTraining, momentum: momentum, eps: eps, y: output,
      savedMean: savedMean, savedInvStd: savedInvStd, relu: fusedReLU)
    return output
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    if let g = ghost, g.active {
      var d = dy
      if fusedReLU {
        Elementwise.reluBackward(y: output, dy: dy, dx: maskedGrad)
        d = maskedGrad
      }
      let dx = needInputGradient ? gradInputBuffer(for: dy) : nil
      g.backward(self, x: input!, dy: d, dx: dx)
      return dx
    }
    var d = dy
    var fusedOutput: Tensor<T>? = nil
    if fusedReLU {
      if input!.layout.isBlocked {
        fusedOutput = output  // masked inside the kernel
      } else {
        Elementwise.reluBackward(y: output, dy: dy, dx: maskedGrad)
        d = maskedGrad
      }
    }
    BatchNormKernel.backward(
      x: input!, gamma: weight.value, dy: d, savedMean: savedMean, savedInvStd: savedInvStd,
      training: forwardWasTraining, dGamma: weight.grad, dBeta: bias.grad,
      dx: needInputGradient ? gradInputBuffer(for: dy) : nil, reluOutput: fusedOutput)
    return needInputGradient ? gradInputBuffer(for: dy) : nil
  }
}

/// The chunks of a ghost batch norm's last training forward pass (``BatchNorm/ghostBatchSize``):
/// per chunk its statistics and output, and scratch for the backward pass.
final class GhostChunks<T: Scalar> {
  var active = false
  private var chunks: [Range<Int>] = []
  private var means: [Tensor<T>] = []
  private var invStds: [Tensor<T>] = []
  private var outputs: [Tensor<T>] = []
  private let xView = Tensor<T>(zeros: [0])
  private let dyView = Tensor<T>(zeros: [0])
  private let dxChunk = Tensor<T>(zeros: [0])
  private let dGamma = Tensor<T>(zeros: [0])
  private let dBeta = Tensor<T>(zeros: [0])

  func forward(_ bn: BatchNorm<T>, x: Tensor<T>, size: Int, y: Tensor<T>) throws {
    let n = x.shape[0]
    // `torch.chunk(ceil(N / size))`: chunks of ceil(N / chunks), the last possibly smaller.
    let count = (n + size - 1) / size
    let per = (n + count - 1) / count
    chunks = stride(from: 0, to: n, by: per).map { $0..<min($0 + per, n) }
    while outputs.count < chunks.count {
      means.append(Tensor(zeros: [0]))
      invStds.append(Tensor(zeros: [0]))
      outputs.append(Tensor(zeros: [0]))
    }
    y.resize(x.shape)
    y.layout = x.layout
    let example = x.count / n
    // One running-statistics update per chunk, at momentum / chunks (as Composer).
    let momentum = bn.momentum / T(chunks.count)
    for (k, r) in chunks.enumerated() {
      xView.view(of: x, examples: r)
      try BatchNormKernel.forward(
        x: xView, gamma: bn.weight.value, beta: bn.bias.value, runningMean: bn.runningMean,
        runningVar: bn.runningVar, training: true, momentum: momentum, eps: bn.eps, y: outputs[k],
        savedMean: means[k], savedInvStd: invStds[k], relu: bn.fusedReLU)
      (y.data + r.lowerBound * example).update(from: outputs[k].data, count: r.count * example)
    }
    active = true
  }

  /// `dy` with the fused ReLU's mask already applied; `dGamma`, `dBeta` summed over chunks.
  func backward(_ bn: BatchNorm<T>, x: Tensor<T>, dy: Tensor<T>, dx: Tensor<T>?) {
    let per = x.count / x.shape[0]
    dx?.resize(x.shape)
    dx?.layout = x.layout
    bn.weight.grad.zero()
    bn.bias.grad.zero()
    dGamma.resize(bn.weight.grad.shape)
    dBeta.resize(bn.bias.grad.shape)
    for (k, r) in chunks.enumerated() {
      xView.view(of: x, examples: r)
      dyView.view(of: dy, examples: r)
      BatchNormKernel.backward(
        x: xView, gamma: bn.weight.value, dy: dyView, savedMean: means[k], savedInvStd: invStds[k],
        training: true, dGamma: dGamma, dBeta: dBeta, dx: dx == nil ? nil : dxChunk)
      Elementwise.addInPlace(bn.weight.grad, dGamma)
      Elementwise.addInPlace(bn.bias.grad, dBeta)
      if let dx { (dx.data + r.lowerBound * per).update(from: dxChunk.data, count: r.count * per) }
    }
  }
}

/// `max(x, 0)` element-wise.
public final class ReLU<T: Scalar>: Module<T> {
  private let output = Tensor<T>(zeros: [0])
  /// Set when the preceding layer computes this ReLU (``BatchNorm/fusedReLU``,
  /// ``Linear/fusedReLU``, ``Conv2d/fusedReLU``): forward and backward pass their input
  /// through.
  public var isFused = false
  public override init() {}
  public override func forward(_ x: Tensor<T>) throws -> Tensor<T> {
    if isFused { return x }
    Elementwise.relu(x: x, y: output)
    return output
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    guard needInputGradient else { return nil }
    if isFused { return dy }
    let gradInput = gradInputBuffer(for: dy)
    Elementwise.reluBackward(y: output, dy: dy, dx: gradInput)
    return gradInput
  }
}

/// Max pooling with square windows (default stride = kernel size).
public final class MaxPool2d<T: Scalar>: Module<T> {
  public let geometry: PoolGeometry
  private var inputShape: [Int] = []
  private var argmax: [Int32] = []
  private let output = Tensor<T>(zeros: [0])
  public init(_ kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
    geometry = PoolGeometry(kernel: kernelSize, stride: stride, padding: padding)
  }
  /// BlurPool's form (Composer's `BlurMaxPool2d`): max pooling at stride 1, then the
  /// anti-aliasing filter (``Blur``) at the pool's stride. Set by the `blurpool` surgery.
  public var postBlur: Blur2d<T>?
  public override func forward(_ input: Tensor<T>) throws -> Tensor<T> {
    let x = input  // NCHW or blocked: the kernel handles both
    inputShape = x.shape
    var g = geometry
    if postBlur != nil { g.stride = 1 }
    try Pooling.maxForward(g, x: x, y: output, argmax: &argmax)
    return try postBlur?.forward(output) ?? output
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    guard needInputGradient else { return nil }
    let d = postBlur.map { $0.backward(dy) } ?? dy
    let gradInput = gradInputBuffer(for: d)
    Pooling.maxBackward(inputShape: inputShape, dy: d, argmax: argmax, dx: gradInput)
    return gradInput
  }
}

/// Average pooling with square windows, zero padding counted (PyTorch default).
public final class AvgPool2d<T: Scalar>: Module<T> {
  public let geometry: PoolGeometry
  private var inputShape: [Int] = []
  private let output = Tensor<T>(zeros: [0])
  private let layout = LayoutAdapter<T>()
  public init(_ kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
    geometry = PoolGeometry(kernel: kernelSize, stride: stride, padding: padding)
  }
  public override func forward(_ input: Tensor<T>) throws -> Tensor<T> {
    let x = layout.input(input)
    inputShape = x.shape
    try Pooling.avgForward(geometry, x: x, y: output)
    return output
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    guard needInputGradient else { return nil }
    let gradInput = gradInputBuffer(for: dy)
    Pooling.avgBackward(geometry, inputShape: inputShape, dy: dy, dx: gradInput)
    return layout.gradient(gradInput)
  }
}

/// `[N, C, H, W] -> [N, C]`: the mean of each channel.
public final class GlobalAvgPool2d<T: Scalar>: Module<T> {
  private var inputShape: [Int] = []
  private let output = Tensor<T>(zeros: [0])
  private let layout = LayoutAdapter<T>()
  public override init() {}
  public override func forward(_ input: Tensor<T>) throws -> Tensor<T> {
    let x = layout.input(input)
    inputShape = x.shape
    try Pooling.globalAvgForward(x: x, y: output)
    return output
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    guard needInputGradient else { return nil }
    let gradInput = gradInputBuffer(for: dy)
    Pooling.globalAvgBackward(inputShape: inputShape, dy: dy, dx: gradInput)
    return layout.gradient(gradInput)
  }
}

/// `[N, d1, d2, ...] -> [N, d1*d2*...]` in C order (NCHW), as `torch.flatten(x, 1)`.
public final class Flatten<T: Scalar>: Module<T> {
  private var inputShape: [Int] = []
  private let output = Tensor<T>(zeros: [0])
  private let layout = LayoutAdapter<T>()
  public override init() {}
  public override func forward(_ input: Tensor<T>) throws -> Tensor<T> {
    // A feature-major batch is already flat (``Network/prefersFeatureMajorInput(batch:)``).
    if input.layout.featureMajorBatch != nil {
      inputShape = []
      return input
    }
    let x = layout.input(input)
    inputShape = x.shape
    // A view, not a copy (LeNet's 60x784 batch cost 18 us a step to copy): layers never
    // write into their input.
    output.view(of: x, shape: [x.shape[0], x.count / max(x.shape[0], 1)])
    return output
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    guard needInputGradient else { return nil }
    if inputShape.isEmpty { return dy }  // the input was feature-major: so is its gradient
    let gradInput = gradInputBuffer(for: dy)
    gradInput.copy(from: dy)
    gradInput.reshape(inputShape)
    return layout.gradient(gradInput)
  }
}

/// Applies its children in order. Children are named by position (`"0"`, `"1"`, ...) as
/// in `nn.Sequential`, or explicitly.
public final class Sequential<T: Scalar>: Module<T> {
  public let layers: [(String, Module<T>)]
  public init(_ layers: [Module<T>]) {
    self.layers = layers.enumerated().map { (String($0.offset), $0.element) }
  }
  public init(named layers: [(String, Module<T>)]) { self.layers = layers }
  public override var children: [(String, Module<T>)] { layers }
  public override func forward(_ x: Tensor<T>) throws -> Tensor<T> {
    var h = x
    for (_, l) in layers { h = try l.forward(h) }
    return h
  }
  /// Whether any layer before position `i` has parameters: only then does layer `i` need
  /// its input gradient (LeNet's first linear layer, after `flatten`, does not).
  private lazy var parametersBefore: [Bool] = {
    var seen = false
    return layers.map { _, l in
      defer { seen = seen || !l.namedParameters().isEmpty }
      return seen
    }
  }()
  /// Layer freezing (Composer `layer_freezing`): the first this many layers are frozen, so
  /// the backward pass stops before them (their gradients are left as they were; the
  /// method keeps their values) and the layer after them computes no input gradient
  /// unless one is needed.
  public var frozenPrefix = 0 {
    didSet { parametersAfterFrozen = nil }
  }
  private var parametersAfterFrozen: [Bool]?

  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws -> Tensor<T>? {
    var d = dy
    var before = parametersBefore
    if frozenPrefix > 0 && !needInputGradient {
      if parametersAfterFrozen == nil {
        var seen = false
        parametersAfterFrozen = layers.enumerated().map { i, l in
          defer { seen = seen || (i >= frozenPrefix && !l.1.namedParameters().isEmpty) }
          return seen
        }
      }
      before = parametersAfterFrozen!
    }
    for (i, (_, l)) in layers.enumerated().reversed() {
      if i < frozenPrefix && !needInputGradient { break }
      if needInputGradient || before[i] {
        d = try l.inputGradient(d)
      } else {
        // Nothing before this layer has parameters: the rest of the chain is not needed.
        _ = try l.backward(d, needInputGradient: false)
        break
      }
    }
    return needInputGradient ? d : nil
  }
}

/// The CIFAR ResNet basic block:
/// `out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, where the shortcut is the
/// identity, or a strided 1x1 convolution + batch norm when the width or resolution changes
/// (state_dict names `shortcut.0`, `shortcut.1`, as OpenLTH).
public final class BasicBlock<T: Scalar>: Module<T> {
  public let conv1: Conv2d<T>
  public let bn1: BatchNorm<T>
  public let conv2: Conv2d<T>
  public let bn2: BatchNorm<T>
  public let shortcut: Sequential<T>?
  private let relu1 = ReLU<T>()
  private let relu2 = ReLU<T>()
  private let sum = Tensor<T>(zeros: [0])
  private let gradInput = Tensor<T>(zeros: [0])
  /// Copy of `dL/d(sum)` for projection blocks (both paths read it).
  private let savedGrad = Tensor<T>(zeros: [0])
  /// The shortcut in the main path's layout when the two differ.
  private let shortcutLayout = LayoutAdapter<T>()

  public init(_ inChannels: Int, _ outChannels: Int, downsample: Bool) {
    let stride = downsample ? 2 : 1
    conv1 = Conv2d(inChannels, outChannels, kernelSize: 3, stride: stride, padding: 1, bias: false)
    bn1 = BatchNorm(outChannels)
    conv2 = Conv2d(outChannels, outChannels, kernelSize: 3, stride: 1, padding: 1, bias: false)
    bn2 = BatchNorm(outChannels)
    if downsample || inChannels != outChannels {
      shortcut = Sequential([
        Conv2d(inChannels, outChannels, kernelSize: 1, stride: stride, bias: false),
        BatchNorm(outChannels),
      ])
    } else {
      shortcut = nil
    }
  }
  /// Batch norm + ReLU pairs that run back to back (for fusion); `bn2` is followed by the
  /// residual addition, not by `relu2`.
  public var batchNormReLUPairs: [(BatchNorm<T>, ReLU<T>)] { [(bn1, relu1)] }
  public override var children: [(String, Module<T>)] {
    [("conv1", conv1), ("bn1", bn1), ("relu1", relu1), ("conv2", conv2), ("bn2", bn2), ("relu2", relu2)]
      + (shortcut.map { [("shortcut", $0 as Module<T>)] } ?? [])
  }
  /// Stochastic depth (Huang et al. 2016; Composer `stochastic_depth`), set before each
  /// training step: ``ResidualDrop/keep`` (the block as is), ``ResidualDrop/skip`` (the
  /// whole main path dropped for this batch: `out = relu(shortcut(x))`, its layers not run
  /// and their gradients zero) or ``ResidualDrop/scale(_:)`` (per example `n`, the main
  /// path times `f[n]`, e.g. 0 or `1 / (1 - p)`). Evaluation ignores it and multiplies the
  /// main path by ``evaluationScale``.
  public enum ResidualDrop: Equatable, Sendable {
    case keep
    case skip
    case scale([Float])
  }
  public var residualDrop = ResidualDrop.keep
  public var evaluationScale: Float = 1
  private var skipped = false
  private var scales: [Float]?

  /// The main path's parameters (what a skipped block leaves without gradient).
  private var mainParameters: [Parameter<T>] {
    [conv1.weight, bn1.weight, bn1.bias, conv2.weight, bn2.weight, bn2.bias]
  }

  /// Multiplies example `n` of `t` (first dimension outermost, any layout) by `f[n]`.
  @_specialize(where T == Float)
  private static func scaleExamples(_ t: Tensor<T>, _ f: [Float]) {
    let per = t.count / max(t.shape[0], 1)
    for n in 0..<t.shape[0] where f[n] != 1 {
      let p = t.data + n * per
      for i in 0..<per { p[i] *= T(f[n]) }
    }
  }

  public override func forward(_ x: Tensor<T>) throws -> Tensor<T> {
    skipped = isTraining && residualDrop == .skip
    scales = nil
    if skipped { return try relu2(try shortcut?.forward(x) ?? x) }
    let h = try bn2(conv2(relu1(bn1(conv1(x)))))
    if isTraining, case .scale(let f) = residualDrop {
      scales = f
    } else if !isTraining && evaluationScale != 1 {
      scales = Array(repeating: evaluationScale, count: h.shape[0])
    }
    if let f = scales { Self.scaleExamples(h, f) }  // bn2 does not read its output in its backward pass
    let s = shortcutLayout.input(try shortcut?.forward(x) ?? x, as: h.layout)
    try Elementwise.add(h, s, y: sum)
    return try relu2(sum)
  }
  /// The shortcut's gradient goes into the block's own buffer first, then the main path
  /// (which may use the network's shared gradient buffers) is added to it.
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws -> Tensor<T>? {
    var d = try relu2.inputGradient(dy)
    if skipped {
      for p in mainParameters { p.clearGradient() }
      guard let shortcut else { return needInputGradient ? d : nil }
      return try shortcut.backward(d, needInputGradient: needInputGradient)
    }
    if let shortcut {
      savedGrad.copy(from: d)
      d = savedGrad
      let short = try shortcut.backward(shortcutLayout.gradient(d), needInputGradient: needInputGradient)
      if needInputGradient, let short { gradInput.copy(from: short) }
    } else if needInputGradient {
      gradInput.copy(from: shortcutLayout.gradient(d))
    }
    if let f = scales {
      if d !== savedGrad {
        savedGrad.copy(from: d)
        d = savedGrad
      }
      Self.scaleExamples(d, f)  // the shortcut has read it already
    }
    var g = try bn2.inputGradient(d)
    g = try conv2.inputGradient(g)
    g = try relu1.inputGradient(g)
    g = try bn1.inputGradient(g)
    guard let main = conv1.backward(g, needInputGradient: needInputGradient) else { return nil }
    Elementwise.addInPlace(gradInput, main)
    return gradInput
  }
}
