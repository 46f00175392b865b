#if os(Linux) && arch(x86_64)
  import EngineAVX512
#endif

/// Direct sparse convolution for stride-1 layers (``SparseConvolution`` with `direct`):
/// no im2col matrix. Each example is copied once into a zero-padded plane per channel
/// (`xpad: [C, Hp, Wp]`), and every surviving weight `e = (o, c, kh, kw)` becomes an offset
/// into it, `off(e) = c*Hp*Wp + kh*Wp + kw`, so that
///
/// `y[o, i, j] = b[o] + sum_e w_e * xpad[off(e) + i*Wp + j]`.
///
/// The output is computed in tiles of eight 8-lane vectors (for a 32-wide map, two rows of
/// four vectors; for an 8-wide map, eight rows of one), the eight sums kept in registers
/// over the entries of row `o`, vectorised along the output width.
///
/// Backward, with `dypad` the output gradient padded by `q = K - 1 - p`:
/// - `dx[c, i, j] = sum_{o, kh, kw} w[o, c, kh, kw] * dypad[o, i + K-1-kh, j + K-1-kw]`: the
///   same kernel on the pattern by columns (the transposed, flipped convolution);
/// - `dW[e] = sum_{i, j} dy[o, i, j] * xpad[off(e) + i*Wp + j]` at surviving entries only.
///
/// Per example the arithmetic is sequential in entry order, and weight gradients are summed
/// per shard then across shards in order, so results do not depend on the thread count.
extension Sparse {
  /// `sum_{j < count} x[j]`: 8 lanes, then the lanes in a fixed tree, then the tail.
  @inline(__always)
  static func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var (a, b) = (V(), V())
    var j = 0
    while j + 16 <= count {
      a += load(x + j)
      b += load(x + j + 8)
      j += 16
    }
    if j + 8 <= count {
      a += load(x + j)
      j += 8
    }
    let t = a + b
    var acc = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
    while j < count {
      acc += x[j]
      j += 1
    }
    return acc
  }

  /// Eight sums `acc[k] = bias + sum_{e in entries} values[e] * base[offsets[e] + deltas[k]]`.
  @inline(__always)
  static func eightSums(
    _ e0: Int, _ e1: Int, offsets: UnsafePointer<Int32>, values: UnsafePointer<Float>,
    base: UnsafePointer<Float>, deltas d: UnsafePointer<Int>, bias: Float
  ) -> (V, V, V, V, V, V, V, V) {
    let b = V(repeating: bias)
    var (a0, a1, a2, a3, a4, a5, a6, a7) = (b, b, b, b, b, b, b, b)
    let (d0, d1, d2, d3, d4, d5, d6, d7) = (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7])
    for e in e0..<e1 {
      let v = V(repeating: values[e])
      let s = base + Int(offsets[e])
      a0 = fma(v, load(s + d0), a0)
      a1 = fma(v, load(s + d1), a1)
      a2 = fma(v, load(s + d2), a2)
      a3 = fma(v, load(s + d3), a3)
      a4 = fma(v, load(s + d4), a4)
      a5 = fma(v, load(s + d5), a5)
      a6 = fma(v, load(s + d6), a6)
      a7 = fma(v, load(s + d7), a7)
    }
    return (a0, a1, a2, a3, a4, a5, a6, a7)
  }
}

/// The tiles of an output map `[rows, width]` read from a source with rows `stride` apart:
/// every (row, vector) pair of the map, eight to a tile, in vectors of `width` lanes (8, or
/// 16 on AVX-512 when the map's width is a multiple of 16). Slot `k` of tile `t` reads at
/// `deltas[8t + k]` and writes row `row[8t + k]`, lanes `width * vec[8t + k] ..< +
/// lanes[8t + k]` (`lanes` 0: a padding slot whose sums are dropped).
final class DirectTiles: @unchecked Sendable {
  let deltas: UnsafeMutableBufferPointer<Int>
  /// Where each slot's vector starts in the output plane (`row * width + vector start`),
  /// -1 for a padding slot (the 16-lane kernel's form of `row`, `vec` and `lanes`).
  let destinations: UnsafeMutableBufferPointer<Int>
  let row: [Int]
  let vec: [Int]
  let lanes: [Int]
  /// Lanes per vector: 8 or 16.
  let vectorWidth: Int
  var count: Int { row.count / 8 }

  /// `wide`: 16-lane vectors (a width that is a multiple of 16, on a CPU that has them; see
  /// ``SparseConvolution/wideKernels(_:h:w:)``).
  init(rows: Int, width: Int, stride: Int, wide: Bool) {
    precondition(!wide || width % 16 == 0, "16-lane tiles need a width that is a multiple of 16")
    let l = wide ? 16 : 8
    vectorWidth = l
    let vectors = (width + l - 1) / l
    var (r, v, n) = ([Int](), [Int](), [Int]())
    for i in 0..<rows {
      for k in 0..<vectors {
        r.append(i)
        v.append(k)
        n.append(min(l, width - l * k))
      }
    }
    while r.count % 8 != 0 {
      r.append(r[r.count / 8 * 8])
      v.append(v[v.count / 8 * 8])
      n.append(0)
    }
    (row, vec, lanes) = (r, v, n)
    deltas = .allocate(capacity: r.count)
    destinations = .allocate(capacity: r.count)
    for k in 0..<r.count {
      deltas[k] = r[k] * stride + l * v[k]
      destinations[k] = n[k] == 0 ? -1 : r[k] * width + l * v[k]
    }
  }
  deinit {
    deltas.deallocate()
    destinations.deallocate()
  }

  /// Tile `t` for every plane `o` in `planes`: plane `o` sums the entries
  /// `start[o] ..< start[o + 1]` into `out + o * planeSize` (see ``run(tile:_:_:offsets:values:base:bias:out:width:relu:)``),
  /// from `bias[o]` (zero without `bias`).
  @inline(__always)
  func run(
    tile t: Int, planes: Range<Int>, start: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>,
    values: UnsafePointer<Float>, base: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    out: UnsafeMutablePointer<Float>, planeSize: Int, width: Int, relu: Bool = false
  ) {
    #if os(Linux) && arch(x86_64)
      if vectorWidth == 16 {
        AVX512Tiles.run(
          planes: planes, start: start, offsets: offsets, values: values, base: base,
          deltas: deltas.baseAddress! + 8 * t, destinations: destinations.baseAddress! + 8 * t, bias: bias,
          out: out, planeSize: planeSize, relu: relu)
        return
      }
    #endif
    for o in planes {
      run(
        tile: t, Int(start[o]), Int(start[o + 1]), offsets: offsets, values: values, base: base,
        bias: bias?[o] ?? 0, out: out + o * planeSize, width: width, relu: relu)
    }
  }

  /// Runs the tiles for one output plane: `out[row * width + 8 * vec + lane]`; with `relu`,
  /// writes `v * (v > 0 ? 1 : 0)` (``Elementwise/relu(x:y:)``'s formula, so the same bits).
  /// 8-lane tiles only.
  @inline(__always)
  func run(
    tile t: Int, _ e0: Int, _ e1: Int, offsets: UnsafePointer<Int32>, values: UnsafePointer<Float>,
    base: UnsafePointer<Float>, bias: Float, out: UnsafeMutablePointer<Float>, width: Int, relu: Bool = false
  ) {
    let a = Sparse.eightSums(
      e0, e1, offsets: offsets, values: values, base: base, deltas: deltas.baseAddress! + 8 * t, bias: bias)
    @inline(__always) func put(_ x: Sparse.V, _ k: Int) {
      let s = 8 * t + k
      let n = lanes[s]
      if n == 0 { return }
      let v = relu ? x * Sparse.V(repeating: 0).replacing(with: 1, where: x .> 0) : x
      let d = out + row[s] * width + 8 * vec[s]
      if n == 8 {
        Sparse.store(v, d)
      } else {
        for l in 0..<n { d[l] = v[l] }
      }
    }
    put(a.0, 0)
    put(a.1, 1)
    put(a.2, 2)
    put(a.3, 3)
    put(a.4, 4)
    put(a.5, 5)
    put(a.6, 6)
    put(a.7, 7)
  }
}

/// Offsets and tiles of a direct sparse convolution for one input size.
final class DirectPlan: @unchecked Sendable {
  let h, w, oh, ow: Int
  /// Padded input `[C, hp, wp]` and padded output gradient `[O, hd, wd]`.
  let hp, wp, hd, wd: Int
  let offsets: [Int32]
  /// Entries by column, grouped by input channel: rows of the transposed convolution.
  let channelStart: [Int32]
  let transposedOffsets: [Int32]
  let forwardTiles: DirectTiles
  let inputTiles: DirectTiles
  /// Every (row, vector) of the output map as offsets into `dypad` and `xpad` (weight gradient).
  let gradientPairs: [(Int, Int)]
  /// When the pairs come in blocks of four with the same shape (rows of 1, 2 or 4 vectors):
  /// the four offsets into each, and the strides from block to block.
  let gradientBlock: ((Int, Int, Int, Int), (Int, Int, Int, Int), Int, Int)?
  /// The same pairs as 16-lane vectors (one offset serves both planes: same row stride),
  /// on AVX-512 when the map's width is a multiple of 16 and the 8-lane pairs come in fours
  /// (then both kernels give the same bits).
  let gradientVectors16: [Int]?

  /// `wide`: 16-lane kernels where they apply (only where the CPU has them).
  init(_ g: ConvGeometry, _ p: SparsePattern, h: Int, w: Int, wide: Bool) {
    (self.h, self.w) = (h, w)
    let lanes16 = SparseConvolution.wideKernels(g, h: h, w: w)
    (oh, ow) = g.outputSize(h, w)
    let (kh, kw, ph, pw) = (g.kernelH, g.kernelW, g.padH, g.padW)
    let owPad = (ow + 7) / 8 * 8
    let wPad = (w + 7) / 8 * 8
    hp = h + 2 * ph
    hd = oh + 2 * (kh - 1 - ph)
    // One row stride for both padded planes: the weight-gradient loop then reads both at
    // the same offsets (fewer registers, no spills).
    wp = max(w + 2 * pw, owPad + kw - 1, ow + 2 * (kw - 1 - pw), wPad + kw - 1)
    wd = wp
    let kk = kh * kw
    var off = [Int32](repeating: 0, count: p.count)
    for r in 0..<p.rows {
      for e in Int(p.rowStart[r])..<Int(p.rowStart[r + 1]) {
        let j = Int(p.colIndex[e])
        let (c, q) = (j / kk, j % kk)
        off[e] = Int32(c * hp * wp + (q / kw) * wp + q % kw)
      }
    }
    offsets = off
    var tOff = [Int32](repeating: 0, count: p.count)
    for j in 0..<p.cols {
      let q = j % kk
      let (a, b) = (kh - 1 - q / kw, kw - 1 - q % kw)
      for k in Int(p.colStart[j])..<Int(p.colStart[j + 1]) {
        tOff[k] = Int32(Int(p.transposedRow[k]) * hd * wd + a * wd + b)
      }
    }
    transposedOffsets = tOff
    channelStart = (0...g.inChannels).map { p.colStart[$0 * kk] }
    forwardTiles = DirectTiles(rows: oh, width: ow, stride: wp, wide: wide && lanes16.forward)
    let (wdv, wpv) = (wd, wp)
    gradientPairs = (0..<oh).flatMap { r in (0..<owPad / 8).map { v in (r * wdv + 8 * v, r * wpv + 8 * v) } }
    let vectors = owPad / 8
    if [1, 2, 4].contains(vectors) && (oh * vectors) % 4 == 0 {
      let pairs = gradientPairs
      gradientBlock = (
        (pairs[0].0, pairs[1].0, pairs[2].0, pairs[3].0), (pairs[0].1, pairs[1].1, pairs[2].1, pairs[3].1),
        pairs[4 % pairs.count].0 - pairs[0].0 + (pairs.count == 4 ? 4 / vectors * wd : 0),
        pairs[4 % pairs.count].1 - pairs[0].1 + (pairs.count == 4 ? 4 / vectors * wp : 0)
      )
    } else {
      gradientBlock = nil
    }
    inputTiles = DirectTiles(rows: h, width: w, stride: wd, wide: wide && lanes16.inputGradient)
    let (ohv, owv) = (oh, ow)
    gradientVectors16 =
      wide && lanes16.weightGradient
      ? (0..<ohv).flatMap { r in (0..<owv / 16).map { v in r * wpv + 16 * v } } : nil
  }

  /// Copies `src: [planes, rows, cols]` into `dst: [planes, rows + 2*top..., stride]` at
  /// (`top`, `left`), zeros elsewhere.
  static func pad(
    _ src: UnsafePointer<Float>, planes: Int, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>,
    height: Int, stride: Int, top: Int, left: Int
  ) {
    dst.update(repeating: 0, count: planes * height * stride)
    for c in 0..<planes {
      for i in 0..<rows {
        (dst + (c * height + top + i) * stride + left).update(from: src + (c * rows + i) * cols, count: cols)
      }
    }
  }
}

extension SparseConvolution {
  /// Whether the direct kernels apply: stride 1 and padding below the kernel size.
  static func directApplies(_ g: ConvGeometry) -> Bool {
    g.strideH == 1 && g.strideW == 1 && g.padH < g.kernelH && g.padW < g.kernelW
  }

  /// With `relu`, `y` is `relu(conv(x))` (see ``SparseConvolution/fusedReLU``).
  func directForward(x: Tensor<Float>, bias: Tensor<Float>?, y: Tensor<Float>, plan d: DirectPlan, relu: Bool)
  {
    let g = geometry
    let n = x.shape[0]
    let p = d.oh * d.ow
    let shards = Parallel.batchShards(n)
    let slots = min(shards, Parallel.slotCount)
    prepareDirect(slots: slots, count: g.inChannels * d.hp * d.wp)
    Parallel.forEach(shards, slots: slots) { s, slot in
      let xpad = self.padBuffers[slot].data
      d.offsets.withUnsafeBufferPointer { off in
        for i in Parallel.range(s, of: shards, n) {
          padInput(x, example: i, plan: d, into: xpad)
          let yn = y.data + i * g.outChannels * p
          // Tiles outer, output channels inner: every channel's pass over a tile reads the
          // same few rows of the padded input, which then stay in L1.
          for t in 0..<d.forwardTiles.count {
            d.forwardTiles.run(
              tile: t, planes: 0..<g.outChannels, start: pattern.rowStart.baseAddress!,
              offsets: off.baseAddress!,
              values: values.data, base: xpad, bias: bias.map { UnsafePointer($0.data) }, out: yn,
              planeSize: p,
              width: d.ow, relu: relu)
          }
        }
      }
    }
  }

  /// With `reluOutput` (this layer's output after its fused ReLU), `dy` is first multiplied
  /// by ReLU's mask, example by example in a per-slot buffer (``Elementwise/reluBackward(y:dy:dx:)``'s
  /// formula): the same numbers as a separate ReLU layer, without its pass over the batch.
  func directBackward(
    x: Tensor<Float>, dy: Tensor<Float>, dWeight: Tensor<Float>, dBias: Tensor<Float>?, dx: Tensor<Float>?,
    plan d: DirectPlan, reluOutput: Tensor<Float>?
  ) {
    let g = geometry
    let n = x.shape[0]
    let p = d.oh * d.ow
    let (q, qw) = (g.kernelH - 1 - g.padH, g.kernelW - 1 - g.padW)
    let shards = Parallel.batchShards(n)
    let slots = min(shards, Parallel.slotCount)
    prepareDirect(slots: slots, count: max(g.inChannels * d.hp * d.wp, 1))
    while gradPadBuffers.count < slots { gradPadBuffers.append(Tensor(zeros: [0])) }
    for s in 0..<slots where gradPadBuffers[s].count < g.outChannels * d.hd * d.wd {
      gradPadBuffers[s].resize([g.outChannels * d.hd * d.wd])
    }
    if reluOutput != nil { prepareMaskedGradients(slots: slots, count: g.outChannels * p) }
    while partials.count < shards { partials.append(Tensor(zeros: [pattern.count])) }
    if dx != nil { pattern.gather(weightValues: values.data, byColumn: valuesByColumn.data) }
    dx?.resize(x.shape)
    Parallel.forEach(shards, slots: slots) { s, slot in
      let xpad = self.padBuffers[slot].data
      let dypad = self.gradPadBuffers[slot].data
      let part = self.partials[s].data
      part.update(repeating: 0, count: self.pattern.count)
      let dbs = self.workspace.db[s].data
      dbs.update(repeating: 0, count: g.outChannels)
      d.offsets.withUnsafeBufferPointer { off in
        for i in Parallel.range(s, of: shards, n) {
          padInput(x, example: i, plan: d, into: xpad)
          let dyn = self.exampleGradient(dy, reluOutput, example: i, count: g.outChannels * p, slot: slot)
          DirectPlan.pad(
            dyn, planes: g.outChannels, rows: d.oh, cols: d.ow, into: dypad, height: d.hd, stride: d.wd,
            top: q,
            left: qw)
          // dW[e] += sum over output positions of dy[o] * xpad[off(e) + ...]: the (row,
          // vector) pairs of the output map, four sums per entry, two entries at a time.
          let pairs = d.gradientPairs.count
          for o in 0..<g.outChannels {
            let a = dypad + (o * d.hd + q) * d.wd + qw
            var e = Int(pattern.rowStart[o])
            let e1 = Int(pattern.rowStart[o + 1])
            #if os(Linux) && arch(x86_64)
              if let vectors = d.gradientVectors16 {
                vectors.withUnsafeBufferPointer { v in
                  AVX512Tiles.gradient(
                    entries: e..<e1, offsets: off.baseAddress!, a: a, base: xpad, pairs: v, into: part)
                }
                e = e1
              }
            #endif
            d.gradientPairs.withUnsafeBufferPointer { pp in
              let pa = pp.baseAddress!
              @inline(__always) func finish(_ s: (Sparse.V, Sparse.V, Sparse.V, Sparse.V)) -> Float {
                let t = (s.0 + s.1) + (s.2 + s.3)
                return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
              }
              while e < e1 {
                let two = e + 1 < e1
                let b = xpad + Int(off[e])
                let c = xpad + Int(off[two ? e + 1 : e])
                var (s0, s1, s2, s3) = (Sparse.V(), Sparse.V(), Sparse.V(), Sparse.V())
                var (t0, t1, t2, t3) = (Sparse.V(), Sparse.V(), Sparse.V(), Sparse.V())
                var k = 0
                if let (da, _, sa, _) = d.gradientBlock {
                  // The same pairs in the same order, four at a time with offsets that are
                  // constants of the block, the same in both planes (one row stride).
                  var (pa, pb, pc) = (a, b, c)
                  let (o0, o1, o2, o3) = da
                  while k + 4 <= pairs {
                    let (x0, x1, x2, x3) = (
                      Sparse.load(pa + o0), Sparse.load(pa + o1), Sparse.load(pa + o2), Sparse.load(pa + o3)
                    )
                    s0 = Sparse.fma(x0, Sparse.load(pb + o0), s0)
                    s1 = Sparse.fma(x1, Sparse.load(pb + o1), s1)
                    s2 = Sparse.fma(x2, Sparse.load(pb + o2), s2)
                    s3 = Sparse.fma(x3, Sparse.load(pb + o3), s3)
                    t0 = Sparse.fma(x0, Sparse.load(pc + o0), t0)
                    t1 = Sparse.fma(x1, Sparse.load(pc + o1), t1)
                    t2 = Sparse.fma(x2, Sparse.load(pc + o2), t2)
                    t3 = Sparse.fma(x3, Sparse.load(pc + o3), t3)
                    (pa, pb, pc) = (pa + sa, pb + sa, pc + sa)
                    k += 4
                  }
                }
                while k + 4 <= pairs {
                  let (p0, p1, p2, p3) = (pa[k], pa[k + 1], pa[k + 2], pa[k + 3])
                  let (x0, x1, x2, x3) = (
                    Sparse.load(a + p0.0), Sparse.load(a + p1.0), Sparse.load(a + p2.0), Sparse.load(a + p3.0)
                  )
                  s0 = Sparse.fma(x0, Sparse.load(b + p0.1), s0)
                  s1 = Sparse.fma(x1, Sparse.load(b + p1.1), s1)
                  s2 = Sparse.fma(x2, Sparse.load(b + p2.1), s2)
                  s3 = Sparse.fma(x3, Sparse.load(b + p3.1), s3)
                  t0 = Sparse.fma(x0, Sparse.load(c + p0.1), t0)
                  t1 = Sparse.fma(x1, Sparse.load(c + p1.1), t1)
                  t2 = Sparse.fma(x2, Sparse.load(c + p2.1), t2)
                  t3 = Sparse.fma(x3, Sparse.load(c + p3.1), t3)
                  k += 4
                }
                while k < pairs {
                  let x0 = Sparse.load(a + pa[k].0)
                  s0 = Sparse.fma(x0, Sparse.load(b + pa[k].1), s0)
                  t0 = Sparse.fma(x0, Sparse.load(c + pa[k].1), t0)
                  k += 1
                }
                part[e] += finish((s0, s1, s2, s3))
                if two { part[e + 1] += finish((t0, t1, t2, t3)) }
                e += two ? 2 : 1
              }
            }
            if dBias != nil { dbs[o] += Sparse.sum(dyn + o * p, count: p) }
          }
          if let dx {
            let dxn = dx.data + i * g.inChannels * d.h * d.w
            d.transposedOffsets.withUnsafeBufferPointer { toff in
              d.channelStart.withUnsafeBufferPointer { cs in
                for t in 0..<d.inputTiles.count {
                  d.inputTiles.run(
                    tile: t, planes: 0..<g.inChannels, start: cs.baseAddress!, offsets: toff.baseAddress!,
                    values: valuesByColumn.data, base: dypad, bias: nil, out: dxn, planeSize: d.h * d.w,
                    width: d.w)
                }
              }
            }
          }
        }
      }
    }
    Convolution.reduceShards(partials, shards: shards, count: pattern.count, into: gradValues.data)
    if writesDenseGradient { pattern.scatter(gradValues.data, into: dWeight.data) }
    if let dBias {
      Convolution.reduceShards(workspace.db, shards: shards, count: g.outChannels, into: dBias.data)
    }
  }

  /// Per-slot buffers of `count` floats for ``exampleGradient(_:_:example:count:slot:)``.
  func prepareMaskedGradients(slots: Int, count: Int) {
    while maskedGradBuffers.count < slots { maskedGradBuffers.append(Tensor(zeros: [0])) }
    for s in 0..<slots where maskedGradBuffers[s].count < count { maskedGradBuffers[s].resize([count]) }
  }

  /// Example `i` of `dy` (`count` floats), times the fused ReLU's mask when `reluOutput` is
  /// given (``Elementwise/reluBackward(y:dy:dx:)``'s formula, into the slot's buffer).
  @inline(__always)
  func exampleGradient(
    _ dy: Tensor<Float>, _ reluOutput: Tensor<Float>?, example i: Int, count: Int, slot: Int
  ) -> UnsafePointer<Float> {
    let dyn = UnsafePointer(dy.data + i * count)
    guard let reluOutput else { return dyn }
    let m = maskedGradBuffers[slot].data
    Elementwise.reluMaskElements(y: reluOutput.data + i * count, dy: dyn, into: m, count: count)
    return UnsafePointer(m)
  }

  /// Copies example `i` of `x` into the zero-padded plane buffer `xpad` (`[C, hp, wp]`).
  func padInput(
    _ x: Tensor<Float>, example i: Int, plan d: DirectPlan, into xpad: UnsafeMutablePointer<Float>
  ) {
    let g = geometry
    DirectPlan.pad(
      x.data + i * g.inChannels * d.h * d.w, planes: g.inChannels, rows: d.h, cols: d.w, into: xpad,
      height: d.hp, stride: d.wp, top: g.padH, left: g.padW)
  }

  /// Which direct kernels run 16 lanes wide for inputs of `h x w` on a CPU that has them
  /// (``Sparse/hasWideVectors``): the forward tiles where the output width is a multiple of
  /// 16, the input-gradient tiles where the input width is, the weight gradient where the
  /// output width is and the 8-lane pairs come in fours (then both give the same bits).
  public static func wideKernels(_ g: ConvGeometry, h: Int, w: Int) -> (
    forward: Bool, inputGradient: Bool, weightGradient: Bool
  ) {
    let (oh, ow) = g.outputSize(h, w)
    return (ow % 16 == 0, w % 16 == 0, ow % 16 == 0 && (oh * (ow / 8)) % 4 == 0)
  }

  /// Lanes per vector (8 or 16) of the direct kernels for inputs of `h x w`: the forward
  /// tiles, the input-gradient tiles and the weight gradient; nil for the im2col form.
  public func directLanes(h: Int, w: Int) -> (forward: Int, inputGradient: Int, weightGradient: Int)? {
    guard isDirect else { return nil }
    let d = directPlan(h: h, w: w)
    return (d.forwardTiles.vectorWidth, d.inputTiles.vectorWidth, d.gradientVectors16 == nil ? 8 : 16)
  }

  /// The plan for inputs of `h x w` (kept while the size stays).
  func directPlan(h: Int, w: Int) -> DirectPlan {
    if let d = plan, d.h == h, d.w == w { return d }
    let d = DirectPlan(geometry, pattern, h: h, w: w, wide: wideVectors)
    plan = d
    return d
  }

  func prepareDirect(slots: Int, count: Int) {
    while padBuffers.count < slots { padBuffers.append(Tensor(zeros: [0])) }
    for s in 0..<slots where padBuffers[s].count < count { padBuffers[s].resize([count]) }
  }
}
