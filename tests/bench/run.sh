#!/usr/bin/env bash
# fmps benchmark suite: the one entry command.
#
#   bash tests/bench/run.sh [--quick] [--ffm-only]
#
# Builds Release into build/ (launch/setup.sh, which also builds build/tests/bench/fmps_bench
# when Google Benchmark is installed), generates Criteo-shaped planted-FM data with
# `fmps synth` (39 fields, k = 8; 2*10^6 training rows, or 2*10^5 with --quick; kept in
# runs/bench/data and reused while the parameters match), runs every case 3 times and
# prints a table of medians (min-max) with the targets; the same table is written as JSON
# to runs/bench/bench.json. Cases: fmps_bench micro-benchmarks (FM kernel, ParamStore,
# readers), `fmps train` one epoch single-node 1+1, MPI 1+1, 1+2 and 1+3 (rows/s, peak RSS
# per rank, test logloss), `fmps predict` rows/s with --threads 1 and the default, the
# scaling case (MPI 1 server + 1, 2, 3 workers, from each rank's CPU time) and the capacity
# model's inputs and cluster size (README "Capacity model").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
quick=""
ffm_only=""  # --ffm-only: just the FFM cases (tests/bench/ffm_bench.py)
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    --ffm-only) ffm_only="--ffm-only" ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$a' (usage: bash tests/bench/run.sh [--quick])" >&2; exit 2 ;;
  esac
done

if [ ! -x /usr/bin/time ]; then
  echo "bench: installing GNU time (for peak RSS)" >&2
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq time
fi
if ! dpkg-query -W -f='${Status}' libbenchmark-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "bench: installing libbenchmark-dev (Google Benchmark)" >&2
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libbenchmark-dev
fi

bash launch/setup.sh
python3 "$repo/tests/bench/bench.py" --repo "$repo" $quick $ffm_only

# The Python package's cases (README "Python package" there), when the module was built.
if compgen -G "$repo/build/python/fmps/_core*.so" >/dev/null; then
  rows=1000000; [ -n "$quick" ] && rows=200000
  PYTHONPATH="$repo/build/python" FMPS_BINARY="$repo/build/fmps" \
    /usr/bin/python3 "$repo/tests/bench/python_bench.py" --rows "$rows" 2>/dev/null
fi
