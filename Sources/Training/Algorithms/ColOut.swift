import Engine
import NN

/// ColOut (Composer `colout`): every training image loses random rows and columns, so it
/// shrinks (nothing is zero-filled): `int((1 - p_row) H)` rows and `int((1 - p_col) W)`
/// columns are kept, drawn as the first entries of a random permutation and kept in
/// order. `batch=true` draws once per batch (every image loses the same rows and
/// columns); `false` draws per image (the size is the same for all). Evaluation sees full
/// images. Needs a model that takes any image size (the ResNets).
public final class ColOut: TrainingCallback, AlgorithmKind {
  public static let algorithmName = "colout"
  public static let summary = "drop a fraction p_row of rows and p_col of columns of each training image"
  public static let parameters = [
    AlgorithmParameter("p_row", "0.15", "fraction of rows dropped, in [0, 1)"),
    AlgorithmParameter("p_col", "0.15", "fraction of columns dropped, in [0, 1)"),
    AlgorithmParameter("batch", "true", "the same rows and columns for the whole batch (false: per image)"),
  ]
  public static func make(_ p: AlgorithmSpec) throws -> any TrainingCallback {
    ColOut(
      pRow: try p.double("p_row", "in [0, 1)") { $0 >= 0 && $0 < 1 },
      pCol: try p.double("p_col", "in [0, 1)") { $0 >= 0 && $0 < 1 }, batch: try p.bool("batch"))
  }

  public let name = ColOut.algorithmName
  public let events: Set<TrainingEvent> = [.initialize, .batchLoaded]
  public let pRow, pCol: Double
  public let batch: Bool
  private let buffer = Tensor<Float>(zeros: [0])
  public init(pRow: Double, pCol: Double, batch: Bool) { (self.pRow, self.pCol, self.batch) = (pRow, pCol, batch) }

  /// The function form: `kept` of `size` indices, the first of a permutation, in order.
  public static func kept(_ size: Int, drop p: Double, random: inout RandomStream) -> [Int] {
    let k = max(1, Int((1 - p) * Double(size)))
    return random.permutation(size).prefix(k).sorted()
  }

  public func initialize(_ network: Network<Float>) throws -> Network<Float> {
    _ = try requireAnyImageSize(network, for: name)
    return network
  }

  public func handle(_ event: TrainingEvent, _ state: TrainingState) throws {
    guard event == .batchLoaded else { return }
    let (h, w) = (state.input.shape[2], state.input.shape[3])
    var r = state.random(for: self)
    let rows = Self.kept(h, drop: pRow, random: &r)
    let cols = Self.kept(w, drop: pCol, random: &r)
    if batch {
      gatherPixels(state.input, rows: rows, cols: cols, into: buffer)
    } else {
      let per = (0..<state.labels.count).map { _ in
        (Self.kept(h, drop: pRow, random: &r), Self.kept(w, drop: pCol, random: &r))
      }
      gatherPixels(state.input, rows: rows, cols: cols, perExample: { per[$0] }, into: buffer)
    }
    state.input = buffer
  }
}
