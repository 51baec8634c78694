#!/usr/bin/env bash
# fmps training-quality sweep: the one entry command.
#
#   bash tests/quality/run.sh [--quick] [--mpi] [quality.py options...]
#
# Builds Release into build/ (launch/setup.sh), then trains single-node on each public data
# set of ../shared/data (a9a, agaricus, w6a, heart_scale, the xLearn Criteo sample, the raw
# Criteo TSV sample, MovieLens ratings with squared loss, and `synth`: planted-FM data from
# fmps synth, whose ref column is its Bayes logloss and AUC) over the grid sgd/adagrad/ftrl at
# lr 0.01, 0.05, 0.1, 0.2 and adam at lr 0.001, 0.01, each at batch_size 1, 32, 1024, 4096
# (--quick: 32 and 1024, half the epochs), plus once with the default config. Prints per set
# the default's metric, the best of the sweep (each run at its best test epoch), the default's
# gap to it, the divergence count and the xLearn reference; the same as JSON in
# runs/quality/quality-TAG.json. Sets without a test file are split (every 5th row from row 4
# is test) into runs/quality/data. Not a pass/fail test. Options: see quality.py --help.
# Then the FFM case (ffm_quality.py: planted field-aware data and the xLearn libffm sample,
# model.kind ffm against fm and the Bayes logloss; --quick: two learning rates, 0.02 and 0.05).
# --mpi: only the sweep, on a9a and w6a, each run under mpirun -np 3 (1 server + 2 workers).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
args=()
ffm_grid=full
mpi=0
for a in "$@"; do
  case "$a" in
    --quick) args+=(--grid quick --epochs-scale 0.5); ffm_grid=quick ;;
    --mpi) mpi=1 ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
bash launch/setup.sh
if [ "$mpi" = 1 ]; then
  # The full grid (every optimizer, lr and batch size 1-4096) on two sets under mpirun -np 3
  # (1 server rank + 2 worker ranks), counting divergences; JSON in quality-mpi.json.
  exec python3 "$repo/tests/quality/quality.py" --repo "$repo" --mpi 3 --sets a9a,w6a \
    --tag mpi "${args[@]}"
fi
python3 "$repo/tests/quality/quality.py" --repo "$repo" "${args[@]}"
python3 "$repo/tests/quality/ffm_quality.py" --repo "$repo" --grid "$ffm_grid"
# Recall on MovieLens beside most-popular and item-kNN (tests/quality/recall.py; numpy).
recall_args=()
for a in "$@"; do [ "$a" = --quick ] && recall_args+=(--quick); done
/usr/bin/python3 "$repo/tests/quality/recall.py" --repo "$repo" "${recall_args[@]}"
