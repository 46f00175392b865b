import ArgumentParser
import Datasets
import Engine
import Foundation
import NN
import Training

/// `lth`: the LotteryKit command-line tool (a thin layer over the library).
struct LTH: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "lth",
    abstract: "LotteryKit: lottery tickets, iterative magnitude pruning and sparse training in Swift.",
    version: LotteryKitVersion.version,
    subcommands: [
      Train.self, Lottery.self, PruneInit.self, Branch.self, LMC.self, Interpolate.self, ResultsCommand.self,
      ReportCommand.self, Scaling.self, PlanCommand.self, RunCommand.self, SubmitCommand.self,
      StatusCommand.self, Reproduce.self, Speedup.self,
      Models.self, Bench.self,
      Logits.self, Export.self,
    ])
}

/// Prints `error: message` on one line and exits non-zero (no stack trace).
func fail(_ message: String) -> Never {
  FileHandle.standardError.write(("error: " + message + "\n").data(using: .utf8)!)
  exit(1)
}

/// Runs a command body; any error becomes one line on stderr and exit status 1.
func runOrFail(_ body: () throws -> Void) {
  do { try body() } catch let stop as Stopped {
    // Stopped by SIGTERM with a checkpoint written: one line, and the status of a process
    // ended by SIGTERM (128 + 15), so a scheduler sees a preempted task, not a failure.
    FileHandle.standardError.write(("error: \(stop)\n").data(using: .utf8)!)
    exit(143)
  } catch let e as SettingError {
    fail("\(e.flag) \(e.problem)")  // the library names settings; the CLI names its flags
  } catch { fail("\(error)") }
}

/// Peak resident set size of this process in MiB (VmHWM).
func peakRSSMiB() -> Double {
  guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
  for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
    let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
    return kb / 1024
  }
  return 0
}


// A file-size limit (ulimit -f) then makes writes fail with an error instead of killing us.
signal(SIGXFSZ, SIG_IGN)
do {
  var command = try LTH.parseAsRoot()
  try command.run()
} catch {
  // Help and version requests print as usual; every other error is one line.
  if LTH.exitCode(for: error) == .success { LTH.exit(withError: error) }
  let first = LTH.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
  fail(first.replacingOccurrences(of: "Error: ", with: "") + " (see `lth help`)")
}
