/// # Engine: tensors, kernels and the threading model
///
/// `Engine` is the bottom layer of LotteryKit. It owns
/// - ``Tensor``: a contiguous, row-major (C order) buffer of `Float` or `Double` with a
///   shape. Image tensors are NCHW, convolution weights OIHW, linear weights
///   `[out, in]`: the layouts of PyTorch, so a PyTorch `state_dict` maps 1:1.
/// - ``Scalar``: the element types (`Float` is the fast path, `Double` is for gradient
///   checks and SynFlow scores) and their matrix products (`Float`: oneDNN's `dnnl_sgemm`
///   where oneDNN is linked, else `cblas_sgemm`; `Double`: `cblas_dgemm`).
/// - ``RandomStream``: counter-based randomness addressed by `(seed, purpose, index)`,
///   so no random number depends on thread count or on how work is split.
/// - ``Parallel``: the threading model. Every parallel loop is cut into a *fixed* number of
///   shards that depends only on the problem size, never on the thread count; threads
///   only decide who computes which shard, and partial results (e.g. per-shard weight
///   gradients) are reduced in shard order. Results are therefore bit-identical at any
///   `--threads`. BLAS itself runs single-threaded inside each shard.
/// - ``Kernels``: forward and backward of every numerical primitive (matrix product,
///   linear, 2-D convolution, pooling, batch norm, ReLU, add, softmax cross-entropy).
///   Each one is tested against a slow loop implementation and, for gradients, central
///   finite differences in `Double`.
///
/// Layers, modules and optimizers that use these kernels live in `NN`.
public enum LotteryKitVersion {
  /// Semantic version of the library and `lth`.
  public static let version = "0.1.0"
}
