"""How finely a quality-suite test file can tell two models apart (standard library only).

Used by quality.py. For each data set it gives the standard error of the test metric:
* AUC: Hanley and McNeil (1982), from the AUC and the test file's positive and negative
  counts;
* logloss and RMSE: from the per-row losses of the default run's written model (its last
  epoch), scored with `fmps predict`: sd(loss)/sqrt(n) for logloss; for RMSE the delta
  method on the mean squared error, SE(MSE) / (2 RMSE).
And, over the whole sweep, the single grid cell whose worst gap to the best over every set
and metric, in units of the target's tolerance, is the smallest ("closest fixed setting").
"""
import csv
import math
import os
import subprocess

# The targets: the default within 1% AUC, 2% logloss or RMSE of the grid's best.
TOLERANCE = {"auc": 0.01, "logloss": 0.02, "rmse": 0.02}


def test_labels(path, fmt, csv_label="rating"):
    """The labels of a test file, in row order (libsvm, libffm, criteo TSV, or csv)."""
    labels = []
    with open(path, newline="") as f:
        if fmt == "csv":
            rows = csv.reader(f)
            col = next(rows).index(csv_label)
            return [float(r[col]) for r in rows if r]
        for line in f:
            if not line.strip():
                continue
            head = line.split("\t", 1)[0] if fmt == "criteo" else line.split(None, 1)[0]
            labels.append(float(head))
    return labels


def hanley_mcneil_se(auc, n_pos, n_neg):
    """The standard error of an AUC measured on n_pos positives and n_neg negatives."""
    if n_pos < 1 or n_neg < 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc)
           + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _mean_sd(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1))


def per_row_se(fmps, model, test, fmt, loss, labels):
    """{metric: (value, se)} from the per-row losses of `model` on `test`; {} on failure."""
    out = model + ".test_predictions"
    p = subprocess.run([fmps, "predict", "--model", model, "--data", test, "--format", fmt,
                        "--threads", "1", "--out", out], capture_output=True, text=True)
    if p.returncode != 0:
        return {}
    with open(out) as f:
        preds = [float(x) for x in f.read().split()]
    os.remove(out)
    if len(preds) != len(labels) or not preds:
        return {}
    n = len(preds)
    if loss == "squared":
        sq = [(p - y) ** 2 for p, y in zip(preds, labels)]
        mse, sd = _mean_sd(sq)
        rmse = math.sqrt(mse)
        return {"rmse": (rmse, sd / math.sqrt(n) / (2 * rmse))}
    eps = 1e-15
    ll = [-math.log(min(max(p, eps), 1 - eps)) if y > 0 else
          -math.log(min(max(1 - p, eps), 1 - eps)) for p, y in zip(preds, labels)]
    mean, sd = _mean_sd(ll)
    return {"logloss": (mean, sd / math.sqrt(n))}


def resolution(fmps, model, test, fmt, loss, default_metrics, csv_label="rating"):
    """Per metric of a set: {"se": standard error, "n": rows, ...} for the default's value."""
    labels = test_labels(test, fmt, csv_label)
    res = {}
    if loss != "squared" and "auc" in default_metrics:
        pos = sum(1 for y in labels if y > 0)
        se = hanley_mcneil_se(default_metrics["auc"], pos, len(labels) - pos)
        res["auc"] = {"se": se, "n": len(labels), "pos": pos, "neg": len(labels) - pos}
    for m, (value, se) in per_row_se(fmps, model, test, fmt, loss, labels).items():
        res[m] = {"se": se, "n": len(labels), "value_last_epoch": value}
    return res


def relative_gap(metric, value, best):
    """How much worse value is than best: relative; logloss/RMSE relative to max(best, 0.01)
    (a nearly separable set's best logloss, agaricus ~1e-4, would make any value look
    infinitely worse)."""
    if metric == "auc":
        return (best - value) / best
    return (value - best) / max(best, 0.01)


def closest_setting(results):
    """The grid cell with the smallest worst gap (in tolerances) over every set and metric.

    Returns (setting, worst ratio, {(set, metric): gap}) or None. A cell missing or
    diverged on some set counts as infinitely far."""
    cells = None
    for res in results:
        names = {r["setting"] for r in res["runs"] if r["setting"] != "default"}
        cells = names if cells is None else cells & names
    best = None
    for cell in sorted(cells or ()):
        gaps, worst = {}, 0.0
        for res in results:
            run = next(r for r in res["runs"] if r["setting"] == cell)
            for m, b in res["best"].items():
                if run.get("status") != "ok" or m not in run:
                    gaps[(res["set"], m)], worst = math.inf, math.inf
                    continue
                g = relative_gap(m, run[m], b["value"])
                gaps[(res["set"], m)] = g
                worst = max(worst, g / TOLERANCE[m])
        if best is None or worst < best[1]:
            best = (cell, worst, gaps)
    return best


def _values(runs, metric):
    return [r[metric] for r in runs if r.get("status") == "ok" and metric in r]


def mean_gap(res, metric):
    """The default's gap to the best cell with both as means over repeated runs: the
    default's grid run and its repeats against the best cell's repeats only (its grid run
    is the selected maximum of the grid, biased by the selection); None without repeats."""
    reps = res.get("repeats") or {}
    b = res["best"].get(metric)
    if not b or "default" not in reps or b["setting"] not in reps:
        return None
    d = _values([res["default"]] + reps["default"], metric)
    c = _values(reps[b["setting"]], metric)
    if not d or not c:
        return None
    return relative_gap(metric, sum(d) / len(d), sum(c) / len(c))


def two_se(res, metric):
    """2 standard errors of the set's test metric, relative as the gap is; None if unknown."""
    r = (res.get("resolution") or {}).get(metric)
    b = res["best"].get(metric)
    if not r or r.get("se") is None or not b:
        return None
    return 2 * r["se"] / (b["value"] if metric == "auc" else max(b["value"], 0.01))


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def print_repeats(results):
    """The repeated runs: per set and metric, the default's and the best cell's values."""
    if not any(res.get("repeats") for res in results):
        return
    print("repeats (train.seed 1..R; the grid run is seed 0): the grid run's value | the "
          "repeats' mean (min-max)")
    for res in results:
        for m in ["rmse"] if res["loss"] == "squared" else ["auc", "logloss"]:
            b = res["best"].get(m)
            if not b:
                continue
            parts = []
            for label, grid in (("default", (res["default"] or {}).get(m)),
                                (b["setting"], b["value"])):
                v = _values((res.get("repeats") or {}).get(label, []), m)
                rep = f"{sum(v) / len(v):.4f} ({min(v):.4f}-{max(v):.4f})" if v else "-"
                parts.append(f"{label} {'-' if grid is None else f'{grid:.4f}'} | {rep}")
            print(f"  {res['set']:14s} {m:8s} {parts[0]};  best cell {parts[1]}")


def _beyond_noise(results, gaps):
    """The (set, metric) gaps above both the tolerance and 2 standard errors of the set."""
    out = []
    for res in results:
        for m in res["best"]:
            g, se2 = gaps.get((res["set"], m)), two_se(res, m)
            if g is not None and g > TOLERANCE[m] and (se2 is None or g > se2):
                out.append(f"{res['set']} {m} {_pct(g)}")
    return ", ".join(out) or "none"


def print_closest(results):
    """The closest fixed setting (the measured limit of any single default) and the default's
    worst gap; each with the gaps that exceed both the tolerance and 2 standard errors."""
    c = closest_setting(results)
    if c is None or len(results) < 2:
        return
    cell, worst, gaps = c
    key = max(gaps, key=lambda k: gaps[k] / TOLERANCE[k[1]])
    print(f"closest fixed setting: {cell}: worst gap {worst:.1f}x the tolerance "
          f"({key[0]} {key[1]} {_pct(gaps[key])}; tolerance 1% AUC, 2% logloss/RMSE); "
          f"beyond tolerance and 2se: {_beyond_noise(results, gaps)}")
    dgaps = {(res["set"], m): g for res in results for m, g in res["default_gap"].items()}
    if dgaps:
        dkey = max(dgaps, key=lambda k: dgaps[k] / TOLERANCE[k[1]])
        print(f"default: worst gap {dgaps[dkey] / TOLERANCE[dkey[1]]:.1f}x the tolerance "
              f"({dkey[0]} {dkey[1]} {_pct(dgaps[dkey])}); beyond tolerance and 2se: "
              f"{_beyond_noise(results, dgaps)}")
