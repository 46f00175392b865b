import Engine

/// BlurPool's anti-aliasing filter as a layer (``Engine/Blur``: the 3x3 binomial filter,
/// zero padding 1, stride `stride`), with no parameters. ``Conv2d/preBlur`` and
/// ``MaxPool2d/postBlur`` hold one when the `blurpool` surgery applied; it reads any
/// layout (blocked input is converted to NCHW) and hands its gradient back in that layout.
public final class Blur2d<T: Scalar>: Module<T> {
  public let stride: Int
  private var inputShape: [Int] = []
  private let output = Tensor<T>(zeros: [0])
  private let gradient = Tensor<T>(zeros: [0])
  private let scratch = Tensor<T>(zeros: [0])
  private let layout = LayoutAdapter<T>()
  public init(stride: Int) { self.stride = stride }
  public override func forward(_ input: Tensor<T>) throws -> Tensor<T> {
    let x = layout.input(input)
    inputShape = x.shape
    try Blur.forward(x: x, stride: stride, y: output)
    return output
  }
  /// `dL/dx` for `dy = dL/dy` (never nil: the filter has no parameters, its only use is
  /// the input gradient).
  public func backward(_ dy: Tensor<T>) -> Tensor<T> {
    var plain = dy
    if dy.layout != .nchw {
      Layouts.convert(dy, to: .nchw, into: scratch)
      plain = scratch
    }
    Blur.backward(inputShape: inputShape, dy: plain, stride: stride, dx: gradient)
    return layout.gradient(gradient)
  }
  public override func backward(_ dy: Tensor<T>, needInputGradient: Bool) -> Tensor<T>? {
    needInputGradient ? backward(dy) : nil
  }
}
