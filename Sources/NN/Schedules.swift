import Engine
import Foundation

/// Training lengths as researchers write them: `2000it`, `2ep`, `1ep500it` (OpenLTH's step
/// strings). An epoch is `ceil(examples / batch)` iterations of the data set in use.
public struct StepSpec: Equatable, Sendable, Codable, CustomStringConvertible {
  public var epochs: Int
  public var iterations: Int

  public init(epochs: Int = 0, iterations: Int = 0) {
    self.epochs = epochs
    self.iterations = iterations
  }

  /// Parses `Nit`, `Nep` or `NepMit` (non-negative integers).
  public init(parsing text: String) throws {
    let s = text.trimmingCharacters(in: .whitespaces)
    let bad = EngineError(
      "invalid step '\(text.escapingControlCharacters)': write iterations or epochs as 2000it, 2ep or 1ep500it"
    )
    var ep = 0
    var it = 0
    var rest = Substring(s)
    guard !rest.isEmpty else { throw bad }
    if let r = rest.range(of: "ep") {
      guard let v = Int(rest[rest.startIndex..<r.lowerBound]), v >= 0,
        rest[rest.startIndex..<r.lowerBound].allSatisfy(\.isNumber)
      else { throw bad }
      ep = v
      rest = rest[r.upperBound...]
    }
    if !rest.isEmpty {
      guard rest.hasSuffix("it") else { throw bad }
      let num = rest.dropLast(2)
      guard !num.isEmpty, num.allSatisfy(\.isNumber), let v = Int(num) else { throw bad }
      it = v
    }
    epochs = ep
    iterations = it
  }

  /// Total iterations for `iterationsPerEpoch`; an error when the count overflows.
  public func iterations(perEpoch: Int) throws -> Int {
    let (e, o1) = epochs.multipliedReportingOverflow(by: perEpoch)
    let (total, o2) = e.addingReportingOverflow(iterations)
    guard !o1, !o2 else {
      throw EngineError(
        "step '\(description)' is too long: \(epochs) epochs of \(perEpoch) iterations overflow")
    }
    return total
  }

  public var description: String {
    if epochs == 0 { return "\(iterations)it" }
    return iterations == 0 ? "\(epochs)ep" : "\(epochs)ep\(iterations)it"
  }
}

extension StepSpec: ExpressibleByStringLiteral {
  public init(stringLiteral value: String) { try! self.init(parsing: value) }
}

/// A learning-rate schedule evaluated per iteration: linear warm-up over `warmupSteps`
/// (lr * (t + 1) / warmup), then `constant`, `step` (multiply by `gamma` at each milestone
/// reached) or `cosine` (lr * (1 + cos(pi * t / T)) / 2 over the whole run of T iterations).
public struct LearningRateSchedule: Equatable, Sendable {
  public enum Kind: String, Sendable, CaseIterable, Codable { case constant, step, cosine }
  public var base: Double
  public var kind: Kind
  /// Milestones in iterations (for `step`).
  public var milestones: [Int]
  public var gamma: Double
  public var warmupSteps: Int
  /// Total training iterations (for `cosine`).
  public var totalSteps: Int

  public init(
    base: Double, kind: Kind = .constant, milestones: [Int] = [], gamma: Double = 0.1,
    warmupSteps: Int = 0, totalSteps: Int = 1
  ) throws {
    guard base > 0, base.isFinite else {
      throw EngineError("learning rate must be positive, got \(base)")
    }
    guard gamma > 0, warmupSteps >= 0, totalSteps >= 1 else {
      throw EngineError("schedule: gamma must be positive and warm-up non-negative")
    }
    guard milestones == milestones.sorted(), milestones.allSatisfy({ $0 >= 0 }) else {
      throw EngineError("schedule: milestones must be increasing, got \(milestones)")
    }
    self.base = base
    self.kind = kind
    self.milestones = milestones
    self.gamma = gamma
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
  }

  /// The learning rate used at iteration `t` (0-based).
  public func callAsFunction(_ t: Int) -> Double {
    var lr = base
    switch kind {
    case .constant: break
    case .step:
      let passed = milestones.filter { t >= $0 }.count
      for _ in 0..<passed { lr *= gamma }
    case .cosine:
      let frac = min(Double(t) / Double(totalSteps), 1)
      lr = base * (1 + _cos(Double.pi * frac)) / 2
    }
    if t < warmupSteps { lr *= Double(t + 1) / Double(warmupSteps) }
    return lr
  }
}

@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
