#!/usr/bin/env bash
# The test command: set-up, optimised build, XCTest only (numeric code needs -c release to finish in minutes).
# Without arguments it also runs the data-parallel tests: the same test binary as two Open MPI ranks, which check
# each other through MPI (--oversubscribe: more ranks than cores is fine; --bind-to none: ranks share the cores;
# run-as-root allowed for CI containers), first, so that the last line printed is the whole suite's count. Arguments
# (e.g. --filter X) go to `swift test` and skip that part.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --build-tests
# The example app (a package depending on ACmixKit by path); KitTests runs it on a checkpoint det-train trains.
swift build -c release --package-path Examples/DetectFolder
# The library's DocC catalog (overview, two tutorials) must build without a warning.
swift package --disable-sandbox generate-documentation --target ACmixKit --warnings-as-errors
# The tests' work dirs, shapes folders and checkpoints (about 1 GB a run) go to a scratch folder removed at exit.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/acmix-tests.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch/"
if [ $# -eq 0 ]; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ACMIX_MPI_TIMEOUT=120 \
    mpirun -np 2 --oversubscribe --bind-to none "$(swift build -c release --show-bin-path)/ACmixKitPackageTests.xctest" \
    DistributedTests.DataParallelTrainingTests
fi
# Last, so that the runner's final line counts the whole suite.
swift test -c release --skip-build --disable-swift-testing "$@"
