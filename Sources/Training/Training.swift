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
import Datasets
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
  public init(step: Int, directory: String) {
    self.step = step
    self.directory = directory
  }
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
    jsonlPath = RunFile.metrics.path(in: directory)
    csvPath = RunFile.metricsCSV.path(in: directory)
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

/// The training loop (see the module comment): a sequence of ``TrainingEvent``s sent to
/// ``TrainingCallback``s. What the loop itself does is only the step: load the batch,
/// forward, loss, backward, optimizer. Everything else is a callback, registered after the
/// caller's own ``callbacks`` in this order: ``SaveStatesCallback`` (model files at given
/// steps), ``DivergenceGuard`` (stops on a non-finite loss), ``ProgressCallback``,
/// ``EvaluationCallback`` (every `evalEvery` steps and at the end), ``CheckpointCallback``
/// (every epoch boundary and at the end) and ``StopSignalCallback`` (SIGTERM). Masks are
/// enforced inside the optimizer's update (fused with it, so a pruned layer can update in
/// compact form; see ``NN/Optimizer``).
public final class Trainer {
  public let network: Network<Float>
  public let optimizer: any Optimizer<Float>
  public let loader: BatchLoader
  /// Evaluation sets by split name (`test`, `validation`, `train`).
  public let evalSets: [(String, Dataset)]
  public let firstStep: Int
  public let lastStep: Int
  public let evalEvery: Int
  /// Splits evaluated less often than every `evalEvery` steps: split name to interval (at
  /// evaluations whose step is a multiple of it, and at the first and last step; 0: only
  /// there).
  public var splitEvery: [String: Int] = [:]
  /// Learning rate for global step `s`.
  public let learningRate: (Int) -> Double
  public let directory: String
  public let progress: ProgressStyle
  /// Model states to save: for each `(s, path)`, the state after `s` steps (before step `s`
  /// runs) is written to `path` (skipped when the file exists).
  public var saveStates: [(step: Int, path: String)] = []
  /// The caller's callbacks, run before the built-in ones on every event (see the type's
  /// comment). Their state is saved in every checkpoint and restored on resume.
  public var callbacks: [any TrainingCallback] = []
  /// Seed of the callbacks' random streams (``TrainingState/random(for:)``).
  public var seed: UInt64 = 0

  public var checkpointPath: String { RunFile.checkpoint.path(in: directory) }
  /// Where the kernels of the pruned layers are recorded when a run starts (see
  /// ``sparseKernels``).
  public var kernelsPath: String { RunFile.sparseKernels.path(in: directory) }
  /// The kernels each pruned layer trains with (``NN/Network/sparseKernelNames`` after the
  /// first training step of this call): nil for a dense network or before training.
  public private(set) var sparseKernels: [String: String]?
  /// Pruned layers whose kernels differ from those recorded when the run started
  /// ("layer recorded -> now"); empty when none (see ``recordSparseKernels()``).
  public private(set) var sparseKernelChanges: [String] = []
  public let metrics: MetricsLog
  private let evalBatch = Tensor<Float>(zeros: [0])

  public init(
    network: Network<Float>, optimizer: any Optimizer<Float>, loader: BatchLoader,
    evalSets: [(String, Dataset)], firstStep: Int, lastStep: Int, evalEvery: Int,
    learningRate: @escaping (Int) -> Double, directory: String, progress: ProgressStyle = .automatic
  ) throws {
    guard lastStep >= firstStep, firstStep >= 0 else {
      throw RunError("training would run from step \(firstStep) to \(lastStep): nothing to do")
    }
    guard evalEvery > 0 else { throw RunError("the evaluation interval must be positive") }
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

  /// Sends the `initialize` event: each callback, in order, may return a changed network
  /// (model surgery); when one returns a new network, the callbacks before it get
  /// `initialize` again with it. Call it before building the optimizer and applying masks.
  public static func initialize(network: Network<Float>, callbacks: [any TrainingCallback]) throws
    -> Network<Float>
  {
    var net = network
    let receivers = callbacks.filter { $0.events.contains(.initialize) }
    for (i, c) in receivers.enumerated() {
      let changed = try c.initialize(net)
      if changed !== net {
        // A new network (a surgery that adds parameters): the callbacks before it see it
        // too, so none keeps the old one's parameter list (initialize is idempotent).
        for earlier in receivers[..<i] { _ = try earlier.initialize(changed) }
        net = changed
      }
    }
    return net
  }

  /// Loss and accuracy on a data set, in evaluation mode, batches of 500 (``Evaluation``).
  public func evaluate(_ ds: Dataset) throws -> (loss: Double, accuracy: Double) {
    let r = try Evaluation.evaluate(network, on: ds, scratch: evalBatch)
    return (r.loss, r.accuracy)
  }

  // MARK: the loop

  /// For each event (by raw value), the callbacks that act on it in the order they run:
  /// worked out once per ``run()``, not on every event of every step.
  private var receivers: [[any TrainingCallback]] = []
  private var state: TrainingState!
  private var started = Date()

  /// Sends `event` to every callback that acts on it, in order (reversed on closing events).
  func send(_ event: TrainingEvent) throws {
    for c in receivers[event.rawValue] { try c.handle(event, state) }
  }

  /// Evaluates every split at the current step, between `evaluationStart` and
  /// `evaluationEnd` (callbacks may swap the weights evaluated), and appends the metrics.
  func evaluateAll() throws -> [(split: String, loss: Double, accuracy: Double)] {
    let step = state.step
    let ipe = Double(loader.iterationsPerEpoch)
    let lr = learningRate(max(step - 1, firstStep))
    var out: [(String, Double, Double)] = []
    for (split, ds) in evalSets {
      if let k = splitEvery[split], step != firstStep, step != lastStep, k == 0 || step % k != 0 { continue }
      state.evaluationSplit = split
      try send(.evaluationStart)
      let (loss, acc) = try evaluate(ds)
      try send(.evaluationEnd)
      try metrics.append(
        MetricRecord(
          step: step, epoch: Double(step) / ipe, split: split, loss: loss, accuracy: acc, lr: lr,
          seconds: Date().timeIntervalSince(started)))
      out.append((split, loss, acc))
    }
    state.evaluationSplit = nil
    return out
  }

  /// Writes the checkpoint (model, optimizer, callbacks' state) at the current step, then
  /// sends `checkpoint`.
  func saveCheckpoint() throws {
    var extra: [(String, Safetensors.Entry)] = []
    var meta: [String: String] = [:]
    for c in callbacks {
      extra += c.stateTensors.map { ("callback.\(c.name).\($0.0)", Safetensors.Entry($0.1)) }
      for (k, v) in c.stateValues { meta["callback.\(c.name).\(k)"] = v }
    }
    try Checkpoint.save(
      network: network, optimizer: optimizer, step: state.step, to: checkpointPath, extra: extra,
      extraMetadata: meta)
    state.lastCheckpoint = state.step
    try send(.checkpoint)
  }

  /// Trains to `lastStep`, resuming from the checkpoint in `directory` when there is one.
  /// Returns the metrics of the run.
  @discardableResult
  public func run() throws -> [MetricRecord] {
    started = Date()
    let names = callbacks.map(\.name)
    guard Set(names).count == names.count else {
      throw RunError("two training callbacks share a name: \(names.joined(separator: ", "))")
    }
    let st = TrainingState(
      network: network, optimizer: optimizer, loader: loader, firstStep: firstStep, lastStep: lastStep,
      schedule: learningRate, seed: seed, directory: directory, progress: progress)
    state = st
    st.trainer = self
    let all: [any TrainingCallback] =
      callbacks + [
        SaveStatesCallback(saveStates), DivergenceGuard(), ProgressCallback(progress),
        EvaluationCallback(every: evalEvery), CheckpointCallback(), StopSignalCallback(),
      ]
    receivers = TrainingEvent.allCases.map { e in
      let acting = all.filter { $0.events.contains(e) }
      return e.isClosing ? acting.reversed() : acting
    }
    if FileManager.default.fileExists(atPath: checkpointPath) {
      let (step, t, meta) = try Checkpoint.loadWithExtras(
        network: network, optimizer: optimizer, from: checkpointPath)
      guard step >= firstStep, step <= lastStep else {
        throw RunError(
          "\(checkpointPath): checkpoint step \(step) is outside this run (\(firstStep)...\(lastStep))")
      }
      for c in callbacks {
        for (key, tensor) in c.stateTensors {
          guard let e = t["callback.\(c.name).\(key)"] else {
            throw RunError("\(checkpointPath): state \(key) of training callback \(c.name) is missing")
          }
          try e.copy(into: tensor, name: key, file: checkpointPath)
        }
        let prefix = "callback.\(c.name)."
        var values: [String: String] = [:]
        for (k, v) in meta where k.hasPrefix(prefix) { values[String(k.dropFirst(prefix.count))] = v }
        if !values.isEmpty { c.stateValues = values }
      }
      st.step = step
      st.lastCheckpoint = step
      st.resumed = true
      try metrics.restore(upTo: step)
    } else {
      try metrics.restore(upTo: nil)
    }
    try send(.runStart)
    // Batches feature-major when the first layer reads them so (a sparse first linear layer).
    loader.featureMajor = !loader.augment && network.prefersFeatureMajorInput(batch: loader.batchSize)
    let ipe = loader.iterationsPerEpoch
    let startStep = st.step
    while st.step < lastStep {
      let step = st.step
      if step % ipe == 0 { try send(.epochStart) }
      let (x, labels) = loader.batch(step: step)
      st.input = x
      st.labels = labels
      try send(.batchLoaded)
      optimizer.learningRate = learningRate(step)
      try send(.beforeForward)
      st.logits = try network.trainingForward(st.input, denseGradients: st.denseGradients)
      try send(.afterForward)
      try send(.beforeLoss)
      let r = try network.loss(logits: st.logits, labels: st.labels)
      st.loss = r.loss
      st.dLogits = r.dLogits
      try send(.afterLoss)
      try send(.beforeBackward)
      try network.backward(st.dLogits)
      try send(.afterBackward)
      try send(.beforeOptimizerStep)
      optimizer.step()
      try send(.afterOptimizerStep)
      if step == startStep { try recordSparseKernels(resumed: startStep > firstStep) }
      st.step = step + 1
      try send(.batchEnd)
      if st.step % ipe == 0 || st.step == lastStep { try send(.epochEnd) }
    }
    try send(.runEnd)
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

}
