import Engine
import Foundation
import NN

/// Which kept weights lie on some input-to-output path, and what is cut off (Vysogorets &
/// Kempe 2023, "Connectivity matters"; layer collapse in SynFlow's paper).
///
/// Computed on a *path network*: a Float64 copy of the architecture whose prunable weights
/// are the mask (0/1), biases 0, batch norm the identity (weight 1, bias 0, running mean 0,
/// variance 1) in evaluation mode, fed an all-ones input. Every activation is then
/// non-negative and positive exactly where some path from the input arrives; with
/// `R = sum of the outputs`, `dR/dw > 0` exactly when weight `w` lies on a path from the
/// input to an output (max pooling passes the window's positive maximum, so a reachable
/// channel stays reachable). Works for any network the zoo builds, residual ones included.
public struct Connectivity: Sendable, Equatable {
  /// Kept weights on an input-to-output path, per tensor.
  public var effective: [String: Int]
  /// Output units (rows; channels of a convolution) per tensor, and those with no
  /// effective incoming weight: unreachable from the input or reaching no output.
  public var units: [String: Int]
  public var deadUnits: [String: Int]
  /// `R` of the path network: 0 means no path is left (full collapse).
  public var pathSum: Double

  public var effectiveCount: Int { effective.values.reduce(0, +) }
  public var isCollapsed: Bool { !(pathSum > 0) }
  /// Effective weights over all prunable weights.
  public func effectiveDensity(_ mask: Mask) -> Double {
    Double(effectiveCount) / Double(max(mask.totalCount, 1))
  }

  /// Analyses `mask` on `scratch`, a Float64 network of the same architecture (its
  /// parameters and buffers are overwritten).
  public static func analyze(_ mask: Mask, scratch net: Network<Double>) throws -> Connectivity {
    for (n, p) in net.parameters {
      if p.isPrunable {
        guard let m = mask.values[n], m.count == p.value.count else {
          throw PruningError("mask has no tensor \(n) of shape \(p.value.shape)")
        }
        for i in 0..<m.count { p.value[i] = Double(m[i]) }
        p.mask = nil
      } else {
        // Non-prunable weights are batch-norm scales (1); everything else is a bias (0).
        let one = n.hasSuffix(".weight") || n == "weight"
        for i in 0..<p.value.count { p.value[i] = one ? 1 : 0 }
      }
    }
    for (n, b) in net.buffers {
      let one = n.hasSuffix("running_var")
      for i in 0..<b.count { b[i] = one ? 1 : 0 }
    }
    let r = try net.synflowGradients()
    var c = Connectivity(effective: [:], units: [:], deadUnits: [:], pathSum: r)
    for (n, p) in net.prunableParameters {
      let m = mask.values[n]!
      let rows = p.value.shape[0]
      let rowSize = p.value.count / max(rows, 1)
      var effective = 0
      var dead = 0
      for o in 0..<rows {
        var rowEffective = 0
        for i in (o * rowSize)..<((o + 1) * rowSize) where m[i] == 1 && p.grad[i] > 0 { rowEffective += 1 }
        effective += rowEffective
        if rowEffective == 0 { dead += 1 }
      }
      c.effective[n] = effective
      c.units[n] = rows
      c.deadUnits[n] = dead
    }
    return c
  }

  /// Tensors of `mask` left with no weight at all.
  public static func emptyTensors(_ mask: Mask) -> [String] { mask.names.filter { mask.remaining($0) == 0 } }

  /// One line naming the layer where the network is cut.
  public func collapseDescription(_ mask: Mask) -> String {
    if let empty = Self.emptyTensors(mask).first {
      return "layer collapse: \(empty) keeps no weight, so no path from the input reaches the output"
    }
    let narrowest = mask.names.min {
      Double(mask.remaining($0)) / Double(mask.total($0)) < Double(mask.remaining($1))
        / Double(mask.total($1))
    }!
    return
      "layer collapse: no path from the input reaches the output (narrowest tensor \(narrowest) keeps \(mask.remaining(narrowest)) of \(mask.total(narrowest)))"
  }
}

extension Mask {
  /// `sparsity.json` with connectivity: per tensor also `effective`, `units` and
  /// `dead_units`; in total `effective_remaining`, `effective_density`, `collapsed` and
  /// `empty_tensors`.
  public func sparsityJSON(connectivity c: Connectivity) -> String {
    var r = sparsityReport
    for i in r.tensors.indices {
      let n = r.tensors[i].name
      (r.tensors[i].effective, r.tensors[i].units, r.tensors[i].deadUnits) =
        (c.effective[n] ?? 0, c.units[n] ?? 0, c.deadUnits[n] ?? 0)
    }
    r.effectiveRemaining = c.effectiveCount
    r.effectiveDensity = c.effectiveDensity(self)
    r.collapsed = c.isCollapsed
    r.emptyTensors = Connectivity.emptyTensors(self)
    return r.text
  }
}
