#!/usr/bin/env bash
# The test command: set-up, optimised build, XCTest only (numeric code needs -c release to finish in minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --build-tests
swift test -c release --skip-build --disable-swift-testing "$@"
