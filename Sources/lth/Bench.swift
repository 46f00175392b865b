import ArgumentParser
import Datasets
import Engine
import Experiments
import Training
import Families
import Foundation
import NN

/// Each family's benchmark optimizer (its file in Sources/Families/Families).
func makeBenchOptimizer(_ net: Network<Float>) throws -> any Optimizer<Float> {
  try ModelZoo.family(of: net.name).benchOptimizer(net)
}

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Time training steps (forward, backward, optimizer) on synthetic in-memory data.")

  @Option(help: "Model name (see `lth models`).") var model = "mnist_lenet_300_100"
  @Option(help: "Batch size (default: 128 for ResNet/VGG, 60 otherwise).") var batchSize: Int?
  @Option(
    help: "Timed steps after warm-up (default: at least 20, and enough for --min-seconds of timed work).")
  var steps: Int?
  @Option(help: "Without --steps, keep timing until this much work was timed (seconds).")
  var minSeconds = 1.0
  @Option(help: "Untimed warm-up steps.") var warmup = 3
  @Option(help: "Worker threads.") var threads = 2
  @Option(help: "Convolution backends: auto, im2col or onednn (direct only).")
  var convBackend: ConvBackendPolicy = .auto
  @Option(help: "Fraction of prunable weights kept by a random mask (1: dense), to time masked training.")
  var density = 1.0
  @Flag(help: "Also time every convolution layer's forward + backward with each backend.")
  var convLayers = false
  @Option(help: "Sparse kernels for pruned layers: auto, off (dense arithmetic on masked weights) or on.")
  var sparseKernels: SparseKernelPolicy = .auto
  @Flag(
    help:
      "With --density: also time the same network with --sparse-kernels off, alternating steps, and print the speed-up."
  )
  var compareDense = false
  @Flag(
    help:
      "With --density: time every pruned layer dense and sparse: training forward + backward at the batch size, inference at batch 1 and 500."
  )
  var sparseLayers = false
  @Flag(help: "Print one JSON object instead of text.") var json = false
  @Option(
    help:
      "Speed-up methods (as --algorithms of training commands): time each one's training step against the baseline's, alternating rounds, with tensor allocations per step."
  )
  var algorithms: String?

  func run() throws {
    runOrFail {
      guard threads >= 1 else { throw EngineError("--threads must be at least 1, got \(threads)") }
      guard steps ?? 1 >= 1, warmup >= 0 else { throw EngineError("--steps must be at least 1") }
      guard minSeconds >= 0, minSeconds <= 3600 else {
        throw EngineError("--min-seconds must be in [0, 3600], got \(minSeconds)")
      }
      Parallel.threads = threads
      if let algorithms {
        let r = try AlgorithmOverhead.run(
          model: model, batch: try batchSize ?? ModelZoo.family(of: model).benchBatchSize, algorithms: algorithms,
          steps: steps ?? 20, warmup: max(warmup, 1), rounds: 3)
        print(json ? jsonLine(r) : AlgorithmOverhead.table(r))
        return
      }
      let net: Network<Float> = try ModelZoo.make(model)
      let batch = try batchSize ?? ModelZoo.family(of: model).benchBatchSize
      guard batch >= 1 else { throw EngineError("--batch-size must be at least 1, got \(batch)") }
      net.initialize(seed: 0, weights: .kaimingNormal)
      net.convolutionPolicy = convBackend
      guard density > 0, density <= 1 else {
        throw EngineError("--density must be in (0, 1], got \(density)")
      }
      if density < 1 {
        var r = RandomStream(seed: 0, purpose: "bench-mask")
        for (_, p) in net.prunableParameters {
          p.mask = Tensor(p.value.array.map { _ in r.uniform() < density ? 1 : 0 }, shape: p.value.shape)
          p.applyMask()
        }
      }
      net.sparseKernels = sparseKernels
      let data = Synthetic.make(count: batch, shape: net.inputShape, classes: net.classes)
      // The batch as a data loader hands it to this network (feature-major for a sparse
      // first linear layer, as in training); the dense reference gets it batch-major.
      let (x, xDense) = (Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0]))
      let labels = data.gather(0..<batch, into: x, featureMajor: net.prefersFeatureMajorInput(batch: batch))
      _ = data.gather(0..<batch, into: xDense)
      let opt = try makeBenchOptimizer(net)
      // The reference: the same weights and masks on dense kernels, stepped in alternation
      // with the timed network so both see the same machine load.
      var reference: (net: Network<Float>, opt: any Optimizer, times: [Double])? = nil
      if compareDense {
        let ref: Network<Float> = try ModelZoo.make(model)
        ref.convolutionPolicy = convBackend
        try ref.copyState(from: net)
        for (k, (_, p)) in ref.parameters.enumerated() { p.mask = net.parameters[k].1.mask }
        ref.sparseKernels = .off
        reference = (ref, try makeBenchOptimizer(ref), [])
      }
      var times: [Double] = []
      var allocationsAfterWarmup = 0
      // A fixed --steps, or: at least 20 steps and --min-seconds of timed work (a few
      // steps of a 1 ms model are noise; at most 100,000 steps).
      var timed = 0.0
      var i = 0
      while true {
        if i == warmup { allocationsAfterWarmup = tensorAllocationCount }
        let t0 = DispatchTime.now().uptimeNanoseconds
        try net.lossAndGradients(input: x, labels: labels, denseGradients: false)
        opt.step()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        if i >= warmup {
          times.append(dt)
          timed += dt / 1000
        }
        if let r = reference {
          let t1 = DispatchTime.now().uptimeNanoseconds
          try r.net.lossAndGradients(input: xDense, labels: labels, denseGradients: false)
          r.opt.step()
          if i >= warmup { reference!.times.append(Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e6) }
        }
        i += 1
        if let steps {
          if times.count >= steps { break }
        } else if times.count >= 100_000 || (times.count >= 20 && timed >= minSeconds) {
          break
        }
      }
      let sorted = times.sorted()
      let median = sorted[sorted.count / 2]
      let p10 = sorted[sorted.count / 10]
      let p90 = sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
      let layers = convLayers ? try timeConvolutionLayers(net) : []
      let denseMedian = reference.map { $0.times.sorted()[$0.times.count / 2] }
      let sparseRows = sparseLayers ? try timeSparseLayers(net, batch: batch) : []
      let ips = Double(batch) / (median / 1000)
      let rss = peakRSSMiB()
      if json {
        print(
          jsonLine(
            BenchResult(
              model: model, batchSize: batch, threads: threads, stepMs: median, density: density, p10Ms: p10,
              p90Ms: p90, timedSteps: times.count, cpu: MachineInfo.cpuModel, onednnISA: Convolution.isa,
              imagesPerSecond: ips, peakRSSMB: rss, stepsMs: times, blasConfig: BLASInfo.config,
              blasCore: BLASInfo.coreName, blasThreads: BLASInfo.threads, floatGEMM: BLASInfo.floatGEMM,
              blasEnvironment: BLASInfo.environment, tensorMB: Double(tensorBytes) / 1_048_576,
              convBackends: net.convolutionBackendNames, sparseKernels: net.sparseKernelNames,
              sparsePolicy: sparseKernels.rawValue, denseStepMs: denseMedian,
              speedupVsDense: denseMedian.map { $0 / median }, sparseLayers: sparseRows.map(\.json),
              steadyStateTensorAllocations: tensorAllocationCount - allocationsAfterWarmup,
              convLayers: layers.map {
                BenchResult.ConvLayer(
                  layer: $0.layer, geometry: $0.geometry, inputShape: $0.input, chosen: $0.chosen,
                  ms: Dictionary(uniqueKeysWithValues: $0.times))
              })))
      } else {
        print(
          String(
            format:
              "%@  batch %d  threads %d  median step %.3f ms (p10 %.3f, p90 %.3f, %d steps)  %.0f images/s  peak RSS %.1f MiB",
            model, batch, threads, median, p10, p90, times.count, ips, rss))
        print("  CPU \(MachineInfo.cpuModel), oneDNN ISA \(Convolution.isa)")
        if let d = denseMedian {
          print(
            String(
              format:
                "  same network on dense kernels (--sparse-kernels off), alternating steps: median %.3f ms; speed-up %.2fx",
              d, d / median))
        }
        let kernels = net.sparseKernelNames
        if !kernels.isEmpty {
          print(
            "  pruned layers: "
              + kernels.keys.sorted().map { "\($0) \(kernels[$0]!)" }.joined(separator: ", "))
        }
        if !sparseRows.isEmpty {
          print(
            "per pruned layer timed alone (batch-major input), median ms dense / sparse (speed-up); * = what auto picks for it at that batch:"
          )
          for r in sparseRows { print("  " + r.text) }
        }
        if layers.isEmpty {
          for (layer, c) in net.convolutions {
            print("  \(layer): \(c.geometry) -> \(c.backend?.name ?? "unplanned")")
          }
        } else {
          print(
            "forward + backward per layer, ms (median of 5; * = the backend \(convBackend.rawValue) picks):")
          for l in layers {
            let cells = l.times.map {
              ($0.0 == l.chosen ? "*" : "") + "\($0.0) \(String(format: "%.2f", $0.1))"
            }
            print(
              "  \(l.layer): \(l.geometry), input \(l.input.map(String.init).joined(separator: "x")): \(cells.joined(separator: ", "))"
            )
          }
        }
      }
    }
  }
}

struct Models: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List the model families with parameter and prunable-weight counts on their native input.")
  @Flag(help: "Print a JSON array of {name, parameters, prunable, input_shape}.") var json = false

  func run() throws {
    runOrFail {
      var rows: [ModelRow] = []
      for (name, shape) in ModelZoo.families {
        let net: Network<Float> = try ModelZoo.make(name, inputShape: shape)
        rows.append(
          ModelRow(name: name, parameters: net.parameterCount, prunable: net.prunableCount, inputShape: shape))
      }
      if json {
        print(jsonLine(rows))
      } else {
        print("name                    parameters    prunable  input")
        for r in rows {
          let shape = r.inputShape.map(String.init).joined(separator: "x")
          print(
            r.name.padding(toLength: 22, withPad: " ", startingAt: 0)
              + String(format: "%12d %11d  %@", r.parameters, r.prunable, shape))
        }
      }
    }
  }
}

/// A row of `lth models --json`.
struct ModelRow: Codable {
  var name: String
  var parameters: Int
  var prunable: Int
  var inputShape: [Int]
  enum CodingKeys: String, CodingKey {
    case name, parameters, prunable
    case inputShape = "input_shape"
  }
}

/// `lth bench --json`.
struct BenchResult: Encodable {
  var model: String
  var batchSize: Int
  var threads: Int
  var stepMs: Double
  var density: Double
  var p10Ms: Double
  var p90Ms: Double
  var timedSteps: Int
  var cpu: String
  var onednnISA: String
  var imagesPerSecond: Double
  var peakRSSMB: Double
  var stepsMs: [Double]
  var blasConfig: String
  var blasCore: String
  var blasThreads: Int
  var floatGEMM: String
  var blasEnvironment: [String: String]
  var tensorMB: Double
  var convBackends: [String: String]
  var sparseKernels: [String: String]
  var sparsePolicy: String
  var denseStepMs: Double?
  var speedupVsDense: Double?
  var sparseLayers: [SparseLayerTiming.JSON]
  var steadyStateTensorAllocations: Int
  var convLayers: [ConvLayer]
  var schemaVersion = ResultSchema.version

  struct ConvLayer: Codable {
    var layer: String
    var geometry: String
    var inputShape: [Int]
    var chosen: String
    var ms: [String: Double]
    enum CodingKeys: String, CodingKey {
      case layer, geometry, chosen, ms
      case inputShape = "input_shape"
    }
  }

  enum CodingKeys: String, CodingKey {
    case model, threads, density, cpu
    case batchSize = "batch_size"
    case stepMs = "step_ms"
    case p10Ms = "p10_ms"
    case p90Ms = "p90_ms"
    case timedSteps = "timed_steps"
    case onednnISA = "onednn_isa"
    case imagesPerSecond = "images_per_second"
    case peakRSSMB = "peak_rss_mb"
    case stepsMs = "steps_ms"
    case blasConfig = "blas_config"
    case blasCore = "blas_core"
    case blasThreads = "blas_threads"
    case floatGEMM = "float_gemm"
    case blasEnvironment = "blas_environment"
    case tensorMB = "tensor_mb"
    case convBackends = "conv_backends"
    case sparseKernels = "sparse_kernels"
    case sparsePolicy = "sparse_policy"
    case denseStepMs = "dense_step_ms"
    case speedupVsDense = "speedup_vs_dense"
    case sparseLayers = "sparse_layers"
    case steadyStateTensorAllocations = "steady_state_tensor_allocations"
    case convLayers = "conv_layers"
    case schemaVersion = "schema_version"
  }

  func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(model, forKey: .model)
    try c.encode(batchSize, forKey: .batchSize)
    try c.encode(threads, forKey: .threads)
    try c.encode(stepMs, forKey: .stepMs)
    try c.encode(density, forKey: .density)
    try c.encode(p10Ms, forKey: .p10Ms)
    try c.encode(p90Ms, forKey: .p90Ms)
    try c.encode(timedSteps, forKey: .timedSteps)
    try c.encode(cpu, forKey: .cpu)
    try c.encode(onednnISA, forKey: .onednnISA)
    try c.encode(imagesPerSecond, forKey: .imagesPerSecond)
    try c.encode(peakRSSMB, forKey: .peakRSSMB)
    try c.encode(stepsMs, forKey: .stepsMs)
    try c.encode(blasConfig, forKey: .blasConfig)
    try c.encode(blasCore, forKey: .blasCore)
    try c.encode(blasThreads, forKey: .blasThreads)
    try c.encode(floatGEMM, forKey: .floatGEMM)
    try c.encode(blasEnvironment, forKey: .blasEnvironment)
    try c.encode(tensorMB, forKey: .tensorMB)
    try c.encode(convBackends, forKey: .convBackends)
    try c.encode(sparseKernels, forKey: .sparseKernels)
    try c.encode(sparsePolicy, forKey: .sparsePolicy)
    try c.encode(denseStepMs, forKey: .denseStepMs)  // null without --compare-dense
    try c.encode(speedupVsDense, forKey: .speedupVsDense)
    try c.encode(sparseLayers, forKey: .sparseLayers)
    try c.encode(steadyStateTensorAllocations, forKey: .steadyStateTensorAllocations)
    try c.encode(convLayers, forKey: .convLayers)
    try c.encode(schemaVersion, forKey: .schemaVersion)
  }
}

/// One pruned layer timed dense and sparse (``timeSparseLayers(_:batch:)``).
struct SparseLayerTiming {
  var layer: String
  var shape: String
  var density: Double
  /// (what, dense ms, sparse ms, auto picks sparse)
  var cells: [(String, Double, Double, Bool)]
  /// The layer as `lth bench --json` lists it.
  struct JSON: Codable {
    struct Cell: Codable {
      var dense: Double
      var sparse: Double
      var speedup: Double
      var autoSparse: Bool
      enum CodingKeys: String, CodingKey {
        case dense, sparse, speedup
        case autoSparse = "auto_sparse"
      }
    }
    var layer: String
    var shape: String
    var density: Double
    var ms: [String: Cell]
  }
  var json: JSON {
    JSON(
      layer: layer, shape: shape, density: density,
      ms: Dictionary(
        uniqueKeysWithValues: cells.map { ($0.0, JSON.Cell(dense: $0.1, sparse: $0.2, speedup: $0.1 / $0.2, autoSparse: $0.3)) }))
  }
  var text: String {
    "\(layer) \(shape) density \(String(format: "%.3f", density)): "
      + cells.map {
        String(format: "%@ %.3f / %.3f (%.2fx)%@", $0.0, $0.1, $0.2, $0.1 / $0.2, $0.3 ? "*" : "")
      }.joined(separator: ", ")
  }
}

/// Median milliseconds of `body` over `reps` runs after one warm-up run.
func medianMs(_ reps: Int, _ body: () throws -> Void) rethrows -> Double {
  try body()
  var t: [Double] = []
  for _ in 0..<reps {
    let t0 = DispatchTime.now().uptimeNanoseconds
    try body()
    t.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
  }
  return t.sorted()[t.count / 2]
}

/// Times every pruned layer of `net` (after a training step, so input shapes are known)
/// with dense kernels on the masked weight and with the sparse kernels: forward + backward
/// at the training batch, forward alone at batch 1 and 500 (inference). This is the
/// measurement behind ``SparseKernelRule``.
func timeSparseLayers(_ net: Network<Float>, batch: Int) throws -> [SparseLayerTiming] {
  var out: [SparseLayerTiming] = []
  var r = RandomStream(seed: 2, purpose: "bench-sparse")
  func random(_ shape: [Int]) -> Tensor<Float> {
    Tensor((0..<shape.reduce(1, *)).map { _ in Float(r.normal()) }, shape: shape)
  }
  for (name, m) in net.body.namedModules() {
    if let l = m as? Linear<Float>, let mask = l.weight.mask {
      let k = try SparseLinear(mask: mask, outFeatures: l.outFeatures)
      let w = l.weight.value
      var cells: [(String, Double, Double, Bool)] = []
      for (what, n, train) in [
        ("train b\(batch)", batch, true), ("infer b1", 1, false), ("infer b500", 500, false),
      ] {
        let x = random([n, l.inFeatures])
        let dy = random([n, l.outFeatures])
        let (y, dW, dx) = (
          Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: w.shape), Tensor<Float>(zeros: [0])
        )
        let reps = n == 500 ? 20 : 200
        let dense = medianMs(reps) {
          Dense.linearForward(x: x, weight: w, bias: nil, y: y)
          if train { Dense.linearBackward(x: x, weight: w, dy: dy, dWeight: dW, dBias: nil, dx: dx) }
        }
        let sparse = medianMs(reps) {
          k.forward(x: x, weight: w, bias: nil, y: y)
          if train { k.backward(dy: dy, weight: w, dWeight: dW, dBias: nil, dx: dx) }
        }
        let auto = SparseKernelRule.linear(
          outFeatures: l.outFeatures, inFeatures: l.inFeatures, density: k.pattern.density, batch: n)
        cells.append((what, dense, sparse, auto))
      }
      out.append(
        SparseLayerTiming(
          layer: name, shape: "linear \(l.inFeatures)->\(l.outFeatures)", density: k.pattern.density,
          cells: cells))
    }
    if let c = m as? Conv2d<Float>, let mask = c.weight.mask, let shape = c.lastInputShape {
      let g = c.geometry
      let direct = try SparseConvolution(geometry: g, mask: mask, workspace: ConvWorkspace())
      let im2col = try SparseConvolution(geometry: g, mask: mask, workspace: ConvWorkspace(), direct: false)
      let w = c.weight.value
      var cells: [(String, Double, Double, Bool)] = []
      // Stride-1 layers: also the sparse-times-im2col form, the alternative to the direct kernels.
      let runs: [(String, Int, Bool, SparseConvolution)] =
        [
          ("train b\(batch)", batch, true, direct), ("infer b1", 1, false, direct),
          ("infer b500", 500, false, direct),
        ]
        + (direct.isDirect ? [("train b\(batch) im2col", batch, true, im2col)] : [])
      for (what, n, train, k) in runs {
        let xs = [n] + Array(shape.dropFirst())
        let x = random(xs)
        let dense: ConvolutionBackend<Float> = Convolution.makeBackend(
          g, inputShape: xs, policy: .auto, workspace: ConvWorkspace())
        let (y, dW, dx, dy) = (
          Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: w.shape), Tensor<Float>(zeros: [0]),
          Tensor<Float>(zeros: [0])
        )
        try dense.forward(x: x, weight: w, bias: nil, y: y)
        dy.resize(try Convolution.outputShape(g, input: xs))
        for i in 0..<dy.count { dy[i] = Float(r.normal()) }
        let reps = n == 500 ? 3 : (n == 1 ? 50 : 7)
        let denseMs = try medianMs(reps) {
          if train { try dense.prepareBackward(batch: n, inputLayout: .nchw) }
          try dense.forward(x: x, weight: w, bias: nil, y: y)
          if train {
            dy.layout = y.layout
            dense.backward(x: x, weight: w, dy: dy, dWeight: dW, dBias: nil, dx: dx)
          }
        }
        dy.layout = .nchw
        let sparseMs = try medianMs(reps) {
          try k.forward(x: x, weight: w, bias: nil, y: y)
          if train { k.backward(x: x, weight: w, dy: dy, dWeight: dW, dBias: nil, dx: dx) }
        }
        let auto = SparseKernelRule.convolution(
          g, density: k.pattern.density, batch: n, input: (xs[2], xs[3]))
        cells.append((what, denseMs, sparseMs, auto))
      }
      out.append(
        SparseLayerTiming(layer: name, shape: g.description, density: direct.pattern.density, cells: cells))
    }
  }
  return out
}

struct ConvLayerTiming {
  var layer: String
  var geometry: String
  var input: [Int]
  var times: [(String, Double)]
  var chosen: String
}

/// Times forward + backward of every convolution layer of `net` (after a training step, so
/// input shapes are known) with each backend that applies: im2col + BLAS, oneDNN direct and
/// (where auto picks it) oneDNN Winograd. This is the measurement behind the auto rule.
func timeConvolutionLayers(_ net: Network<Float>) throws -> [ConvLayerTiming] {
  var out: [ConvLayerTiming] = []
  for (index, (name, conv)) in net.convolutions.enumerated() {
    guard let shape = conv.lastInputShape else { continue }
    let g = conv.geometry
    var r = RandomStream(seed: 1, purpose: "bench-conv")
    let x = Tensor<Float>((0..<shape.reduce(1, *)).map { _ in Float(r.normal()) }, shape: shape)
    let w = Tensor<Float>(
      (0..<conv.weight.value.count).map { _ in Float(r.normal()) * 0.05 }, shape: conv.weight.value.shape)
    var seen = Set<String>()
    var times: [(String, Double)] = []
    for policy in [ConvBackendPolicy.im2col, .onednn, .auto] {
      let b: ConvolutionBackend<Float> = Convolution.makeBackend(
        g, inputShape: shape, policy: policy, workspace: ConvWorkspace())
      guard seen.insert(b.name).inserted else { continue }
      let y = Tensor<Float>(zeros: [0])
      let (dW, dx, dy) = (Tensor<Float>(zeros: w.shape), Tensor<Float>(zeros: [0]), Tensor<Float>(zeros: [0]))
      var samples: [Double] = []
      for rep in 0..<6 {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try b.prepareBackward(batch: shape[0], inputLayout: .nchw)
        try b.forward(x: x, weight: w, bias: nil, y: y)
        if rep == 0 {
          dy.resize(y.shape)
          dy.layout = y.layout
          for i in 0..<dy.count { dy[i] = Float(r.normal()) }
        }
        b.backward(x: x, weight: w, dy: dy, dWeight: dW, dBias: nil, dx: index == 0 ? nil : dx)
        if rep > 0 { samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6) }
      }
      times.append((b.name, samples.sorted()[samples.count / 2]))
    }
    out.append(
      ConvLayerTiming(
        layer: name, geometry: g.description, input: shape, times: times,
        chosen: conv.backend?.name ?? "?"))
  }
  return out
}
