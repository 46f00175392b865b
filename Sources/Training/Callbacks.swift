import Engine
import Foundation
import NN

// The trainer's built-in callbacks (see ``Trainer``): everything the loop does besides the
// step itself. Each acts on `runStart` only when the run is new (a resumed run already has
// what they write at its first step).

/// Writes the model state after `s` steps to a file, for each requested `(s, path)`
/// (skipped when the file exists): `model_init`, `model_start`, rewind points.
public final class SaveStatesCallback: TrainingCallback {
  public let name = "save_states"
  public let events: Set<TrainingEvent> = [.runStart, .batchEnd]
  let states: [(step: Int, path: String)]
  public init(_ states: [(step: Int, path: String)]) { self.states = states }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    if event == .runStart && state.resumed { return }
    for (s, path) in states where s == state.step && !FileManager.default.fileExists(atPath: path) {
      try ModelState.save(state.network, step: s, to: path)
    }
  }
}

/// Stops a diverging run: a NaN or infinite loss throws, naming the step and the last good
/// checkpoint (which is kept).
public final class DivergenceGuard: TrainingCallback {
  public let name = "divergence_guard"
  public let events: Set<TrainingEvent> = [.beforeBackward]
  public init() {}

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    guard !state.loss.isFinite else { return }
    throw RunError(
      "loss is \(state.loss) at step \(state.step): training diverged; the last good checkpoint (step \(state.lastCheckpoint)) is kept in \(state.directory)"
    )
  }
}

/// A live progress bar on a terminal (every 10 steps: mean loss, steps per second, ETA).
public final class ProgressCallback: TrainingCallback {
  public let name = "progress"
  public var events: Set<TrainingEvent> { style == .quiet || !isTTY ? [] : [.runStart, .afterLoss, .batchEnd] }
  let style: ProgressStyle
  let isTTY = isatty(1) != 0
  private var lossWindow = 0.0
  private var windowCount = 0
  private var startStep = 0
  private var tStart = Date()
  public init(_ style: ProgressStyle) { self.style = style }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    switch event {
    case .runStart:
      startStep = state.step
      tStart = Date()
    case .afterLoss:
      lossWindow += state.loss
      windowCount += 1
    default:
      let step = state.step
      guard step % 10 == 0 else { return }
      let rate = Double(step - startStep) / max(Date().timeIntervalSince(tStart), 1e-9)
      let eta = Double(state.lastStep - step) / max(rate, 1e-9)
      let width = 30
      let done = Int(
        Double(width) * Double(step - state.firstStep) / Double(max(state.lastStep - state.firstStep, 1)))
      let bar = String(repeating: "#", count: done) + String(repeating: ".", count: width - done)
      print(
        String(
          format: "\r[%@] step %d/%d  loss %.4f  %.1f steps/s  ETA %.0fs", bar, step, state.lastStep,
          lossWindow / Double(max(windowCount, 1)), rate, eta), terminator: "")
      fflush(nil)
      lossWindow = 0
      windowCount = 0
    }
  }
}

/// Evaluates every split (``Trainer/evalSets``) at the start of a new run, every `every`
/// steps and at the last step; appends the metrics and prints one line unless quiet.
public final class EvaluationCallback: TrainingCallback {
  public let name = "evaluation"
  public let events: Set<TrainingEvent> = [.runStart, .batchEnd]
  let every: Int
  public init(every: Int) { self.every = every }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    if event == .runStart && state.resumed { return }
    if event == .batchEnd && !(state.step % every == 0 || state.step == state.lastStep) { return }
    guard let trainer = state.trainer else { return }
    let results = try trainer.evaluateAll()
    guard state.progress != .quiet else { return }
    let parts = results.map { String(format: "%@ loss %.4f acc %.2f%%", $0.split, $0.loss, $0.accuracy * 100) }
    if isatty(1) != 0 { print("\r\u{1B}[K", terminator: "") }
    print("step \(state.step)/\(state.lastStep)  " + parts.joined(separator: "  "))
  }
}

/// Writes the resumable checkpoint at the start of a new run, at every epoch boundary and
/// at the last step.
public final class CheckpointCallback: TrainingCallback {
  public let name = "checkpoint"
  public let events: Set<TrainingEvent> = [.runStart, .batchEnd]
  public init() {}

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    if event == .runStart && state.resumed { return }
    let ipe = state.loader.iterationsPerEpoch
    if event == .batchEnd && !(state.step % ipe == 0 || state.step == state.lastStep) { return }
    try state.trainer?.saveCheckpoint()
  }
}

/// After SIGTERM (``StopSignal``): writes a checkpoint at the step reached (unless one was
/// just written) and throws ``Stopped``.
public final class StopSignalCallback: TrainingCallback {
  public let name = "stop_signal"
  public let events: Set<TrainingEvent> = [.batchEnd]
  public init() {}

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    guard StopSignal.isRequested && state.step < state.lastStep else { return }
    if state.lastCheckpoint != state.step { try state.trainer?.saveCheckpoint() }
    throw Stopped(step: state.step, directory: state.directory)
  }
}
