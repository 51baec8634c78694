#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (FMPS_FUZZ, ASan+UBSan) into build-fuzz/, builds
# their seed corpus there (tests/fuzz/make_corpus.sh) and runs each target for a fixed time.
# Prints, per target, the seconds run and the executions made (libFuzzer's final stats).
# A crashing input is saved as build-fuzz/artifacts/<target>/crash-*; add it to
# tests/fuzz/regressions/<target>/ once fixed (tests/fuzz/fuzz_regressions_test.cc replays them).
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, all targets)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then targets=(libsvm libffm criteo csv config wire model shard); fi
build=build-fuzz

cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DFMPS_FUZZ=ON \
  >/dev/null
cmake --build "$build" -j"$(nproc)"
bash tests/fuzz/make_corpus.sh "$build/corpus/seeds" "$build/tests/fuzz/wire_seeds" \
  "$build/tests/fuzz/file_seeds"

failed=0
summary=()
for t in "${targets[@]}"; do
  work="$build/corpus/work/$t"  # inputs libFuzzer finds (kept between runs)
  art="$build/artifacts/$t"
  log="$build/logs/$t.log"
  mkdir -p "$work" "$art" "$(dirname "$log")"
  echo "fuzz: running $t for ${seconds}s (log: $log)" >&2
  start=$SECONDS
  rc=0
  "$build/tests/fuzz/${t}_fuzz" -max_total_time="$seconds" -print_final_stats=1 -timeout=30 \
    -max_len=16384 -artifact_prefix="$art/" "$work" "$build/corpus/seeds/$t" >"$log" 2>&1 || rc=$?
  end=$SECONDS
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  line=$(printf '%-8s %6d s  %10s executions' "$t" "$((end - start))" "${execs:-?}")
  if [ "$rc" -ne 0 ]; then
    failed=1
    line+="  FAILED (exit $rc): $(ls -t "$art" | head -n 1 | sed "s|^|$art/|")"
    grep -m 3 -E "ERROR|fuzz check failed|runtime error" "$log" >&2 || true
  fi
  summary+=("$line")
done
printf '%s\n' "${summary[@]}"
exit "$failed"
