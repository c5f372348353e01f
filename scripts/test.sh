#!/usr/bin/env bash
# The test command: set-up, optimised build, XCTest only (numeric code needs -c release to finish in minutes).
# Without arguments it also runs the data-parallel tests: the same test binary as two Open MPI ranks, which check
# each other through MPI (--oversubscribe: more ranks than cores is fine; --bind-to none: ranks share the cores;
# run-as-root allowed for CI containers). Arguments (e.g. --filter X) go to `swift test` and skip that part.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --build-tests
swift test -c release --skip-build --disable-swift-testing "$@"
if [ $# -eq 0 ]; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ACMIX_MPI_TIMEOUT=120 \
    mpirun -np 2 --oversubscribe --bind-to none "$(swift build -c release --show-bin-path)/ACmixKitPackageTests.xctest" \
    DistributedTests.DataParallelTrainingTests
fi
