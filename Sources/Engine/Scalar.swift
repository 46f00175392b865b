import CBLAS
import Foundation

#if canImport(CDNNL)
  import CDNNL
#endif

/// Element type of a ``Tensor``: `Float` (fast path) or `Double` (gradient checks, SynFlow).
///
/// Supplies the matrix product `C = alpha * op(A) * op(B) + beta * C` (row-major) and the
/// transcendental functions the kernels need. `Float` products run on oneDNN's `dnnl_sgemm`
/// where oneDNN is linked (Linux), else on BLAS; `Double` products always run on BLAS
/// (``BLASInfo/floatGEMM`` says which, and every run records it).
public protocol Scalar: BinaryFloatingPoint, SIMDScalar, Sendable, CustomStringConvertible, Codable
where RawSignificand: FixedWidthInteger {
  /// Row-major GEMM: `C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C`.
  static func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
    a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
    beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
  static func exp(_ x: Self) -> Self
  static func log(_ x: Self) -> Self
  /// Name used in file formats (`F32`, `F64` as in safetensors).
  static var dtypeName: String { get }
}

extension Float: Scalar {
  @inline(__always)
  public static func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    #if canImport(CDNNL)
      // oneDNN's own OpenMP threads stay at one per calling thread (a per-thread setting),
      // so each shard's product is computed the same way at any thread count.
      omp_set_num_threads(1)
      let status = dnnl_sgemm(
        transA ? 84 : 78, transB ? 84 : 78, Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b,
        Int64(ldb), beta, c, Int64(ldc))  // 84, 78: "T", "N"
      precondition(status == dnnl_success, "dnnl_sgemm failed (status \(status.rawValue))")
    #else
      _ = BLASInfo.singleThreadedOnce
      cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    #endif
  }
  @inline(__always) public static func exp(_ x: Float) -> Float { Foundation.exp(x) }
  @inline(__always) public static func log(_ x: Float) -> Float { Foundation.log(x) }
  public static var dtypeName: String { "F32" }
}

extension Double: Scalar {
  @inline(__always)
  public static func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
    a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
    beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
  ) {
    _ = BLASInfo.singleThreadedOnce
    cblas_dgemm(
      CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }
  @inline(__always) public static func exp(_ x: Double) -> Double { Foundation.exp(x) }
  @inline(__always) public static func log(_ x: Double) -> Double { Foundation.log(x) }
  public static var dtypeName: String { "F64" }
}

/// Information about the BLAS library in use (recorded in every run's `hparams.json`).
public enum BLASInfo {
  /// Build configuration string reported by OpenBLAS (`openblas_get_config`).
  public static var config: String { String(cString: openblas_get_config()) }
  /// Core type OpenBLAS selected (`openblas_get_corename`), e.g. `Haswell`.
  public static var coreName: String { String(cString: openblas_get_corename()) }
  /// How this OpenBLAS was built to run in parallel (`openblas_get_parallel`): `sequential`,
  /// `pthreads` or `openmp` (Debian's libopenblas0-pthread, -openmp or -serial).
  public static var parallelBuild: String {
    switch openblas_get_parallel() {
    case 0: "sequential"
    case 1: "pthreads"
    case 2: "openmp"
    case let v: "unknown(\(v))"
    }
  }
  /// The library behind every `Float` matrix product (dense layers, im2col convolutions):
  /// oneDNN's `dnnl_sgemm` where oneDNN is linked, else BLAS. On x86 it follows oneDNN's ISA
  /// dispatch (``Convolution/onednnISA``; `DNNL_MAX_CPU_ISA` caps it).
  ///
  /// Measured on a 2-core AMD EPYC (Zen 5, family 26 model 2), one thread, LeNet-300-100's
  /// products at batch 60 (`784->300` forward, weight gradient): OpenBLAS 0.3.21 as this
  /// machine configures it (`OPENBLAS_CORETYPE=Haswell`) 235 and 211 us; dnnl_sgemm 127
  /// and 103 us (AVX-512); with `DNNL_MAX_CPU_ISA=AVX2` 220 and 202 us, still ahead of
  /// OpenBLAS's AVX2 kernels; OpenBLAS's own AVX-512 kernels (no `OPENBLAS_CORETYPE`) 142
  /// and 114 us.
  public static var floatGEMM: String {
    #if canImport(CDNNL)
      "oneDNN dnnl_sgemm"
    #else
      "BLAS cblas_sgemm"
    #endif
  }
  /// Thread count OpenBLAS uses for one call (after ``useSingleThreadedBLAS()``, which
  /// the first `Double` product or ``Parallel/threads`` runs; read here too, so a record
  /// made before either says what the products will use).
  public static var threads: Int {
    _ = singleThreadedOnce
    return Int(openblas_get_num_threads())
  }
  /// Environment variables that steer OpenBLAS, as set for this process.
  public static var environment: [String: String] {
    let keys = ["OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"]
    var out: [String: String] = [:]
    for k in keys { if let v = ProcessInfo.processInfo.environment[k] { out[k] = v } }
    return out
  }
  /// Makes every BLAS call single-threaded; parallelism comes from ``Parallel`` shards.
  public static func useSingleThreadedBLAS() { openblas_set_num_threads(1) }
  /// Runs ``useSingleThreadedBLAS()`` once, before the first GEMM of the process, so that a
  /// program that never sets ``Parallel/threads`` gets the same bits too (OpenBLAS's own
  /// threads pick other kernels for some shapes, and so round differently).
  static let singleThreadedOnce: Void = useSingleThreadedBLAS()
}
