import Engine

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
/// the measurements behind it on any machine; see the README's "Sparse kernels" section.
public enum SparseKernelRule {
  /// Linear layers: sparse at or below this density.
  public static let linearDensity = 0.3
  /// Convolutions: sparse at or below this density (stride 1, at least 16 input channels).
  public static var convolutionDensity: Double { Convolution.hasAVX512Kernels ? 0.1 : 0.15 }

  /// Whether a linear layer `[out, in]` at `density` uses sparse kernels for a batch of `batch`.
  public static func linear(outFeatures: Int, inFeatures: Int, density: Double, batch: Int) -> Bool {
    density <= linearDensity
  }

  /// Whether a convolution uses sparse kernels: not the first layer (few input channels),
  /// not strided layers (SparseProp's finding, and ours: see the README), and only at low
  /// density, where the im2col matrix costs less than the dense kernel saves.
  public static func convolution(_ g: ConvGeometry, density: Double, batch: Int) -> Bool {
    g.strideH == 1 && g.strideW == 1 && g.inChannels >= 16 && density <= convolutionDensity
  }
}

nonisolated(unsafe) private var sparseGenerations = 0

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
      let positions = pattern.positions
      let buffer = UnsafeMutableBufferPointer<Int>.allocate(capacity: positions.count)
      _ = buffer.initialize(from: positions)
      sparseGenerations += 1
      p.sparsePositions = (m, buffer, sparseGenerations)
      (mask, kernel, density) = (m, k, pattern.density)
    }
    return kernel
  }
}
