#!/usr/bin/env python3
"""Plot the learning curves of an fmps run from its metrics.jsonl.

Usage:
  python3 launch/plot_metrics.py runs/NAME/metrics.jsonl [-o curves.png]

Draws two panels into one PNG (default: learning_curves.png next to the input):
  left:  running training loss vs rows trained (the "progress" events);
  right: test logloss and test AUC vs epoch (the "eval" events; logistic loss),
         or test RMSE vs epoch (squared loss).
Lines that are not JSON objects, events of other kinds, and missing, null (fmps writes
non-finite numbers as null) or non-numeric values are skipped. Exits 1 with a one-line
message if the file cannot be read or holds no usable event; 2 for a bad command line.

Needs matplotlib (Debian: apt-get install python3-matplotlib). Runs without a display
(Agg backend). If the python3 running it lacks matplotlib (e.g. a pyenv or venv python3
ahead of Debian's on PATH), it re-runs itself once with /usr/bin/python3.
"""

import argparse
import json
import math
import os
import sys

from debian_python import reexec_with_system_python



def fail(message):
    print(f"plot_metrics: {message}", file=sys.stderr)
    sys.exit(1)


def import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import EngFormatter, MaxNLocator
    except ImportError:
        reexec_with_system_python()
        fail("matplotlib is not installed (Debian: apt-get install python3-matplotlib)")
    return plt, EngFormatter, MaxNLocator


def number(event, key):
    """event[key] as a finite float, or None if missing, null, non-numeric or non-finite."""
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def read_events(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except OSError as e:
        fail(f"{path}: cannot read: {e.strerror or e}")
    events, bad = [], 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(event, dict):
            events.append(event)
        else:
            bad += 1
    return events, bad


def series(events, kind, x_key, y_key):
    """(xs, ys) of the events of this kind where both values are usable."""
    xs, ys = [], []
    for e in events:
        if e.get("event") != kind:
            continue
        x, y = number(e, x_key), number(e, y_key)
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def main():
    parser = argparse.ArgumentParser(
        description="Plot train loss vs rows and test metrics vs epoch from an fmps "
                    "metrics.jsonl.")
    parser.add_argument("metrics", help="runs/NAME/metrics.jsonl")
    parser.add_argument("-o", "--output",
                        help="PNG to write (default: learning_curves.png next to METRICS)")
    args = parser.parse_args()

    if not os.path.isfile(args.metrics):
        fail(f"{args.metrics}: no such file")
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.metrics)),
                                         "learning_curves.png")
    plt, EngFormatter, MaxNLocator = import_pyplot()  # may re-run under /usr/bin/python3
    events, bad = read_events(args.metrics)

    train = series(events, "progress", "rows", "train_logloss")
    test_logloss = series(events, "eval", "epoch", "test_logloss")
    test_auc = series(events, "eval", "epoch", "test_auc")
    test_rmse = series(events, "eval", "epoch", "test_rmse")
    # Squared loss: eval events carry test_rmse instead of test_auc.
    squared = any(e.get("event") == "eval" and "test_rmse" in e and "test_auc" not in e
                  for e in events)
    if not (train[0] or test_logloss[0] or test_auc[0] or test_rmse[0]):
        fail(f"{args.metrics}: no usable progress or eval events "
             f"({len(events)} JSON object(s), {bad} other non-empty line(s))")
    if bad:
        print(f"plot_metrics: {args.metrics}: skipped {bad} line(s) that are not JSON objects",
              file=sys.stderr)
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(12, 4.8))
    run = os.path.basename(os.path.dirname(os.path.abspath(args.metrics))) or args.metrics
    fig.suptitle(f"fmps learning curves: {run}")

    # Left: running training loss (each batch measured before its update) vs rows.
    loss_name = "squared loss" if squared else "logloss"
    if train[0]:
        ax_train.plot(train[0], train[1], marker="." if len(train[0]) < 50 else None,
                      color="tab:blue",
                      label=f"train {loss_name} (running mean since epoch start)")
        ax_train.legend(loc="upper right")
    else:
        ax_train.text(0.5, 0.5, "no progress events", ha="center", va="center",
                      transform=ax_train.transAxes, color="gray")
        ax_train.set_xticks([])
        ax_train.set_yticks([])
    ax_train.set_title("Training")
    ax_train.set_xlabel("rows trained")
    ax_train.set_ylabel(f"train {loss_name}")
    ax_train.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax_train.grid(True, alpha=0.3)

    # Right: test metrics vs epoch.
    ax_test.set_title("Test set (end of each epoch)")
    ax_test.set_xlabel("epoch")
    ax_test.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_test.grid(True, alpha=0.3)
    handles = []
    if squared:
        if test_rmse[0]:
            handles += ax_test.plot(test_rmse[0], test_rmse[1], marker="o", color="tab:red",
                                    label="test RMSE")
        ax_test.set_ylabel("test RMSE")
    else:
        if test_logloss[0]:
            handles += ax_test.plot(test_logloss[0], test_logloss[1], marker="o",
                                    color="tab:red", label="test logloss")
        ax_test.set_ylabel("test logloss", color="tab:red")
        if test_auc[0]:
            ax_auc = ax_test.twinx()
            handles += ax_auc.plot(test_auc[0], test_auc[1], marker="s", linestyle="--",
                                   color="tab:green", label="test AUC")
            ax_auc.set_ylabel("test AUC", color="tab:green")
    epochs = sorted(set(test_rmse[0] if squared else test_logloss[0] + test_auc[0]))
    if len(epochs) == 1:  # one point: centre it, one tick
        ax_test.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax_test.set_xticks(epochs)
    if handles:
        ax_test.legend(handles=handles, labels=[h.get_label() for h in handles],
                       loc="center right")
    else:
        ax_test.text(0.5, 0.5, "no eval events", ha="center", va="center",
                     transform=ax_test.transAxes, color="gray")
        ax_test.set_xticks([])
        ax_test.set_yticks([])

    fig.tight_layout()
    try:
        fig.savefig(output, dpi=100)
    except OSError as e:
        fail(f"{output}: cannot write: {e.strerror or e}")
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
