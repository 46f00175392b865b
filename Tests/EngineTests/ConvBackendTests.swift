import Engine
import Foundation
import TestSupport
import Testing

/// Backward reference loops: `dW`, `db`, `dx` of `y = conv(x, W) + b` for upstream `dy`.
func refConvBackward(
  _ x: Tensor<Double>, _ w: Tensor<Double>, _ dy: Tensor<Double>, stride: Int, pad: Int
) -> (dW: [Double], db: [Double], dx: [Double]) {
  let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
  let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
  let (oh, ow) = (dy.shape[2], dy.shape[3])
  var dW = [Double](repeating: 0, count: w.count)
  var db = [Double](repeating: 0, count: o)
  var dx = [Double](repeating: 0, count: x.count)
  for i in 0..<n {
    for oc in 0..<o {
      for r in 0..<oh {
        for s in 0..<ow {
          let g = dy[((i * o + oc) * oh + r) * ow + s]
          db[oc] += g
          for ic in 0..<c {
            for p in 0..<kh {
              for q in 0..<kw {
                let ih = r * stride - pad + p
                let iw = s * stride - pad + q
                guard ih >= 0 && ih < h && iw >= 0 && iw < wd else { continue }
                let xi = ((i * c + ic) * h + ih) * wd + iw
                let wi = ((oc * c + ic) * kh + p) * kw + q
                dW[wi] += g * x[xi]
                dx[xi] += g * w[wi]
              }
            }
          }
        }
      }
    }
  }
  return (dW, db, dx)
}

/// Largest absolute error relative to the largest reference magnitude.
func relativeError(_ a: Tensor<Float>, _ ref: [Double]) -> Double {
  let scale = max(ref.map(abs).max() ?? 0, 1e-12)
  return maxAbsDiff(Tensor<Double>(converting: a), ref) / scale
}

@Suite("Convolution backends against reference loops")
struct ConvBackendTests {
  /// (n, c, h, w, o, k, stride, pad, bias): first layers (1 and 3 channels), 16/32-channel
  /// 3x3 layers (Winograd under `auto`), strided and 1x1 projections, a 5x5 kernel, odd
  /// sizes, batches that split into unequal shards, and shards larger than one oneDNN call.
  static let shapes: [(Int, Int, Int, Int, Int, Int, Int, Int, Bool)] = [
    (3, 3, 9, 9, 16, 3, 1, 1, true), (5, 1, 8, 8, 16, 3, 1, 1, true),
    (10, 16, 8, 8, 16, 3, 1, 1, false), (9, 32, 6, 6, 32, 3, 1, 1, true),
    (4, 16, 9, 9, 32, 3, 2, 1, false), (4, 16, 8, 8, 32, 1, 2, 0, false),
    (2, 8, 7, 7, 16, 5, 1, 2, true), (17, 16, 5, 7, 16, 3, 1, 1, true),
    // 140 examples: shards of 17-18, each cut into two oneDNN calls (at most 16 examples).
    (140, 32, 4, 4, 32, 3, 1, 1, true),
    // VGG-11's middle layers at 32x32 input (wide channels, small images).
    (3, 3, 32, 32, 64, 3, 1, 1, true), (3, 64, 16, 16, 128, 3, 1, 1, true),
    (3, 128, 8, 8, 256, 3, 1, 1, true),
    (3, 256, 8, 8, 256, 3, 1, 1, true), (3, 256, 4, 4, 512, 3, 1, 1, true),
    (3, 512, 4, 4, 512, 3, 1, 1, true),
  ]

  @Test("forward and backward of every backend", arguments: shapes)
  func backends(_ a: (Int, Int, Int, Int, Int, Int, Int, Int, Bool)) throws {
    let (n, c, h, w, o, k, s, p, hasBias) = a
    let g = ConvGeometry(inChannels: c, outChannels: o, kernel: (k, k), stride: (s, s), padding: (p, p))
    let x = randomTensor([n, c, h, w], seed: 11)
    let wt = randomTensor([o, c, k, k], seed: 12)
    let b = randomTensor([o], seed: 13)
    let yRef = refConv(x, wt, hasBias ? b : nil, stride: s, pad: p)
    let (oh, ow) = g.outputSize(h, w)
    let dy = randomTensor([n, o, oh, ow], seed: 14)
    let ref = refConvBackward(x, wt, dy, stride: s, pad: p)
    var names: [String] = []
    // Every policy, with NCHW input and (when C allows) nChw16c and nChw8c input; outputs and
    // gradients are compared in NCHW whatever layout the backend wrote them in.
    let layouts = [TensorLayout.nchw, .blocked16, .blocked8].filter { c % $0.block == 0 }
    for policy in ConvBackendPolicy.allCases {
      for inputLayout in layouts {
        let backend: ConvolutionBackend<Float> = Convolution.makeBackend(
          g, inputShape: x.shape, policy: policy, workspace: ConvWorkspace())
        if inputLayout.isBlocked && !backend.acceptsBlocked { continue }
        if inputLayout == .nchw { names.append(backend.name) }
        let what = "\(backend.name) \(inputLayout)"
        let xf = Tensor<Float>(zeros: [0])
        Layouts.convert(Tensor<Float>(converting: x), to: inputLayout, into: xf)
        let (wf, bf) = (Tensor<Float>(converting: wt), Tensor<Float>(converting: b))
        let y = Tensor<Float>(zeros: [0])
        try backend.prepareBackward(batch: n, inputLayout: inputLayout)
        try backend.forward(x: xf, weight: wf, bias: hasBias ? bf : nil, y: y)
        if !backend.name.hasPrefix("onednn") { #expect(y.layout == .nchw) }
        let plain = Tensor<Float>(zeros: [0])
        Layouts.convert(y, to: .nchw, into: plain)
        // Winograd F(4x4, 3x3) trades some float accuracy for 4x fewer multiplications.
        let tolerance = backend.name.contains("wino") ? 2e-4 : 1e-5
        #expect(plain.shape == [n, o, oh, ow])
        #expect(relativeError(plain, yRef) < tolerance, "\(what) forward")
        let dyf = Tensor<Float>(zeros: [0])
        Layouts.convert(Tensor<Float>(converting: dy), to: y.layout, into: dyf)
        let dW = Tensor<Float>(zeros: wt.shape)
        let db = Tensor<Float>(zeros: [o])
        let dx = Tensor<Float>(zeros: [0])
        backend.backward(x: xf, weight: wf, dy: dyf, dWeight: dW, dBias: db, dx: dx)
        #expect(relativeError(dW, ref.dW) < tolerance, "\(what) dW")
        #expect(relativeError(db, ref.db) < 1e-5, "\(what) db")
        #expect(dx.shape == x.shape && dx.layout == inputLayout, "\(what)")
        let dxPlain = Tensor<Float>(zeros: [0])
        Layouts.convert(dx, to: .nchw, into: dxPlain)
        #expect(relativeError(dxPlain, ref.dx) < tolerance, "\(what) dx")
        // Twice in a row gives the same bits (no state leaks between calls).
        let dW2 = Tensor<Float>(zeros: wt.shape)
        backend.backward(x: xf, weight: wf, dy: dyf, dWeight: dW2, dBias: nil, dx: nil)
        #expect(dW2.array == dW.array, "\(what) repeat")
      }
    }
    #expect(names[1] == "im2col+blas")
    #if os(Linux)
      // oneDNN is part of the Linux build: it must take the shapes it has JIT kernels for.
      #expect(names[2].hasPrefix("onednn:jit"), "\(names)")
      // auto takes Winograd for these shapes exactly when oneDNN offers it on this machine
      // (with AVX-512; `DNNL_MAX_CPU_ISA=AVX2` takes it away), whichever that is.
      if k == 3 && s == 1 && c >= 32 && o >= 32 {
        #expect(
          names[0].contains("wino") == Convolution.winogradAvailable(g, spatial: (h, w)),
          "\(names) on \(Convolution.isa)")
      }
    #endif
  }

  /// `make test` runs the whole suite a second time under `DNNL_MAX_CPU_ISA=AVX2`, so an
  /// AVX-512 machine checks the AVX2 kernels too; this checks the cap took effect.
  @Test("oneDNN honours DNNL_MAX_CPU_ISA")
  func isaCap() {
    #if os(Linux)
      let cap = ProcessInfo.processInfo.environment["DNNL_MAX_CPU_ISA"]?.lowercased()
      if cap == "avx2" {
        #expect(Convolution.isa == cap, "\(Convolution.isa)")
        #expect(!Convolution.hasAVX512Kernels)
      } else {
        #expect(Convolution.isa != "none" && !Convolution.isa.hasPrefix("isa_0x"), "\(Convolution.isa)")
      }
    #endif
  }

  @Test("oneDNN gives the same bits at 1, 2 and 3 threads, also in evaluation batches")
  func threadIndependence() throws {
    let g = ConvGeometry(inChannels: 32, outChannels: 32, kernel: (3, 3), padding: (1, 1))
    let x = Tensor<Float>(converting: randomTensor([13, 32, 8, 8], seed: 21))
    let wt = Tensor<Float>(converting: randomTensor([32, 32, 3, 3], seed: 22))
    let dy = Tensor<Float>(converting: randomTensor([13, 32, 8, 8], seed: 23))
    func run(_ threads: Int) throws -> [[Float]] {
      try withExclusiveThreads(threads) { try body() }
    }
    func body() throws -> [[Float]] {
      let backend: ConvolutionBackend<Float> = Convolution.makeBackend(
        g, inputShape: x.shape, policy: .auto, workspace: ConvWorkspace())
      let y = Tensor<Float>(zeros: [0])
      try backend.prepareBackward(batch: 13, inputLayout: .nchw)
      try backend.forward(x: x, weight: wt, bias: nil, y: y)
      let dW = Tensor<Float>(zeros: wt.shape)
      let dx = Tensor<Float>(zeros: [0])
      let dyIn = Tensor<Float>(zeros: [0])
      Layouts.convert(dy, to: y.layout, into: dyIn)
      backend.backward(x: x, weight: wt, dy: dyIn, dWeight: dW, dBias: nil, dx: dx)
      // A different batch size afterwards (as evaluation does) gets its own plan.
      let y3 = Tensor<Float>(zeros: [0])
      #expect(y.layout == Convolution.blockedLayout, "\(Convolution.isa)")
      #expect(Convolution.blockedLayout == (Convolution.hasAVX512Kernels ? .blocked16 : .blocked8))
      let x3 = Tensor<Float>(Array(x.array[0..<(3 * 32 * 64)]), shape: [3, 32, 8, 8])
      try backend.forward(x: x3, weight: wt, bias: nil, y: y3)
      return [y.array, dW.array, dx.array, y3.array]
    }
    let one = try run(1)
    #expect(one == (try run(1)))
    #expect(one == (try run(2)))
    #expect(one == (try run(3)))
  }
}

@Suite("Layouts and blocked batch norm")
struct LayoutTests {
  @Test(
    "nChw16c and nChw8c conversions are permutations with the documented index formula",
    arguments: [TensorLayout.blocked16, .blocked8])
  func conversion(_ layout: TensorLayout) {
    let (n, c, h, w) = (2, 32, 3, 5)
    let x = Tensor<Float>((0..<(n * c * h * w)).map { Float($0) }, shape: [n, c, h, w])
    let b = Tensor<Float>(zeros: [0])
    Layouts.convert(x, to: layout, into: b)
    #expect(b.layout == layout && b.shape == x.shape)
    let bs = layout.block
    for i in 0..<n {
      for ch in 0..<c {
        for p in 0..<(h * w) {
          let blockedIndex = ((i * c / bs + ch / bs) * h * w + p) * bs + ch % bs
          #expect(b[blockedIndex] == x[(i * c + ch) * h * w + p])
        }
      }
    }
    let back = Tensor<Float>(zeros: [0])
    Layouts.convert(b, to: .nchw, into: back)
    #expect(back.layout == .nchw && back.array == x.array)
    // Between the two block sizes (through NCHW).
    let other = Tensor<Float>(zeros: [0])
    Layouts.convert(b, to: layout == .blocked16 ? .blocked8 : .blocked16, into: other)
    Layouts.convert(other, to: .nchw, into: back)
    #expect(back.array == x.array)
  }

  /// An odd spatial size makes nChw8c's last vector of each block half (8 lanes).
  @Test(
    "batch norm on nChw16c and nChw8c matches NCHW (training and evaluation, forward and backward)",
    arguments: [(5, 32, 3, 4), (3, 16, 3, 3), (4, 32, 1, 1)])
  func blockedBatchNorm(_ shape: (Int, Int, Int, Int)) throws {
    let (n, c, h, w) = shape
    let x = Tensor<Float>(converting: randomTensor([n, c, h, w], seed: 31))
    let dy = Tensor<Float>(converting: randomTensor([n, c, h, w], seed: 32))
    let gamma = Tensor<Float>(converting: randomTensor([c], seed: 33))
    let beta = Tensor<Float>(converting: randomTensor([c], seed: 34))
    for training in [true, false] {
      var results: [[[Float]]] = []
      for layout in [TensorLayout.nchw, .blocked16, .blocked8] {
        let (xi, dyi) = (Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0]))
        Layouts.convert(x, to: layout, into: xi)
        Layouts.convert(dy, to: layout, into: dyi)
        let rm = Tensor<Float>(converting: randomTensor([c], seed: 35))
        let rv = Tensor<Float>((0..<c).map { 0.5 + Float($0) / 10 }, shape: [c])
        let (y, mean, inv) = (Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0]))
        try BatchNormKernel.forward(
          x: xi, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: training,
          momentum: 0.1, eps: 1e-5, y: y, savedMean: mean, savedInvStd: inv)
        #expect(y.layout == layout)
        let (dg, db, dx) = (Tensor<Float>(zeros: [c]), Tensor<Float>(zeros: [c]), Tensor<Float>(zeros: [0]))
        BatchNormKernel.backward(
          x: xi, gamma: gamma, dy: dyi, savedMean: mean, savedInvStd: inv, training: training,
          dGamma: dg, dBeta: db, dx: dx)
        #expect(dx.layout == layout)
        let (yp, dxp) = (Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0]))
        Layouts.convert(y, to: .nchw, into: yp)
        Layouts.convert(dx, to: .nchw, into: dxp)
        results.append([yp.array, dxp.array, dg.array, db.array, rm.array, rv.array])
      }
      for r in 1..<results.count {
        for k in 0..<6 {
          let ref = results[0][k].map(Double.init)
          let err = relativeError(Tensor(results[r][k], shape: [results[r][k].count]), ref)
          #expect(err < 1e-5, "training \(training), layout \(r), output \(k): \(err)")
        }
      }
    }
  }

  @Test(
    "max pooling on nChw16c and nChw8c equals NCHW bit for bit, ties included",
    arguments: [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
  func blockedMaxPool(_ a: (Int, Int, Int)) throws {
    let g = PoolGeometry(kernel: a.0, stride: a.1, padding: a.2)
    let (n, c, h, w) = (3, 32, 7, 6)
    // Few distinct values, so windows often hold equal maxima (first one wins).
    let x = Tensor<Float>((0..<(n * c * h * w)).map { Float(($0 * 7919) % 5) }, shape: [n, c, h, w])
    var results: [[Float]] = []
    for layout in [TensorLayout.nchw, .blocked16, .blocked8] {
      let xi = Tensor<Float>(zeros: [0])
      Layouts.convert(x, to: layout, into: xi)
      let y = Tensor<Float>(zeros: [0])
      var argmax: [Int32] = []
      try Pooling.maxForward(g, x: xi, y: y, argmax: &argmax)
      #expect(y.layout == layout)
      let dyPlain = Tensor<Float>((0..<y.count).map { Float($0 % 11) - 5 }, shape: y.shape)
      let dy = Tensor<Float>(zeros: [0])
      Layouts.convert(dyPlain, to: layout, into: dy)
      let dx = Tensor<Float>(zeros: [0])
      Pooling.maxBackward(inputShape: x.shape, dy: dy, argmax: argmax, dx: dx)
      #expect(dx.layout == layout)
      let (yp, dxp) = (Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0]))
      Layouts.convert(y, to: .nchw, into: yp)
      Layouts.convert(dx, to: .nchw, into: dxp)
      results.append(yp.array + dxp.array)
    }
    #expect(results[0] == results[1])
    #expect(results[0] == results[2])
  }
}
