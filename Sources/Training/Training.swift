/// # Training: the loop, metrics, progress and checkpoints
///
/// ``Trainer`` runs global steps `firstStep ..< lastStep` of a network: step `s` trains on
/// the loader's batch `s` at learning rate `lr(s)`, so a run replayed from any step (weight
/// rewinding, resuming) sees exactly the data and rates of the original. It evaluates on
/// every named split every `evalEvery` steps and at the end, writes metrics
/// (``MetricsLog``: JSON Lines and CSV), saves a resumable checkpoint (``Checkpoint``:
/// safetensors, atomically) at every epoch boundary and at the end, and stops a diverging
/// run (NaN or infinite loss) naming the step, keeping the last good checkpoint.
///
/// Resuming: a trainer given a run folder with `checkpoint.safetensors` restores
/// parameters, batch-norm statistics, optimizer state and the step, drops metrics written
/// after that step, and continues; the result is bit-identical to an uninterrupted run.
import Data
import Engine
import Foundation
import NN
import Synchronization

/// A polite stop: after ``install()``, SIGTERM (Slurm's preemption warning,
/// `--signal=B:TERM@120`) makes every ``Trainer`` write a checkpoint at the step it has
/// reached and throw ``Stopped``; re-running the command resumes from there, bit for bit.
public enum StopSignal {
  static let requested = Atomic<Bool>(false)

  /// Catches SIGTERM in this process (commands that train call it), on a thread of its own.
  ///
  /// The signal must never interrupt a thread that computes. Handled on the training thread,
  /// it corrupted the heap when it arrived inside oneDNN's `sgemm` (`free(): invalid
  /// pointer` from `dnnl_sgemm` in 6 of 60 stops under glibc's malloc checks, once in CI as
  /// "corrupted size vs. prev_size"; none in 60 runs without a signal). So the calling
  /// thread blocks SIGTERM (threads it starts later, the worker pool and oneDNN's OpenMP
  /// threads among them, inherit the mask) and one idle thread of its own takes it: 0 of
  /// 192 stops. Call this before the first parallel loop; threads started earlier
  /// (OpenBLAS's, idle while BLAS is single-threaded) may still take it, harmlessly.
  public static func install() {
    installed.withLock { done in
      guard !done else { return }
      done = true
      signal(SIGTERM) { _ in StopSignal.requested.store(true, ordering: .relaxed) }
      maskTERM(SIG_BLOCK)
      let receiver = Thread {
        // Unblocked here only (a parent may also have started this process with SIGTERM
        // blocked: the mask survives exec).
        StopSignal.maskTERM(SIG_UNBLOCK)
        while true { pause() }
      }
      receiver.name = "lth-sigterm"
      receiver.start()
    }
  }
  private static let installed = Mutex<Bool>(false)

  /// Blocks or unblocks SIGTERM on the calling thread.
  private static func maskTERM(_ how: Int32) {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(how, &set, nil)
  }

  public static var isRequested: Bool { requested.load(ordering: .relaxed) }
}

/// Thrown by a trainer stopped by SIGTERM, after its checkpoint is written.
public struct Stopped: Error, CustomStringConvertible, Sendable {
  public let step: Int
  public let directory: String
  public var description: String {
    "stopped by SIGTERM at step \(step); checkpoint written in \(directory): run the same command to resume"
  }
}

/// One evaluation: a row of `metrics.jsonl` / `metrics.csv`.
public struct MetricRecord: Codable, Equatable, Sendable {
  public var step: Int
  public var epoch: Double
  public var split: String
  public var loss: Double
  /// Fraction in [0, 1].
  public var accuracy: Double
  public var lr: Double
  /// Wall-clock seconds since the run (or its resumption) started.
  public var seconds: Double
}

/// The metrics of one run, rewritten atomically on every append (runs evaluate rarely).
public final class MetricsLog {
  public let jsonlPath: String
  public let csvPath: String
  public private(set) var records: [MetricRecord] = []

  public init(directory: String) {
    jsonlPath = directory + "/metrics.jsonl"
    csvPath = directory + "/metrics.csv"
  }

  /// Loads existing records, keeping those with `step <= upTo` (nil: none are kept).
  public func restore(upTo step: Int?) throws {
    records = []
    guard let step, FileManager.default.fileExists(atPath: jsonlPath) else {
      try flush()
      return
    }
    records = try Self.parse(AtomicFile.read(jsonlPath), path: jsonlPath).filter { $0.step <= step }
    try flush()
  }

  /// The records of a `metrics.jsonl` (one JSON object a line); `path` only names the file
  /// in errors.
  public static func parse(_ bytes: [UInt8], path: String) throws -> [MetricRecord] {
    var out: [MetricRecord] = []
    // Split the bytes: as a String, "\r\n" would be one character and no line break.
    for line in bytes.split(separator: 10) where !line.isEmpty {
      guard let r = try? JSONDecoder().decode(MetricRecord.self, from: Data(line)) else {
        let excerpt = String(decoding: line.prefix(60), as: UTF8.self).escapingControlCharacters
        throw RunError("\(path): unreadable line '\(excerpt)'")
      }
      out.append(r)
    }
    return out
  }

  public func append(_ r: MetricRecord) throws {
    records.append(r)
    try flush()
  }

  func flush() throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    var jsonl = ""
    var csv = "step,epoch,split,loss,accuracy,lr,seconds\n"
    for r in records {
      jsonl += String(decoding: try enc.encode(r), as: UTF8.self) + "\n"
      csv += "\(r.step),\(r.epoch),\(r.split),\(r.loss),\(r.accuracy),\(r.lr),\(r.seconds)\n"
    }
    try AtomicFile.write(jsonl, to: jsonlPath)
    try AtomicFile.write(csv, to: csvPath)
  }
}

/// How the trainer reports progress.
public enum ProgressStyle: Sendable {
  /// A live bar on a terminal, plain lines otherwise.
  case automatic
  case quiet
}

/// The training loop (see the module comment).
public final class Trainer {
  public let network: Network<Float>
  public let optimizer: any Optimizer<Float>
  public let loader: BatchLoader
  /// Evaluation sets by split name (`test`, `validation`, `train`).
  public let evalSets: [(String, Dataset)]
  public let firstStep: Int
  public let lastStep: Int
  public let evalEvery: Int
  /// Learning rate for global step `s`.
  public let learningRate: (Int) -> Double
  public let directory: String
  public let progress: ProgressStyle
  /// Model states to save: for each `(s, path)`, the state after `s` steps (before step `s`
  /// runs) is written to `path` (skipped when the file exists).
  public var saveStates: [(step: Int, path: String)] = []

  public var checkpointPath: String { directory + "/checkpoint.safetensors" }
  /// Where the kernels of the pruned layers are recorded when a run starts (see
  /// ``sparseKernels``).
  public var kernelsPath: String { directory + "/sparse_kernels.json" }
  /// The kernels each pruned layer trains with (``NN/Network/sparseKernelNames`` after the
  /// first training step of this call): nil for a dense network or before training.
  public private(set) var sparseKernels: [String: String]?
  /// Pruned layers whose kernels differ from those recorded when the run started
  /// ("layer recorded -> now"); empty when none (see ``recordSparseKernels()``).
  public private(set) var sparseKernelChanges: [String] = []
  public let metrics: MetricsLog
  private let evalBatch = Tensor<Float>(zeros: [0])
  private var started = Date()
  private var isTTY: Bool { isatty(1) != 0 }

  public init(
    network: Network<Float>, optimizer: any Optimizer<Float>, loader: BatchLoader,
    evalSets: [(String, Dataset)], firstStep: Int, lastStep: Int, evalEvery: Int,
    learningRate: @escaping (Int) -> Double, directory: String, progress: ProgressStyle = .automatic
  ) throws {
    guard lastStep >= firstStep, firstStep >= 0 else {
      throw RunError("training would run from step \(firstStep) to \(lastStep): nothing to do")
    }
    guard evalEvery > 0 else { throw RunError("--eval-every must be positive") }
    self.network = network
    self.optimizer = optimizer
    self.loader = loader
    self.evalSets = evalSets
    self.firstStep = firstStep
    self.lastStep = lastStep
    self.evalEvery = evalEvery
    self.learningRate = learningRate
    self.directory = directory
    self.progress = progress
    metrics = MetricsLog(directory: directory)
  }

  /// Loss and accuracy on a data set, in evaluation mode, batches of 500 (``Evaluation``).
  public func evaluate(_ ds: Dataset) throws -> (loss: Double, accuracy: Double) {
    let r = try Evaluation.evaluate(network, on: ds, scratch: evalBatch)
    return (r.loss, r.accuracy)
  }

  func evaluateAll(step: Int) throws {
    let ipe = Double(loader.iterationsPerEpoch)
    let lr = learningRate(max(step - 1, firstStep))
    var parts: [String] = []
    for (split, ds) in evalSets {
      let (loss, acc) = try evaluate(ds)
      try metrics.append(
        MetricRecord(
          step: step, epoch: Double(step) / ipe, split: split, loss: loss, accuracy: acc, lr: lr,
          seconds: Date().timeIntervalSince(started)))
      parts.append(String(format: "%@ loss %.4f acc %.2f%%", split, loss, acc * 100))
    }
    if progress != .quiet {
      if isTTY { print("\r\u{1B}[K", terminator: "") }
      print("step \(step)/\(lastStep)  " + parts.joined(separator: "  "))
    }
  }

  /// Trains to `lastStep`, resuming from the checkpoint in `directory` when there is one.
  /// Returns the metrics of the run.
  @discardableResult
  public func run() throws -> [MetricRecord] {
    started = Date()
    var step = firstStep
    if FileManager.default.fileExists(atPath: checkpointPath) {
      step = try Checkpoint.load(network: network, optimizer: optimizer, from: checkpointPath)
      guard step >= firstStep, step <= lastStep else {
        throw RunError(
          "\(checkpointPath): checkpoint step \(step) is outside this run (\(firstStep)...\(lastStep))")
      }
      try metrics.restore(upTo: step)
    } else {
      try metrics.restore(upTo: nil)
      try saveStateIfRequested(step)
      try evaluateAll(step: step)
      try Checkpoint.save(network: network, optimizer: optimizer, step: step, to: checkpointPath)
    }
    // Batches feature-major when the first layer reads them so (a sparse first linear layer).
    loader.featureMajor = !loader.augment && network.prefersFeatureMajorInput(batch: loader.batchSize)
    let ipe = loader.iterationsPerEpoch
    var lastCheckpoint = step
    var lossWindow = 0.0
    var windowCount = 0
    let tStart = Date()
    let startStep = step
    while step < lastStep {
      let (x, labels) = loader.batch(step: step)
      optimizer.learningRate = learningRate(step)
      // The optimizer is the only reader of these gradients.
      let r = try network.lossAndGradients(input: x, labels: labels, denseGradients: false)
      guard r.loss.isFinite else {
        throw RunError(
          "loss is \(r.loss) at step \(step): training diverged; the last good checkpoint (step \(lastCheckpoint)) is kept in \(directory)"
        )
      }
      optimizer.step()
      if step == startStep { try recordSparseKernels(resumed: startStep > firstStep) }
      step += 1
      lossWindow += r.loss
      windowCount += 1
      try saveStateIfRequested(step)
      if progress != .quiet && isTTY && (step % 10 == 0) {
        let rate = Double(step - startStep) / max(Date().timeIntervalSince(tStart), 1e-9)
        let eta = Double(lastStep - step) / max(rate, 1e-9)
        let width = 30
        let done = Int(Double(width) * Double(step - firstStep) / Double(max(lastStep - firstStep, 1)))
        let bar = String(repeating: "#", count: done) + String(repeating: ".", count: width - done)
        print(
          String(
            format: "\r[%@] step %d/%d  loss %.4f  %.1f steps/s  ETA %.0fs", bar, step, lastStep,
            lossWindow / Double(windowCount), rate, eta), terminator: "")
        fflush(nil)
        lossWindow = 0
        windowCount = 0
      }
      if step % evalEvery == 0 || step == lastStep { try evaluateAll(step: step) }
      if step % ipe == 0 || step == lastStep {
        try Checkpoint.save(network: network, optimizer: optimizer, step: step, to: checkpointPath)
        lastCheckpoint = step
      }
      if StopSignal.isRequested && step < lastStep {
        if lastCheckpoint != step {
          try Checkpoint.save(network: network, optimizer: optimizer, step: step, to: checkpointPath)
        }
        throw Stopped(step: step, directory: directory)
      }
    }
    return metrics.records
  }

  /// Records the kernels of the pruned layers in `sparse_kernels.json` when the run starts;
  /// a run resumed with other kernels (another machine, another LotteryKit whose rule
  /// differs, or one from before sparse kernels, which has no record) prints one line on
  /// stderr: sparse and dense kernels round differently, so the result is not bit-identical
  /// to an uninterrupted run.
  func recordSparseKernels(resumed: Bool) throws {
    let names = network.sparseKernelNames
    sparseKernels = names.isEmpty ? nil : names
    guard !names.isEmpty else { return }
    func write(_ record: [String: String]) throws {
      let d = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
      try AtomicFile.write(String(decoding: d, as: UTF8.self) + "\n", to: kernelsPath)
    }
    let stored: [String: String]
    if FileManager.default.fileExists(atPath: kernelsPath) {
      stored =
        (try? JSONSerialization.jsonObject(with: Data(AtomicFile.read(kernelsPath)))) as? [String: String]
        ?? [:]
    } else if resumed {
      // A resumed run without a record was started by a LotteryKit without sparse kernels:
      // every layer trained dense, and that is what it started with.
      stored = names.mapValues { _ in "dense" }
      try write(stored)
    } else {
      try write(names)
      return
    }
    let changed = names.keys.sorted().filter { stored[$0] != names[$0] }
    sparseKernelChanges = changed.map { "\($0) \(stored[$0] ?? "?") -> \(names[$0]!)" }
    if !changed.isEmpty {
      let list = sparseKernelChanges.joined(separator: ", ")
      FileHandle.standardError.write(
        Data(
          "note: \(directory) continues with other sparse-kernel choices (\(list)); results differ from an uninterrupted run by rounding\n"
            .utf8))
    }
  }

  func saveStateIfRequested(_ step: Int) throws {
    for (s, path) in saveStates where s == step && !FileManager.default.fileExists(atPath: path) {
      try ModelState.save(network, step: step, to: path)
    }

  }
}
