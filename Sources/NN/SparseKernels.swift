import Engine
import Synchronization

/// Whether pruned layers (a weight with a mask) compute with sparse kernels
/// (``Engine/SparsePattern``) instead of dense arithmetic on masked weights.
///
/// - `auto`: the fixed rule ``SparseKernelRule`` per layer; dense where sparse does not pay.
/// - `off`: dense kernels on masked weights everywhere (LotteryKit before sparse kernels,
///   bit for bit).
/// - `on`: sparse kernels for every pruned layer, whatever its density.
///
/// Layers without a mask are dense under every policy. Under `auto` and `on` the optimizer
/// keeps a pruned weight, its gradient and its state in compact form (surviving entries
/// only, ``Parameter/updatePositions``): the same numbers as the masked dense update,
/// without touching the pruned entries. Sparse and dense
/// kernels agree to rounding, not bit for bit, so a policy other than `auto` is part of a
/// run's hyperparameters.
public enum SparseKernelPolicy: String, CaseIterable, Sendable, Codable {
  case auto, off, on
}

/// The rule `auto` applies, per layer and call: a function of the layer's shape, its
/// density, the batch size and the instruction set, never a timing taken at run time
/// (that would make results depend on machine load). `lth bench --sparse-layers` prints
/// the measurements behind it on any machine; docs/benchmarks.md (sparse-kernel rule) gives
/// the table it was read from (2-core AMD EPYC Zen 4, training at batch 60 and 128, and
/// inference at batch 1 and 500).
public enum SparseKernelRule {
  /// No linear layer goes sparse above this density.
  public static let maxLinearDensity = 0.35
  /// No convolution goes sparse above this density.
  public static let maxConvolutionDensity = 0.35
  /// No layer of any kind goes sparse above this density (under `auto`).
  public static var maxDensity: Double { max(maxLinearDensity, maxConvolutionDensity) }
  /// Optimizers keep a pruned weight in compact form whenever its layer's backward pass runs
  /// sparse kernels (they write the compact gradient and skip the dense one), and at or
  /// below this density on dense kernels too. Above it, on dense kernels, the masked dense
  /// update is cheaper (its loops are contiguous SIMD; the compact form gathers and
  /// scatters): LeNet at 41% on dense kernels, 0.53 against 0.49 ms a step; at 1 in 5
  /// weights about the same. On sparse kernels the compact form wins at every density
  /// `auto` runs them: LeNet at 33% and 21% (both hidden layers sparse), whole steps 1.29x
  /// and 1.83x faster than dense against 1.20x and 1.63x with the masked dense update; at
  /// 26%, in the machine's slow state, 1.25x against 1.10x (`lth bench --density D
  /// --compare-dense`).
  public static let maxCompactUpdateDensity = 0.2

  /// Linear layers `[out, in]`. Tiny layers (under 10,000 weights) stay dense when their
  /// input is batch-major: the sparse kernels' fixed costs (transposes, shards) exceed the
  /// work (256->10 at 5%, timed alone: 0.5x); behind a sparse layer see below.
  /// Small batches (under 16) stay dense except for huge layers (1M weights and more, at
  /// 20% or less), where the dense product is memory-bound (16384->256 at batch 1: 1.2x at
  /// 20%, 2.5x at 10%).
  ///
  /// The dense product is oneDNN's `dnnl_sgemm` (``Engine/BLASInfo/floatGEMM``), which runs
  /// AVX-512 kernels where oneDNN dispatches them (`avx512Dense`) and there does about twice
  /// the work per cycle of its AVX2 kernels; the sparse linear kernels are AVX2 everywhere. So the
  /// density limits depend on the ISA (measured on a 2-core AMD EPYC, Zen 5; as dense /
  /// sparse time of the layer alone, `lth bench --sparse-layers`, unless said otherwise):
  ///
  /// | layer | AVX2 | AVX-512 |
  /// |---|---|---|
  /// | wide input (``Engine/SparseLinear/wideInput`` features and more), batch up to 128 | 25% | 10% |
  /// | wide input, larger batches | 10% | 5% |
  /// | `in x batch` under 128K floats (training batches) | 35% | 28% |
  /// | under 512K | 25% | 15% |
  /// | under 4M | 10% | 5% |
  /// | larger | 5% | 2.5% |
  ///
  /// AVX2 column (measured against OpenBLAS's AVX2 GEMM, which `dnnl_sgemm` under
  /// `DNNL_MAX_CPU_ISA=AVX2` beats by 5-10%): wide 16384->256 at batch 60 1.5x at 20%, 2.3x
  /// at 10%, at batch 500 1.2x at 10%, 0.9x at 20%; 784->300 at batch 60 1.32x at 26%,
  /// 1.15x at 33%, at batch 128 1.2x at 33%, at batch 500 1.23x at 26%, 0.85-1.0x at 33%.
  /// AVX-512 column: 16384->256 at batch 60 1.14x at 10%, 0.94x at 15%, 0.77x at 20%, at
  /// batch 500 1.22x at 5%, 0.89x at 10%; 784->300 at batch 60 1.11x at 20%, 0.89x at 25%
  /// alone, and whole LeNet steps (both hidden layers sparse, feature-major between them,
  /// `lth bench --compare-dense`) 1.32x at 21%, 1.05-1.10x at 26%, 0.96x at 30%, 0.90x at
  /// 33%; at batch 500 1.28x at 15%, 0.97x at 20%. The two largest classes were not
  /// measured under AVX-512 and take half the AVX2 limit (halving the density about doubles
  /// the sparse speed, and AVX-512 at most doubles the dense one).
  ///
  /// Layers under 100,000 weights go sparse at 15% at most (300->100 at 20%: 1.0x, 15%: 1.25x
  /// with AVX-512, 10%: 1.25x with AVX2, timed alone with a batch-major input), unless their
  /// input arrives feature-major from a sparse layer (`featureMajorInput`): then the
  /// transposes that made them lose are gone and the general limit applies (LeNet's 300->100
  /// behind a sparse 784->300, whole training steps against dense at 33%, 26%, 21% and 17%
  /// with AVX2-class dense products: 1.22x, 1.42x, 1.63x and 2.13x with it sparse, 1.17x,
  /// 1.31x, 1.44x and 1.80x with it dense).
  public static func linear(
    outFeatures: Int, inFeatures: Int, density: Double, batch: Int, featureMajorInput: Bool = false,
    avx512Dense: Bool = Convolution.hasAVX512Kernels
  ) -> Bool {
    let weights = outFeatures * inFeatures
    // Tiny layers: fixed costs win, except behind a sparse layer, whose feature-major output
    // the dense product would have to read transposed and hand back batch-major (LeNet's
    // 100->10 output layer, whole steps against dense: 3.71x -> 4.05x at 3.6%, 1.18x ->
    // 1.24-1.28x at 20%, 1.03x -> 1.07x at 27%, with it sparse).
    if weights < 10_000 && !featureMajorInput { return false }
    if batch < 16 { return weights >= 1_000_000 && density <= 0.2 }
    var limit: Double
    if inFeatures >= SparseLinear.wideInput {
      limit = batch <= 128 ? (avx512Dense ? 0.1 : 0.25) : (avx512Dense ? 0.05 : 0.1)
    } else {
      // Runs at every forward pass of every pruned layer: no array built here.
      let activations = inFeatures * batch
      switch (activations, avx512Dense) {
      case (..<(128 * 1024), false): limit = maxLinearDensity
      case (..<(128 * 1024), true): limit = 0.28
      case (..<(512 * 1024), false): limit = 0.25
      case (..<(512 * 1024), true): limit = 0.15
      case (..<(4 * 1024 * 1024), false): limit = 0.1
      case (..<(4 * 1024 * 1024), true): limit = 0.05
      case (_, false): limit = 0.05
      case (_, true): limit = 0.025
      }
    }
    if weights < 100_000 && !featureMajorInput { limit = min(limit, 0.15) }
    return density <= limit
  }

  /// Convolutions. Strided layers stay dense (ResNet-20's stride-2 3x3 and 1x1 layers at
  /// 10-20%: 0.5-0.97x; SparseProp found the same). Layers with fewer than 16 input
  /// channels (the first layer; im2col form) are sparse at or below 30% for training-sized
  /// batches (Conv-2's 3->64 at 30%: 2.0x) but only at 10% or less at batch 500 (0.8x at
  /// 30%, 1.2x at 10%). Stride-1 layers with 16 or more (direct form) are sparse at or
  /// below 35% where oneDNN runs its direct kernel (16->16 at 20%: 1.3-1.65x, at 50%:
  /// 0.93x), but only at or below 12% where it runs Winograd, which does a quarter of the
  /// multiplications (layers with 32 or more channels under AVX-512; 64->64 at 20%: 0.73x,
  /// 10%: 1.43x). Where all three direct kernels run 16 lanes wide for inputs of size
  /// `input` (AVX-512, see ``Engine/Sparse/hasWideVectors`` and
  /// ``Engine/SparseConvolution/wideKernels(_:h:w:)``), Winograd layers
  /// are sparse at or below 16%: at 18%, Conv-2's 64->64 on 32-wide maps 1.08x and
  /// ResNet-20's 32->32 on 16-wide maps 1.15-1.44x; at 20%, 1.01x and 1.20-1.38x; its 64->64
  /// on 8-wide maps (8 lanes) 0.85-0.90x at 18%, 1.04-1.07x at 15%. Measured on Zen 5 only
  /// (full-width AVX-512 units), in training. Without `input`, 12%.
  public static func convolution(
    _ g: ConvGeometry, density: Double, batch: Int, input: (h: Int, w: Int)? = nil
  ) -> Bool {
    guard g.strideH == 1 && g.strideW == 1 else { return false }
    if g.inChannels < 16 { return density <= (batch <= 256 ? 0.3 : 0.1) }
    let winograd =
      Convolution.hasAVX512Kernels && g.kernelH == 3 && g.kernelW == 3 && g.inChannels >= 32
      && g.outChannels >= 32
    let wide =
      Sparse.hasWideVectors
      && (input.map {
        let k = SparseConvolution.wideKernels(g, h: $0.h, w: $0.w)
        return k.forward && k.inputGradient && k.weightGradient
      } ?? false)
    return density <= (winograd ? (wide ? 0.16 : 0.12) : maxConvolutionDensity)
  }
}

/// Numbers the surviving-position lists, process-wide (networks may plan concurrently).
private let sparseGenerations = Atomic<Int>(0)

/// The sparse plan of one weight for its current mask, shared by ``Linear`` and ``Conv2d``:
/// rebuilt when the mask object changes (pruning installs a new mask tensor per level), it
/// zeroes pruned weights and gradients and gives the parameter its surviving positions for
/// the optimizer.
final class SparsePlan<T: Scalar, Kernel> {
  private(set) var mask: Tensor<T>?
  private(set) var kernel: Kernel?
  private(set) var density = 1.0

  /// The kernel for `p`'s mask under `policy` (nil: dense, no mask, or not Float).
  func kernel(
    for p: Parameter<T>, policy: SparseKernelPolicy, build: (Tensor<Float>) throws -> (Kernel, SparsePattern)
  ) throws -> Kernel? {
    guard policy != .off, T.self == Float.self, let m = p.mask else {
      if mask != nil { p.sparsePositions = nil }
      (mask, kernel) = (nil, nil)
      return nil
    }
    if m !== mask {
      guard m.count == p.value.count else {
        throw EngineError("mask of shape \(m.shape) does not match its weight \(p.value.shape)")
      }
      let (k, pattern) = try build(m as! Tensor<Float>)
      p.applyMask()
      Updates.multiply(p.grad, by: m)
      // Positions (8 bytes a surviving weight) only where sparse kernels may run.
      if policy == .on || pattern.density <= SparseKernelRule.maxDensity {
        let positions = pattern.positions
        let buffer = UnsafeMutableBufferPointer<Int>.allocate(capacity: positions.count)
        _ = buffer.initialize(from: positions)
        let generation = sparseGenerations.wrappingAdd(1, ordering: .relaxed).newValue
        p.sparsePositions = (
          m, buffer, generation, always: pattern.density <= SparseKernelRule.maxCompactUpdateDensity
        )
      } else {
        p.sparsePositions = nil
      }
      (mask, kernel, density) = (m, k, pattern.density)
    }
    return kernel
  }
}
