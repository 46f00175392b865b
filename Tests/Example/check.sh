#!/usr/bin/env bash
# `make example`: builds the README's Swift example (the block between the
# SWIFT-EXAMPLE markers) as a package of its own that depends on LotteryKit *by version*
# (a temporary clone of this checkout's HEAD, tagged with LotteryKit's version), runs it
# and checks its results table. SwiftPM refuses unsafe flags in packages depended on by
# version below tools-version 6.2: this is the check that LotteryKit stays usable so.
set -euo pipefail
SWIFT=${SWIFT:-swift}
repo=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/.*static let version = "\([0-9.]*\)".*/\1/p' "$repo/Sources/Engine/Engine.swift" | head -1)
[ -n "$version" ] || { echo "make example: cannot read LotteryKit's version from Sources/Engine/Engine.swift"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q "$repo" "$tmp/LotteryKit"
git -C "$tmp/LotteryKit" -c user.name=check -c user.email=check@localhost tag "$version"
mkdir -p "$tmp/Example/Sources/Example"
sed -n '/<!-- SWIFT-EXAMPLE-START -->/,/<!-- SWIFT-EXAMPLE-END -->/p' "$repo/README.md" \
  | sed '1d;$d' | sed '/^```/d' > "$tmp/Example/Sources/Example/main.swift"
grep -q "import LotteryKit" "$tmp/Example/Sources/Example/main.swift" || { echo "make example: no example block in README.md"; exit 1; }
cat > "$tmp/Example/Package.swift" <<PKG
// swift-tools-version: 6.2
import PackageDescription
let package = Package(
  name: "Example",
  dependencies: [.package(url: "file://$tmp/LotteryKit", from: "$version")],
  targets: [.executableTarget(name: "Example", dependencies: [.product(name: "LotteryKit", package: "LotteryKit")])]
)
PKG
cd "$tmp/Example"
$SWIFT build -c release 2>&1 | tail -n 3
out=$(cd "$tmp" && "$tmp/Example/.build/release/Example")
echo "$out"
# Four levels (0-3), each with a test accuracy.
rows=$(echo "$out" | grep -cE '^[0-3] +[0-9.]+ ')
[ "$rows" -eq 4 ] || { echo "make example: expected 4 level rows, got $rows"; exit 1; }
echo "make example: OK (LotteryKit $version as a versioned dependency)"
