#!/usr/bin/env bash
# README command 2: set up, build, and run the whole test suite through ctest; then the
# sanitizer builds (launch/sanitize.sh): ASan+UBSan on the unit and single-node tests in
# build-asan/, ThreadSanitizer on the threaded single-node tests in build-tsan/.
# Prints the time each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash launch/setup.sh
ctest --test-dir build --output-on-failure --timeout 600 -j2
normal=$((SECONDS - start))
bash launch/sanitize.sh address
asan=$((SECONDS - start - normal))
bash launch/sanitize.sh thread
tsan=$((SECONDS - start - normal - asan))
echo "test.sh: normal build+ctest ${normal}s, ASan+UBSan build+tests ${asan}s," \
  "TSan build+tests ${tsan}s, total $((SECONDS - start))s"
