#!/usr/bin/env bash
# The main job on the embedded default: det-train trains RetinaNet + ACmix-ResNet on the built-in shapes dataset
# (generated on first use under data/shapes), evaluating with COCO mAP; extra arguments go to det-train.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product det-train
exec .build/release/det-train "$@"
