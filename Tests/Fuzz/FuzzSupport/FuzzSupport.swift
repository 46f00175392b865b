/// Shared by the libFuzzer targets (`make fuzz`): each target's `LLVMFuzzerTestOneInput`
/// feeds the input to a parser; a crash, a hang or a huge allocation is a finding, and so
/// is an error that is not one clear line.

/// The input as an array (libFuzzer may pass a null pointer for the empty input).
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
  guard let data, size > 0 else { return [] }
  return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Runs `body`; a thrown error must be one non-empty line (`fatalError` otherwise, which
/// libFuzzer reports as a crash with the input).
@discardableResult
public func oneLineErrors<R>(_ body: () throws -> R) -> R? {
  do {
    return try body()
  } catch {
    let text = "\(error)"
    if text.isEmpty || text.contains("\n") || text.contains("\r") {
      fatalError("error is not one line: \(text.debugDescription)")
    }
    return nil
  }
}

/// A property that must hold on every input.
public func require(_ ok: Bool, _ what: @autoclosure () -> String) {
  if !ok { fatalError("property violated: \(what())") }
}

#if canImport(Glibc)
  import Glibc
#endif

/// libFuzzer's driver (in the runtime that `-sanitize=fuzzer` links).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// Runs libFuzzer on `callback` with the command line's flags and corpus folders. Each
/// target's `main.swift` calls it: SwiftPM gives executables a Swift `main` of their own,
/// so libFuzzer's `main` is never linked and its driver is started from here.
public func runFuzzer(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
  var argc = CommandLine.argc
  var argv = CommandLine.unsafeArgv
  exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}
