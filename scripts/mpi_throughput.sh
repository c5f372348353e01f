#!/usr/bin/env bash
# Data-parallel throughput on this machine: det-train's default (RetinaNet, ACmix-ResNet-26 width 16, shapes 192x192,
# samples_per_gpu 4) as 1 process x all cores against `mpirun -np RANKS` x 1 thread each, same iterations, no
# evaluation or checkpoints inside the timed loop. Run it on a quiet machine: other work skews every figure.
#
#   scripts/mpi_throughput.sh [ITERATIONS] [RANKS]        (defaults: 60, the number of cores)
#
# Prints one line per run (iterations/s, images/s, gradient allreduce ms/iteration and MB, peak RSS per rank) and
# the ratios the issue asks for: RANKS ranks x 1 thread against 1 process x RANKS threads, in iterations per second
# (each rank keeps samples_per_gpu, so an iteration of the job holds RANKS times the images) and in images per second;
# a third run keeps the global batch (samples_per_gpu 4 / RANKS per rank) for a like-for-like step.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-60}
ranks=${2:-$(nproc)}
scripts/setup.sh
swift build -c release --product det-train >/dev/null
swift build -c release --product make-shapes >/dev/null
bin=$(swift build -c release --show-bin-path)
tmp=$(mktemp -d /tmp/mpi-throughput.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# 4 validation images: the evaluation at the end of the schedule, inside the timed loop, then takes well under 1 %.
"$bin/make-shapes" --out "$tmp/shapes" --size 192 --train 300 --val 4 >/dev/null
common=(--set "data.shapes.root=$tmp/shapes" --set "data.shapes.val_count=4" --set "runner.max_iters=$iters" --set "evaluation.interval=1000000"
        --set "checkpoint_config.interval=1000000" --set "log_config.interval=1000000")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
mpi=(mpirun -np "$ranks" --oversubscribe --bind-to none -x ACMIX_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1)

# run NAME IMAGES_PER_ITERATION COMMAND...: prints "NAME it/s images/s" and the summary's extras.
run() {
  local name=$1 images=$2; shift 2
  local line
  line=$("$@" 2>"$tmp/$name.err" | grep '^done:' || true)
  if [ -z "$line" ]; then echo "$name: failed"; tail -3 "$tmp/$name.err"; exit 1; fi
  local secs
  secs=$(sed -E 's/^done: [0-9]+ iterations in ([0-9.]+) s.*/\1/' <<<"$line")
  local its
  its=$(awk -v n="$iters" -v s="$secs" 'BEGIN { printf "%.3f", n / s }')
  echo "$its" >"$tmp/$name.its"
  printf '%-28s %7s it/s  %7.2f images/s  %s\n' "$name" "$its" "$(awk -v r="$its" -v b="$images" 'BEGIN { print r * b }')" \
    "$(sed -E 's/^done: [^;]*;? ?//; s/bbox_mAP[^;]*;? ?//' <<<"$line")"
}

single=1x$ranks-threads
run "$single" 4 env ACMIX_NUM_THREADS="$ranks" "$bin/det-train" "${common[@]}" --work-dir "$tmp/w1"
run "1x1-thread" 4 env ACMIX_NUM_THREADS=1 "$bin/det-train" "${common[@]}" --work-dir "$tmp/w0"
run "${ranks}x1-thread" $((4 * ranks)) "${mpi[@]}" "$bin/det-train" "${common[@]}" --work-dir "$tmp/w2"
per=$((4 / ranks > 0 ? 4 / ranks : 1))
run "${ranks}x1-thread-same-batch" $((per * ranks)) "${mpi[@]}" "$bin/det-train" "${common[@]}" \
  --set "data.samples_per_gpu=$per" --work-dir "$tmp/w3"

a=$(cat "$tmp/$single.its"); b=$(cat "$tmp/${ranks}x1-thread.its"); c=$(cat "$tmp/${ranks}x1-thread-same-batch.its")
awk -v a="$a" -v b="$b" -v c="$c" -v r="$ranks" -v p="$per" 'BEGIN {
  printf "ratio, %d ranks x 1 thread (samples_per_gpu 4) / 1 process x %d threads: %.3f in it/s, %.3f in images/s\n", r, r, b / a, b * r / a
  printf "ratio, same global batch (%d per rank) / 1 process: %.3f in it/s (= images/s)\n", p, c / a
}'
