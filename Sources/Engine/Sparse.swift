#if arch(x86_64)
  import _Builtin_intrinsics.intel
#endif

/// Sparse kernels for pruned layers: a weight matrix `W: [rows, cols]` whose mask is fixed
/// for a whole training run (one IMP level) is stored as a ``SparsePattern`` (compressed
/// rows, plus the same entries by column), built once, and multiplied without touching
/// pruned entries.
///
/// Three kernels serve every sparse layer (linear and convolution alike):
///
/// - ``spmm(_:transposed:values:source:sourceStride:width:destination:rows:bias:)``:
///   `D[r, j] = b[r] + sum_{e in row r} v[e] * S[col(e), j]` for `j < width`, vectorised
///   over `j` (8 lanes, fused multiply-add, 32 lanes a tile). With the pattern by rows this is
///   `W * S`, by columns `W^T * S`.
/// - ``sampledProduct(_:rows:a:b:stride:width:into:accumulate:)``: for every surviving
///   entry `e = (r, c)`, `g[e] = sum_j A[r, j] * B[c, j]`: the weight gradient `dW = dY X^T`
///   at the surviving positions only (a sampled dense-dense product). Pruned gradients
///   are never computed, so pruned weights cannot come back.
///
/// A linear layer runs them on feature-major activations (`X^T: [in, N]`, the batch is the
/// vector dimension): `Y^T = W X^T + b`, `dX^T = W^T dY^T`, `dW = dY^T X` sampled. A
/// convolution runs them per example on the im2col matrix (`col: [C*KH*KW, OH*OW]`):
/// `y_n = W col_n + b`, `dcol_n = W^T dy_n` (then col2im), `dW += dy_n col_n^T` sampled.
///
/// Every output element is computed by one fixed loop in one shard, in entry order, so the
/// results do not depend on the thread count or on how rows are split into shards.
/// Sparse and dense kernels agree to rounding, not bit for bit (different summation order
/// and fused multiply-adds).
public final class SparsePattern: @unchecked Sendable {
  public let rows: Int
  public let cols: Int
  /// Compressed rows: entries of row `r` are `rowStart[r] ..< rowStart[r + 1]`, column
  /// `colIndex[e]`, dense position `r * cols + colIndex[e]`, in increasing column order.
  public let rowStart: UnsafeMutableBufferPointer<Int32>
  public let colIndex: UnsafeMutableBufferPointer<Int32>
  /// The same entries by column: column `c` holds `colStart[c] ..< colStart[c + 1]`, row
  /// `transposedRow[k]`, row-order entry `transposedEntry[k]`.
  public let colStart: UnsafeMutableBufferPointer<Int32>
  public let transposedRow: UnsafeMutableBufferPointer<Int32>
  public let transposedEntry: UnsafeMutableBufferPointer<Int32>

  /// Surviving entries.
  public var count: Int { colIndex.count }
  /// Surviving fraction of `rows * cols`.
  public var density: Double { Double(count) / Double(max(rows * cols, 1)) }

  /// The pattern of a 0/1 mask of `rows * cols` entries (row-major; any trailing shape
  /// flattened into columns, e.g. OIHW weights as `[O, I*KH*KW]`). Nonzero means kept.
  public init<T: Scalar>(mask: Tensor<T>, rows: Int) throws {
    guard rows > 0, mask.count % rows == 0, mask.count < Int(Int32.max) else {
      throw EngineError("sparse pattern: a mask of shape \(mask.shape) cannot have \(rows) rows")
    }
    self.rows = rows
    cols = mask.count / rows
    var nnz = 0
    for i in 0..<mask.count where mask.data[i] != 0 { nnz += 1 }
    rowStart = .allocate(capacity: rows + 1)
    colIndex = .allocate(capacity: nnz)
    colStart = .allocate(capacity: cols + 1)
    transposedRow = .allocate(capacity: nnz)
    transposedEntry = .allocate(capacity: nnz)
    colStart.initialize(repeating: 0)
    var e = 0
    for r in 0..<rows {
      rowStart[r] = Int32(e)
      for c in 0..<cols where mask.data[r * cols + c] != 0 {
        colIndex[e] = Int32(c)
        colStart[c + 1] += 1
        e += 1
      }
    }
    rowStart[rows] = Int32(e)
    for c in 0..<cols { colStart[c + 1] += colStart[c] }
    var next = Array(colStart.prefix(cols))
    for r in 0..<rows {
      for e in Int(rowStart[r])..<Int(rowStart[r + 1]) {
        let c = Int(colIndex[e])
        let k = Int(next[c])
        transposedRow[k] = Int32(r)
        transposedEntry[k] = Int32(e)
        next[c] += 1
      }
    }
  }

  deinit {
    for b in [rowStart, colIndex, colStart, transposedRow, transposedEntry] { b.deallocate() }
  }

  /// Dense position (`r * cols + c`) of every entry, in row order.
  public var positions: [Int] {
    var out: [Int] = []
    out.reserveCapacity(count)
    for r in 0..<rows {
      for e in Int(rowStart[r])..<Int(rowStart[r + 1]) { out.append(r * cols + Int(colIndex[e])) }
    }
    return out
  }

  /// ``gather(_:into:transposed:)`` for the entries of `rows` only (row order).
  public func gather(
    _ weight: UnsafePointer<Float>, into values: UnsafeMutablePointer<Float>, rows: Range<Int>
  ) {
    for r in rows {
      let w = weight + r * cols
      for e in Int(rowStart[r])..<Int(rowStart[r + 1]) { values[e] = w[Int(colIndex[e])] }
    }
  }

  /// ``scatter(_:into:)`` for the entries of `rows` only.
  public func scatter(
    _ values: UnsafePointer<Float>, into weight: UnsafeMutablePointer<Float>, rows: Range<Int>
  ) {
    for r in rows {
      let w = weight + r * cols
      for e in Int(rowStart[r])..<Int(rowStart[r + 1]) { w[Int(colIndex[e])] = values[e] }
    }
  }

  /// `values[e] = weight[position(e)]` in row order (`transposed`: in column order).
  public func gather(
    _ weight: UnsafePointer<Float>, into values: UnsafeMutablePointer<Float>, transposed: Bool = false
  ) {
    if transposed {
      for c in 0..<cols {
        for k in Int(colStart[c])..<Int(colStart[c + 1]) {
          values[k] = weight[Int(transposedRow[k]) * cols + c]
        }
      }
    } else {
      for r in 0..<rows {
        let w = weight + r * cols
        for e in Int(rowStart[r])..<Int(rowStart[r + 1]) { values[e] = w[Int(colIndex[e])] }
      }
    }
  }

  /// `weight[position(e)] = values[e]` in row order (other positions untouched).
  public func scatter(_ values: UnsafePointer<Float>, into weight: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
      let w = weight + r * cols
      for e in Int(rowStart[r])..<Int(rowStart[r + 1]) { w[Int(colIndex[e])] = values[e] }
    }
  }
}

/// One block of columns of a pattern: the entries of row `r` whose columns lie in block `b`
/// (columns `b * width ..< (b + 1) * width`) are `entries(r)`, a sub-range of the row.
public struct ColumnBlock {
  let starts: UnsafePointer<Int32>
  let stride: Int
  let b: Int
  @inline(__always) func entries(_ r: Int) -> (Int, Int) {
    (Int(starts[r * stride + b]), Int(starts[r * stride + b + 1]))
  }
}

/// Column blocks of a pattern (``SparseLinear`` with a wide input: the rows of the
/// feature-major input that one block reads stay in L2 while every output row uses them).
public final class ColumnBlocks: @unchecked Sendable {
  public let width: Int
  public let count: Int
  private let starts: UnsafeMutableBufferPointer<Int32>
  public init(_ p: SparsePattern, width: Int) {
    self.width = width
    count = (p.cols + width - 1) / width
    starts = .allocate(capacity: p.rows * (count + 1))
    for r in 0..<p.rows {
      var e = Int(p.rowStart[r])
      for b in 0...count {
        while b < count && e < Int(p.rowStart[r + 1]) && Int(p.colIndex[e]) < b * width { e += 1 }
        starts[r * (count + 1) + b] = Int32(b == count ? Int(p.rowStart[r + 1]) : e)
      }
    }
  }
  deinit { starts.deallocate() }
  public func block(_ b: Int) -> ColumnBlock {
    ColumnBlock(starts: starts.baseAddress!, stride: count + 1, b: b)
  }
}

public enum Sparse {
  typealias V = SIMD8<Float>

  /// Unaligned 8-lane load and store. The intrinsics always inline; the generic
  /// `storeBytes(of:as:)` was sometimes emitted as a call (a 2% share of LeNet's sparse step).
  @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V {
    #if arch(x86_64)
      _mm256_loadu_ps(p)
    #else
      UnsafeRawPointer(p).loadUnaligned(as: V.self)
    #endif
  }
  @inline(__always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
    #if arch(x86_64)
      _mm256_storeu_ps(p, v)
    #else
      UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    #endif
  }
  /// `a * b + c` with one rounding.
  @inline(__always) static func fma(_ a: V, _ b: V, _ c: V) -> V {
    #if arch(x86_64)
      _mm256_fmadd_ps(a, b, c)
    #else
      c.addingProduct(a, b)
    #endif
  }

  /// Sparse times dense: for `r` in `rows`,
  /// `D[r, j] = bias[r] + sum_e values[e] * S[index(e), j]`, `j < width`, where `e` runs over
  /// row `r` of `pattern` (`transposed`: over column `r`, i.e. `W^T`, with `values` in
  /// column order). `S` rows are `sourceStride` apart. `D[r, j]` is stored at
  /// `destination[r * width + j]` (rows `destinationStride` apart when given).
  ///
  /// Tiles of 8, 4 or 1 vectors (64, 32 or 8 lanes) keep their sums in registers over a
  /// row's entries; every lane's sum is the same chain of FMAs whatever tile holds it.
  @inline(never)
  public static func spmm(
    _ pattern: SparsePattern, transposed: Bool, values: UnsafePointer<Float>,
    source: UnsafePointer<Float>, sourceStride: Int, width: Int,
    destination: UnsafeMutablePointer<Float>, destinationStride: Int? = nil, rows: Range<Int>,
    bias: UnsafePointer<Float>?,
    block: ColumnBlock? = nil, accumulate: Bool = false, denseValues: Bool = false,
    finish: FeatureMajorFinish? = nil
  ) {
    precondition(!denseValues || !transposed, "spmm reads a dense weight by rows only")
    if denseValues {
      // The weight matrix itself (`values[r * cols + c]`): no gather pass before the product.
      let cols = pattern.cols
      spmmRows(
        pattern, transposed: false, source: source, sourceStride: sourceStride, width: width,
        destination: destination, destinationStride: destinationStride, rows: rows, bias: bias, block: block,
        accumulate: accumulate, finish: finish
      ) { r, index, e in values[r * cols + Int(index[e])] }
    } else {
      spmmRows(
        pattern, transposed: transposed, source: source, sourceStride: sourceStride, width: width,
        destination: destination, destinationStride: destinationStride, rows: rows, bias: bias, block: block,
        accumulate: accumulate, finish: finish
      ) { _, _, e in values[e] }
    }
  }

  /// What a feature-major output (``TensorLayout/featureMajor(batch:)``) needs once its sums
  /// are complete, applied to each vector as it is stored: ReLU (with `relu`, as
  /// ``Elementwise/relu(x:y:)``), then zeros in lanes `batch ..< ld` (the bias reached
  /// them), the layout's contract. Same bits as a pass of its own after the product
  /// (LeNet's hidden layers: that pass cost about 1.5 us a step).
  public struct FeatureMajorFinish: Sendable {
    public let relu: Bool
    public let batch: Int
    public init(relu: Bool, batch: Int) { (self.relu, self.batch) = (relu, batch) }
    @inline(__always) func apply(_ a: V, lane j: Int) -> V {
      var v = a
      if relu { v *= Sparse.step(v) }
      if j + 8 > batch {
        v = v.replacing(
          with: 0, where: V(0, 1, 2, 3, 4, 5, 6, 7) + V(repeating: Float(j)) .>= V(repeating: Float(batch)))
      }
      return v
    }
  }

  @inline(__always)
  static func spmmRows(
    _ pattern: SparsePattern, transposed: Bool, source: UnsafePointer<Float>, sourceStride: Int, width: Int,
    destination: UnsafeMutablePointer<Float>, destinationStride: Int?, rows: Range<Int>,
    bias: UnsafePointer<Float>?, block: ColumnBlock?, accumulate: Bool, finish: FeatureMajorFinish? = nil,
    value: (_ row: Int, _ index: UnsafePointer<Int32>, _ entry: Int) -> Float
  ) {
    let start = transposed ? pattern.colStart.baseAddress! : pattern.rowStart.baseAddress!
    let index = transposed ? pattern.transposedRow.baseAddress! : pattern.colIndex.baseAddress!
    for r in rows {
      let (e0, e1) = block.map { $0.entries(r) } ?? (Int(start[r]), Int(start[r + 1]))
      let b0 = V(repeating: bias?[r] ?? 0)
      let d = destination + r * (destinationStride ?? width)
      // The sums start from the bias, or (accumulate) from what the destination holds: a
      // row computed block of columns by block continues the same chain of FMAs.
      @inline(__always) func initial(_ j: Int) -> V { accumulate ? load(d + j) : b0 }
      @inline(__always) func put(_ a: V, _ j: Int) { store(finish.map { $0.apply(a, lane: j) } ?? a, d + j) }
      var j = 0
      while j + 8 <= width {
        let s0 = source + j
        switch min(8, (width - j) / 8) {
        case 8...:
          // Eight independent sums: the fused multiply-adds of one entry do not wait for
          // those of the previous one (a batch of 64 is one tile).
          var (a0, a1, a2, a3, a4, a5, a6, a7) = (
            initial(j), initial(j + 8), initial(j + 16), initial(j + 24), initial(j + 32), initial(j + 40),
            initial(j + 48), initial(j + 56)
          )
          for e in e0..<e1 {
            let v = V(repeating: value(r, index, e))
            let s = s0 + Int(index[e]) * sourceStride
            a0 = fma(v, load(s), a0)
            a1 = fma(v, load(s + 8), a1)
            a2 = fma(v, load(s + 16), a2)
            a3 = fma(v, load(s + 24), a3)
            a4 = fma(v, load(s + 32), a4)
            a5 = fma(v, load(s + 40), a5)
            a6 = fma(v, load(s + 48), a6)
            a7 = fma(v, load(s + 56), a7)
          }
          put(a0, j)
          put(a1, j + 8)
          put(a2, j + 16)
          put(a3, j + 24)
          put(a4, j + 32)
          put(a5, j + 40)
          put(a6, j + 48)
          put(a7, j + 56)
          j += 64
        case 4...:
          var (a0, a1, a2, a3) = (initial(j), initial(j + 8), initial(j + 16), initial(j + 24))
          for e in e0..<e1 {
            let v = V(repeating: value(r, index, e))
            let s = s0 + Int(index[e]) * sourceStride
            a0 = fma(v, load(s), a0)
            a1 = fma(v, load(s + 8), a1)
            a2 = fma(v, load(s + 16), a2)
            a3 = fma(v, load(s + 24), a3)
          }
          put(a0, j)
          put(a1, j + 8)
          put(a2, j + 16)
          put(a3, j + 24)
          j += 32
        default:
          var a0 = initial(j)
          for e in e0..<e1 {
            a0 = fma(V(repeating: value(r, index, e)), load(s0 + Int(index[e]) * sourceStride), a0)
          }
          put(a0, j)
          j += 8
        }
      }
      // The tail lanes of a width that is not a whole number of vectors (convolutions
      // with odd output sizes); the same fused multiply-add per lane.
      while j < width {
        var a = accumulate ? d[j] : b0[0]
        for e in e0..<e1 { a = a.addingProduct(value(r, index, e), source[Int(index[e]) * sourceStride + j]) }
        d[j] = a
        j += 1
      }
    }
  }

  /// Sampled dense-dense product over the rows `rows` of `pattern`: for each entry
  /// `e = (r, c)`, `out[e] (+)= sum_{j < width} A[r, j] * B[c, j]` (rows of `A` and `B`
  /// `stride` apart). Each sum runs over 16-lane blocks in two vectors, then adds the 8
  /// lanes in a fixed tree, then the tail lanes: the same order for every entry, whatever
  /// the thread count. Two entries at a time keep four independent chains in flight.
  @inline(never)
  public static func sampledProduct(
    _ pattern: SparsePattern, rows: Range<Int>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    stride: Int, bStride: Int? = nil, width: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool,
    block: ColumnBlock? = nil, denseOutput: Bool = false
  ) {
    let bs = bStride ?? stride
    let cols = pattern.cols
    // `out[e]`, or with `denseOutput` the dense gradient matrix `out[r * cols + c]` (no
    // scatter pass after the product).
    @inline(__always) func slot(_ r: Int, _ e: Int) -> Int {
      denseOutput ? r * cols + Int(pattern.colIndex[e]) : e
    }
    @inline(__always) func finish(
      _ s0: V, _ s1: V, _ ar: UnsafePointer<Float>, _ br: UnsafePointer<Float>, _ j0: Int
    ) -> Float {
      let s = s0 + s1
      var acc = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
      for j in j0..<width { acc = acc.addingProduct(ar[j], br[j]) }
      return acc
    }
    let vectorEnd = width / 8 * 8
    for r in rows {
      let ar = a + r * stride
      var (e, e1) = block.map { $0.entries(r) } ?? (Int(pattern.rowStart[r]), Int(pattern.rowStart[r + 1]))
      // Eight entries at a time when the width is whole vectors (feature-major activations):
      // eight 8-lane partial sums, one register transpose, and the eight dot products come
      // out as one vector (the row's `a` vector is loaded once for the eight).
      while width == vectorEnd && e + 8 <= e1 {
        let b0 = b + Int(pattern.colIndex[e]) * bs
        let b1 = b + Int(pattern.colIndex[e + 1]) * bs
        let b2 = b + Int(pattern.colIndex[e + 2]) * bs
        let b3 = b + Int(pattern.colIndex[e + 3]) * bs
        let b4 = b + Int(pattern.colIndex[e + 4]) * bs
        let b5 = b + Int(pattern.colIndex[e + 5]) * bs
        let b6 = b + Int(pattern.colIndex[e + 6]) * bs
        let b7 = b + Int(pattern.colIndex[e + 7]) * bs
        var (s0, s1, s2, s3, s4, s5, s6, s7) = (V(), V(), V(), V(), V(), V(), V(), V())
        var j = 0
        while j < width {
          let x = load(ar + j)
          s0 = fma(x, load(b0 + j), s0)
          s1 = fma(x, load(b1 + j), s1)
          s2 = fma(x, load(b2 + j), s2)
          s3 = fma(x, load(b3 + j), s3)
          s4 = fma(x, load(b4 + j), s4)
          s5 = fma(x, load(b5 + j), s5)
          s6 = fma(x, load(b6 + j), s6)
          s7 = fma(x, load(b7 + j), s7)
          j += 8
        }
        let t = transpose8x8(s0, s1, s2, s3, s4, s5, s6, s7)
        let sums = ((t.0 + t.1) + (t.2 + t.3)) + ((t.4 + t.5) + (t.6 + t.7))
        if denseOutput {
          for k in 0..<8 {
            let o = slot(r, e + k)
            out[o] = accumulate ? out[o] + sums[k] : sums[k]
          }
        } else {
          store(accumulate ? load(out + e) + sums : sums, out + e)
        }
        e += 8
      }
      while e + 1 < e1 {
        let br = b + Int(pattern.colIndex[e]) * bs
        let cr = b + Int(pattern.colIndex[e + 1]) * bs
        var (s0, s1, t0, t1) = (V(), V(), V(), V())
        var j = 0
        while j + 16 <= width {
          let (x0, x1) = (load(ar + j), load(ar + j + 8))
          s0 = fma(x0, load(br + j), s0)
          s1 = fma(x1, load(br + j + 8), s1)
          t0 = fma(x0, load(cr + j), t0)
          t1 = fma(x1, load(cr + j + 8), t1)
          j += 16
        }
        if j < vectorEnd {
          let x0 = load(ar + j)
          s0 = fma(x0, load(br + j), s0)
          t0 = fma(x0, load(cr + j), t0)
        }
        let (u, v) = (finish(s0, s1, ar, br, vectorEnd), finish(t0, t1, ar, cr, vectorEnd))
        let (o0, o1) = (slot(r, e), slot(r, e + 1))
        out[o0] = accumulate ? out[o0] + u : u
        out[o1] = accumulate ? out[o1] + v : v
        e += 2
      }
      if e < e1 {
        let br = b + Int(pattern.colIndex[e]) * bs
        var (s0, s1) = (V(), V())
        var j = 0
        while j + 16 <= width {
          s0 = fma(load(ar + j), load(br + j), s0)
          s1 = fma(load(ar + j + 8), load(br + j + 8), s1)
          j += 16
        }
        if j < vectorEnd { s0 = fma(load(ar + j), load(br + j), s0) }
        let u = finish(s0, s1, ar, br, vectorEnd)
        let o0 = slot(r, e)
        out[o0] = accumulate ? out[o0] + u : u
      }
    }
  }

  /// `dst[c, r] = src[r, c]` for `src: [rows, cols]`, `dst` rows `ld >= rows` apart with
  /// zeros in lanes `rows ..< ld`; in parallel over fixed blocks of 8 columns, or of 8 rows
  /// when there are more of those (a feature-major `[300, 60]` activation has 7 column
  /// blocks and 37 row blocks); a copy, so the split never changes results. Eight source
  /// rows at a time give one 8-lane store per column.
  ///
  /// `relu`: `max(x, 0)` on the way (as ``Elementwise/relu(x:y:)``: `x * (x > 0 ? 1 : 0)`,
  /// so a NaN stays NaN). `mask`: a tensor of the source's shape and stride whose positive
  /// entries let the element through (`x * (m > 0 ? 1 : 0)`: ReLU's backward pass).
  public static func transpose(
    _ src: UnsafePointer<Float>, rows: Int, cols: Int, sourceStride: Int? = nil,
    into dst: UnsafeMutablePointer<Float>,
    ld: Int, relu: Bool = false, mask: UnsafePointer<Float>? = nil
  ) {
    let ss = sourceStride ?? cols
    let byRows = rows / 8 > cols / 8
    let blocks = byRows ? rows / 8 : cols / 8
    // A copy costs less than a multiply-add: shards of about 4K elements (LeNet's 60x300
    // activations in 4 shards, not 1).
    let shards = rowShards(blocks, work: rows * cols * 4)
    Parallel.forEach(shards) { s in
      let b = Parallel.range(s, of: shards, blocks)
      let last = s == shards - 1
      let part = b.lowerBound * 8..<(last ? (byRows ? rows : cols) : b.upperBound * 8)
      let (rr, cr) = byRows ? (part, 0..<cols) : (0..<rows, part)
      let written = transposeTile(
        src, sourceStride: ss, rows: rr, cols: cr, into: dst, ld: ld, relu: relu, mask: mask)
      // Zero lanes past the batch that the tile did not write: the shard that holds the last
      // rows, or each column shard.
      if !byRows || last {
        for c in cr { for r in written..<ld { dst[c * ld + r] = 0 } }
      }
    }
  }

  /// `dst[c * ld + r] = src[r * cols + c]` for at most 8 rows `r < rows`, on the calling
  /// thread (for a caller that is itself one shard of a parallel loop: a data loader writing
  /// a feature-major batch 8 examples at a time); lanes `rows ..< 8` become zeros. `dst`
  /// points at the block's first lane.
  public static func transposeBlock(
    _ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>, ld: Int
  ) {
    precondition(rows >= 1 && rows <= 8 && ld >= 8, "transposeBlock: 1...8 rows into lanes of 8")
    // With `ld >= 8` the tile writes a partial block whole, zeros past its rows.
    let written = transposeTile(
      src, sourceStride: cols, rows: 0..<rows, cols: 0..<cols, into: dst, ld: ld, relu: false, mask: nil)
    assert(written == 8)
  }

  /// The part `rows x cols` of ``transpose(_:rows:cols:sourceStride:into:ld:relu:mask:)``.
  /// Returns the end of the lanes it wrote: `rows.upperBound`, or the end of the last 8-lane
  /// block when a partial block was written whole (its extra lanes are zeros).
  @inline(__always) @discardableResult
  static func transposeTile(
    _ src: UnsafePointer<Float>, sourceStride ss: Int, rows: Range<Int>, cols cr: Range<Int>,
    into dst: UnsafeMutablePointer<Float>, ld: Int, relu: Bool, mask: UnsafePointer<Float>?
  ) -> Int {
    @inline(__always) func get(_ o: Int) -> V {
      var v = load(src + o)
      if relu { v *= step(v) }
      if let mask { v *= step(load(mask + o)) }
      return v
    }
    @inline(__always) func get1(_ o: Int) -> Float {
      var v = src[o]
      if relu { v *= v > 0 ? 1 : 0 }
      if let mask { v *= mask[o] > 0 ? 1 : 0 }
      return v
    }
    var r0 = rows.lowerBound
    while r0 + 8 <= rows.upperBound {
      let o = r0 * ss
      var c = cr.lowerBound
      while c + 8 <= cr.upperBound {
        storeColumns(
          transpose8x8(
            get(o + c), get(o + ss + c), get(o + 2 * ss + c), get(o + 3 * ss + c),
            get(o + 4 * ss + c), get(o + 5 * ss + c), get(o + 6 * ss + c), get(o + 7 * ss + c)),
          dst + c * ld + r0, ld)
        c += 8
      }
      while c < cr.upperBound {
        let v = V(
          get1(o + c), get1(o + ss + c), get1(o + 2 * ss + c), get1(o + 3 * ss + c), get1(o + 4 * ss + c),
          get1(o + 5 * ss + c), get1(o + 6 * ss + c), get1(o + 7 * ss + c))
        store(v, dst + c * ld + r0)
        c += 1
      }
      r0 += 8
    }
    // The last partial block of rows, when its 8 lanes fit in `ld`: whole vectors with zero
    // rows past the end (those lanes are the zero padding).
    if r0 < rows.upperBound && r0 + 8 <= ld {
      let k = rows.upperBound - r0
      @inline(__always) func row(_ i: Int, _ c: Int) -> V { i < k ? get((r0 + i) * ss + c) : V() }
      var c = cr.lowerBound
      while c + 8 <= cr.upperBound {
        storeColumns(
          transpose8x8(
            row(0, c), row(1, c), row(2, c), row(3, c), row(4, c), row(5, c), row(6, c), row(7, c)),
          dst + c * ld + r0, ld)
        c += 8
      }
      while c < cr.upperBound {
        for i in 0..<8 { dst[c * ld + r0 + i] = i < k ? get1((r0 + i) * ss + c) : 0 }
        c += 1
      }
      return r0 + 8
    }
    for c in cr {
      for r in r0..<rows.upperBound { dst[c * ld + r] = get1(r * ss + c) }
    }
    return rows.upperBound
  }

  /// `out[r] = sum(m[r, 0 ..< ld])` for the rows `rows` of a feature-major `m` (zero-padded
  /// lanes): a bias gradient. 8 lanes at a time, then across the lanes, in a fixed order.
  static func rowSums(
    _ m: UnsafePointer<Float>, ld: Int, rows: Range<Int>, into out: UnsafeMutablePointer<Float>
  ) {
    for r in rows {
      var acc = V()
      for j in stride(from: 0, to: ld, by: 8) { acc += load(m + r * ld + j) }
      out[r] = acc.sum()
    }
  }

  /// The eight vectors of a transposed 8x8 block into eight rows `ld` apart.
  @inline(__always) static func storeColumns(
    _ t: (V, V, V, V, V, V, V, V), _ d: UnsafeMutablePointer<Float>, _ ld: Int
  ) {
    store(t.0, d)
    store(t.1, d + ld)
    store(t.2, d + 2 * ld)
    store(t.3, d + 3 * ld)
    store(t.4, d + 4 * ld)
    store(t.5, d + 5 * ld)
    store(t.6, d + 6 * ld)
    store(t.7, d + 7 * ld)
  }

  /// 1 where `v > 0`, else 0 (a NaN gives 0, and `NaN * 0` stays NaN).
  @inline(__always) static func step(_ v: V) -> V {
    V(repeating: 0).replacing(with: 1, where: v .> 0)
  }

  /// The transpose of the 8x8 block whose rows are `r0 ... r7` (unpack, then 128-bit lanes).
  @inline(__always)
  static func transpose8x8(_ r0: V, _ r1: V, _ r2: V, _ r3: V, _ r4: V, _ r5: V, _ r6: V, _ r7: V)
    -> (V, V, V, V, V, V, V, V)
  {
    #if arch(x86_64)
      let (t0, t1, t2, t3) = (
        _mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1), _mm256_unpacklo_ps(r2, r3),
        _mm256_unpackhi_ps(r2, r3)
      )
      let (t4, t5, t6, t7) = (
        _mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5), _mm256_unpacklo_ps(r6, r7),
        _mm256_unpackhi_ps(r6, r7)
      )
      func lo(_ a: V, _ b: V) -> V {
        _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)))
      }
      func hi(_ a: V, _ b: V) -> V {
        _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)))
      }
      let (u0, u1, u2, u3) = (lo(t0, t2), hi(t0, t2), lo(t1, t3), hi(t1, t3))
      let (u4, u5, u6, u7) = (lo(t4, t6), hi(t4, t6), lo(t5, t7), hi(t5, t7))
      return (
        V(lowHalf: u0.lowHalf, highHalf: u4.lowHalf), V(lowHalf: u1.lowHalf, highHalf: u5.lowHalf),
        V(lowHalf: u2.lowHalf, highHalf: u6.lowHalf), V(lowHalf: u3.lowHalf, highHalf: u7.lowHalf),
        V(lowHalf: u0.highHalf, highHalf: u4.highHalf), V(lowHalf: u1.highHalf, highHalf: u5.highHalf),
        V(lowHalf: u2.highHalf, highHalf: u6.highHalf), V(lowHalf: u3.highHalf, highHalf: u7.highHalf)
      )
    #else
      let r = [r0, r1, r2, r3, r4, r5, r6, r7]
      func col(_ c: Int) -> V { V(r[0][c], r[1][c], r[2][c], r[3][c], r[4][c], r[5][c], r[6][c], r[7][c]) }
      return (col(0), col(1), col(2), col(3), col(4), col(5), col(6), col(7))
    #endif
  }

  /// Whether the sparse kernels may use 16-lane (AVX-512) vectors: oneDNN found AVX-512
  /// (`avx512_core` or later) on this CPU, within `DNNL_MAX_CPU_ISA`. Decided once.
  public static let hasWideVectors: Bool = {
    #if os(Linux) && arch(x86_64)
      Convolution.isa.hasPrefix("avx512_core")
    #else
      false
    #endif
  }()

  /// The batch rounded up to whole vectors (feature-major activations are padded with zeros).
  public static func paddedBatch(_ n: Int) -> Int { (n + 7) / 8 * 8 }

  /// Shards for `rows` rows of `work` multiply-adds (or copies) in all: up to 8, about 16K
  /// each, so tiny layers stay on one thread. Every output element is computed in one
  /// shard by one fixed loop, so the split never changes results.
  public static func rowShards(_ rows: Int, work: Int) -> Int {
    max(1, min(Parallel.maxBatchShards, rows / 8, work / 16384))
  }
}

/// A linear layer's sparse arithmetic for one mask (see ``SparsePattern``):
/// `y = x W^T + b` for `x: [N, in]`, `W: [out, in]`, on feature-major copies of the
/// activations. Keeps the transposed input of the last forward pass for the backward pass.
public final class SparseLinear: @unchecked Sendable {
  public let pattern: SparsePattern
  private let valuesByColumn: Tensor<Float>
  private let inputT = Tensor<Float>(zeros: [0])
  private let gradT = Tensor<Float>(zeros: [0])
  private let inputGradT = Tensor<Float>(zeros: [0])
  private let outputT = Tensor<Float>(zeros: [0])
  /// Column blocks for wide inputs (``wideInput`` features or more), 2048 columns each.
  private let blocks: ColumnBlocks?
  /// From this many input features on, products run by blocks of columns.
  public static let wideInput = 4096
  private let gradValues: Tensor<Float>
  /// The weight gradient of the last backward pass at the surviving entries (row order).
  public var gradients: Tensor<Float> { gradValues }
  /// With a compact gradient, also write it into the dense gradient tensor (false while an
  /// optimizer that reads ``gradients`` is its only reader: the training loop).
  public var writesDenseGradient = true
  /// The surviving weights alone, in row order (``SparsePattern/positions``), when the
  /// caller keeps the weight in that form: the kernels then read them from here and never
  /// read the dense `weight` tensor.
  public var compactWeight: Tensor<Float>?

  /// For a weight `[out, in]` and its 0/1 mask of the same shape.
  public init(mask: Tensor<Float>, outFeatures: Int, columnBlock: Int? = -1) throws {
    pattern = try SparsePattern(mask: mask, rows: outFeatures)
    let width = columnBlock == -1 ? (pattern.cols >= Self.wideInput ? 2048 : nil) : columnBlock
    let pattern = self.pattern
    blocks = width.map { ColumnBlocks(pattern, width: $0) }
    valuesByColumn = Tensor(zeros: [pattern.count])
    gradValues = Tensor(zeros: [pattern.count])
  }

  /// `y = x W^T + b`, or `relu(x W^T + b)` with `relu`. `x` is `[N, in]` or feature-major
  /// (``TensorLayout/featureMajor(batch:)``, read in place); `y` becomes `[N, out]`, or
  /// feature-major with `featureMajorOutput` (no transpose at all).
  public func forward(
    x: Tensor<Float>, weight: Tensor<Float>, bias: Tensor<Float>?, y: Tensor<Float>, relu: Bool = false,
    featureMajorOutput: Bool = false
  ) {
    let (inF, outF) = (pattern.cols, pattern.rows)
    let n = x.layout.featureMajorBatch ?? x.shape[0]
    let ld = Sparse.paddedBatch(n)
    if x.layout.featureMajorBatch != nil {
      input = x
    } else {
      inputT.resize([inF, ld])
      Sparse.transpose(x.data, rows: n, cols: inF, into: inputT.data, ld: ld)
      input = inputT
    }
    let source = input!.data
    let shards = Sparse.rowShards(outF, work: pattern.count * ld)
    // `Y^T` feature-major (whole vectors), then one blocked transpose unless the next layer
    // reads it as it is: 8-lane stores instead of one scalar store per example (LeNet's
    // 784->300 at 3.6%: 28.6 against 34.6 us).
    let out = featureMajorOutput ? y : outputT
    out.resize([outF, ld])
    // The compact weights, or the weight matrix read where it is (row r, column c): no
    // gather pass either way.
    let (values, dense) = compactWeight.map { ($0.data, false) } ?? (weight.data, true)
    let finish = featureMajorOutput ? Sparse.FeatureMajorFinish(relu: relu, batch: n) : nil
    Parallel.forEach(shards) { s in
      let rows = Parallel.range(s, of: shards, outF)
      if let blocks {
        // Wide input: blocks of columns outer, rows inner, so the block's rows of `X^T` stay
        // in L2 while every output row uses them; the sums continue from block to block in
        // `Y^T` (the same chain of FMAs as one pass).
        for b in 0..<blocks.count {
          Sparse.spmm(
            pattern, transposed: false, values: values, source: source, sourceStride: ld, width: ld,
            destination: out.data, rows: rows, bias: b == 0 ? bias.map { UnsafePointer($0.data) } : nil,
            block: blocks.block(b), accumulate: b > 0, denseValues: dense,
            finish: b == blocks.count - 1 ? finish : nil)
        }
      } else {
        Sparse.spmm(
          pattern, transposed: false, values: values, source: source, sourceStride: ld, width: ld,
          destination: out.data, rows: rows, bias: bias.map { UnsafePointer($0.data) }, denseValues: dense,
          finish: finish)
      }
    }
    if featureMajorOutput {
      y.layout = .featureMajor(batch: n)
    } else {
      y.resize([n, outF])
      Sparse.transpose(
        outputT.data, rows: outF, cols: n, sourceStride: ld, into: y.data, ld: outF, relu: relu)
    }
  }
  /// The feature-major input of the last forward pass (the caller's tensor or ``inputT``).
  private var input: Tensor<Float>?

  /// Gradients of the last ``forward(x:weight:bias:y:relu:featureMajorOutput:)``: `dWeight`
  /// at surviving positions only (the caller keeps pruned positions zero), `dBias` and `dx`
  /// when non-nil. `dy` has the layout of that pass's output, and `dx` gets the layout of
  /// its input. `compact`: the weight gradient is also kept in ``gradients`` (row order, for
  /// an optimizer that updates the surviving entries only); otherwise it is written straight
  /// into `dWeight`. `reluOutput`: the forward pass applied ReLU and this is its output `y`;
  /// `dy` is the gradient with respect to `y`, and ReLU's mask (`y > 0`) is applied first.
  public func backward(
    dy: Tensor<Float>, weight: Tensor<Float>, dWeight: Tensor<Float>, dBias: Tensor<Float>?,
    dx: Tensor<Float>?, compact: Bool = true, reluOutput: Tensor<Float>? = nil
  ) {
    let (inF, outF) = (pattern.cols, pattern.rows)
    let dyFeatureMajor = dy.layout.featureMajorBatch != nil
    let n = dy.layout.featureMajorBatch ?? dy.shape[0]
    let ld = Sparse.paddedBatch(n)
    let source = input!.data
    let mask = reluOutput.map { UnsafePointer($0.data) }
    // `dY^T`: `dy` itself when it is feature-major and needs no mask, else ``gradT``
    // (transposed here, or masked per shard below).
    let dyAsIs = dyFeatureMajor && mask == nil
    if !dyAsIs { gradT.resize([outF, ld]) }
    let gradient = dyAsIs ? dy.data : gradT.data
    if !dyFeatureMajor { Sparse.transpose(dy.data, rows: n, cols: outF, into: gradient, ld: ld, mask: mask) }
    let shards = Sparse.rowShards(outF, work: pattern.count * ld)
    let out = compact ? gradValues.data : dWeight.data
    Parallel.forEach(shards) { s in
      let r = Parallel.range(s, of: shards, outF)
      if dyFeatureMajor, let mask {
        let o = r.lowerBound * ld
        Elementwise.reluMaskElements(y: mask + o, dy: dy.data + o, into: gradient + o, count: r.count * ld)
      }
      for b in 0..<(blocks?.count ?? 1) {
        Sparse.sampledProduct(
          pattern, rows: r, a: gradient, b: source, stride: ld, width: ld, into: out,
          accumulate: false, block: blocks?.block(b), denseOutput: !compact)
      }
      if let dBias { Sparse.rowSums(gradient, ld: ld, rows: r, into: dBias.data) }
      if compact && writesDenseGradient { pattern.scatter(gradValues.data, into: dWeight.data, rows: r) }
    }
    guard let dx else { return }
    let inShards = Sparse.rowShards(inF, work: pattern.count * ld)
    // Feature-major `dX^T`, then one blocked transpose (as the forward pass) unless the
    // input was feature-major.
    let featureMajorInput = input!.layout.featureMajorBatch != nil
    let dxT = featureMajorInput ? dx : inputGradT
    dxT.resize([inF, ld])
    Parallel.forEach(inShards) { s in
      let columns = Parallel.range(s, of: inShards, inF)
      if let compactWeight {
        pattern.gather(weightValues: compactWeight.data, byColumn: valuesByColumn.data, columns: columns)
      } else {
        pattern.gather(denseWeight: weight.data, byColumn: valuesByColumn.data, columns: columns)
      }
      Sparse.spmm(
        pattern, transposed: true, values: valuesByColumn.data, source: gradient, sourceStride: ld,
        width: ld, destination: dxT.data, rows: columns, bias: nil)
    }
    if featureMajorInput {
      dx.layout = .featureMajor(batch: n)
    } else {
      dx.resize([n, inF])
      Sparse.transpose(inputGradT.data, rows: inF, cols: n, sourceStride: ld, into: dx.data, ld: inF)
    }
  }
}

extension SparsePattern {
  /// The weight matrix's surviving entries in column order: `byColumn[k] = weight[row(k),
  /// c]` for the entries `k` of the columns `columns`.
  public func gather(
    denseWeight weight: UnsafePointer<Float>, byColumn: UnsafeMutablePointer<Float>, columns: Range<Int>
  ) {
    for c in columns {
      for k in Int(colStart[c])..<Int(colStart[c + 1]) {
        byColumn[k] = weight[Int(transposedRow[k]) * cols + c]
      }
    }
  }

  /// Row-order values into column order: `byColumn[k] = values[transposedEntry[k]]`, for
  /// the entries of `columns` (default all).
  public func gather(
    weightValues values: UnsafePointer<Float>, byColumn: UnsafeMutablePointer<Float>,
    columns: Range<Int>? = nil
  ) {
    let c = columns ?? 0..<cols
    for k in Int(colStart[c.lowerBound])..<Int(colStart[c.upperBound]) {
      byColumn[k] = values[Int(transposedEntry[k])]
    }
  }
}

/// Sparse weight times the im2col matrix: a ``ConvolutionBackend`` for a pruned
/// convolution of any geometry (see ``SparsePattern`` for the three kernels). Per example
/// `y_n = W col_n + b`, `dW += dy_n col_n^T` at surviving positions, `dx_n = col2im(W^T dy_n)`.
/// The batch is split into the same fixed shards as the dense backends; per-shard weight
/// gradients are summed in shard order.
public final class SparseConvolution: ConvolutionBackend<Float>, @unchecked Sendable {
  public let pattern: SparsePattern
  public let workspace: ConvWorkspace<Float>
  /// Direct convolution (stride 1, see `SparseDirect.swift`) rather than the im2col matrix.
  public let isDirect: Bool
  /// The direct kernels use 16-lane vectors where the map's width allows.
  public let wideVectors: Bool
  let values: Tensor<Float>
  let valuesByColumn: Tensor<Float>
  var partials: [Tensor<Float>] = []
  let gradValues: Tensor<Float>
  var padBuffers: [Tensor<Float>] = []
  var gradPadBuffers: [Tensor<Float>] = []
  /// Per-slot `dy` times ReLU's mask, one example at a time (``fusedReLU``).
  var maskedGradBuffers: [Tensor<Float>] = []
  var plan: DirectPlan?

  /// `direct`: nil picks the direct kernels where they apply (stride 1) and the layer has at
  /// least 16 input channels: measured on Conv-2 at 10% density (`lth bench --sparse-layers`),
  /// direct was 1.4x faster than dense and im2col 0.93x on the 64-channel layer, while on the
  /// 3-channel first layer im2col was faster (3.6x against 2.5x). false forces im2col.
  ///
  /// `wideVectors`: the direct kernels' 16-lane (AVX-512) forms where they apply; nil: where
  /// the CPU has them (``Sparse/hasWideVectors``). Both give the same bits.
  public init(
    geometry: ConvGeometry, mask: Tensor<Float>, workspace: ConvWorkspace<Float>, direct: Bool? = nil,
    wideVectors: Bool? = nil
  ) throws {
    pattern = try SparsePattern(mask: mask, rows: geometry.outChannels)
    guard pattern.cols == geometry.patchSize else {
      throw EngineError("sparse convolution: mask shape \(mask.shape) does not match \(geometry)")
    }
    self.workspace = workspace
    isDirect = (direct ?? (geometry.inChannels >= 16)) && Self.directApplies(geometry)
    self.wideVectors = (wideVectors ?? true) && Sparse.hasWideVectors
    values = Tensor(zeros: [pattern.count])
    valuesByColumn = Tensor(zeros: [pattern.count])
    gradValues = Tensor(zeros: [pattern.count])
    super.init(geometry: geometry)
  }

  public override var name: String { isDirect ? "sparse-csr-direct" : "sparse-csr+im2col" }
  /// Set by the layer when a ReLU follows it: the forward pass writes `relu(y)` (the direct
  /// form as it stores its tiles, the im2col form on each tile's output while it is in
  /// cache), and the backward pass takes the gradient with respect to that output and
  /// multiplies it by ReLU's mask (from the forward pass's output, kept in ``reluOutput``)
  /// one example at a time in a per-slot buffer that stays in cache. Same bits as a separate
  /// ReLU, without its passes over the whole batch.
  public var fusedReLU = false
  /// The output of the last forward pass run with ``fusedReLU`` (its ReLU mask).
  public private(set) var reluOutput: Tensor<Float>?
  /// ``reluOutput``, which a backward pass with ``fusedReLU`` needs from its forward pass.
  private func fusedOutput() -> Tensor<Float> {
    guard let reluOutput else {
      preconditionFailure("SparseConvolution: backward with fusedReLU needs a forward pass with it first")
    }
    return reluOutput
  }
  /// The weight gradient of the last backward pass at the surviving entries (row order).
  public var gradients: Tensor<Float> { gradValues }
  /// Also write ``gradients`` into the dense gradient tensor (see
  /// ``SparseLinear/writesDenseGradient``).
  public var writesDenseGradient = true
  /// The surviving weights alone, in row order (see ``SparseLinear/compactWeight``).
  public var compactWeight: Tensor<Float>?

  /// Output rows per tile: the tile's im2col matrix stays within about 256 KB (L2).
  func tileRows(oh: Int, ow: Int) -> Int {
    geometry.isPointwise ? oh : max(1, min(oh, 65536 / max(geometry.patchSize * ow, 1)))
  }

  public override func forward(
    x: Tensor<Float>, weight: Tensor<Float>, bias: Tensor<Float>?, y: Tensor<Float>
  ) throws {
    let g = geometry
    let outShape = try Convolution.outputShape(g, input: x.shape)
    y.resize(outShape)
    if let compactWeight {
      values.data.update(from: compactWeight.data, count: pattern.count)
    } else {
      pattern.gather(weight.data, into: values.data)
    }
    reluOutput = fusedReLU ? y : nil
    if isDirect {
      directForward(x: x, bias: bias, y: y, plan: directPlan(h: x.shape[2], w: x.shape[3]), relu: fusedReLU)
      return
    }
    let (n, h, w, oh, ow) = (x.shape[0], x.shape[2], x.shape[3], outShape[2], outShape[3])
    let p = oh * ow
    let tile = tileRows(oh: oh, ow: ow)
    let shards = Parallel.batchShards(n)
    let slots = min(shards, Parallel.slotCount)
    workspace.prepare(
      shards: shards, slots: slots, colCount: g.isPointwise ? 0 : g.patchSize * tile * ow, weightCount: 0,
      outChannels: 0)
    let relu = fusedReLU
    Parallel.forEach(shards, slots: slots) { s, slot in
      let col = self.workspace.col[slot].data
      for i in Parallel.range(s, of: shards, n) {
        let xn = x.data + i * g.inChannels * h * w
        let yn = y.data + i * g.outChannels * p
        for r0 in stride(from: 0, to: oh, by: tile) {
          let rows = r0..<min(oh, r0 + tile)
          let width = rows.count * ow
          if !g.isPointwise { Convolution.im2col(xn, g, h: h, w: w, oh: oh, ow: ow, col, outputRows: rows) }
          Sparse.spmm(
            pattern, transposed: false, values: values.data, source: g.isPointwise ? xn + r0 * ow : col,
            sourceStride: g.isPointwise ? p : width, width: width, destination: yn + r0 * ow,
            destinationStride: p, rows: 0..<g.outChannels, bias: bias.map { UnsafePointer($0.data) })
          if relu {
            // The tile's output, still in cache.
            for o in 0..<g.outChannels {
              let d = yn + o * p + r0 * ow
              Elementwise.reluElements(d, into: d, count: width)
            }
          }
        }
      }
    }
  }

  public override func backward(
    x: Tensor<Float>, weight: Tensor<Float>, dy: Tensor<Float>, dWeight: Tensor<Float>, dBias: Tensor<Float>?,
    dx: Tensor<Float>?
  ) {
    if isDirect {
      let shards = Parallel.batchShards(x.shape[0])
      workspace.prepare(
        shards: shards, slots: min(shards, Parallel.slotCount), colCount: 0, weightCount: 0,
        outChannels: geometry.outChannels)
      directBackward(
        x: x, dy: dy, dWeight: dWeight, dBias: dBias, dx: dx, plan: directPlan(h: x.shape[2], w: x.shape[3]),
        reluOutput: fusedReLU ? fusedOutput() : nil)
      return
    }
    let g = geometry
    let (n, h, w, oh, ow) = (x.shape[0], x.shape[2], x.shape[3], dy.shape[2], dy.shape[3])
    let p = oh * ow
    let k = g.patchSize
    let tile = tileRows(oh: oh, ow: ow)
    let shards = Parallel.batchShards(n)
    let slots = min(shards, Parallel.slotCount)
    workspace.prepare(
      shards: shards, slots: slots, colCount: k * tile * ow, weightCount: 0, outChannels: g.outChannels)
    while partials.count < shards { partials.append(Tensor(zeros: [pattern.count])) }
    let reluOutput = fusedReLU ? fusedOutput() : nil
    if reluOutput != nil { prepareMaskedGradients(slots: slots, count: g.outChannels * p) }
    if dx != nil { pattern.gather(weightValues: values.data, byColumn: valuesByColumn.data) }
    dx?.resize(x.shape)
    Parallel.forEach(shards, slots: slots) { s, slot in
      let col = self.workspace.col[slot].data
      let dcol = self.workspace.dcol[slot].data
      let part = self.partials[s].data
      let dbs = self.workspace.db[s].data
      dbs.update(repeating: 0, count: g.outChannels)
      var first = true
      for i in Parallel.range(s, of: shards, n) {
        let xn = x.data + i * g.inChannels * h * w
        let dyn = self.exampleGradient(dy, reluOutput, example: i, count: g.outChannels * p, slot: slot)
        let dxn = dx.map { $0.data + i * g.inChannels * h * w }
        if let dxn, !g.isPointwise { dxn.update(repeating: 0, count: g.inChannels * h * w) }
        for r0 in stride(from: 0, to: oh, by: tile) {
          let rows = r0..<min(oh, r0 + tile)
          let width = rows.count * ow
          if !g.isPointwise { Convolution.im2col(xn, g, h: h, w: w, oh: oh, ow: ow, col, outputRows: rows) }
          Sparse.sampledProduct(
            pattern, rows: 0..<g.outChannels, a: dyn + r0 * ow, b: g.isPointwise ? xn + r0 * ow : col,
            stride: p, bStride: g.isPointwise ? p : width, width: width, into: part, accumulate: !first)
          first = false
          if let dxn {
            Sparse.spmm(
              pattern, transposed: true, values: valuesByColumn.data, source: dyn + r0 * ow, sourceStride: p,
              width: width, destination: g.isPointwise ? dxn + r0 * ow : dcol,
              destinationStride: g.isPointwise ? p : width, rows: 0..<k, bias: nil)
            if !g.isPointwise {
              Convolution.col2im(dcol, g, h: h, w: w, oh: oh, ow: ow, dxn, outputRows: rows)
            }
          }
        }
        if dBias != nil { for o in 0..<g.outChannels { dbs[o] += Sparse.sum(dyn + o * p, count: p) } }
      }
      if first { part.update(repeating: 0, count: self.pattern.count) }
    }
    Convolution.reduceShards(partials, shards: shards, count: pattern.count, into: gradValues.data)
    if writesDenseGradient { pattern.scatter(gradValues.data, into: dWeight.data) }
    if let dBias {
      Convolution.reduceShards(workspace.db, shards: shards, count: g.outChannels, into: dBias.data)
    }
  }
}
