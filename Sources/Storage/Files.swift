import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Errors for training runs and files: one line that names the file or the step.
public struct RunError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// Crash-safe file writes: write to a temporary file in the same folder, `fsync`, rename
/// over the target, `fsync` the folder. A reader sees the old file or the new one, never a
/// torn one; on any error the temporary file is removed and the old file is untouched.
public enum AtomicFile {
  public static func write(_ data: [UInt8], to path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    let tmp = "\(dir.isEmpty ? "." : dir)/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw RunError("cannot write \(path): \(String(cString: strerror(errno)))")
    }
    var ok = false
    defer {
      if !ok { unlink(tmp) }
    }
    var offset = 0
    while offset < data.count {
      let n = data.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + offset, $0.count - offset) }
      if n < 0 {
        let msg = String(cString: strerror(errno))
        close(fd)
        throw RunError("cannot write \(path): \(msg)")
      }
      offset += n
    }
    if fsync(fd) != 0 {
      let msg = String(cString: strerror(errno))
      close(fd)
      throw RunError("cannot write \(path): \(msg)")
    }
    close(fd)
    guard rename(tmp, path) == 0 else {
      throw RunError("cannot write \(path): \(String(cString: strerror(errno)))")
    }
    ok = true
    let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC)
    if dfd >= 0 {
      fsync(dfd)
      close(dfd)
    }
  }

  public static func write(_ text: String, to path: String) throws {
    try write(Array(text.utf8), to: path)
  }

  /// Whole file as bytes.
  public static func read(_ path: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else {
      throw RunError("cannot read \(path)")
    }
    return [UInt8](d)
  }
}

/// An exclusive advisory lock (`flock`) on a file; the kernel drops it when the process
/// dies, so a crash never leaves a stale lock.
public final class FileLock {
  private let fd: Int32
  /// Takes an exclusive `flock` on `path` (created if missing). Without `wait` a lock held
  /// elsewhere is an error naming `what`; with `wait` it blocks until the holder is done
  /// (phases of one experiment run by several processes: the second finds the phase
  /// finished and skips it). The kernel releases it when the process exits, even by a crash.
  public init(_ path: String, what: String, wait: Bool = false) throws {
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw RunError("cannot create lock \(path): \(String(cString: strerror(errno)))") }
    var status: Int32
    repeat { status = flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) } while status != 0 && errno == EINTR
    if status != 0 {
      close(fd)
      throw RunError("\(what) is in use by another lth process (lock \(path))")
    }
  }
  deinit {
    flock(fd, LOCK_UN)
    close(fd)
  }
}
