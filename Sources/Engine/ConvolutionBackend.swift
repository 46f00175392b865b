/// Convolution backends: one protocol, several implementations, chosen per layer shape.
///
/// A ``ConvolutionBackend`` computes one convolution layer's forward pass and its backward
/// pass (`dW`, `db`, `dx`) for NCHW activations and OIHW weights, exactly the contract of
/// ``Convolution/forward(_:x:weight:bias:y:workspace:)``. Two implementations exist:
///
/// - ``Im2colConvolution``: im2col + GEMM per example (``Scalar/gemm``; any precision, any
///   shape).
/// - `OneDNNConvolution` (Linux, Float): oneDNN 2.x JIT kernels, direct or Winograd
///   F(4x4, 3x3), on blocked (`nChw16c`) layouts with reorders at the layer boundary.
///
/// Both split the batch into the same fixed ``Parallel/batchShards(_:)`` shards, run each
/// shard single-threaded (BLAS and oneDNN alike), and reduce the shards' weight gradients
/// in shard order, so results never depend on the thread count.
///
/// ``ConvBackendPolicy/auto`` picks a backend by a fixed rule per shape (see
/// ``Convolution/makeBackend(_:inputShape:policy:workspace:)``), not by timing at run time:
/// a timing-based choice would make bit-for-bit results depend on machine load. The rule
/// comes from measurements that `lth bench --conv-layers` repeats on any machine.
public enum ConvBackendPolicy: String, CaseIterable, Sendable, Codable {
  /// oneDNN where it has a JIT kernel for the shape (Float), im2col + BLAS otherwise.
  case auto
  /// im2col + BLAS everywhere.
  case im2col
  /// oneDNN direct convolution everywhere it is available (no Winograd).
  case onednn
}

/// One convolution layer's arithmetic (see the file comment).
open class ConvolutionBackend<T: Scalar>: @unchecked Sendable {
  public let geometry: ConvGeometry
  public init(geometry: ConvGeometry) { self.geometry = geometry }
  /// Short name for reports, e.g. `im2col+blas`, `onednn:jit_wino_4x3:avx512_core`.
  open var name: String { "abstract" }
  /// Whether ``forward(x:weight:bias:y:)`` takes nChw16c input (else the caller converts).
  open var acceptsBlocked: Bool { false }
  /// `y = conv(x, weight) + bias`; `y` is resized to the output shape.
  open func forward(x: Tensor<T>, weight: Tensor<T>, bias: Tensor<T>?, y: Tensor<T>) throws {
    fatalError("ConvolutionBackend.forward is abstract")
  }
  /// Sets up what a backward pass on a batch of `batch` needs (errors surface here, in the
  /// forward pass, rather than in ``backward(x:weight:dy:dWeight:dBias:dx:)``).
  open func prepareBackward(batch: Int, inputLayout: TensorLayout) throws {}
  /// Writes `dWeight`, `dBias` (if non-nil) and `dx` (if non-nil, resized to `x`'s shape).
  open func backward(
    x: Tensor<T>, weight: Tensor<T>, dy: Tensor<T>, dWeight: Tensor<T>, dBias: Tensor<T>?,
    dx: Tensor<T>?
  ) {
    fatalError("ConvolutionBackend.backward is abstract")
  }
}

/// im2col + GEMM (``Scalar/gemm``: oneDNN's `dnnl_sgemm` for `Float` on Linux, BLAS otherwise;
/// ``Convolution/forward(_:x:weight:bias:y:workspace:)``).
public final class Im2colConvolution<T: Scalar>: ConvolutionBackend<T>, @unchecked Sendable {
  public let workspace: ConvWorkspace<T>
  public init(geometry: ConvGeometry, workspace: ConvWorkspace<T> = ConvWorkspace()) {
    self.workspace = workspace
    super.init(geometry: geometry)
  }
  public override var name: String { "im2col+blas" }
  public override func forward(x: Tensor<T>, weight: Tensor<T>, bias: Tensor<T>?, y: Tensor<T>) throws {
    try Convolution.forward(geometry, x: x, weight: weight, bias: bias, y: y, workspace: workspace)
  }
  public override func backward(
    x: Tensor<T>, weight: Tensor<T>, dy: Tensor<T>, dWeight: Tensor<T>, dBias: Tensor<T>?,
    dx: Tensor<T>?
  ) {
    Convolution.backward(
      geometry, x: x, weight: weight, dy: dy, dWeight: dWeight, dBias: dBias, dx: dx,
      workspace: workspace)
  }
}

extension Convolution {
  /// The convolution library besides im2col + BLAS, for run records: `oneDNN 2.6.3`, or
  /// `none` where LotteryKit was built without it.
  public static var library: String {
    #if canImport(CDNNL)
      DNNL.version
    #else
      "none"
    #endif
  }

  /// The instruction set oneDNN dispatches to, e.g. `avx2` or `avx512_core` (`none` without
  /// oneDNN). oneDNN reads `DNNL_MAX_CPU_ISA` once, at its first use, so `DNNL_MAX_CPU_ISA=AVX2`
  /// runs the AVX2 kernels on an AVX-512 machine. What the rule below picks follows from it:
  /// oneDNN 2.6 has Winograd and the nChw16c layout only from `avx512_core` up (nChw8c
  /// below).
  public static var isa: String {
    #if canImport(CDNNL)
      DNNL.isa
    #else
      "none"
    #endif
  }

  /// Whether oneDNN offers Winograd kernels and the nChw16c layout here (AVX-512).
  public static var hasAVX512Kernels: Bool { isa.hasPrefix("avx512") }

  /// Whether oneDNN builds a Winograd kernel for `g` on inputs of `spatial` size on this
  /// machine (asked of oneDNN itself, not inferred from the ISA name).
  public static func winogradAvailable(_ g: ConvGeometry, spatial: (Int, Int)) -> Bool {
    #if canImport(CDNNL)
      OneDNNConvolution(geometry: g, spatial: spatial, winograd: true, workspace: ConvWorkspace()) != nil
    #else
      false
    #endif
  }

  /// The blocked layout oneDNN's direct kernels use here: nChw16c with AVX-512, nChw8c
  /// with AVX2.
  public static var blockedLayout: TensorLayout { hasAVX512Kernels ? .blocked16 : .blocked8 }

  /// ``isa`` for run records: nil where LotteryKit was built without oneDNN.
  public static var onednnISA: String? { isa == "none" ? nil : isa }

  /// The backend for one layer: `geometry` applied to inputs of shape `[N, C, H, W]`
  /// (`N` may change later; `C, H, W` are fixed per layer).
  ///
  /// Rule for ``ConvBackendPolicy/auto`` (measured on 2 cores, batch shards of 7-16
  /// examples; `lth bench --conv-layers` prints the per-layer numbers): oneDNN whenever it
  /// has a JIT kernel for the shape, which beat im2col + BLAS by 1.2-3.5x on every layer of
  /// Conv-2 and ResNet-20; its Winograd F(4x4, 3x3) kernel for 3x3 stride-1 layers with at
  /// least 32 input and output channels (1.3-1.8x faster than its direct kernel there; on
  /// 16-channel layers direct was 5-15% faster, and ResNet-20 steps 15% faster with direct
  /// there); im2col + BLAS for Double, without oneDNN, and for shapes where oneDNN would
  /// fall back to its own GEMM or reference code.
  ///
  /// On AVX2 (no AVX-512, or `DNNL_MAX_CPU_ISA=AVX2`) oneDNN 2.6 has no Winograd, so the
  /// rule gives its direct kernel everywhere it has one, with nChw8c between layers.
  /// Measured on ResNet-20
  /// under the cap (`lth bench --conv-layers`): direct oneDNN beat im2col 1.5-2.0x on every
  /// 3x3 layer with 16 or more input channels; im2col was faster on the 3-channel first
  /// layer (4.1 against 5.0 ms) and the 32->64 1x1 shortcut (2.6 against 3.2 ms), 0.3% of
  /// the step, so the rule stays one rule for both instruction sets.
  public static func makeBackend<T: Scalar>(
    _ g: ConvGeometry, inputShape: [Int], policy: ConvBackendPolicy,
    workspace: ConvWorkspace<T>
  ) -> ConvolutionBackend<T> {
    #if canImport(CDNNL)
      if policy != .im2col, T.self == Float.self, inputShape.count == 4 {
        let winograd =
          policy == .auto && g.kernelH == 3 && g.kernelW == 3 && g.strideH == 1 && g.strideW == 1
          && g.inChannels >= 32 && g.outChannels >= 32
        let fw = workspace as! ConvWorkspace<Float>
        if winograd,
          let b = OneDNNConvolution(
            geometry: g, spatial: (inputShape[2], inputShape[3]), winograd: true, workspace: fw)
        {
          return b as! ConvolutionBackend<T>
        }
        if let b = OneDNNConvolution(
          geometry: g, spatial: (inputShape[2], inputShape[3]), winograd: false, workspace: fw)
        {
          return b as! ConvolutionBackend<T>
        }
      }
    #endif
    return Im2colConvolution(geometry: g, workspace: workspace)
  }

  /// Sums per-shard partial gradients in shard order: `out = parts[0] + parts[1] + ...`.
  static func reduceShards<T: Scalar>(
    _ parts: [Tensor<T>], shards: Int, count: Int, into out: UnsafeMutablePointer<T>
  ) {
    out.update(from: parts[0].data, count: count)
    for s in 1..<max(shards, 1) { addElements(out, parts[s].data, into: out, 0..<count) }
  }
}
