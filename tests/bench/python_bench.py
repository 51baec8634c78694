#!/usr/bin/python3
"""Python package bench cases (tests/bench/README.md, "Python package").

    PYTHONPATH=build/python /usr/bin/python3 tests/bench/python_bench.py [--rows N]

Generates Criteo-shaped planted-FM data with `fmps synth` (39 fields, k = 8, libsvm, the
bench suite's shape; N = 10^6 rows by default) into a temporary directory, then measures,
each case 3 times (medians, min-max):
  * predict: fmps.Model.decision_function on the CSR matrix, threads=1 (model loaded
    beforehand), against `fmps predict --threads 1` on the same rows as libsvm (whose wall
    time includes loading the model and parsing the file);
  * fit: FMClassifier(epochs=1, batch_size=1024, workers=2, servers=1) on the CSR matrix,
    wall time of fit(), against `fmps train` single-node with the same settings on the
    libsvm file (process wall time).
Target: predict >= 10^6 rows/s per core; fit <= 1.2x the CLI's wall time.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from sklearn.datasets import load_svmlight_file

import fmps


def timed(fn, runs=3):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times)


def show(name, rows, t):
    med, lo, hi = t
    print(f"{name:44s} {med:7.2f} s ({lo:.2f}-{hi:.2f})  {rows / med:12,.0f} rows/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--fmps", default=os.environ.get("FMPS_BINARY", "build/fmps"))
    args = ap.parse_args()
    fmps_bin = os.path.abspath(args.fmps)
    with tempfile.TemporaryDirectory(prefix="fmps-pybench-") as tmp:
        data = os.path.join(tmp, "data")
        subprocess.run([fmps_bin, "synth", "--out", data, "--rows", str(args.rows),
                        "--test-rows", "1000", "--fields", "39", "--vocab", "1050000",
                        "--k", "8", "--format", "libsvm"], check=True,
                       stdout=subprocess.DEVNULL)
        train = os.path.join(data, "train.libsvm")
        X, y = load_svmlight_file(train, zero_based=True, dtype="float32")
        print(f"data: {X.shape[0]} rows, {X.nnz / X.shape[0]:.1f} non-zeros per row, "
              f"{X.shape[1]} columns; CPU cores {os.cpu_count()}")
        config = os.path.join(tmp, "bench.yaml")
        with open(config, "w", encoding="ascii") as f:
            f.write(f"data:\n  train: {train}\n  format: libsvm\nmodel:\n  k: 8\n"
                    f"train:\n  epochs: 1\n  batch_size: 1024\ncluster:\n  local_workers: 2\n"
                    f"  local_servers: 1\noutput:\n  dir: {tmp}/cli\n")
        cli_fit = timed(lambda: subprocess.run([fmps_bin, "train", config], check=True,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        clf = fmps.FMClassifier(epochs=1, batch_size=1024, workers=2, servers=1)
        py_fit = timed(lambda: clf.fit(X, y))
        show("fit: fmps train (libsvm file)", X.shape[0], cli_fit)
        show("fit: FMClassifier.fit (CSR)", X.shape[0], py_fit)
        print(f"fit ratio Python / CLI: {py_fit[0] / cli_fit[0]:.2f}x (target <= 1.2x)")

        model_path = os.path.join(tmp, "cli", "model.fmps")
        model = fmps.Model.load(model_path)
        py_pred = timed(lambda: model.decision_function(X, threads=1))
        cli_pred = timed(lambda: subprocess.run(
            [fmps_bin, "predict", "--model", model_path, "--data", train, "--threads", "1",
             "--out", os.path.join(tmp, "pred.txt")], check=True))
        show("predict: fmps predict --threads 1", X.shape[0], cli_pred)
        show("predict: Model.decision_function threads=1", X.shape[0], py_pred)
        print(f"predict per core: {X.shape[0] / py_pred[0]:,.0f} rows/s (target >= 1,000,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
