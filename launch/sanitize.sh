#!/usr/bin/env bash
# Builds fmps with a sanitizer and runs its test subset (README, "Sanitizers"):
#   address - AddressSanitizer + UndefinedBehaviorSanitizer (UB is fatal) + LeakSanitizer, in
#             build-asan/: every test except the MPI ones (ctest labels mpi and cluster:
#             Open MPI is not sanitizer-clean), i.e. the unit tests and the single-node trainer tests;
#   thread  - ThreadSanitizer, in build-tsan/: the threaded single-node tests (label threaded).
# Debug build at -O1 -g. Any sanitizer report fails the test that triggered it.
# Usage: launch/sanitize.sh address|thread [extra ctest arguments, e.g. -R trainer]
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: launch/sanitize.sh address|thread [ctest args]}
shift
supp="$PWD/tests/sanitizers"
case "$kind" in
  address)
    build=build-asan
    labels=(-LE "mpi|cluster")
    target=()
    export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:detect_stack_use_after_return=1"
    export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ;;
  thread)
    build=build-tsan
    # Less the quality tests through the binary that train 10^5-10^6 rows (planted FFM
    # against FM and Bayes, at 8 and at 39 fields; the default config on planted 39-field
    # data): they take minutes under TSan and run no thread code the other threaded tests do
    # not (the normal build and the ASan run keep them).
    labels=(-L threaded -LE "mpi|cluster" -E "PlantedFfmBeatsFm|DefaultsTrainTest")
    target=(--target threaded_tests)  # the other tests are not run under TSan
    export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1"
    ;;
  *)
    echo "launch/sanitize.sh: unknown sanitizer '$kind' (address or thread)" >&2
    exit 2
    ;;
esac
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DFMPS_SANITIZE="$kind" >/dev/null
cmake --build "$build" -j"$(nproc)" "${target[@]}"
ctest --test-dir "$build" --output-on-failure --timeout 600 -j2 "${labels[@]}" "$@"
