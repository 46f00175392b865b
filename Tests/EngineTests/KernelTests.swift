import Engine
import Foundation
import Testing

/// Slow, obviously-correct references for every kernel, compared on small random shapes.

func randomTensor(_ shape: [Int], seed: UInt64, purpose: String = "test") -> Tensor<Double> {
  var r = RandomStream(seed: seed, purpose: purpose)
  let n = shape.reduce(1, *)
  return Tensor((0..<n).map { _ in r.normal() }, shape: shape)
}

func maxAbsDiff<T: Scalar>(_ a: Tensor<T>, _ b: [T]) -> Double {
  precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
  var m = 0.0
  for i in 0..<a.count { m = max(m, Double(abs(a[i] - b[i]))) }
  return m
}

func refConv(
  _ x: Tensor<Double>, _ w: Tensor<Double>, _ b: Tensor<Double>?, stride: Int, pad: Int
) -> [Double] {
  let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
  let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
  let oh = (h + 2 * pad - kh) / stride + 1
  let ow = (wd + 2 * pad - kw) / stride + 1
  var y = [Double](repeating: 0, count: n * o * oh * ow)
  for i in 0..<n {
    for oc in 0..<o {
      for r in 0..<oh {
        for s in 0..<ow {
          var acc = b?[oc] ?? 0
          for ic in 0..<c {
            for p in 0..<kh {
              for q in 0..<kw {
                let ih = r * stride - pad + p
                let iw = s * stride - pad + q
                if ih >= 0 && ih < h && iw >= 0 && iw < wd {
                  acc += w[((oc * c + ic) * kh + p) * kw + q] * x[((i * c + ic) * h + ih) * wd + iw]
                }
              }
            }
          }
          y[((i * o + oc) * oh + r) * ow + s] = acc
        }
      }
    }
  }
  return y
}

@Suite("Kernels against reference loops")
struct KernelTests {
  @Test(
    "convolution forward",
    arguments: [
      // (n, c, h, w, o, k, stride, pad, bias)
      (1, 1, 5, 5, 1, 3, 1, 0, false), (2, 3, 7, 5, 4, 3, 1, 1, true),
      (3, 2, 8, 9, 3, 3, 2, 1, true), (1, 4, 6, 7, 2, 1, 1, 0, false),
      (2, 3, 9, 8, 5, 1, 2, 0, true), (2, 2, 7, 7, 3, 5, 2, 2, false),
      (9, 2, 5, 6, 3, 2, 2, 0, true),
    ])
  func convForward(_ a: (Int, Int, Int, Int, Int, Int, Int, Int, Bool)) throws {
    let (n, c, h, w, o, k, s, p, hasBias) = a
    let x = randomTensor([n, c, h, w], seed: 1)
    let wt = randomTensor([o, c, k, k], seed: 2)
    let b = hasBias ? randomTensor([o], seed: 3) : nil
    let g = ConvGeometry(inChannels: c, outChannels: o, kernel: (k, k), stride: (s, s), padding: (p, p))
    let y = Tensor<Double>(zeros: [0])
    try Convolution.forward(g, x: x, weight: wt, bias: b, y: y, workspace: ConvWorkspace())
    #expect(maxAbsDiff(y, refConv(x, wt, b, stride: s, pad: p)) < 1e-12)
  }

  @Test("a view shows its source's elements until it is resized, then has its own buffer")
  func tensorView() {
    let source = Tensor<Float>((0..<12).map(Float.init), shape: [2, 2, 3])
    let v = Tensor<Float>(repeating: -1, shape: [4])
    v.view(of: source, shape: [2, 6])
    #expect(v.shape == [2, 6] && v.count == 12 && v.data == source.data)
    source[5] = 50
    #expect(v[5] == 50)
    // Writing means resizing first: the view lets go of the source.
    v.resize([2, 6])
    #expect(v.data != source.data)
    v.buffer.update(repeating: 7)
    #expect(source.array == (0..<12).map { $0 == 5 ? 50 : Float($0) })
    // A view outlives the tensor it shows.
    var other: Tensor<Float>? = Tensor<Float>([1, 2, 3, 4], shape: [2, 2])
    v.view(of: other!, shape: [4])
    other = nil
    #expect(v.array == [1, 2, 3, 4])
  }

  @Test("convolution rejects mismatched shapes with a clear message")
  func convBadShape() {
    let g = ConvGeometry(inChannels: 3, outChannels: 2, kernel: (3, 3))
    let x = Tensor<Float>(zeros: [1, 4, 5, 5])
    let w = Tensor<Float>(zeros: [2, 3, 3, 3])
    #expect(throws: EngineError.self) {
      try Convolution.forward(
        g, x: x, weight: w, bias: nil, y: Tensor(zeros: [0]), workspace: ConvWorkspace())
    }
    do {
      try Convolution.forward(
        g, x: x, weight: w, bias: nil, y: Tensor(zeros: [0]), workspace: ConvWorkspace())
    } catch {
      #expect("\(error)".contains("expected 3 input channels"))
    }
  }

  @Test("linear forward and matmul", arguments: [(1, 3, 2), (5, 7, 4), (13, 10, 9)])
  func linear(_ a: (Int, Int, Int)) throws {
    let (n, i, o) = a
    let x = randomTensor([n, i], seed: 4)
    let w = randomTensor([o, i], seed: 5)
    let b = randomTensor([o], seed: 6)
    let y = Tensor<Double>(zeros: [0])
    Dense.linearForward(x: x, weight: w, bias: b, y: y)
    var ref = [Double](repeating: 0, count: n * o)
    for r in 0..<n {
      for c in 0..<o {
        var acc = b[c]
        for k in 0..<i { acc += x[r * i + k] * w[c * i + k] }
        ref[r * o + c] = acc
      }
    }
    #expect(maxAbsDiff(y, ref) < 1e-12)
    let m = try Dense.matmul(x, w, transB: true)
    for r in 0..<n { for c in 0..<o { ref[r * o + c] -= b[c] } }
    #expect(maxAbsDiff(m, ref) < 1e-12)
    #expect(throws: EngineError.self) { try Dense.matmul(x, w) }
  }

  @Test(
    "Float GEMM (oneDNN's sgemm on Linux) against naive loops: every transpose, padded strides, beta",
    arguments: [(1, 1, 1), (7, 5, 3), (60, 37, 97), (33, 150, 64)])
  func floatGEMM(_ shape: (Int, Int, Int)) {
    let (m, n, k) = shape
    for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
      for beta: Float in [0, 1] {
        // Operands stored with 3 spare columns per row, so lda/ldb/ldc exceed the widths.
        let (aRows, aCols) = transA ? (k, m) : (m, k)
        let (bRows, bCols) = transB ? (n, k) : (k, n)
        let (lda, ldb, ldc) = (aCols + 3, bCols + 3, n + 3)
        func pattern(_ count: Int, _ mul: Int, _ mod: Int) -> [Float] {
          (0..<count).map { (i: Int) -> Float in Float((i * mul + 11) % mod) / Float(mod) - 0.5 }
        }
        let a = pattern(aRows * lda, 37, 23)
        let b = pattern(bRows * ldb, 53, 29)
        let c0 = pattern(m * ldc, 17, 13)
        var c = c0
        a.withUnsafeBufferPointer { ap in
          b.withUnsafeBufferPointer { bp in
            c.withUnsafeMutableBufferPointer { cp in
              Float.gemm(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1.5, a: ap.baseAddress!, lda: lda,
                b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: ldc)
            }
          }
        }
        var worst = 0.0
        for i in 0..<m {
          for j in 0..<n {
            var acc = 0.0
            for p in 0..<k {
              let av = Double(transA ? a[p * lda + i] : a[i * lda + p])
              let bv = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
              acc += av * bv
            }
            let ref: Double = 1.5 * acc + Double(beta) * Double(c0[i * ldc + j])
            worst = Swift.max(worst, Swift.abs(Double(c[i * ldc + j]) - ref))
          }
          // The padding columns of C are never written.
          for j in n..<ldc { #expect(c[i * ldc + j] == c0[i * ldc + j]) }
        }
        #expect(worst < 1e-4 * Double(k), "\(shape) transA \(transA) transB \(transB) beta \(beta)")
      }
    }
  }

  @Test(
    "max and average pooling",
    arguments: [(2, 2, 6, 6, 2, 2, 0), (1, 3, 7, 5, 3, 2, 1), (2, 1, 5, 8, 3, 1, 0)])
  func pooling(_ a: (Int, Int, Int, Int, Int, Int, Int)) throws {
    let (n, c, h, w, k, s, p) = a
    let x = randomTensor([n, c, h, w], seed: 7)
    let g = PoolGeometry(kernel: k, stride: s, padding: p)
    let ymax = Tensor<Double>(zeros: [0])
    let yavg = Tensor<Double>(zeros: [0])
    var am: [Int32] = []
    try Pooling.maxForward(g, x: x, y: ymax, argmax: &am)
    try Pooling.avgForward(g, x: x, y: yavg)
    let oh = (h + 2 * p - k) / s + 1
    let ow = (w + 2 * p - k) / s + 1
    var rmax: [Double] = []
    var ravg: [Double] = []
    for i in 0..<(n * c) {
      for r in 0..<oh {
        for q in 0..<ow {
          var mx = -Double.infinity
          var sum = 0.0
          for u in 0..<k {
            for v in 0..<k {
              let ih = r * s - p + u
              let iw = q * s - p + v
              if ih >= 0 && ih < h && iw >= 0 && iw < w {
                mx = max(mx, x[i * h * w + ih * w + iw])
                sum += x[i * h * w + ih * w + iw]
              }
            }
          }
          rmax.append(mx)
          ravg.append(sum / Double(k * k))
        }
      }
    }
    #expect(maxAbsDiff(ymax, rmax) == 0)
    #expect(maxAbsDiff(yavg, ravg) < 1e-12)
    let gap = Tensor<Double>(zeros: [0])
    try Pooling.globalAvgForward(x: x, y: gap)
    let rg = (0..<(n * c)).map { i in (0..<(h * w)).reduce(0.0) { $0 + x[i * h * w + $1] } / Double(h * w) }
    #expect(maxAbsDiff(gap, rg) < 1e-12)
  }

  @Test("2x2 max pooling, 8 outputs at a time: values and argmax equal the scalar rule, ties included")
  func maxPoolVector() throws {
    let (n, c, h, w) = (2, 3, 6, 37)
    // Few distinct values: windows often hold equal maxima (the first one wins).
    let x = Tensor<Float>((0..<(n * c * h * w)).map { Float(($0 * 7919) % 4) }, shape: [n, c, h, w])
    let y = Tensor<Float>(zeros: [0])
    var argmax: [Int32] = []
    try Pooling.maxForward(PoolGeometry(kernel: 2), x: x, y: y, argmax: &argmax)
    let (oh, ow) = (h / 2, w / 2)
    for plane in 0..<(n * c) {
      for i in 0..<oh {
        for j in 0..<ow {
          var (best, at) = (-Float.infinity, -1)
          for (u, v) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let k = (2 * i + u) * w + 2 * j + v
            if x[plane * h * w + k] > best || at < 0 { (best, at) = (x[plane * h * w + k], k) }
          }
          let o = (plane * oh + i) * ow + j
          #expect(y[o] == best && argmax[o] == Int32(at), "plane \(plane) (\(i), \(j))")
        }
      }
    }
  }

  @Test("batch norm training statistics, running averages and evaluation mode")
  func batchNorm() throws {
    let x = Tensor<Double>([1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 30, 40, 50, 60, 70, 80], shape: [2, 2, 2, 2])
    // channel 0 holds 1,2,3,4,10,20,30,40; channel 1 holds 5,6,7,8,50,60,70,80
    let gamma = Tensor<Double>([2, 0.5], shape: [2])
    let beta = Tensor<Double>([1, -1], shape: [2])
    let rm = Tensor<Double>(zeros: [2])
    let rv = Tensor<Double>(repeating: 1, shape: [2])
    let y = Tensor<Double>(zeros: [0])
    let sm = Tensor<Double>(zeros: [0])
    let si = Tensor<Double>(zeros: [0])
    try BatchNormKernel.forward(
      x: x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: true,
      momentum: 0.1, eps: 1e-5, y: y, savedMean: sm, savedInvStd: si)
    let c0: [Double] = [1, 2, 3, 4, 10, 20, 30, 40]
    let mean0 = c0.reduce(0, +) / 8
    let var0 = c0.map { ($0 - mean0) * ($0 - mean0) }.reduce(0, +) / 8
    #expect(abs(y[0] - (2 * (1 - mean0) / (var0 + 1e-5).squareRoot() + 1)) < 1e-12)
    #expect(abs(rm[0] - 0.1 * mean0) < 1e-12)
    #expect(abs(rv[0] - (0.9 + 0.1 * var0 * 8 / 7)) < 1e-12)
    // Evaluation mode uses the running statistics.
    try BatchNormKernel.forward(
      x: x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: false,
      momentum: 0.1, eps: 1e-5, y: y, savedMean: sm, savedInvStd: si)
    #expect(abs(y[4] - (0.5 * (5 - rm[1]) / (rv[1] + 1e-5).squareRoot() - 1)) < 1e-12)
    // Running statistics are unchanged in evaluation mode.
    #expect(abs(rm[0] - 0.1 * mean0) < 1e-12)
  }

  @Test("softmax cross-entropy is stable and matches the definition")
  func crossEntropy() throws {
    let z = Tensor<Double>([1000, 0, -1000, 1, 2, 3], shape: [2, 3])
    let d = Tensor<Double>(zeros: [0])
    let loss = try CrossEntropy.loss(logits: z, labels: [0, 1], dLogits: d)
    let l1 = 0.0
    let l2 = log(exp(1.0) + exp(2.0) + exp(3.0)) - 2
    #expect(abs(loss - (l1 + l2) / 2) < 1e-12)
    #expect(loss.isFinite)
    #expect(abs(d[0]) < 1e-12)
    #expect(CrossEntropy.correctCount(logits: z, labels: [0, 1]) == 1)
    #expect(throws: EngineError.self) { try CrossEntropy.loss(logits: z, labels: [0], dLogits: nil) }
    #expect(throws: EngineError.self) { try CrossEntropy.loss(logits: z, labels: [0, 3], dLogits: nil) }
  }

  @Test(
    "the vector exponential of the Float loss is within 2 ulp of libm, 0 below the normal range, NaN for NaN")
  func vectorExponential() {
    // A sweep of [-87.3, 0] and the edges; 8 lanes and a tail of 3.
    var xs: [Float] = stride(from: -87.3, through: 88.7, by: 0.0007).map { Float($0) }
    xs += [0, -0.0, -1e-30, -Float.ulpOfOne, -87.33, -87.34, -100, -.infinity, .nan, -0.3466, 1.5]
    xs += [88.72, 88.73, 100, .infinity]
    while xs.count % 8 != 3 { xs.append(-1) }
    var ys = xs
    CrossEntropy.expNonPositive(&ys, count: ys.count)
    var worst = 0.0
    for (x, y) in zip(xs, ys) where x >= -87.33 && x <= 88.72 {
      let exact = Foundation.exp(Double(x))
      worst = max(worst, abs(Double(y) - exact) / exact)
    }
    #expect(worst < 2.4e-7, "max relative error \(worst)")
    for (x, y) in zip(xs, ys) where x < -87.34 { #expect(y == 0) }
    for (x, y) in zip(xs, ys) where x > 88.73 { #expect(y == .infinity) }
    #expect(zip(xs, ys).allSatisfy { !$0.0.isNaN || $0.1.isNaN })
    #expect(ys[xs.firstIndex(of: 0)!] == 1)
    // The same value gives the same bits in a full vector and in the tail.
    var tail: [Float] = Array(repeating: -2.5, count: 11)
    CrossEntropy.expNonPositive(&tail, count: 11)
    #expect(Set(tail.map(\.bitPattern)).count == 1)
  }

  @Test("the Float loss and its gradient agree with a Double reference (rows of 10, an odd batch)")
  func crossEntropyFloat() throws {
    let (n, k) = (37, 10)
    let z = randomTensor([n, k], seed: 9).array.map { Float($0 * 4) }
    let labels = (0..<n).map { Int32($0 % k) }
    let d = Tensor<Float>(zeros: [0])
    let loss = try CrossEntropy.loss(logits: Tensor(z, shape: [n, k]), labels: labels, dLogits: d)
    let plain = try CrossEntropy.loss(logits: Tensor(z, shape: [n, k]), labels: labels, dLogits: nil)
    #expect(loss == plain)
    var ref = 0.0
    for i in 0..<n {
      let row = (0..<k).map { Double(z[i * k + $0]) }
      let m = row.max()!
      let s = row.map { Foundation.exp($0 - m) }.reduce(0, +)
      ref += (log(s) + m - row[Int(labels[i])]) / Double(n)
      for j in 0..<k {
        let g = (Foundation.exp(row[j] - m) / s - (j == Int(labels[i]) ? 1 : 0)) / Double(n)
        #expect(abs(Double(d[i * k + j]) - g) < 1e-7)
      }
    }
    #expect(abs(loss - ref) < 1e-6 * abs(ref))
  }

  @Test("random streams are addressed by (seed, purpose, index)")
  func randomStreams() {
    var a = RandomStream(seed: 1, purpose: "init", index: 3)
    var b = RandomStream(seed: 1, purpose: "init", index: 3)
    var c = RandomStream(seed: 1, purpose: "init", index: 4)
    var d = RandomStream(seed: 1, purpose: "data", index: 3)
    let xa = (0..<5).map { _ in a.next() }
    #expect(xa == (0..<5).map { _ in b.next() })
    #expect(xa != (0..<5).map { _ in c.next() })
    #expect(xa != (0..<5).map { _ in d.next() })
    var r = RandomStream(seed: 9, purpose: "stats")
    let n = 20000
    let xs = (0..<n).map { _ in r.normal() }
    let mean = xs.reduce(0, +) / Double(n)
    let variance = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
    #expect(abs(mean) < 0.03)
    #expect(abs(variance - 1) < 0.05)
    let us = (0..<n).map { _ in r.uniform() }
    #expect(us.allSatisfy { $0 >= 0 && $0 < 1 })
    #expect(abs(us.reduce(0, +) / Double(n) - 0.5) < 0.02)
    let p = r.permutation(100)
    #expect(p.sorted() == Array(0..<100))
    #expect(p != Array(0..<100))
  }
}
