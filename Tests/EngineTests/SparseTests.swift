import Engine
import Foundation
import TestSupport
import Testing

/// A 0/1 mask keeping about `density` of `count` entries, plus forced cases: with `emptyRow`
/// the first of `rows` rows and with `emptyColumn` the second column are pruned entirely.
func testMask(
  count: Int, rows: Int, density: Double, seed: UInt64, emptyRow: Bool = true, emptyColumn: Bool = true
) -> Tensor<Float> {
  var r = RandomStream(seed: seed, purpose: "sparse-mask")
  let cols = count / rows
  var m = (0..<count).map { _ in Float(r.uniform() < density ? 1 : 0) }
  if emptyRow { for c in 0..<cols { m[c] = 0 } }
  if emptyColumn && cols > 1 { for row in 0..<rows { m[row * cols + 1] = 0 } }
  return Tensor(m, shape: [count])
}

/// `w * mask` as Double.
func masked(_ w: Tensor<Double>, _ mask: Tensor<Float>) -> Tensor<Double> {
  Tensor((0..<w.count).map { w[$0] * Double(mask[$0]) }, shape: w.shape)
}

@Suite("Sparse kernels against dense masked references")
struct SparseTests {
  @Test("the pattern: rows, columns, positions, gather and scatter")
  func pattern() throws {
    let mask = Tensor<Float>([0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1], shape: [3, 4])
    let p = try SparsePattern(mask: mask, rows: 3)
    #expect(p.count == 5 && p.cols == 4)
    #expect(Array(p.rowStart) == [0, 2, 2, 5])
    #expect(Array(p.colIndex) == [1, 2, 0, 2, 3])
    #expect(p.positions == [1, 2, 8, 10, 11])
    #expect(Array(p.colStart) == [0, 1, 2, 4, 5])
    #expect(Array(p.transposedRow) == [2, 0, 0, 2, 2])
    #expect(Array(p.transposedEntry) == [2, 0, 1, 3, 4])
    let w = Tensor<Float>((0..<12).map { Float($0) }, shape: [3, 4])
    var v = [Float](repeating: -1, count: 5)
    p.gather(w.data, into: &v)
    #expect(v == [1, 2, 8, 10, 11])
    p.gather(w.data, into: &v, transposed: true)
    #expect(v == [8, 1, 2, 10, 11])
    let out = Tensor<Float>(repeating: -1, shape: [12])
    p.scatter([1, 2, 3, 4, 5], into: out.data)
    #expect(out.array == [-1, 1, 2, -1, -1, -1, -1, -1, 3, -1, 4, 5])
    #expect(throws: EngineError.self) { try SparsePattern(mask: mask, rows: 5) }
  }

  /// (batch, in, out, density): a batch of 1, odd sizes, widths around the 8- and 32-lane
  /// tiles, a fully pruned layer, density 1.
  static let linearShapes: [(Int, Int, Int, Double)] = [
    (1, 7, 5, 0.5), (60, 37, 13, 0.036), (13, 33, 17, 1.0), (9, 40, 20, 0.0), (41, 19, 70, 0.3),
    (8, 16, 9, 0.7),
    // A wide input (the input gradient goes through a buffer and a transpose).
    (13, 1030, 6, 0.05),
    // Wider than SparseLinear.wideInput: products by blocks of 2048 columns.
    (5, 4100, 7, 0.05),
  ]

  @Test(
    "the blocked transpose, sharded by columns or by rows, pads lanes with zeros",
    arguments: [(60, 784), (300, 60), (100, 60), (7, 13), (1, 9), (64, 64), (17, 300)])
  func transpose(rows: Int, cols: Int) {
    let ss = cols + 3  // a source stride wider than the row
    let ld = Sparse.paddedBatch(rows)
    let src = (0..<(rows * ss)).map { Float($0 % 1009) - 500 }
    // The pool held while each thread count runs: another test's exclusive thread count
    // would otherwise see this test's loops take the pool (its "no serial fallback" check).
    for threads in [1, 3] {
      withExclusivePool {
        Parallel.withThreads(threads) {
          var dst = [Float](repeating: .nan, count: cols * ld)
          src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in
              Sparse.transpose(
                s.baseAddress!, rows: rows, cols: cols, sourceStride: ss, into: d.baseAddress!, ld: ld)
            }
          }
          var wrong = 0
          for c in 0..<cols {
            for r in 0..<ld where dst[c * ld + r] != (r < rows ? src[r * ss + c] : 0) { wrong += 1 }
          }
          #expect(wrong == 0, "\(rows)x\(cols) at \(threads) threads: \(wrong) wrong elements")
        }
      }
    }
  }

  @Test("linear forward, input gradient and sampled weight gradient", arguments: linearShapes)
  func linear(_ shape: (Int, Int, Int, Double)) throws {
    let (n, inF, outF, density) = shape
    let forced = density > 0 && density < 1
    let mask = testMask(
      count: outF * inF, rows: outF, density: density, seed: UInt64(n), emptyRow: forced, emptyColumn: forced)
    mask.reshape([outF, inF])
    let x = randomTensor([n, inF], seed: 1)
    let w = masked(randomTensor([outF, inF], seed: 2), mask)
    let b = randomTensor([outF], seed: 3)
    let dy = randomTensor([n, outF], seed: 4)
    // Reference: dense kernels in Double on the masked weight.
    let yRef = Tensor<Double>(zeros: [0])
    Dense.linearForward(x: x, weight: w, bias: b, y: yRef)
    let (dWRef, dbRef, dxRef) = (
      Tensor<Double>(zeros: w.shape), Tensor<Double>(zeros: [outF]), Tensor<Double>(zeros: [0])
    )
    Dense.linearBackward(x: x, weight: w, dy: dy, dWeight: dWRef, dBias: dbRef, dx: dxRef)

    // Unblocked and by blocks of 16 columns; the weight gradient kept compact (and
    // scattered) or written straight into the dense gradient.
    for (columnBlock, compact) in [(-1, true), (-1, false), (16, true), (16, false)] {
      let k = try SparseLinear(mask: mask, outFeatures: outF, columnBlock: columnBlock)
      let y = Tensor<Float>(zeros: [0])
      let wf = Tensor<Float>(converting: w)
      k.forward(x: Tensor(converting: x), weight: wf, bias: Tensor(converting: b), y: y)
      #expect(y.shape == [n, outF])
      #expect(relativeError(y, yRef.array) < 1e-5)
      let dW = Tensor<Float>(zeros: w.shape)
      let (db, dx) = (Tensor<Float>(zeros: [outF]), Tensor<Float>(zeros: [0]))
      k.backward(dy: Tensor(converting: dy), weight: wf, dWeight: dW, dBias: db, dx: dx, compact: compact)
      #expect(dx.shape == [n, inF])
      #expect(relativeError(dx, dxRef.array) < 1e-5)
      #expect(relativeError(db, dbRef.array) < 1e-5)
      let dWMasked = (0..<dW.count).map { mask[$0] == 0 ? 0 : dWRef[$0] }
      #expect(relativeError(dW, dWMasked) < 1e-5)
      if compact {
        let positions = k.pattern.positions
        #expect(k.gradients.array == positions.map { dW[$0] })
      }
      for i in 0..<dW.count where mask[i] == 0 { #expect(dW[i] == 0, "pruned gradient \(i) was written") }
    }
  }

  /// (n, c, h, w, o, k, stride, pad, density): 3x3 and 1x1, stride 1 and 2, output widths
  /// below and above a vector, a first layer of 3 channels, tiles of output rows.
  static let convShapes: [(Int, Int, Int, Int, Int, Int, Int, Int, Double)] = [
    (2, 3, 7, 6, 4, 3, 1, 1, 0.5), (1, 16, 8, 8, 8, 3, 1, 1, 0.1), (3, 5, 9, 9, 6, 3, 2, 1, 0.3),
    (2, 8, 5, 5, 4, 1, 1, 0, 0.4), (2, 4, 6, 6, 3, 1, 2, 0, 1.0), (9, 6, 6, 11, 5, 3, 1, 1, 0.2),
    // Several output-row tiles per example (576 * 32 columns: 3 rows a tile, 13 rows).
    // Unpadded 3x3 (output narrower than the input), a width of 40 (5 vectors a row).
    (2, 4, 9, 12, 3, 3, 1, 0, 0.5), (3, 5, 6, 40, 4, 3, 1, 1, 0.3),
    (2, 64, 13, 32, 5, 3, 1, 1, 0.1),
    // Widths of 16 (one 16-lane vector a row on AVX-512; rows in fours, then an odd count).
    (3, 16, 16, 16, 8, 3, 1, 1, 0.2), (2, 8, 7, 16, 4, 3, 1, 1, 0.3),
  ]

  @Test("convolution forward and backward (sparse weight times im2col)", arguments: convShapes)
  func convolution(_ s: (Int, Int, Int, Int, Int, Int, Int, Int, Double)) throws {
    let (n, c, h, wd, o, k, stride, pad, density) = s
    let g = ConvGeometry(
      inChannels: c, outChannels: o, kernel: (k, k), stride: (stride, stride), padding: (pad, pad))
    let mask = testMask(
      count: o * c * k * k, rows: o, density: density, seed: UInt64(c), emptyRow: density < 1,
      emptyColumn: density < 1)
    let x = randomTensor([n, c, h, wd], seed: 5)
    let w = masked(randomTensor([o, c, k, k], seed: 6), mask)
    let b = randomTensor([o], seed: 7)
    let yRef = refConv(x, w, b, stride: stride, pad: pad)
    let (oh, ow) = g.outputSize(h, wd)
    let dy = randomTensor([n, o, oh, ow], seed: 8)
    let ref = refConvBackward(x, w, dy, stride: stride, pad: pad)

    // Both forms: direct (where it applies, stride 1) and sparse weight times im2col.
    for direct in [true, false] {
      let sc = try SparseConvolution(geometry: g, mask: mask, workspace: ConvWorkspace(), direct: direct)
      #expect(sc.isDirect == (direct && stride == 1))
      let y = Tensor<Float>(zeros: [0])
      try sc.forward(
        x: Tensor(converting: x), weight: Tensor(converting: w), bias: Tensor(converting: b), y: y)
      #expect(y.shape == [n, o, oh, ow])
      #expect(relativeError(y, yRef) < 1e-5, "\(sc.name)")
      let dW = Tensor<Float>(zeros: w.shape)
      let (db, dx) = (Tensor<Float>(zeros: [o]), Tensor<Float>(zeros: [0]))
      sc.backward(
        x: Tensor(converting: x), weight: Tensor(converting: w), dy: Tensor(converting: dy), dWeight: dW,
        dBias: db, dx: dx)
      #expect(relativeError(dx, ref.dx) < 1e-5, "\(sc.name)")
      #expect(relativeError(db, ref.db) < 1e-5, "\(sc.name)")
      #expect(relativeError(dW, (0..<dW.count).map { mask[$0] == 0 ? 0 : ref.dW[$0] }) < 1e-5, "\(sc.name)")
      for i in 0..<dW.count where mask[i] == 0 { #expect(dW[i] == 0) }
    }
  }

  @Test(
    "16-lane (AVX-512) direct convolution kernels give the 8-lane kernels' bits",
    .enabled(if: Sparse.hasWideVectors, "this CPU (or DNNL_MAX_CPU_ISA) has no AVX-512: 8 lanes only"),
    arguments: [
      (2, 64, 13, 32, 5), (3, 16, 16, 16, 8), (2, 8, 7, 16, 4), (2, 16, 8, 8, 16), (2, 16, 6, 48, 8),
      (2, 16, 5, 64, 4),
    ])
  func wideVectors(_ s: (Int, Int, Int, Int, Int)) throws {
    let (n, c, h, w, o) = s
    // Which kernels run 16 lanes here: the tiles where the width is a multiple of 16, the
    // weight gradient where the 8-lane pairs also come in fours (compared against the
    // 8-lane kernel's blocked path at widths 16 and 32, its general loop at 48 and 64).
    let tiles = w % 16 == 0 ? 16 : 8
    let gradient = w % 16 == 0 && (h * w / 8) % 4 == 0 ? 16 : 8
    let g = ConvGeometry(inChannels: c, outChannels: o, kernel: (3, 3), padding: (1, 1))
    let mask = testMask(count: o * c * 9, rows: o, density: 0.15, seed: 21)
    let x = Tensor<Float>(converting: randomTensor([n, c, h, w], seed: 22))
    let wt = Tensor<Float>(converting: masked(randomTensor([o, c, 3, 3], seed: 23), mask))
    let b = Tensor<Float>(converting: randomTensor([o], seed: 24))
    let dy = Tensor<Float>(converting: randomTensor([n, o, h, w], seed: 25))
    func run(wide: Bool, relu: Bool) throws -> [[Float]] {
      let sc = try SparseConvolution(
        geometry: g, mask: mask, workspace: ConvWorkspace(), direct: true, wideVectors: wide)
      #expect(sc.isDirect && sc.wideVectors == wide)
      let lanes = sc.directLanes(h: h, w: w)
      #expect(lanes?.forward == (wide ? tiles : 8) && lanes?.inputGradient == (wide ? tiles : 8))
      #expect(lanes?.weightGradient == (wide ? gradient : 8))
      sc.fusedReLU = relu
      let (y, dW, db, dx) = (
        Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: wt.shape), Tensor<Float>(zeros: [o]),
        Tensor<Float>(zeros: [0])
      )
      try sc.forward(x: x, weight: wt, bias: b, y: y)
      sc.backward(x: x, weight: wt, dy: dy, dWeight: dW, dBias: db, dx: dx)
      return [y.array, dW.array, db.array, dx.array]
    }
    for relu in [false, true] {
      #expect(try run(wide: true, relu: relu) == run(wide: false, relu: relu), "relu \(relu)")
    }
  }

  @Test("a mask that does not fit the convolution is refused")
  func badMask() {
    let g = ConvGeometry(inChannels: 3, outChannels: 4, kernel: (3, 3))
    #expect(throws: EngineError.self) {
      try SparseConvolution(
        geometry: g, mask: Tensor(repeating: 1, shape: [4, 3, 2, 2]), workspace: ConvWorkspace())
    }
  }

  @Test("sparse kernels give the same bits at 1, 2 and 3 threads")
  func threads() throws {
    let mask = testMask(count: 70 * 45, rows: 70, density: 0.2, seed: 9)
    let x = Tensor<Float>(converting: randomTensor([33, 45], seed: 10))
    let w = Tensor<Float>(converting: randomTensor([70, 45], seed: 11))
    let dy = Tensor<Float>(converting: randomTensor([33, 70], seed: 12))
    let g = ConvGeometry(inChannels: 16, outChannels: 24, kernel: (3, 3), padding: (1, 1))
    let cmask = testMask(count: 24 * 16 * 9, rows: 24, density: 0.1, seed: 13)
    let cx = Tensor<Float>(converting: randomTensor([11, 16, 8, 8], seed: 14))
    let cw = Tensor<Float>(converting: randomTensor([24, 16, 3, 3], seed: 15))
    let cdy = Tensor<Float>(converting: randomTensor([11, 24, 8, 8], seed: 16))
    func run() throws -> [[Float]] {
      let k = try SparseLinear(mask: mask, outFeatures: 70)
      let (y, dW, dx) = (Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: w.shape), Tensor<Float>(zeros: [0]))
      k.forward(x: x, weight: w, bias: nil, y: y)
      k.backward(dy: dy, weight: w, dWeight: dW, dBias: nil, dx: dx)
      var out = [y.array, dW.array, dx.array]
      for direct in [true, false] {
        let c = try SparseConvolution(geometry: g, mask: cmask, workspace: ConvWorkspace(), direct: direct)
        let (cy, cdW, cdx) = (
          Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: cw.shape), Tensor<Float>(zeros: [0])
        )
        try c.forward(x: cx, weight: cw, bias: nil, y: cy)
        c.backward(x: cx, weight: cw, dy: cdy, dWeight: cdW, dBias: nil, dx: cdx)
        out += [cy.array, cdW.array, cdx.array]
      }
      return out
    }
    let one = try withExclusiveThreads(1) { try run() }
    for t in [2, 3] { #expect(try withExclusiveThreads(t) { try run() } == one, "\(t) threads") }
  }

  @Test("the compact update (surviving entries only) gives the masked dense update's bits (Adam, SGD)")
  func compactUpdateMatchesMaskedDense() throws {
    let n = 1003  // not a multiple of 8: the scalar tails run too
    let mask = testMask(count: n, rows: 17, density: 0.3, seed: 21)
    let positions = (0..<n).filter { mask[$0] != 0 }
    if positions.isEmpty { throw EngineError("mask kept nothing") }
    var r = RandomStream(seed: 22, purpose: "compact-update")
    let w0 = (0..<n).map { mask[$0] * Float(r.normal()) }
    let grads = (0..<6).map { _ in (0..<n).map { _ in Float(r.normal()) } }
    for adam in [true, false] {
      let dense = Tensor<Float>(w0, shape: [n])
      let denseGrad = Tensor<Float>(zeros: [n])
      let denseState = (0..<2).map { _ in Tensor<Float>(zeros: [n]) }
      let sparse = Tensor<Float>(w0, shape: [n])
      let sparseGrad = Tensor<Float>(zeros: [n])
      let compact = (
        weight: Tensor<Float>(zeros: [positions.count]), grad: Tensor<Float>(zeros: [positions.count])
      )
      let compactState = (0..<2).map { _ in Tensor<Float>(zeros: [positions.count]) }
      positions.withUnsafeBufferPointer { pos in
        for (step, g) in grads.enumerated() {
          for i in 0..<n { (denseGrad[i], sparseGrad[i]) = (g[i], g[i]) }
          let targets = [
            UpdateTarget(weight: dense, grad: denseGrad, mask: mask, state: denseState),
            UpdateTarget(
              compactWeight: compact.weight, grad: compact.grad, state: compactState, positions: pos,
              denseWeight: sparse, denseGrad: sparseGrad),
          ]
          let chunks = Updates.ChunkCache().chunks(targets)
          if adam {
            let t = Float(step + 1)
            Updates.adam(
              targets, chunks: chunks, stepSize: 1e-2 / (1 - pow(0.9, t)), beta1: 0.9, beta2: 0.999,
              eps: 1e-8, weightDecay: 1e-4, sqrtBiasCorrection2: (1 - pow(0.999, t)).squareRoot())
          } else {
            Updates.sgd(
              targets, chunks: chunks, lr: 0.1, weightDecay: 1e-4, momentum: 0.9, dampening: 0,
              nesterov: step % 2 == 0, firstStep: step == 0)
          }
        }
        #expect(dense.array == sparse.array, "adam \(adam)")
        #expect(dense.array.enumerated().allSatisfy { mask[$0.offset] != 0 || $0.element == 0 })
        let used = adam ? 2 : 1
        for k in 0..<used {
          #expect(positions.map { denseState[k][$0] } == compactState[k].array, "adam \(adam) state \(k)")
        }
      }
    }
  }
}
