import Datasets
import Engine
import Families
import Foundation
import NN
import Training

/// `lth bench --algorithms ...`: each method's training step against the baseline's, in
/// the same process, rounds alternating between them so all see the same machine load.
/// One untimed round first. A step is timed from `batchLoaded` (before any method acts on the batch) to `batchEnd`
/// (after every method's work on it); tensor allocations are counted over the same span.
enum AlgorithmOverhead {
  /// Marks a step's start (registered first) or end (registered last).
  final class Mark: TrainingCallback {
    let name: String
    let events: Set<TrainingEvent>
    let onEvent: () -> Void
    init(_ name: String, _ event: TrainingEvent, _ onEvent: @escaping () -> Void) {
      (self.name, self.events, self.onEvent) = (name, [event], onEvent)
    }
    func handle(_ event: TrainingEvent, _ state: TrainingState) throws { onEvent() }
  }

  struct Row: Codable {
    var name: String
    var algorithms: String?
    var stepMs: Double
    var p10Ms: Double
    var p90Ms: Double
    var ratio: Double
    var tensorAllocationsPerStep: Double
    enum CodingKeys: String, CodingKey {
      case name, algorithms, ratio
      case stepMs = "step_ms"
      case p10Ms = "p10_ms"
      case p90Ms = "p90_ms"
      case tensorAllocationsPerStep = "tensor_allocations_per_step"
    }
  }

  struct Result: Codable {
    var model: String
    var batchSize: Int
    var threads: Int
    var rounds: Int
    var rows: [Row]
    var leftOut: [String: String]
    enum CodingKeys: String, CodingKey {
      case model, threads, rounds, rows
      case batchSize = "batch_size"
      case leftOut = "left_out"
    }
  }

  static func run(model: String, batch: Int, algorithms: String, steps: Int, warmup: Int, rounds: Int) throws
    -> Result
  {
    // Methods that do not fit the model (a surgery it refuses, or one that changes
    // nothing) are left out, with why.
    var specs: [AlgorithmSpec] = []
    var leftOut: [String: String] = [:]
    for spec in try Algorithms.parse(algorithms) {
      if let why = try AlgorithmRecipes.fits(spec, network: try ModelZoo.make(model)) {
        leftOut[spec.name] = why
      } else {
        specs.append(spec)
      }
    }
    let configs: [(String, String?)] = [("baseline", nil)] + specs.map { ($0.name, $0.text) }
    var times = configs.map { _ in [Double]() }
    var allocations = configs.map { _ in [Double]() }
    let probe: Network<Float> = try ModelZoo.make(model)
    let data = Synthetic.make(
      count: batch * (steps + warmup), shape: probe.inputShape, classes: probe.classes)
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
      "lth-bench-\(UUID().uuidString)"
    ).path
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    // Round 0 warms every configuration up (caches, kernels, the allocator) untimed.
    for round in 0...rounds {
      // Each round starts at another configuration, so none always runs first.
      for i in 0..<configs.count {
        let k = (i + round) % configs.count
        let config = configs[k]
        let dir = "\(scratch)/\(round)-\(k)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let methods = try Algorithms.callbacks(config.1.map { [$0] } ?? [])
        var started: UInt64 = 0
        var allocated = 0
        var step = 0
        let start = Mark("bench_start", .batchLoaded) {
          started = DispatchTime.now().uptimeNanoseconds
          allocated = tensorAllocationCount
        }
        let end = Mark("bench_end", .batchEnd) {
          if round > 0 && step >= warmup {
            times[k].append(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6)
            allocations[k].append(Double(tensorAllocationCount - allocated))
          }
          step += 1
        }
        let callbacks: [any TrainingCallback] = [start] + methods + [end]
        let net = try Trainer.initialize(network: try ModelZoo.make(model), callbacks: callbacks)
        net.initialize(seed: 0, weights: .kaimingNormal)
        // The bench's optimizer at its own learning rate (a larger one can diverge within
        // the timed steps, and saturated logits make the step slower).
        let opt = try makeBenchOptimizer(net)
        let lr = opt.learningRate
        let trainer = try Trainer(
          network: net, optimizer: opt,
          loader: try BatchLoader(dataset: data, batchSize: batch, seed: 0, augment: false), evalSets: [],
          firstStep: 0, lastStep: steps + warmup, evalEvery: 1 << 30, learningRate: { _ in lr },
          directory: dir, progress: .quiet)
        trainer.callbacks = callbacks
        try trainer.run()
      }
    }
    func pct(_ x: [Double], _ q: Double) -> Double { x.sorted()[min(x.count - 1, Int(Double(x.count) * q))] }
    let base = pct(times[0], 0.5)
    return Result(
      model: model, batchSize: batch, threads: Parallel.threads, rounds: rounds,
      rows: configs.enumerated().map { k, c in
        Row(
          name: c.0, algorithms: c.1, stepMs: pct(times[k], 0.5), p10Ms: pct(times[k], 0.1),
          p90Ms: pct(times[k], 0.9),
          ratio: pct(times[k], 0.5) / base,
          tensorAllocationsPerStep: allocations[k].reduce(0, +) / Double(max(1, allocations[k].count)))
      }, leftOut: leftOut)
  }

  static func table(_ r: Result) -> String {
    let width = (r.rows.map(\.name.count).max() ?? 6) + 2
    var lines = [
      "\(r.model), batch \(r.batchSize), \(r.threads) thread\(r.threads == 1 ? "" : "s"), \(r.rounds) alternating rounds",
      "method".padding(toLength: width, withPad: " ", startingAt: 0) + "step ms  p10     p90     x baseline  tensor allocs/step",
    ]
    for row in r.rows {
      lines.append(
        row.name.padding(toLength: width, withPad: " ", startingAt: 0)
          + String(
            format: "%-8.3f %-7.3f %-7.3f %-11.2f %.1f", row.stepMs, row.p10Ms, row.p90Ms, row.ratio,
            row.tensorAllocationsPerStep))
    }
    lines += r.leftOut.keys.sorted().map { "left out: \($0): \(r.leftOut[$0]!)" }
    return lines.joined(separator: "\n")
  }
}
