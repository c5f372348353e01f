#!/usr/bin/env bash
# The main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
swift run -c release --skip-build bench "$@"
