#if canImport(CDNNL)
  import CDNNL

  /// oneDNN 2.x (C API, v2 `*_desc_init` style) convolution for Float.
  ///
  /// Per shard of the batch (the fixed ``Parallel/batchShards(_:)`` split), single-threaded:
  ///
  ///     forward:  x_s (nchw) --reorder--> src (blocked) --conv--> dst (blocked) --reorder--> y_s
  ///     backward: dy_s --reorder--> diff_dst;  diff_dst * W --bwd data--> diff_src --> dx_s
  ///               src, diff_dst --bwd weights--> dW_s (blocked) --reorder--> dW_s (oihw), db_s
  ///
  /// then `dW = dW_0 + dW_1 + ...` in shard order. Reorders are skipped when the caller's
  /// layout is oneDNN's: input already blocked (``Convolution/blockedLayout``: nChw16c with
  /// AVX-512, nChw8c with AVX2, written by the previous oneDNN layer), output left blocked
  /// for the next layer, or plain NCHW accepted
  /// as is (the 3-channel input of a first layer). A shard larger than
  /// ``maxCallBatch`` examples is computed in several calls whose weight gradients are added
  /// in order. Primitives are created once per call size and input layout; scratchpads are
  /// user-managed per thread slot, so no memory is allocated in the steady state.
  /// oneDNN's own OpenMP threads are pinned to one per calling thread (`omp_set_num_threads`):
  /// LotteryKit's worker pool provides the parallelism, as with BLAS.
  final class OneDNNConvolution: ConvolutionBackend<Float>, @unchecked Sendable {
    let workspace: ConvWorkspace<Float>
    let winograd: Bool
    let spatial: (Int, Int)
    private var plans: [[Int]: Plan] = [:]
    private(set) var implementation = ""

    /// nil when oneDNN has no JIT kernel for this shape (the caller falls back to im2col).
    init?(geometry: ConvGeometry, spatial: (Int, Int), winograd: Bool, workspace: ConvWorkspace<Float>) {
      self.workspace = workspace
      self.winograd = winograd
      self.spatial = spatial
      super.init(geometry: geometry)
      guard let probe = try? plan(batch: 8, input: .nchw) else { return nil }
      let impl = probe.forward.implementation
      if impl.hasPrefix("ref") || impl.contains("gemm") { return nil }
      if winograd && !impl.contains("wino") { return nil }
      implementation = impl
    }

    override var name: String { "onednn:\(implementation)" }

    /// Primitives and memory descriptors for one shard size.
    final class Plan {
      let forward: Primitive
      let srcIn: Primitive?  // nchw -> forward src
      let dstOut: Primitive?  // forward dst -> nchw
      let weightsIn: Primitive?  // oihw -> forward weights
      let weights: Tensor<Float>  // blocked forward weights
      let userSrc: dnnl_memory_desc_t  // the caller's input layout (nchw or blocked)
      let userDst: dnnl_memory_desc_t  // the output layout: blocked when oneDNN writes it
      let outputLayout: TensorLayout
      var backward: BackwardPlan?
      init(
        forward: Primitive, srcIn: Primitive?, dstOut: Primitive?, weightsIn: Primitive?,
        weights: Tensor<Float>, userSrc: dnnl_memory_desc_t, userDst: dnnl_memory_desc_t,
        outputLayout: TensorLayout
      ) {
        self.userSrc = userSrc
        self.userDst = userDst
        self.outputLayout = outputLayout
        self.forward = forward
        self.srcIn = srcIn
        self.dstOut = dstOut
        self.weightsIn = weightsIn
        self.weights = weights
      }
    }
    final class BackwardPlan {
      let data: Primitive
      let weightsGrad: Primitive
      let diffDstIn: Primitive?  // nchw -> bwd-data diff_dst
      let diffDstInW: Primitive?  // nchw -> bwd-weights diff_dst (when its layout differs)
      let diffSrcOut: Primitive?  // diff_src -> nchw
      let srcInW: Primitive?  // nchw -> bwd-weights src
      let diffWeightsOut: Primitive?  // bwd-weights diff_weights -> oihw
      let weightsInData: Primitive?  // oihw -> bwd-data weights
      let dataWeights: Tensor<Float>
      let sameDiffDst: Bool
      init(
        data: Primitive, weightsGrad: Primitive, diffDstIn: Primitive?, diffDstInW: Primitive?,
        diffSrcOut: Primitive?, srcInW: Primitive?, diffWeightsOut: Primitive?,
        weightsInData: Primitive?, dataWeights: Tensor<Float>, sameDiffDst: Bool
      ) {
        self.data = data
        self.weightsGrad = weightsGrad
        self.diffDstIn = diffDstIn
        self.diffDstInW = diffDstInW
        self.diffSrcOut = diffSrcOut
        self.srcInW = srcInW
        self.diffWeightsOut = diffWeightsOut
        self.weightsInData = weightsInData
        self.dataWeights = dataWeights
        self.sameDiffDst = sameDiffDst
      }
    }

    private var algorithm: dnnl_alg_kind_t { winograd ? dnnl_convolution_winograd : dnnl_convolution_direct }
    private var hasBias = true

    /// The caller's weight layout (OIHW, PyTorch's).
    private var userWeights: dnnl_memory_desc_t {
      DNNL.desc([geometry.outChannels, geometry.inChannels, geometry.kernelH, geometry.kernelW], dnnl_oihw)
    }

    private func descriptors(batch n: Int) -> (
      src: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, bias: dnnl_memory_desc_t,
      dst: dnnl_memory_desc_t, strides: [Int64], padding: [Int64]
    ) {
      let g = geometry
      let (oh, ow) = g.outputSize(spatial.0, spatial.1)
      return (
        DNNL.desc([n, g.inChannels, spatial.0, spatial.1], dnnl_format_tag_any),
        DNNL.desc([g.outChannels, g.inChannels, g.kernelH, g.kernelW], dnnl_format_tag_any),
        DNNL.desc([g.outChannels], dnnl_x),
        DNNL.desc([n, g.outChannels, oh, ow], dnnl_format_tag_any),
        [Int64(g.strideH), Int64(g.strideW)], [Int64(g.padH), Int64(g.padW)]
      )
    }

    /// Output is written blocked (no reorder) whenever oneDNN's kernel uses the blocked
    /// layout of this ISA (``Convolution/blockedLayout``: nChw16c or nChw8c).
    private func plan(batch n: Int, input: TensorLayout) throws -> Plan {
      let key = [n, input.block]
      if let p = plans[key] { return p }
      DNNL.singleThreaded()
      let g = geometry
      var d = descriptors(batch: n)
      var op = dnnl_convolution_desc_t()
      try DNNL.check(
        dnnl_convolution_forward_desc_init(
          &op, dnnl_forward_training, algorithm, &d.src, &d.weights, &d.bias, &d.dst, d.strides,
          d.padding, d.padding), "convolution descriptor for \(g)")
      let fwd = try Primitive(
        op: &op, hint: nil,
        args: [
          (DNNL_ARG_SRC, dnnl_query_src_md, 0), (DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0),
          (DNNL_ARG_BIAS, dnnl_query_weights_md, 1), (DNNL_ARG_DST, dnnl_query_dst_md, 0),
        ])
      let (oh, ow) = g.outputSize(spatial.0, spatial.1)
      let userSrc = DNNL.desc(
        [n, g.inChannels, spatial.0, spatial.1], DNNL.tag(input))
      let preferred = Convolution.blockedLayout
      var blocked = DNNL.desc([n, g.outChannels, oh, ow], DNNL.tag(preferred))
      var dst = fwd.md(3)
      let blockedOutput =
        g.outChannels % preferred.block == 0 && dnnl_memory_desc_equal(&blocked, &dst) != 0
      let userDst = blockedOutput ? blocked : DNNL.desc([n, g.outChannels, oh, ow], dnnl_nchw)
      let wMD = fwd.md(1)
      let p = Plan(
        forward: fwd,
        srcIn: try Primitive.reorder(userSrc, fwd.md(0)),
        dstOut: try Primitive.reorder(fwd.md(3), userDst),
        weightsIn: try Primitive.reorder(userWeights, wMD),
        weights: Tensor(zeros: [DNNL.floats(wMD)]), userSrc: userSrc, userDst: userDst,
        outputLayout: blockedOutput ? preferred : .nchw)
      plans[key] = p
      return p
    }

    private func backwardPlan(_ p: Plan, batch n: Int) throws -> BackwardPlan {
      if let b = p.backward { return b }
      DNNL.singleThreaded()
      let g = geometry
      var d = descriptors(batch: n)
      var opData = dnnl_convolution_desc_t()
      try DNNL.check(
        dnnl_convolution_backward_data_desc_init(
          &opData, algorithm, &d.src, &d.weights, &d.dst, d.strides, d.padding, d.padding),
        "backward-data descriptor for \(g)")
      let data = try Primitive(
        op: &opData, hint: p.forward.pd,
        args: [
          (DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0), (DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0),
          (DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0),
        ])
      var opW = dnnl_convolution_desc_t()
      try DNNL.check(
        dnnl_convolution_backward_weights_desc_init(
          &opW, algorithm, &d.src, &d.weights, &d.bias, &d.dst, d.strides, d.padding, d.padding),
        "backward-weights descriptor for \(g)")
      let wgrad = try Primitive(
        op: &opW, hint: p.forward.pd,
        args: [
          (DNNL_ARG_SRC, dnnl_query_src_md, 0), (DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0),
          (DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0),
          (DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1),
        ])
      let (userSrc, userDst, userW) = (p.userSrc, p.userDst, userWeights)
      var a = data.md(0)
      var b = wgrad.md(1)
      let same = dnnl_memory_desc_equal(&a, &b) != 0
      let b2 = BackwardPlan(
        data: data, weightsGrad: wgrad,
        diffDstIn: try Primitive.reorder(userDst, data.md(0)),
        diffDstInW: same ? nil : try Primitive.reorder(userDst, wgrad.md(1)),
        diffSrcOut: try Primitive.reorder(data.md(2), userSrc),
        srcInW: try Primitive.reorder(userSrc, wgrad.md(0)),
        diffWeightsOut: try Primitive.reorder(wgrad.md(2), userW),
        weightsInData: try Primitive.reorder(userW, data.md(1)),
        dataWeights: Tensor(zeros: [DNNL.floats(data.md(1))]), sameDiffDst: same)
      p.backward = b2
      return b2
    }

    /// Examples per oneDNN call: a shard of a large evaluation batch (500 -> 63 per shard)
    /// is cut into calls of at most this many, so scratch buffers and plans stay bounded by
    /// the training shard size (ResNet's batch of 128 gives shards of 16).
    static let maxCallBatch = 16

    /// One oneDNN call: examples `range` of the batch with the plan for its size.
    struct Piece {
      let range: Range<Int>
      let plan: Plan
    }

    /// How a batch is cut into calls, and what their scratch buffers need.
    struct Layout {
      let shards: Int
      let pieces: [[Piece]]
      let plans: [Plan]  // distinct
      let bufferFloats: Int
      let scratchBytes: Int
    }
    private var layouts: [[Int]: Layout] = [:]

    /// The pieces of every shard of a batch of `n` (computed once per batch size, input
    /// layout and direction), and per-slot scratch buffers sized for every primitive
    /// involved. Runs on the calling thread, before the parallel section.
    private func prepare(batch n: Int, input: TensorLayout, backward: Bool) throws -> (
      shards: Int, slots: Int, pieces: [[Piece]], plans: [Plan]
    ) {
      let key = [n, input.block, backward ? 1 : 0]
      let layout = try layouts[key] ?? makeLayout(batch: n, input: input, backward: backward)
      layouts[key] = layout
      let slots = min(layout.shards, Parallel.slotCount)
      workspace.prepareOneDNN(slots: slots, floats: layout.bufferFloats, scratchBytes: layout.scratchBytes)
      return (layout.shards, slots, layout.pieces, layout.plans)
    }

    private func makeLayout(batch n: Int, input: TensorLayout, backward: Bool) throws -> Layout {
      let shards = Parallel.batchShards(n)
      var pieces: [[Piece]] = []
      var distinct: [Plan] = []
      var bufferFloats = geometry.outChannels * geometry.patchSize + geometry.outChannels
      var scratchBytes = 0
      for s in 0..<shards {
        let r = Parallel.range(s, of: shards, n)
        let parts = (r.count + Self.maxCallBatch - 1) / Self.maxCallBatch
        var row: [Piece] = []
        for k in 0..<parts {
          let sub = Parallel.range(k, of: parts, r.count)
          let p = try plan(batch: sub.count, input: input)
          row.append(Piece(range: (r.lowerBound + sub.lowerBound)..<(r.lowerBound + sub.upperBound), plan: p))
          if distinct.contains(where: { $0 === p }) { continue }
          distinct.append(p)
          var prims: [Primitive?] = [p.forward, p.srcIn, p.dstOut]
          if backward {
            let b = try backwardPlan(p, batch: sub.count)
            prims += [
              b.data, b.weightsGrad, b.diffDstIn, b.diffDstInW, b.diffSrcOut, b.srcInW, b.diffWeightsOut,
            ]
          }
          for case let q? in prims {
            scratchBytes = max(scratchBytes, q.scratchpadBytes)
            for i in q.args.indices { bufferFloats = max(bufferFloats, DNNL.floats(q.md(i))) }
          }
        }
        pieces.append(row)
      }
      return Layout(
        shards: shards, pieces: pieces, plans: distinct, bufferFloats: bufferFloats,
        scratchBytes: scratchBytes)
    }

    /// `into = weight` in the layout `reorder` produces (a plain copy without one).
    private func copyWeights(_ weight: Tensor<Float>, via reorder: Primitive?, into: Tensor<Float>) {
      if let reorder {
        reorder.run(slot: 0, [UnsafeMutableRawPointer(weight.data), UnsafeMutableRawPointer(into.data)])
      } else {
        into.data.update(from: weight.data, count: weight.count)
      }
    }

    override func forward(x: Tensor<Float>, weight: Tensor<Float>, bias: Tensor<Float>?, y: Tensor<Float>)
      throws
    {
      let g = geometry
      let outShape = try Convolution.outputShape(g, input: x.shape)
      guard x.shape[2] == spatial.0, x.shape[3] == spatial.1 else {
        throw EngineError("\(g): built for \(spatial.0)x\(spatial.1) inputs, got shape \(x.shape)")
      }
      try weight.expectShape([g.outChannels, g.inChannels, g.kernelH, g.kernelW], "\(g) weight")
      y.resize(outShape)
      let n = x.shape[0]
      let (shards, slots, pieces, plans) = try prepare(
        batch: n, input: x.layout, backward: false)
      y.layout = plans[0].outputLayout
      // Weights: one reorder per distinct piece size, before the shards run.
      for p in plans { copyWeights(weight, via: p.weightsIn, into: p.weights) }
      let zeroBias = workspace.zeroBias(g.outChannels)
      let inPerExample = g.inChannels * spatial.0 * spatial.1
      let outPerExample = outShape[1] * outShape[2] * outShape[3]
      let ws = workspace
      Parallel.forEach(shards, slots: slots) { s, slot in
        DNNL.singleThreaded()
        let bufA = UnsafeMutableRawPointer(ws.dnnlBuffers[slot][0].data)
        let bufB = UnsafeMutableRawPointer(ws.dnnlBuffers[slot][1].data)
        let scratch = UnsafeMutableRawPointer(ws.dnnlScratch[slot].data)
        for piece in pieces[s] {
          let p = piece.plan
          let xs = UnsafeMutableRawPointer(x.data + piece.range.lowerBound * inPerExample)
          let ys = UnsafeMutableRawPointer(y.data + piece.range.lowerBound * outPerExample)
          var src = xs
          if let q = p.srcIn {
            q.run(slot: slot, [xs, bufA], scratch: scratch)
            src = bufA
          }
          let dst = p.dstOut == nil ? ys : bufB
          p.forward.run(
            slot: slot,
            [
              src, UnsafeMutableRawPointer(p.weights.data),
              UnsafeMutableRawPointer(bias?.data ?? zeroBias), dst,
            ],
            scratch: scratch)
          if let q = p.dstOut { q.run(slot: slot, [bufB, ys], scratch: scratch) }
        }
      }
    }

    override var acceptsBlocked: Bool { true }

    override func prepareBackward(batch: Int, inputLayout: TensorLayout) throws {
      _ = try prepare(batch: batch, input: inputLayout, backward: true)
    }

    override func backward(
      x: Tensor<Float>, weight: Tensor<Float>, dy: Tensor<Float>, dWeight: Tensor<Float>,
      dBias: Tensor<Float>?, dx: Tensor<Float>?
    ) {
      let g = geometry
      let n = x.shape[0]
      let prepared: (shards: Int, slots: Int, pieces: [[Piece]], plans: [Plan])
      do { prepared = try prepare(batch: n, input: x.layout, backward: true) } catch {
        preconditionFailure("\(error)")  // prepareBackward ran in the forward pass
      }
      let (shards, slots, pieces, plans) = prepared
      let wc = weight.count
      let oc = g.outChannels
      workspace.prepare(shards: shards, slots: 0, colCount: 0, weightCount: wc, outChannels: oc)
      precondition(
        dy.layout == plans[0].outputLayout, "\(g): gradient in the wrong layout")
      if let dx {
        dx.resize(x.shape)
        dx.layout = x.layout
        for p in plans { copyWeights(weight, via: p.backward!.weightsInData, into: p.backward!.dataWeights) }
      }
      let inPerExample = g.inChannels * spatial.0 * spatial.1
      let outPerExample = dy.count / max(n, 1)
      let ws = workspace
      Parallel.forEach(shards, slots: slots) { s, slot in
        DNNL.singleThreaded()
        let bufA = UnsafeMutableRawPointer(ws.dnnlBuffers[slot][0].data)
        let bufB = UnsafeMutableRawPointer(ws.dnnlBuffers[slot][1].data)
        let bufC = UnsafeMutableRawPointer(ws.dnnlBuffers[slot][2].data)
        let bufD = ws.dnnlBuffers[slot][3].data
        let bufE = ws.dnnlBuffers[slot][4].data
        let scratch = UnsafeMutableRawPointer(ws.dnnlScratch[slot].data)
        let (dWs, dbs) = (ws.dW[s].data, ws.db[s].data)
        for (k, piece) in pieces[s].enumerated() {
          let b = piece.plan.backward!
          let xs = UnsafeMutableRawPointer(x.data + piece.range.lowerBound * inPerExample)
          let dys = UnsafeMutableRawPointer(dy.data + piece.range.lowerBound * outPerExample)
          // diff_dst in the backward-data layout (bufB).
          var diffDst = dys
          if let q = b.diffDstIn {
            q.run(slot: slot, [dys, bufB], scratch: scratch)
            diffDst = bufB
          }
          if let dx {
            let dxs = UnsafeMutableRawPointer(dx.data + piece.range.lowerBound * inPerExample)
            let out = b.diffSrcOut == nil ? dxs : bufA
            b.data.run(
              slot: slot, [diffDst, UnsafeMutableRawPointer(b.dataWeights.data), out], scratch: scratch)
            if let q = b.diffSrcOut { q.run(slot: slot, [bufA, dxs], scratch: scratch) }
          }
          var src = xs
          if let q = b.srcInW {
            q.run(slot: slot, [xs, bufA], scratch: scratch)
            src = bufA
          }
          var diffDstW = diffDst
          if !b.sameDiffDst {
            if let q = b.diffDstInW {
              q.run(slot: slot, [dys, bufC], scratch: scratch)
              diffDstW = bufC
            } else {
              diffDstW = dys
            }
          }
          // The first piece writes the shard's partial gradients; later pieces go through
          // bufE and are added in piece order.
          let (wOut, bOut) = k == 0 ? (dWs, dbs) : (bufE, bufE + wc)
          let raw = b.diffWeightsOut == nil ? UnsafeMutableRawPointer(wOut) : UnsafeMutableRawPointer(bufD)
          b.weightsGrad.run(
            slot: slot, [src, diffDstW, raw, UnsafeMutableRawPointer(bOut)], scratch: scratch)
          if let q = b.diffWeightsOut {
            q.run(slot: slot, [raw, UnsafeMutableRawPointer(wOut)], scratch: scratch)
          }
          if k > 0 {
            addElements(dWs, bufE, into: dWs, 0..<wc)
            addElements(dbs, bufE + wc, into: dbs, 0..<oc)
          }
        }
      }
      Convolution.reduceShards(ws.dW, shards: shards, count: wc, into: dWeight.data)
      if let dBias {
        Convolution.reduceShards(ws.db, shards: shards, count: oc, into: dBias.data)
      }
    }
  }

  /// One oneDNN primitive with its argument list, and memory objects per thread slot (set to
  /// the caller's buffers on each run).
  final class Primitive: @unchecked Sendable {
    let pd: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t
    /// (argument kind, memory descriptor) in the order `run` takes pointers.
    let args: [(Int32, dnnl_memory_desc_t)]
    let scratchpad: dnnl_memory_desc_t
    let scratchpadBytes: Int
    /// memories[slot][i]: memory object for args[i] (and the scratchpad last).
    private var memories: [[dnnl_memory_t]] = []
    /// The execution arguments of each slot (fixed; `run` only changes the memories' data).
    private var execArgs: [[dnnl_exec_arg_t]] = []
    private var streams: [dnnl_stream_t] = []

    /// A primitive from an operation descriptor; `args` name the queries for its arguments.
    convenience init<Op>(
      op: UnsafeMutablePointer<Op>, hint: dnnl_primitive_desc_t?, args: [(Int32, dnnl_query_t, Int32)]
    ) throws {
      var pd: dnnl_primitive_desc_t?
      try DNNL.check(
        dnnl_primitive_desc_create(&pd, UnsafeRawPointer(op), DNNL.userScratchpad, DNNL.engine, hint),
        "primitive descriptor")
      try self.init(pd: pd!, args: args.map { ($0.0, dnnl_primitive_desc_query_md(pd, $0.1, $0.2).pointee) })
    }

    /// A reorder from `from` to `to`, or nil when the two layouts are the same.
    static func reorder(_ from: dnnl_memory_desc_t, _ to: dnnl_memory_desc_t) throws -> Primitive? {
      var a = from
      var b = to
      if dnnl_memory_desc_equal(&a, &b) != 0 { return nil }
      var pd: dnnl_primitive_desc_t?
      try DNNL.check(
        dnnl_reorder_primitive_desc_create(&pd, &a, DNNL.engine, &b, DNNL.engine, DNNL.userScratchpad),
        "reorder")
      return try Primitive(pd: pd!, args: [(DNNL_ARG_FROM, a), (DNNL_ARG_TO, b)])
    }

    private init(pd: dnnl_primitive_desc_t, args: [(Int32, dnnl_memory_desc_t)]) throws {
      self.pd = pd
      var prim: dnnl_primitive_t?
      try DNNL.check(dnnl_primitive_create(&prim, pd), "primitive")
      primitive = prim!
      self.args = args
      var sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0).pointee
      scratchpad = sp
      scratchpadBytes = dnnl_memory_desc_get_size(&sp)
      // Memory objects for every shard slot, created up front: `run` only sets pointers.
      for _ in 0..<Parallel.maxBatchShards {
        var row: [dnnl_memory_t] = []
        for (_, md) in args + (scratchpadBytes > 0 ? [(DNNL_ARG_SCRATCHPAD, scratchpad)] : []) {
          var m: dnnl_memory_t?
          var d = md
          try DNNL.check(dnnl_memory_create(&m, &d, DNNL.engine, nil), "memory object")
          row.append(m!)
        }
        memories.append(row)
        let kinds = args.map(\.0) + (scratchpadBytes > 0 ? [DNNL_ARG_SCRATCHPAD] : [])
        execArgs.append(zip(kinds, row).map { dnnl_exec_arg_t(arg: $0, memory: $1) })
        var st: dnnl_stream_t?
        try DNNL.check(dnnl_stream_create(&st, DNNL.engine, dnnl_stream_default_flags.rawValue), "stream")
        streams.append(st!)
      }
    }

    deinit {
      for row in memories { for m in row { dnnl_memory_destroy(m) } }
      for s in streams { dnnl_stream_destroy(s) }
      dnnl_primitive_destroy(primitive)
      dnnl_primitive_desc_destroy(pd)
    }

    /// The memory descriptor of argument `i`.
    func md(_ i: Int) -> dnnl_memory_desc_t { args[i].1 }

    /// The implementation oneDNN chose, e.g. `jit_wino_4x3:avx512_core`.
    var implementation: String {
      var s: UnsafePointer<CChar>?
      dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s)
      return s.map { String(cString: $0) } ?? "?"
    }

    /// Executes on shard slot `slot` with one pointer per argument (in `args` order).
    func run(slot: Int, _ pointers: [UnsafeMutableRawPointer], scratch: UnsafeMutableRawPointer? = nil) {
      precondition(pointers.count == args.count)
      let row = memories[slot]
      for i in args.indices { dnnl_memory_set_data_handle(row[i], pointers[i]) }
      if scratchpadBytes > 0 {
        precondition(scratch != nil, "oneDNN primitive needs a scratchpad")
        dnnl_memory_set_data_handle(row[args.count], scratch)
      }
      let exec = execArgs[slot]
      let status = dnnl_primitive_execute(primitive, streams[slot], Int32(exec.count), exec)
      precondition(status == dnnl_success, "oneDNN execution failed (status \(status.rawValue))")
    }
  }

  enum DNNL {
    nonisolated(unsafe) static let engine: dnnl_engine_t = {
      var e: dnnl_engine_t?
      let status = dnnl_engine_create(&e, dnnl_cpu, 0)
      precondition(status == dnnl_success, "oneDNN: no CPU engine (status \(status.rawValue))")
      return e!
    }()
    /// Primitive attributes: scratchpads are passed in by the caller (per thread slot).
    nonisolated(unsafe) static let userScratchpad: dnnl_primitive_attr_t = {
      var a: dnnl_primitive_attr_t?
      dnnl_primitive_attr_create(&a)
      dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user)
      return a!
    }()

    static func check(_ s: dnnl_status_t, _ what: @autoclosure () -> String) throws {
      if s != dnnl_success { throw EngineError("oneDNN: \(what()) failed (status \(s.rawValue))") }
    }
    static func desc(_ dims: [Int], _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
      var md = dnnl_memory_desc_t()
      let d = dims.map(Int64.init)
      let status = dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, dnnl_f32, tag)
      precondition(status == dnnl_success, "oneDNN memory descriptor \(dims)")
      return md
    }
    static func floats(_ md: dnnl_memory_desc_t) -> Int {
      var m = md
      return (dnnl_memory_desc_get_size(&m) + 3) / 4
    }
    /// oneDNN's OpenMP parallelism off for the calling thread (it is a per-thread setting).
    /// The effective ISA's name (oneDNN's `dnnl_cpu_isa_t`, prefix removed).
    static let isa: String = {
      let names: [UInt32: String] = [
        0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni", 0xf: "avx512_mic",
        0x1f: "avx512_mic_4ops", 0x27: "avx512_core", 0x67: "avx512_core_vnni",
        0xe7: "avx512_core_bf16", 0x3e7: "avx512_core_amx",
      ]
      let v = UInt32(dnnl_get_effective_cpu_isa().rawValue)
      return names[v] ?? "isa_0x" + String(v, radix: 16)
    }()

    /// oneDNN's format tag for a layout.
    static func tag(_ layout: TensorLayout) -> dnnl_format_tag_t {
      switch layout {
      case .nchw: dnnl_nchw
      case .featureMajor: preconditionFailure("oneDNN convolutions never see 2-D activations")
      case .blocked16: dnnl_nChw16c
      case .blocked8: dnnl_nChw8c
      }
    }

    @inline(__always) static func singleThreaded() { omp_set_num_threads(1) }
    /// "oneDNN 2.6.3 (cpu runtime omp)" for run records.
    static var version: String {
      guard let v = dnnl_version() else { return "oneDNN" }
      return "oneDNN \(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }
  }
#endif

extension ConvWorkspace where T == Float {
  /// Per-thread-slot oneDNN buffers: [blocked src/diff_src, dst/diff_dst, second diff_dst,
  /// blocked diff_weights, diff_weights and diff_bias of a later piece], and a scratchpad.
  func prepareOneDNN(slots: Int, floats: Int, scratchBytes: Int) {
    while dnnlBuffers.count < slots {
      dnnlBuffers.append((0..<5).map { _ in Tensor(zeros: [0]) })
      dnnlScratch.append(Tensor(zeros: [0]))
    }
    for s in 0..<slots {
      for b in dnnlBuffers[s] where b.count < floats { b.resize([floats]) }
      if dnnlScratch[s].count * 4 < scratchBytes { dnnlScratch[s].resize([(scratchBytes + 3) / 4]) }
    }
  }
  /// `n` zeros (the bias of a convolution without one). Nothing ever writes this buffer, and
  /// tensors are allocated zero-filled.
  func zeroBias(_ n: Int) -> UnsafeMutablePointer<Float> {
    if zeros.count < n { zeros.resize([n]) }
    return zeros.data
  }
}
