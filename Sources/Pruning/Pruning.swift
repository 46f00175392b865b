/// # Pruning: masks, magnitude and random pruning, densities
///
/// A ``Mask`` holds one 0/1 tensor per prunable weight (linear and convolution weights;
/// never biases or batch norm), stored as `mask.safetensors` with the weights' names.
/// ``MagnitudePruner`` implements one level of iterative magnitude pruning (IMP):
/// each level removes `ceil(fraction * remaining)` of the surviving weights with the
/// smallest magnitude, either per tensor (`layerwise`) or under one threshold over all
/// pruned tensors (`global`). Ties are broken by position (tensor order, then index), so
/// pruning is deterministic. Fractions per tensor come from a ``NN/PruningPolicy``: a
/// default, one for convolutions, one for the output layer, and names never pruned.
/// ``RandomPruner`` draws random masks with the same per-tensor counts (`layerwise`: the
/// *shuffle* ablation) or the same total density (`global`), the "random pruning" control of
/// the LTH papers.
///
/// Every method shares one path from scores to a mask: a ``ScoreMethod`` (Scores.swift,
/// Methods/) gives one score per weight, higher kept; ``Selector`` (Allocation.swift) keeps
/// the highest under an ``Allocation`` (global, layerwise, ERK); ``PaIPruner`` (PaI.swift)
/// repeats score and select over rounds; ``Connectivity`` (Connectivity.swift) finds the
/// weights on an input-to-output path (effective density) and layer collapse.
import Engine
import Foundation
import NN
import Storage

/// Pruning errors: one line naming the tensor, fraction or file.
public struct PruningError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// One 0/1 tensor per prunable weight, in the network's order.
public struct Mask: Equatable, Sendable {
  public var names: [String]
  public var values: [String: [Float]]
  public var shapes: [String: [Int]]

  /// The all-ones mask of a network (level 0).
  public init<T: Scalar>(ones net: Network<T>) {
    names = net.prunableParameters.map(\.0)
    values = [:]
    shapes = [:]
    for (n, p) in net.prunableParameters {
      values[n] = [Float](repeating: 1, count: p.value.count)
      shapes[n] = p.value.shape
    }
  }

  /// Weights kept per tensor.
  public func remaining(_ name: String) -> Int { values[name]!.reduce(0) { $0 + Int($1) } }
  public func total(_ name: String) -> Int { values[name]!.count }
  public var remainingCount: Int { names.reduce(0) { $0 + remaining($1) } }
  public var totalCount: Int { names.reduce(0) { $0 + total($1) } }
  /// remaining / total over all prunable tensors, a fraction in [0, 1].
  public var density: Double { Double(remainingCount) / Double(max(totalCount, 1)) }

  /// Attaches the mask to the network's parameters and zeroes pruned weights.
  public func apply<T: Scalar>(to net: Network<T>) throws {
    for (n, p) in net.prunableParameters {
      guard let v = values[n], v.count == p.value.count else {
        throw PruningError("mask has no tensor \(n) of shape \(p.value.shape)")
      }
      p.mask = Tensor(v.map { T($0) }, shape: p.value.shape)
      p.applyMask()
    }
  }

  /// True when every weight kept here is also kept in `earlier` (masks are nested).
  public func isNested(in earlier: Mask) -> Bool {
    names.allSatisfy { n in zip(values[n]!, earlier.values[n]!).allSatisfy { $0 <= $1 } }
  }

  public func save(to path: String) throws {
    let entries = names.map { n in
      (n, Safetensors.Entry(Tensor(values[n]!, shape: shapes[n]!)))
    }
    try Safetensors.write(entries, metadata: ["density": String(density)], to: path)
  }

  /// Loads a mask and checks it against the network: names, shapes and 0/1 values.
  public static func load<T: Scalar>(_ path: String, for net: Network<T>) throws -> Mask {
    let (t, _) = try Safetensors.read(path)
    var m = Mask(ones: net)
    for (n, p) in net.prunableParameters {
      guard let e = t[n], e.shape == p.value.shape else {
        throw PruningError("\(path): corrupted mask (tensor \(n) missing or of the wrong shape)")
      }
      let v: [Float] = e.values()
      guard v.allSatisfy({ $0 == 0 || $0 == 1 }) else {
        throw PruningError("\(path): corrupted mask (tensor \(n) has values other than 0 and 1)")
      }
      m.values[n] = v
    }
    guard t.count == m.names.count else {
      throw PruningError(
        "\(path): corrupted mask (\(t.count) tensors, the model has \(m.names.count) prunable)")
    }
    return m
  }

  /// `sparsity.json`: per tensor total and remaining, and the totals.
  public func sparsityJSON() -> String { sparsityReport.text }

  /// What `sparsity.json` holds without connectivity.
  public var sparsityReport: SparsityReport {
    SparsityReport(
      tensors: names.map { SparsityReport.Tensor(name: $0, total: total($0), remaining: remaining($0)) },
      total: totalCount, remaining: remainingCount, density: density)
  }
}

/// `sparsity.json` of a pruned level: per tensor its total and remaining weights (and,
/// with connectivity, the weights still on a path from input to output and the dead
/// units), then the totals.
public struct SparsityReport: Codable, Equatable, Sendable {
  public struct Tensor: Codable, Equatable, Sendable {
    public var name: String
    public var total: Int
    public var remaining: Int
    public var effective: Int?
    public var units: Int?
    public var deadUnits: Int?
    enum CodingKeys: String, CodingKey {
      case name, total, remaining, effective, units
      case deadUnits = "dead_units"
    }
  }
  public var tensors: [Tensor]
  public var total: Int
  public var remaining: Int
  public var density: Double
  public var effectiveRemaining: Int?
  public var effectiveDensity: Double?
  public var collapsed: Bool?
  public var emptyTensors: [String]?

  enum CodingKeys: String, CodingKey {
    case tensors, total, remaining, density, collapsed
    case effectiveRemaining = "effective_remaining"
    case effectiveDensity = "effective_density"
    case emptyTensors = "empty_tensors"
  }

  public init(tensors: [Tensor], total: Int, remaining: Int, density: Double) {
    (self.tensors, self.total, self.remaining, self.density) = (tensors, total, remaining, density)
  }

  /// Only `density` is required: files of older builds may hold little else.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    density = try c.decode(Double.self, forKey: .density)
    tensors = try c.decodeIfPresent([Tensor].self, forKey: .tensors) ?? []
    total = try c.decodeIfPresent(Int.self, forKey: .total) ?? 0
    remaining = try c.decodeIfPresent(Int.self, forKey: .remaining) ?? 0
    effectiveRemaining = try c.decodeIfPresent(Int.self, forKey: .effectiveRemaining)
    effectiveDensity = try c.decodeIfPresent(Double.self, forKey: .effectiveDensity)
    collapsed = try c.decodeIfPresent(Bool.self, forKey: .collapsed)
    emptyTensors = try c.decodeIfPresent([String].self, forKey: .emptyTensors)
  }

  /// Pretty JSON with sorted keys and a final newline, as the file holds it.
  public var text: String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .prettyPrinted]
    return String(decoding: try! e.encode(self), as: UTF8.self) + "\n"
  }

  /// The file's contents (nil: unreadable, or a density outside [0, 1]).
  public static func parse(_ bytes: [UInt8]) -> SparsityReport? {
    guard let r = try? JSONDecoder().decode(SparsityReport.self, from: Data(bytes)), r.density >= 0, r.density <= 1
    else { return nil }
    return r
  }
}

/// Matches `pattern` with `*` wildcards (any run of characters, the empty one included)
/// against `name`: the greedy two-pointer glob match, backtracking to the last `*`.
public func wildcardMatch(_ pattern: String, _ name: String) -> Bool {
  let p = Array(pattern)
  let n = Array(name)
  var (i, j) = (0, 0)  // next pattern and name characters
  var star: Int? = nil  // position of the last `*` seen, and the name position it resumes at
  var resume = 0
  while j < n.count {
    if i < p.count && p[i] == "*" {
      star = i
      resume = j
      i += 1
    } else if i < p.count && p[i] == n[j] {
      i += 1
      j += 1
    } else if let s = star {
      // Let the last `*` absorb one more character and retry.
      resume += 1
      (i, j) = (s + 1, resume)
    } else {
      return false
    }
  }
  while i < p.count && p[i] == "*" { i += 1 }
  return i == p.count
}

extension PruningPolicy {
  /// The fraction pruned per level for each prunable tensor (0: never pruned).
  public func fractions<T: Scalar>(for net: Network<T>) throws -> [String: Double] {
    guard fraction > 0, fraction < 1 else {
      throw SettingError("pruning_fraction", "must be in (0, 1), got \(fraction)")
    }
    for (setting, f) in [("pruning_fraction_conv", convFraction), ("pruning_fraction_output", outputFraction)] {
      if let f, !(f >= 0 && f < 1) { throw SettingError(setting, "must be in [0, 1), got \(f)") }
    }
    try Self.checkIgnorePatterns(ignore, names: net.prunableParameters.map(\.0))
    let outputName = net.outputLayer + ".weight"
    var out: [String: Double] = [:]
    for (n, p) in net.prunableParameters {
      var f = fraction
      if p.value.shape.count == 4, let c = convFraction { f = c }
      if n == outputName, let o = outputFraction { f = o }
      if ignore.contains(where: { wildcardMatch($0, n) }) { f = 0 }
      if strategy == .global && f != 0 && f != fraction {
        throw PruningError(
          "global pruning uses one fraction (\(fraction)) for every pruned tensor; \(n) would get \(f) (use 0 to exclude a tensor, or --pruning-strategy layerwise)"
        )
      }
      out[n] = f
    }
    return out
  }
}

extension PruningPolicy {
  /// Every `--prune-ignore` pattern must match some prunable tensor (a typo would silently
  /// prune a tensor meant to stay dense).
  public static func checkIgnorePatterns(_ patterns: [String], names: [String]) throws {
    for pattern in patterns where !names.contains(where: { wildcardMatch(pattern, $0) }) {
      throw SettingError(
        "prune_ignore",
        "pattern '\(pattern.escapingControlCharacters)' matches no prunable tensor; they are: \(names.joined(separator: ", "))"
      )
    }
  }

  /// Weights one level prunes from `alive` survivors: `ceil(fraction * alive)`.
  static func pruneCount(_ fraction: Double, of alive: Int) -> Int {
    Int((fraction * Double(alive)).rounded(.up))
  }

  /// Checks a whole pruning schedule before any training: the remaining weights of every
  /// pruned tensor after each of `levels` levels, with exactly the counts
  /// ``MagnitudePruner/prune(_:mask:policy:level:)`` will use (`ceil(fraction * alive)`
  /// per level). Layerwise counts are exact, so an impossible schedule fails here with the
  /// line pruning would fail with, naming the last level that works. Under global pruning
  /// only the pooled count is known in advance (how it splits across tensors depends on
  /// the trained weights), so the check is that the pool keeps at least one weight per
  /// pooled tensor.
  public func validateSchedule<T: Scalar>(for net: Network<T>, levels: Int) throws {
    let fractions = try self.fractions(for: net)
    let sizes = net.prunableParameters.map { ($0.0, $0.1.value.count) }
    func fail(_ level: Int, _ what: String) -> PruningError {
      PruningError(
        "level \(level) would prune every remaining weight of \(what); use fewer levels (at most \(level - 1))"
      )
    }
    switch strategy {
    case .layerwise:
      // The earliest level at which any tensor would be emptied.
      var first: (level: Int, what: String)?
      for (n, size) in sizes where fractions[n]! > 0 {
        var alive = size
        for level in stride(from: 1, through: min(levels, first.map { $0.level - 1 } ?? levels), by: 1) {
          let k = Self.pruneCount(fractions[n]!, of: alive)
          if k >= alive {
            first = (level, "\(n) (\(alive) left)")
            break
          }
          alive -= k
        }
      }
      if let first { throw fail(first.level, first.what) }
    case .global:
      let pooled = sizes.filter { fractions[$0.0]! > 0 }
      var alive = pooled.reduce(0) { $0 + $1.1 }
      for level in stride(from: 1, through: levels, by: 1) {
        alive -= Self.pruneCount(fraction, of: alive)
        guard alive >= pooled.count else {
          throw fail(level, "some pooled tensor (\(alive) weights left for \(pooled.count) tensors)")
        }
      }
    }
  }
}

/// One level of magnitude pruning: scores `|w|` (``MagnitudeScore``), counts from the
/// policy, then the shared ``Selector``.
public enum MagnitudePruner {
  /// Prunes the weights of `net` (trained, under `mask`) and returns the next mask.
  /// `invert` keeps the smallest magnitudes instead (the inverted-scores ablation), with the
  /// same per-tensor counts (layerwise) or the same pooled count (global).
  public static func prune<T: Scalar>(
    _ net: Network<T>, mask: Mask, policy: PruningPolicy, level: Int, invert: Bool = false
  ) throws -> Mask {
    let fractions = try policy.fractions(for: net)
    var scores: Scores = [:]
    for (n, p) in net.prunableParameters {
      scores[n] = (0..<p.value.count).map { invert ? -Double(abs(p.value[$0])) : Double(abs(p.value[$0])) }
    }
    let pooled = mask.names.filter { fractions[$0]! > 0 }
    switch policy.strategy {
    case .layerwise:
      var counts: [String: Int] = [:]
      for n in pooled {
        let alive = mask.remaining(n)
        let k = PruningPolicy.pruneCount(fractions[n]!, of: alive)
        guard k < alive else {
          throw PruningError(
            "level \(level) would prune every remaining weight of \(n) (\(alive) left); use fewer levels"
          )
        }
        counts[n] = alive - k
      }
      return Selector.keepTop(scores, mask: mask, counts: counts)
    case .global:
      let alive = pooled.reduce(0) { $0 + mask.remaining($1) }
      let keep = alive - PruningPolicy.pruneCount(policy.fraction, of: alive)
      let next = try Selector.keepTopGlobal(scores, mask: mask, pooled: pooled, keep: keep)
      for n in pooled where next.remaining(n) == 0 {
        throw PruningError("level \(level) would prune every remaining weight of \(n); use fewer levels")
      }
      return next
    }
  }
}

/// Random masks for the random-pruning control.
public enum RandomPruner {
  /// `layerwise`: each tensor keeps its remaining count, positions shuffled.
  /// `global`: each weight of the pruned tensors survives independently so that the total
  /// count equals `like`'s (a uniformly random subset); never-pruned tensors stay dense.
  public static func like(_ like: Mask, layout: PruningPolicy.Strategy, seed: UInt64) -> Mask {
    var out = like
    switch layout {
    case .layerwise:
      for (t, n) in like.names.enumerated() {
        var r = RandomStream(seed: seed, purpose: "random-prune-layerwise", index: UInt64(t))
        let keep = like.remaining(n)
        let p = r.permutation(like.total(n))
        var v = [Float](repeating: 0, count: like.total(n))
        for i in p.prefix(keep) { v[i] = 1 }
        out.values[n] = v
      }
    case .global:
      // Dense tensors (all ones) in `like` are treated as never pruned.
      let pruned = like.names.filter { like.remaining($0) < like.total($0) }
      let total = pruned.reduce(0) { $0 + like.total($1) }
      let keep = pruned.reduce(0) { $0 + like.remaining($1) }
      var r = RandomStream(seed: seed, purpose: "random-prune-global")
      let p = r.permutation(total)
      var flat = [Float](repeating: 0, count: total)
      for i in p.prefix(keep) { flat[i] = 1 }
      var o = 0
      for n in pruned {
        out.values[n] = Array(flat[o..<(o + like.total(n))])
        o += like.total(n)
      }
    }
    return out
  }
}
