import Synchronization

/// Errors raised by the engine for bad input: they name what was expected.
public struct EngineError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// A setting out of its range, named by its hyperparameter (`validation_size`), not by a
/// command-line flag: the modules below the CLI do not know flags. `lth` words it as its
/// flag (``flag``: `--validation-size must be in ...`); a library user reads
/// ``description`` (`validation size must be in ...`).
public struct SettingError: Error, CustomStringConvertible, Sendable {
  /// The hyperparameter's key, snake case.
  public let setting: String
  /// What is wrong, e.g. `must be in (0, 1], got 2.0`.
  public let problem: String
  public init(_ setting: String, _ problem: String) {
    self.setting = setting
    self.problem = problem
  }
  public var description: String { setting.replacingOccurrences(of: "_", with: " ") + " " + problem }
  /// The command-line flag of the setting: `--` and the key with hyphens.
  public var flag: String { "--" + setting.replacingOccurrences(of: "_", with: "-") }
}

extension String {
  /// The string with control characters and line separators escaped as in a Swift literal
  /// (`\n`, `\r`, `\t`, `\u{1b}`), so that text from a file or the command line keeps an
  /// error message on one line.
  public var escapingControlCharacters: String {
    var out = ""
    for u in unicodeScalars {
      switch u {
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      default:
        switch u.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: out += "\\u{\(String(u.value, radix: 16))}"
        default: out.unicodeScalars.append(u)
        }
      }
    }
    return out
  }
}

let tensorAllocatedBytes = Atomic<Int>(0)
let tensorAllocations = Atomic<Int>(0)
/// Bytes currently held by all tensors. `lth bench` reports it.
public var tensorBytes: Int { tensorAllocatedBytes.load(ordering: .relaxed) }
/// Number of tensor buffer allocations so far (creations and growing resizes): constant
/// across steady-state training steps, which reuse their planned buffers.
public var tensorAllocationCount: Int { tensorAllocations.load(ordering: .relaxed) }

/// A contiguous, row-major tensor of `Float` or `Double`.
///
/// `Tensor` is a reference type that owns its buffer: layers keep their activation and
/// gradient tensors between steps and refill them, so a training step allocates nothing
/// once the shapes are known. Element `[i0, i1, ..., ik]` lives at
/// `((i0 * s1 + i1) * s2 + ...) + ik` (C order). Images are NCHW; convolution weights OIHW.
public final class Tensor<T: Scalar>: @unchecked Sendable {
  /// Sizes of each dimension.
  public private(set) var shape: [Int]
  /// Number of elements (product of `shape`).
  public private(set) var count: Int
  /// Start of the elements: the tensor's own buffer (capacity may exceed `count` after a
  /// shrinking reshape), or another tensor's while this one is a ``view(of:shape:)``.
  public private(set) var data: UnsafeMutablePointer<T>
  /// The tensor's own buffer.
  private var storage: UnsafeMutablePointer<T>
  private var capacity: Int
  /// The tensor whose elements a view shows (kept alive by the view).
  private var viewed: Tensor<T>?
  /// Memory order of a 4-D activation (``TensorLayout``); `.nchw` unless a kernel that
  /// writes blocked output (oneDNN convolution) says otherwise.
  public var layout = TensorLayout.nchw

  /// A zero-filled tensor of the given shape.
  public init(zeros shape: [Int]) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    self.shape = shape
    self.count = shape.reduce(1, *)
    self.capacity = max(count, 1)
    self.storage = Self.allocate(capacity)
    self.data = storage
    data.initialize(repeating: 0, count: capacity)
    tensorAllocatedBytes.wrappingAdd(capacity * MemoryLayout<T>.stride, ordering: .relaxed)
    tensorAllocations.wrappingAdd(1, ordering: .relaxed)
  }

  /// A tensor holding `values` with the given shape (`values.count` must match).
  public convenience init(_ values: [T], shape: [Int]) {
    precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
    self.init(zeros: shape)
    values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
  }

  /// A tensor filled with `value`.
  public convenience init(repeating value: T, shape: [Int]) {
    self.init(zeros: shape)
    data.update(repeating: value, count: count)
  }

  /// A copy of another tensor (possibly of the other precision).
  public convenience init<U: Scalar>(converting other: Tensor<U>) {
    self.init(zeros: other.shape)
    for i in 0..<count { data[i] = T(other.data[i]) }
  }

  /// 64-byte aligned storage (a cache line; what oneDNN's and OpenBLAS's vector kernels like).
  private static func allocate(_ n: Int) -> UnsafeMutablePointer<T> {
    UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<T>.stride, alignment: 64)
      .bindMemory(to: T.self, capacity: n)
  }

  deinit {
    tensorAllocatedBytes.wrappingSubtract(capacity * MemoryLayout<T>.stride, ordering: .relaxed)
    storage.deallocate()
  }

  /// Makes this tensor show `source`'s elements under another shape of the same size, without
  /// copying (`flatten`): it reads what `source` holds until the next ``resize(_:)`` (or
  /// anything that writes through it: ``copy(from:)``), which gives it its own buffer back.
  /// Only for reading: nothing may write into a view.
  public func view(of source: Tensor<T>, shape newShape: [Int]) {
    precondition(newShape.reduce(1, *) == source.count, "cannot view \(source.shape) as \(newShape)")
    viewed = source
    data = source.data
    shape = newShape
    count = source.count
    layout = source.layout
  }

  /// Makes this tensor show examples `range` of `source` (its first dimension) without
  /// copying, in `source`'s layout (any layout whose first dimension is outermost: NCHW and
  /// blocked both are). Only for reading, as ``view(of:shape:)``.
  public func view(of source: Tensor<T>, examples range: Range<Int>) {
    let per = source.count / max(source.shape[0], 1)
    viewed = source
    data = source.data + range.lowerBound * per
    shape = [range.count] + source.shape.dropFirst()
    count = range.count * per
    layout = source.layout
  }

  /// Changes the shape, reallocating only when the new element count exceeds the capacity.
  /// Contents are unspecified after a reallocation.
  /// The layout becomes `.nchw`: kernels that write blocked output set it afterwards.
  public func resize(_ newShape: [Int]) {
    layout = .nchw
    let wasView = viewed != nil
    if wasView {
      viewed = nil
      data = storage
    }
    if newShape == shape && !wasView { return }
    let n = newShape.reduce(1, *)
    if n > capacity {
      storage.deallocate()
      tensorAllocatedBytes.wrappingAdd((n - capacity) * MemoryLayout<T>.stride, ordering: .relaxed)
      tensorAllocations.wrappingAdd(1, ordering: .relaxed)
      capacity = n
      storage = Self.allocate(n)
      storage.initialize(repeating: 0, count: n)
      data = storage
    }
    shape = newShape
    count = n
  }

  /// Reinterprets the same elements with another shape of equal size.
  public func reshape(_ newShape: [Int]) {
    precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
    shape = newShape
  }

  /// The elements as an array (a copy).
  public var array: [T] { Array(UnsafeBufferPointer(start: data, count: count)) }
  /// Buffer view over the elements.
  public var buffer: UnsafeMutableBufferPointer<T> { .init(start: data, count: count) }

  public subscript(_ i: Int) -> T {
    get { data[i] }
    set { data[i] = newValue }
  }

  /// Sets every element to zero.
  public func zero() { data.update(repeating: 0, count: count) }
  /// Copies the elements of `other`, adopting its shape.
  public func copy(from other: Tensor<T>) {
    resize(other.shape)
    layout = other.layout
    data.update(from: other.data, count: count)
  }
  /// A deep copy.
  public func clone() -> Tensor<T> {
    let t = Tensor(zeros: shape)
    t.data.update(from: data, count: count)
    return t
  }

  /// Throws unless the shape equals `expected`, naming `what` in the message.
  public func expectShape(_ expected: [Int], _ what: String) throws {
    if shape != expected {
      throw EngineError("\(what): expected shape \(expected), got \(shape)")
    }
  }
}
