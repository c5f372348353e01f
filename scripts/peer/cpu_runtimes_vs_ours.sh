#!/usr/bin/env bash
# Issue 21/22's side-by-side: ours (fp32, and bf16 / int8 where the CPU has them) against the runtimes a CPU user would pick
# instead (../shared/peer/cpu_runtimes.py: PyTorch fp32 / bf16 autocast, ONNX Runtime, OpenVINO fp32 and its default
# precision), for ResNet-50 224 b1 and RetinaNet R50 800×1333, plus ACmix-Swin-T forward against PyTorch's Swin-T.
# One process at a time, alternating, ROUNDS rounds, THREADS threads each. Run it on a quiet machine.
#
#   scripts/peer/cpu_runtimes_vs_ours.sh             # ROUNDS=2 RUNS=7 THREADS=2
#   PEER_PYTHON=~/.acmix-peer/bin/python             # where ../shared/peer/setup.sh installed the peers
#
# Prints the CPU (model name, bf16/AMX flags) first, then one JSON line per measurement.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PEER_PYTHON:-$HOME/.acmix-peer/bin/python}
ROUNDS=${ROUNDS:-2}; RUNS=${RUNS:-7}; THREADS=${THREADS:-2}
swift build -c release --product bench >/dev/null
BENCH=.build/release/bench
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'); flags: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16|amx_int8|avx512_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
precisions=(fp32)
if grep -q -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo; then precisions+=(bf16); fi
if grep -q -w -E 'avx512_vnni|avx_vnni' /proc/cpuinfo; then precisions+=(int8); fi
for round in $(seq "$ROUNDS"); do
  for pair in "resnet50_fwd_224|resnet50" "retinanet_r50_infer_800x1333|retina"; do
    ours=${pair%%|*}; model=${pair##*|}
    for p in "${precisions[@]}"; do ACMIX_NUM_THREADS=$THREADS "$BENCH" --case "$ours" --runs "$RUNS" --precision "$p"; done
    for rt in pt_fp32 pt_bf16 ort_fp32 ov_fp32 ov_default; do
      "$PY" ../shared/peer/cpu_runtimes.py "$model" "$rt" --runs "$RUNS" --threads "$THREADS" 2>/dev/null | tail -1 || true
    done
  done
  for p in "${precisions[@]}"; do
    [ "$p" = int8 ] && continue   # Swin's attention and norms stay float; its linear layers alone are not the case
    ACMIX_NUM_THREADS=$THREADS "$BENCH" --case acmix_swin_tiny_fwd_224 --runs "$RUNS" --precision "$p"
  done
  "$PY" ../shared/peer/bench_torch.py swin_tiny --runs "$RUNS" --threads "$THREADS" 2>/dev/null | tail -1 || true
  # Mixed-precision training against our own fp32 step (issue 21: ≤ 0.6× on AMX, ≤ 0.8× on AVX512-BF16 only).
  for a in "${precisions[@]}"; do
    [ "$a" = int8 ] && continue
    ACMIX_NUM_THREADS=$THREADS "$BENCH" --case acmix_resnet50_train_224_b2 --runs "$RUNS" --amp "$a"
  done
done
