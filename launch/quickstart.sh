#!/usr/bin/env bash
# README command 1: set up, make a planted-FM data set, train on it in single-node mode,
# and print the test logloss next to the best achievable (Bayes) logloss of that data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh

./build/fmps synth --out data/quickstart --rows 1000000 --test-rows 100000 --vocab 100000 --seed 1
./build/fmps train configs/quickstart.yaml

python3 - <<'PY'
import json
meta = json.load(open("data/quickstart/meta.json"))
summary = json.load(open("runs/quickstart/summary.json"))
print(f"test logloss {summary['test_logloss']:.5f}   Bayes logloss {meta['bayes_logloss_test']:.5f}"
      f"   (gap {100 * (summary['test_logloss'] / meta['bayes_logloss_test'] - 1):.1f}%)")
print(f"test auc     {summary['test_auc']:.5f}   Bayes auc     {meta['bayes_auc_test']:.5f}")
print(f"{summary['rows_trained']} rows at {summary['rows_per_s']:.0f} rows/s; "
      f"model in runs/quickstart/model.fmps")
PY
