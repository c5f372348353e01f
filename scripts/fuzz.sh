#!/usr/bin/env bash
# Fuzzes the parsers that read outside data, for a bounded time each, with libFuzzer under AddressSanitizer:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 30 seconds; every target)
#
# Targets (Fuzz/<target>.swift, one LLVMFuzzerTestOneInput each):
#   coco          COCO instances JSON: COCODataset.load, then COCOeval of the file against itself (bbox and segm)
#   coco_results  COCO results JSON: loadRes against a fixed ground truth, then COCOeval
#   safetensors   SafeTensors.read
#   image         decodeImage and decodeLabelMap (PNG and JPEG through the libpng/libjpeg shims)
#   config        JSON.parse (json-c) and Config.load with a --set override, validated against a small schema
#
# The package's Engine, NN, Config, Data and Evaluation modules and the C shims are compiled here with
# -sanitize=address (and coverage for libFuzzer, except Engine's numeric kernels), with Swift's bounds and overflow
# checks ON (-O, not the release build's -Ounchecked), so an overflow or out-of-bounds access is a crash, not a
# silently wrong value. Everything lives in .build-fuzz/ (ignored by git): objects, binaries, the growing corpora
# (corpus/<target>, seeded from Fuzz/seeds/<target>) and crashing inputs (artifacts/<target>/).
#
# A target fails on a crash, an ASan report, a timeout (10 s for one input), more than 2 GiB of memory, a refusal
# that is not a one-line KitError naming its source, or a broken round trip. The script runs every target and exits
# 1 if any failed, printing where the crashing input was saved; rerun one input with
#   .build-fuzz/bin/fuzz-<target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_PER_TARGET=${1:-30}
[[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2; }
shift || true
ALL_TARGETS=(coco coco_results safetensors image config)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [ -f "Fuzz/$t.swift" ] || { echo "fuzz.sh: unknown target '$t' (known: ${ALL_TARGETS[*]})" >&2; exit 2; }
done

B=$ROOT/.build-fuzz
mkdir -p "$B/obj" "$B/modules" "$B/include" "$B/bin" "$B/logs"
SWIFTC=$(command -v swiftc)
TOOLBIN=$(dirname "$(readlink -f "$SWIFTC")")
CLANG=$TOOLBIN/clang
CLANGXX=$TOOLBIN/clang++
[ -x "$CLANG" ] || CLANG=clang
[ -x "$CLANGXX" ] || CLANGXX=clang++

# Module maps for the C targets SwiftPM would generate (the system ones are used as they are).
for m in CImageCodecs CSimdJSON; do
  mkdir -p "$B/include/$m"
  printf 'module %s {\n    header "%s"\n    export *\n}\n' "$m" "$ROOT/Sources/$m/include/$m.h" > "$B/include/$m/module.modulemap"
done
MODULEMAPS=(-Xcc "-fmodule-map-file=$ROOT/Sources/CBLAS/module.modulemap"
            -Xcc "-fmodule-map-file=$ROOT/Sources/CDNNL/module.modulemap"
            -Xcc "-fmodule-map-file=$ROOT/Sources/CJSONC/module.modulemap"
            -Xcc "-fmodule-map-file=$B/include/CImageCodecs/module.modulemap"
            -Xcc "-fmodule-map-file=$B/include/CSimdJSON/module.modulemap")
LIBS=(-lopenblas -ldnnl -ljson-c -lsimdjson -lstdc++ -lpng16 -ljpeg)

# stale OUTPUT INPUT...: whether OUTPUT is missing or older than any input file (or any file under an input folder).
stale() {
  local out=$1; shift
  [ -e "$out" ] || return 0
  [ -n "$(find "$@" -newer "$out" -type f 2>/dev/null | head -1)" ]
}

echo "== building (logs in .build-fuzz/logs)"
rebuilt=0
c_obj() {  # name source compiler flags...
  local name=$1 src=$2 cc=$3; shift 3
  if stale "$B/obj/$name.o" "$src" "$ROOT/Sources/$name/include" "$0"; then
    echo "   $name (C)"
    "$cc" -fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer -g -O1 "$@" -I "Sources/$name/include" \
      -c "$src" -o "$B/obj/$name.o" > "$B/logs/$name.log" 2>&1 || { cat "$B/logs/$name.log"; exit 1; }
  fi
}
c_obj CImageCodecs Sources/CImageCodecs/shim.c "$CLANG"
c_obj CSimdJSON Sources/CSimdJSON/shim.cpp "$CLANGXX" -std=c++17

# Swift modules in dependency order (Package.swift): a module is rebuilt when its sources or one below it changed.
swift_module() {  # name sanitizers
  local name=$1 sanitize=$2
  if [ $rebuilt = 1 ] || stale "$B/obj/$name.o" "$ROOT/Sources/$name" "$0"; then
    rebuilt=1
    echo "   $name"
    local srcs=()
    while IFS= read -r f; do srcs+=("$f"); done < <(find "Sources/$name" -name '*.swift' | sort)
    "$SWIFTC" -module-name "$name" -parse-as-library -swift-version 5 -O -g -wmo -sanitize="$sanitize" \
      -I "$B/modules" "${MODULEMAPS[@]}" -emit-module -emit-module-path "$B/modules/$name.swiftmodule" \
      -c "${srcs[@]}" -o "$B/obj/$name.o" > "$B/logs/$name.log" 2>&1 || { grep -E "error" "$B/logs/$name.log" | head -20; exit 1; }
    touch "$B/obj/$name.o"  # swiftc leaves an unchanged object untouched: mark it up to date
  fi
}
swift_module Engine address
swift_module NN fuzzer,address
swift_module Config fuzzer,address
swift_module PixelKernels address
swift_module Data fuzzer,address
swift_module Evaluation fuzzer,address

OBJS=("$B"/obj/{Engine,NN,Config,PixelKernels,Data,Evaluation,CImageCodecs,CSimdJSON}.o)
for t in "${TARGETS[@]}"; do
  if stale "$B/bin/fuzz-$t" Fuzz/Support.swift "Fuzz/$t.swift" "${OBJS[@]}"; then
    echo "   fuzz-$t"
    "$SWIFTC" -module-name "fuzz_$t" -parse-as-library -swift-version 5 -O -g -sanitize=fuzzer,address \
      -I "$B/modules" "${MODULEMAPS[@]}" Fuzz/Support.swift "Fuzz/$t.swift" "${OBJS[@]}" "${LIBS[@]}" \
      -o "$B/bin/fuzz-$t" > "$B/logs/fuzz-$t.log" 2>&1 || { grep -E "error" "$B/logs/fuzz-$t.log" | head -20; exit 1; }
  fi
done

# Per target: the longest input, a token dictionary.
max_len() { case $1 in coco) echo 16384 ;; coco_results) echo 8192 ;; image) echo 16384 ;; *) echo 4096 ;; esac; }
dict() { case $1 in coco|coco_results|config) echo "Fuzz/dicts/json.dict" ;; safetensors) echo "Fuzz/dicts/safetensors.dict" ;; *) echo "" ;; esac; }

# Leak checking is off: LeakSanitizer cannot see pointers Swift keeps in enum payloads with spare bits set (indirect
# enums such as ConfigSchema, Data's representation), so it reports live objects as leaks. Swift's own crash
# backtracer is off too: it fights ASan over the crash and can hang instead of exiting.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:symbolize=1:detect_stack_use_after_return=1}
export SWIFT_BACKTRACE=enable=no

failed=()
printf "\n%-13s %9s %12s %8s %8s  %s\n" target seconds executions cov corpus result
for t in "${TARGETS[@]}"; do
  corpus=$B/corpus/$t artifacts=$B/artifacts/$t log=$B/logs/run-$t.log
  mkdir -p "$corpus" "$artifacts"
  d=$(dict "$t")
  set +e
  # The outer timeout is a backstop: libFuzzer stops itself after -max_total_time.
  timeout --signal=KILL $((SECONDS_PER_TARGET + 300)) \
  "$B/bin/fuzz-$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
    -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$artifacts/" ${d:+-dict="$d"} "$corpus" "Fuzz/seeds/$t" \
    > "$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  units=$(find "$corpus" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    printf "%-13s %9s %12s %8s %8s  %s\n" "$t" "$SECONDS_PER_TARGET" "${execs:-?}" "${cov:-?}" "$units" ok
  else
    failed+=("$t")
    printf "%-13s %9s %12s %8s %8s  %s\n" "$t" "$SECONDS_PER_TARGET" "${execs:-?}" "${cov:-?}" "$units" "FAILED (exit $rc)"
    grep -E "^==[0-9]+==ERROR|Fatal error|SUMMARY|ALARM|out-of-memory|deadly signal" "$log" | head -5 | sed 's/^/      /'
    unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "      crashing input: ${unit:-see $log}"
    echo "      log: $log"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
