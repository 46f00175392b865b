import CBLAS

/// Small dense linear solves through LAPACK (OpenBLAS's `dgesv`), for least-squares fits.
public enum LinearAlgebra {
  /// Solves `A x = b` for an `n x n` matrix `a` given row by row. Throws when `A` is
  /// singular to working precision (LAPACK's `info > 0`).
  public static func solve(_ a: [Double], _ b: [Double], n: Int) throws -> [Double] {
    precondition(a.count == n * n && b.count == n, "solve: A must be n x n and b of length n")
    // Column-major copy of A (LAPACK's layout).
    var col = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { col[j * n + i] = a[i * n + j] } }
    var x = b
    var ipiv = [Int32](repeating: 0, count: n)
    var (nn, nrhs, lda, ldb, info) = (Int32(n), Int32(1), Int32(n), Int32(n), Int32(0))
    dgesv_(&nn, &nrhs, &col, &lda, &ipiv, &x, &ldb, &info)
    guard info == 0 else {
      throw EngineError(
        info > 0 ? "singular matrix (pivot \(info) is zero)" : "dgesv: argument \(-info) is invalid")
    }
    return x
  }
}
