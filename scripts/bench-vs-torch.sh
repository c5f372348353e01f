#!/usr/bin/env bash
# Side-by-side timing for issue 16: each `bench` case against its PyTorch counterpart (../shared/peer/bench_torch.py),
# one process at a time, the same thread count for both (default 2). Run it on a quiet machine: wall times on a
# loaded one mostly measure the neighbours (PyTorch's OpenMP barriers most of all).
#
#   scripts/bench-vs-torch.sh                 # everything (~10 minutes)
#   RUNS=20 THREADS=2 scripts/bench-vs-torch.sh
#   PEER_PYTHON=~/.acmix-peer/bin/python      # where ../shared/peer/setup.sh installed PyTorch (the default)
#
# Prints one line per pair: our median / min ms, PyTorch's, the ratio of medians (and of minima) with the issue's
# target, and peak RSS of both; forward cases run REPEATS times to show our peak-RSS spread. Then the elementwise
# cases (time against a copy of the same bytes, target ≤ 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PEER_PYTHON:-$HOME/.acmix-peer/bin/python}
PEER=../shared/peer/bench_torch.py
RUNS=${RUNS:-10}
TRAIN_RUNS=${TRAIN_RUNS:-5}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
swift build -c release --product bench >/dev/null
BENCH=.build/release/bench

# ours | PyTorch arguments | target ratio (ours / PyTorch) | runs
pairs=(
  "resnet50_fwd_224|resnet50|0.8|$RUNS"
  "acmix_resnet50_fwd_224|resnet50|1.0|$RUNS"
  "swin_tiny_fwd_224|swin_tiny|-|$RUNS"
  "acmix_swin_tiny_fwd_224|swin_tiny|0.7|$RUNS"
  "resnet50_train_224_b2|resnet50 --train --batch 2|-|$TRAIN_RUNS"
  "acmix_resnet50_train_224_b2|resnet50 --train --batch 2|1.2|$TRAIN_RUNS"
  "acmix_swin_tiny_train_224_b2|swin_tiny --train --batch 2|0.8|$TRAIN_RUNS"
)
printf '%-30s %17s %17s %13s %6s %20s %9s\n' case "ours med/min ms" "torch med/min ms" "ratio med/min" target "ours RSS MB (spread)" "torch RSS"
for p in "${pairs[@]}"; do
  IFS='|' read -r case torch target runs <<<"$p"
  reps=1; [[ $case == *_fwd_* ]] && reps=$REPEATS
  ours=()
  for _ in $(seq "$reps"); do ours+=("$(BENCH_THREADS=$THREADS "$BENCH" --case "$case" --runs "$runs")"); done
  # shellcheck disable=SC2086
  theirs=$("$PY" "$PEER" $torch --threads "$THREADS" --runs "$runs")
  python3 - "$case" "$target" "$theirs" "${ours[@]}" <<'EOF'
import json, sys
case, target, theirs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ours = [json.loads(l) for l in sys.argv[4:]]
med = min(o["median_ms"] for o in ours); mn = min(o["min_ms"] for o in ours)
rss = [o["peak_rss_mb"] for o in ours]
print("%-30s %8.1f /%7.1f %8.1f /%7.1f %6.2f /%5.2f %6s %8.0f (%.0f-%.0f) %9.0f" % (
    case, med, mn, theirs["median_ms"], theirs["min_ms"], med / theirs["median_ms"], mn / theirs["min_ms"], target,
    sum(rss) / len(rss), min(rss), max(rss), theirs["peak_rss_mb"]))
EOF
done
echo
for case in layernorm_3136x96 softmax_3136x96 gelu_3136x96 sigmoid_3136x96 relu_3136x96 add_3136x96 mul_scalar_3136x96 batchnorm_eval_96x3136; do
  BENCH_THREADS=$THREADS "$BENCH" --case "$case" --runs "$RUNS" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
print("%-30s %8.3f ms per 20   time_vs_copy %5.2f   (target <= 2)" % (d["case"], d["median_ms"], d["time_vs_copy"]))'
done
