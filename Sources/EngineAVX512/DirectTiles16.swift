/// # EngineAVX512: Engine's sparse kernels on 16-lane vectors
///
/// The only module compiled for AVX-512 (`-target-cpu skylake-avx512`; Engine is compiled
/// for Haswell, AVX2). Engine calls it only after oneDNN has found AVX-512 on the CPU
/// (``Engine/Sparse/hasWideVectors``, which also follows `DNNL_MAX_CPU_ISA`), so the
/// module costs nothing on an AVX2 machine and `make test`'s AVX2 run takes the 8-lane
/// path on any machine.
///
/// The kernels vectorise over output positions, never over a sum: every output value is
/// the same chain of fused multiply-adds in the same order as in the 8-lane kernel, so
/// both give the same bits (tested).
///
/// Keep everything here non-generic and `@inline(never)`, loads and stores as intrinsics:
/// a generic specialisation emitted here could be shared with (and linked into) Engine's
/// AVX2 code and fault on a CPU without AVX-512.
#if os(Linux) && arch(x86_64)
  import _Builtin_intrinsics.intel

  public enum AVX512Tiles {
    typealias V = SIMD16<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V {
      _mm512_loadu_ps(p)
    }

    /// One tile of a direct sparse convolution (see Engine's `DirectTiles`) for every
    /// plane `o` in `planes`: eight 16-lane sums over the entries
    /// `e in start[o] ..< start[o + 1]`,
    ///
    /// `out[o * planeSize + destinations[k] + l] = bias[o] + sum_e values[e] * base[offsets[e] + deltas[k] + l]`
    ///
    /// for slots `k < 8` and lanes `l < 16`; a slot with `destinations[k] < 0` is padding and
    /// is not stored. With `relu`, stores `v * (v > 0 ? 1 : 0)` (ReLU's formula in Engine).
    @inline(never)
    public static func run(
      planes: Range<Int>, start: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>,
      values: UnsafePointer<Float>, base: UnsafePointer<Float>, deltas d: UnsafePointer<Int>,
      destinations: UnsafePointer<Int>, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>,
      planeSize: Int, relu: Bool
    ) {
      let (d0, d1, d2, d3, d4, d5, d6, d7) = (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7])
      for o in planes {
        let b = V(repeating: bias?[o] ?? 0)
        var (a0, a1, a2, a3, a4, a5, a6, a7) = (b, b, b, b, b, b, b, b)
        for e in Int(start[o])..<Int(start[o + 1]) {
          let v = V(repeating: values[e])
          let s = base + Int(offsets[e])
          a0 = _mm512_fmadd_ps(v, load(s + d0), a0)
          a1 = _mm512_fmadd_ps(v, load(s + d1), a1)
          a2 = _mm512_fmadd_ps(v, load(s + d2), a2)
          a3 = _mm512_fmadd_ps(v, load(s + d3), a3)
          a4 = _mm512_fmadd_ps(v, load(s + d4), a4)
          a5 = _mm512_fmadd_ps(v, load(s + d5), a5)
          a6 = _mm512_fmadd_ps(v, load(s + d6), a6)
          a7 = _mm512_fmadd_ps(v, load(s + d7), a7)
        }
        let plane = out + o * planeSize
        @inline(__always) func put(_ x: V, _ k: Int) {
          let at = destinations[k]
          if at < 0 { return }
          let y = relu ? x * V(repeating: 0).replacing(with: 1, where: x .> 0) : x
          _mm512_storeu_ps(plane + at, y)
        }
        put(a0, 0)
        put(a1, 1)
        put(a2, 2)
        put(a3, 3)
        put(a4, 4)
        put(a5, 5)
        put(a6, 6)
        put(a7, 7)
      }
    }

    /// The weight gradient of a direct sparse convolution for the entries `entries` of one
    /// output plane: `part[e] += sum_k sum_l a[pairs[k] + l] * base[offsets[e] + pairs[k] + l]`
    /// over the plane's `pairs.count` 16-lane vectors (an even number). Vector `k` goes to
    /// sum `k % 2`, two entries at a time, and the two sums are added as the 8-lane kernel
    /// adds its four (`(s0 + s1) + (s2 + s3)`, then a fixed tree over 8 lanes), so each
    /// lane's chain of fused multiply-adds, and the result, are the 8-lane kernel's.
    @inline(never)
    public static func gradient(
      entries: Range<Int>, offsets: UnsafePointer<Int32>, a: UnsafePointer<Float>, base: UnsafePointer<Float>,
      pairs: UnsafeBufferPointer<Int>, into part: UnsafeMutablePointer<Float>
    ) {
      @inline(__always) func finish(_ s0: V, _ s1: V) -> Float {
        let t = (s0.lowHalf + s0.highHalf) + (s1.lowHalf + s1.highHalf)
        return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
      }
      let p = pairs.baseAddress!
      let n = pairs.count
      var e = entries.lowerBound
      while e < entries.upperBound {
        let two = e + 1 < entries.upperBound
        let b = base + Int(offsets[e])
        let c = base + Int(offsets[two ? e + 1 : e])
        var (s0, s1, t0, t1) = (V(), V(), V(), V())
        var k = 0
        while k < n {
          let (o0, o1) = (p[k], p[k + 1])
          let (x0, x1) = (load(a + o0), load(a + o1))
          s0 = _mm512_fmadd_ps(x0, load(b + o0), s0)
          s1 = _mm512_fmadd_ps(x1, load(b + o1), s1)
          t0 = _mm512_fmadd_ps(x0, load(c + o0), t0)
          t1 = _mm512_fmadd_ps(x1, load(c + o1), t1)
          k += 2
        }
        part[e] += finish(s0, s1)
        if two { part[e + 1] += finish(t0, t1) }
        e += two ? 2 : 1
      }
    }
  }
#endif
