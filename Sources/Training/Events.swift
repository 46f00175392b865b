import Datasets
import Engine
import Foundation
import NN

/// The named moments of a training run, in the order a ``Trainer`` reaches them
/// (Composer's events, in LotteryKit's words).
///
/// One step `s` is: `batchLoaded` (the batch for step `s` is in ``TrainingState/input`` and
/// ``TrainingState/labels``), `beforeForward`, `afterForward` (``TrainingState/logits``),
/// `beforeLoss`, `afterLoss` (``TrainingState/loss`` and ``TrainingState/dLogits``, the
/// loss's gradient the backward pass will read), `beforeBackward`, `afterBackward` (every
/// parameter's gradient for this batch), `beforeOptimizerStep`, `afterOptimizerStep`,
/// `batchEnd` (``TrainingState/step`` is now `s + 1`). `epochStart` comes before the
/// `batchLoaded` of the first step of an epoch and `epochEnd` after the `batchEnd` of its last.
///
/// `initialize` is sent by ``Trainer/initialize(network:callbacks:)`` before an optimizer
/// and masks exist, so a callback can add or replace layers (model surgery); `runStart` once
/// per call of ``Trainer/run()`` (``TrainingState/resumed`` tells whether it continues a
/// checkpoint); `evaluationStart`/`evaluationEnd` around every evaluation;
/// `checkpoint` right after a checkpoint is written; `runEnd` after the last step.
public enum TrainingEvent: Int, CaseIterable, Sendable, Comparable {
  case initialize
  case runStart
  case epochStart
  case batchLoaded
  case beforeForward
  case afterForward
  case beforeLoss
  case afterLoss
  case beforeBackward
  case afterBackward
  case beforeOptimizerStep
  case afterOptimizerStep
  case batchEnd
  case epochEnd
  case evaluationStart
  case evaluationEnd
  case checkpoint
  case runEnd

  /// Callbacks run in reverse order on these (the "after" events and `evaluationEnd`), so a
  /// callback undoes its change of the matching "before" event after the callbacks
  /// registered later have undone theirs. Every other event runs them in order: on
  /// `batchEnd` the built-in evaluation comes before the checkpoint, so a checkpoint at a
  /// step never exists without that step's metrics.
  public var isClosing: Bool {
    switch self {
    case .afterForward, .afterLoss, .afterBackward, .afterOptimizerStep, .evaluationEnd:
      return true
    default: return false
    }
  }

  public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Something that acts on training events: a speed-up method, masking, evaluation,
/// checkpoints, progress. The ``Trainer`` calls ``handle(_:_:)`` for every event in
/// ``events``, callbacks in registration order (reversed on closing events, see
/// ``TrainingEvent/isClosing``).
///
/// State that must survive a resume goes in ``stateTensors`` (saved in the checkpoint as
/// `callback.<name>.<key>`, restored before `runStart`); randomness comes from
/// ``TrainingState/random(for:)``, a pure function of the run's seed, the callback's name
/// and the step, so a resumed run draws what an uninterrupted one would.
public protocol TrainingCallback: AnyObject {
  /// A name unique within one run (checkpoint keys and random streams use it).
  var name: String { get }
  /// The events this callback acts on (read once, when ``Trainer/run()`` starts).
  var events: Set<TrainingEvent> { get }
  func handle(_ event: TrainingEvent, _ state: TrainingState) throws
  /// Named tensors to checkpoint (empty when the callback has no state).
  var stateTensors: [(String, Tensor<Float>)] { get }
  /// Scalar state to checkpoint (stored in the checkpoint's metadata as text).
  var stateValues: [String: String] { get set }
  /// The `initialize` event: before an optimizer and masks exist, a callback may return a
  /// changed network (added or replaced layers); the default returns it unchanged. It must
  /// be idempotent: a later callback that returns a new network sends it again.
  func initialize(_ network: Network<Float>) throws -> Network<Float>
}

extension TrainingCallback {
  public var stateTensors: [(String, Tensor<Float>)] { [] }
  public var stateValues: [String: String] {
    get { [:] }
    set {}
  }
  public func initialize(_ network: Network<Float>) throws -> Network<Float> { network }
}

/// What callbacks see and may change during a run. The trainer owns it; one instance
/// lives for one ``Trainer/run()``.
public final class TrainingState {
  public let network: Network<Float>
  public let optimizer: any Optimizer<Float>
  public let loader: BatchLoader
  /// The run's first and last global steps (``Trainer/firstStep``, ``Trainer/lastStep``).
  public let firstStep: Int
  public let lastStep: Int
  /// Learning rate of global step `s`.
  public let schedule: (Int) -> Double
  /// Seed of the callbacks' random streams (see ``random(for:)``).
  public let seed: UInt64
  /// The run folder.
  public let directory: String
  /// True when this call continues a checkpoint.
  public internal(set) var resumed = false
  /// The global step: during a step `s` it is `s`; from `batchEnd` on, `s + 1`.
  public internal(set) var step: Int
  /// The step at which the last checkpoint was written.
  public internal(set) var lastCheckpoint: Int
  /// The current batch `[N, C, H, W]` (or feature-major) and its labels; a callback may
  /// replace either on `batchLoaded` (MixUp, resizing).
  public var input = Tensor<Float>(zeros: [0])
  public var labels: [Int32] = []
  /// The logits of the last forward pass; a callback may change them on `afterForward`.
  public var logits = Tensor<Float>(zeros: [0])
  /// The batch's loss; a callback may replace it, and ``dLogits`` with it, on `afterLoss`.
  public var loss = 0.0
  /// The gradient of the loss with respect to the logits, read by the backward pass.
  public var dLogits = Tensor<Float>(zeros: [0])
  /// Whether the step's gradients must land in every parameter's dense `grad` tensor
  /// (false: the optimizer is the only reader, see
  /// ``NN/Network/lossAndGradients(input:labels:inputGradient:temperature:denseGradients:)``).
  /// A callback that reads gradients sets it on `runStart`.
  public var denseGradients = false
  /// How progress is shown.
  public let progress: ProgressStyle
  /// The trainer that sends the events (for the built-in callbacks: evaluation, checkpoints).
  weak var trainer: Trainer?
  /// Wall-clock start of this call of ``Trainer/run()``.
  let started = Date()
  /// The split being evaluated between `evaluationStart` and `evaluationEnd`.
  public internal(set) var evaluationSplit: String?

  init(
    network: Network<Float>, optimizer: any Optimizer<Float>, loader: BatchLoader, firstStep: Int,
    lastStep: Int, schedule: @escaping (Int) -> Double, seed: UInt64, directory: String,
    progress: ProgressStyle
  ) {
    self.progress = progress
    self.network = network
    self.optimizer = optimizer
    self.loader = loader
    self.firstStep = firstStep
    self.lastStep = lastStep
    self.schedule = schedule
    self.seed = seed
    self.directory = directory
    step = firstStep
    lastCheckpoint = firstStep
  }

  /// Epochs completed at the current step (fractional).
  public var epoch: Double { Double(step) / Double(loader.iterationsPerEpoch) }

  /// The random stream of `callback` at the current step: a pure function of the run's
  /// seed, the callback's name and the step.
  public func random(for callback: any TrainingCallback) -> RandomStream {
    RandomStream(seed: seed, purpose: "callback:" + callback.name, index: UInt64(step))
  }

  /// One more forward pass, loss and backward pass on the current batch (as SAM needs):
  /// updates ``logits``, ``loss``, ``dLogits`` and every gradient. Sends no events.
  @discardableResult
  public func forwardBackward() throws -> Double {
    logits = try network.trainingForward(input, denseGradients: denseGradients)
    let r = try network.loss(logits: logits, labels: labels)
    loss = r.loss
    dLogits = r.dLogits
    try network.backward(dLogits)
    return loss
  }
}
