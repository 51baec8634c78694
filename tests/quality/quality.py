#!/usr/bin/env python3
"""fmps training-quality sweep (standard library only); run through tests/quality/run.sh.

For each public data set (fixed train/test split; sets without a test file are split
deterministically: rows 4, 9, 14, ... counting from 0 after any header go to the test file),
trains `fmps train` single-node (or, with --mpi NP, under mpirun with 1 server rank) over a grid of optimizer x lr x batch_size, and once with the
default config (no optimizer or batch keys). Each run's metric is taken at its best epoch on
the test file (as an early-stopping user would). Prints, per data set: the default's metric,
the best of the sweep and its setting, the default's gap to the best, the divergence count,
and a reference figure (xLearn's best where known); writes the same as JSON to
runs/quality/quality-TAG.json. Not a pass/fail test.
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time

import resolution

DATA = "../shared/data"  # relative to the repository root, like the tests

# name: train, test (None: split train), format, loss, k, epochs, extra YAML for data,
# reference metrics (xLearn's best where measured).
SETS = {
    "a9a": dict(train="a9a/a9a", test="a9a/a9a.t", format="libsvm", loss="logistic", k=8,
                epochs=10, ref={"auc": 0.9026, "logloss": 0.3236}),
    "agaricus": dict(train="agaricus/agaricus.txt.train", test="agaricus/agaricus.txt.test",
                     format="libsvm", loss="logistic", k=8, epochs=5, ref={}),
    "w6a": dict(train="angel_libsvm/w6a_300d_train.libsvm",
                test="angel_libsvm/w6a_300d_test.libsvm", format="libsvm", loss="logistic",
                k=8, epochs=10, ref={"auc": 0.9871, "logloss": 0.0348}),
    "heart_scale": dict(train="heart_scale/heart_scale", test=None, format="libsvm",
                        loss="logistic", k=8, epochs=20, ref={}),
    "xlearn_criteo": dict(train="xlearn_criteo/small_train.txt",
                          test="xlearn_criteo/small_test.txt", format="libffm",
                          loss="logistic", k=8, epochs=10, ref={}),
    "criteo_tsv": dict(train="jqsl_pytorchfm_criteo/train.txt", test=None, format="criteo",
                       loss="logistic", k=8, epochs=10, hash_bits=20, ref={}),
    "movielens": dict(train="movielens_small/ratings.csv", test=None, format="csv",
                      loss="squared", k=16, epochs=10, header=True, ref={"rmse": 0.8494},
                      # an L2 axis (model.l2_w = l2_v): xLearn's reference searched its lambda
                      l2=[0, 0.01],
                      csv="  csv:\n    label: rating\n    categorical: [userId, movieId]\n"
                          "    ignore: [timestamp]\n"),
    # Planted-FM data from `fmps synth` (Criteo-shaped: 39 fields); its ref column is the
    # Bayes logloss and AUC of the test rows (the best any model can reach), not xLearn's.
    "synth": dict(synth=dict(rows=100000, test_rows=20000, fields=39, vocab=200000, k=8,
                             seed=1), format="libsvm", loss="logistic", k=8, epochs=4, ref={}),
}

OPTIMIZERS = {"sgd": [0.01, 0.05, 0.1, 0.2], "adagrad": [0.01, 0.05, 0.1, 0.2],
              "ftrl": [0.01, 0.05, 0.1, 0.2], "adam": [0.001, 0.01]}
BATCHES = {"full": [1, 32, 1024, 4096], "quick": [32, 1024]}


def log(msg):
    print(f"quality: {msg}", file=sys.stderr, flush=True)


def split(src, dst_dir, header):
    """Writes train/test files of src: rows 4, 9, 14, ... (after the header) are test."""
    os.makedirs(dst_dir, exist_ok=True)
    base = os.path.basename(src)
    train, test = os.path.join(dst_dir, "train_" + base), os.path.join(dst_dir, "test_" + base)
    if os.path.exists(train) and os.path.exists(test):
        return train, test
    with open(src, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    head, rows = (lines[:1], lines[1:]) if header else ([], lines)
    with open(train + ".tmp", "wb") as a, open(test + ".tmp", "wb") as b:
        a.writelines(head)
        b.writelines(head)
        for i, line in enumerate(rows):
            (b if i % 5 == 4 else a).write(line)
    os.replace(train + ".tmp", train)
    os.replace(test + ".tmp", test)
    return train, test


def synthesize(fmps, spec, dst_dir):
    """Writes the planted-FM set of spec["synth"] once; sets spec["ref"] to its Bayes figures."""
    o = spec["synth"]
    meta = os.path.join(dst_dir, "bayes.json")
    if not os.path.exists(meta):
        p = subprocess.run([fmps, "synth", "--out", dst_dir] + [
            f"--{k.replace('_', '-')}={v}" for k, v in o.items()], capture_output=True,
            text=True, check=True)
        line = p.stdout.split("Bayes test logloss ", 1)[1]
        bayes = {"logloss": float(line.split(",")[0]),
                 "auc": float(line.split("auc ", 1)[1].split()[0])}
        with open(meta, "w") as f:
            json.dump(bayes, f)
    with open(meta) as f:
        spec["ref"] = json.load(f)
    return os.path.join(dst_dir, "train.libsvm"), os.path.join(dst_dir, "test.libsvm")


def write_config(name, spec, outdir, epochs_scale, fmps, tag):
    if "synth" in spec:
        train, test = synthesize(fmps, spec, os.path.join(outdir, "data", name))
    elif spec["test"] is None:
        train = os.path.join(DATA, spec["train"])
        train, test = split(train, os.path.join(outdir, "data", name), spec.get("header", False))
    else:
        train, test = os.path.join(DATA, spec["train"]), os.path.join(DATA, spec["test"])
    epochs = max(1, int(round(spec["epochs"] * epochs_scale)))
    text = (f"data:\n  train: {train}\n  test: {test}\n  format: {spec['format']}\n"
            + (f"  hash_bits: {spec['hash_bits']}\n" if "hash_bits" in spec else "")
            + spec.get("csv", "")
            + f"model:\n  k: {spec['k']}\n  loss: {spec['loss']}\n"
            + f"train:\n  epochs: {epochs}\n")
    # per tag: sweeps run at the same time (other tags) must not rewrite each other's config
    os.makedirs(os.path.join(outdir, "cfg", tag), exist_ok=True)
    path = os.path.join(outdir, "cfg", tag, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path, test


def best_epoch(metrics_path, loss):
    """The best test metrics over the run's epochs (each metric at its own best epoch)."""
    best = {}
    with open(metrics_path) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") != "eval":
                continue
            for key, better in (("test_auc", max), ("test_logloss", min), ("test_rmse", min)):
                if key in e and e[key] is not None and math.isfinite(e[key]):
                    m = key[len("test_"):]
                    best[m] = better(best[m], e[key]) if m in best else e[key]
    if loss == "squared":
        best.pop("logloss", None)
    return best


def launcher(mpi_ranks):
    """The command prefix of a run: none single-node; mpirun with 1 server rank under --mpi."""
    if not mpi_ranks:
        return []
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
            "--mca", "mpi_yield_when_idle", "1", "-np", str(mpi_ranks)]


def train(fmps, cfg, outdir, sets, timeout, mpi_ranks=0):
    os.makedirs(outdir, exist_ok=True)
    cmd = launcher(mpi_ranks) + [fmps, "train", cfg, "--set", f"output.dir={outdir}"]
    if mpi_ranks:
        cmd += ["--set", "cluster.servers=1"]  # 1 server rank, the others workers
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": timeout}
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        # under mpirun the last lines are mpirun's own report: take fmps's error line
        lines = [x for x in p.stderr.strip().splitlines() if x.startswith("fmps: error")]
        err = lines[-1] if lines else (p.stderr.strip().splitlines() or [""])[-1]
        status = "diverged" if "diverged" in err else "failed"
        if status == "failed":
            log(f"FAILED: {' '.join(shlex.quote(c) for c in cmd)}: {err}")
        return {"status": status, "seconds": dt, "error": err}
    return {"status": "ok", "seconds": dt}


def default_optimizer(fmps, cfg):
    """optimizer.name of the effective config (`fmps check`)."""
    p = subprocess.run([fmps, "check", cfg], capture_output=True, text=True, check=True)
    section = p.stdout.split("\noptimizer:\n", 1)[1]
    return section.split("name:", 1)[1].split()[0]


def extra_sets(sets, optimizer):
    """The --set values for a run with `optimizer`: "OPT:key=value" applies to OPT only."""
    out = []
    for s in sets:
        head, sep, rest = s.partition(":")
        if sep and "=" not in head:
            if head == optimizer:
                out.append(rest)
        else:
            out.append(s)
    return out


def metric_key(loss):
    return "rmse" if loss == "squared" else "auc"


def better(loss, a, b):
    """Whether metric value a is better than b."""
    return a < b if loss == "squared" else a > b


def grid_settings(spec, args):
    """(label, --set values) of every grid cell of a set: optimizer x lr x batch x l2."""
    settings = []
    for opt, lrs in OPTIMIZERS.items():
        if args.optimizers and opt not in args.optimizers:
            continue
        for lr in args.lrs or lrs:
            for bs in args.batches or BATCHES[args.grid]:
                for l2 in args.l2s or spec.get("l2", [0]):
                    sets = [f"optimizer.name={opt}", f"optimizer.lr={lr}",
                            f"train.batch_size={bs}"]
                    label = f"{opt} lr={lr} bs={bs}"
                    if l2:
                        label += f" l2={l2}"
                        sets += [f"model.l2_w={l2}", f"model.l2_v={l2}"]
                    settings.append((label, sets))
    return settings


def run_one(fmps, cfg, name, label, sets, args, outroot, loss, opt):
    """Trains one setting; returns its run record (status, seconds, best-epoch metrics)."""
    out = os.path.join(outroot, "out" + ("-mpi" if args.mpi else ""), args.tag, name,
                       label.replace(" #", "_rep").replace(" ", "_").replace("=", ""))
    r = train(fmps, cfg, out, sets + extra_sets(args.set, opt), args.timeout, args.mpi)
    r["setting"] = label.split(" #")[0]
    r["out"] = out
    if r["status"] == "ok":
        r.update(best_epoch(os.path.join(out, "metrics.jsonl"), loss))
    shown = {k: round(v, 5) for k, v in r.items() if k in ("auc", "logloss", "rmse")}
    log(f"{name:14s} {label:28s} {r['status']:8s} {r['seconds']:6.1f}s {shown}")
    return r


def run_set(fmps, name, spec, args, outroot):
    cfg, test = write_config(name, spec, outroot, args.epochs_scale, fmps, args.tag)
    loss = spec["loss"]
    settings = [("default", [])] + grid_settings(spec, args)
    default_opt = default_optimizer(fmps, cfg)
    opt_of = {label: (label.split()[0] if label != "default" else default_opt)
              for label, _ in settings}
    runs = [run_one(fmps, cfg, name, label, sets, args, outroot, loss, opt_of[label])
            for label, sets in settings]
    res = summarize(name, spec, runs)
    # Repeats (seeds 1..R) of the default and of each metric's best cell: the spread of
    # identical settings, and how far the best cell's grid value was a lucky draw.
    by_label = dict(settings)
    again = ["default"] + sorted({b["setting"] for b in res["best"].values()})
    res["repeats"] = {label: [run_one(
        fmps, cfg, name, f"{label} #{i + 1}", by_label[label] + [f"train.seed={i + 1}"], args,
        outroot, loss, opt_of[label]) for i in range(args.repeats)] for label in again}
    default = res["default"]
    if default and default["status"] == "ok" and not args.mpi:
        res["resolution"] = resolution.resolution(
            fmps, os.path.join(default["out"], "model.fmps"), test, spec["format"], loss,
            default)
    return res


def summarize(name, spec, runs, extra=None):
    loss = spec["loss"]
    key = metric_key(loss)
    ok = [r for r in runs if r["status"] == "ok" and key in r]
    grid = [r for r in ok if r["setting"] != "default"]
    default = next((r for r in runs if r["setting"] == "default"), None)
    best = {}
    for m in ("auc", "logloss", "rmse"):
        have = [r for r in grid if m in r]
        if not have:
            continue
        pick = max if m == "auc" else min
        b = pick(have, key=lambda r: r[m])
        best[m] = {"value": b[m], "setting": b["setting"]}
    gaps = {}
    if default and default["status"] == "ok":
        for m, b in best.items():
            if m in default:
                gaps[m] = resolution.relative_gap(m, default[m], b["value"])
    out = {
        "set": name, "loss": loss, "runs": runs, "best": best, "default": default,
        "default_gap": gaps, "reference": spec["ref"],
        "diverged": [r["setting"] for r in runs if r["status"] == "diverged"],
        "failed": [r["setting"] for r in runs if r["status"] not in ("ok", "diverged")],
        "grid_runs": len(runs) - 1,
    }
    for k in ("repeats", "resolution"):
        if extra and k in extra:
            out[k] = extra[k]
    return out


def fmt(v, digits=4):
    return "-" if v is None else f"{v:.{digits}f}"


def pct(v):
    return "-" if v is None else f"{100 * v:6.2f}%"


def print_table(results):
    print(f"{'set':14s} {'metric':8s} {'default':>8s} {'best':>8s} {'gap':>7s} {'2se':>7s} "
          f"{'mgap':>7s} {'ref':>8s} {'diverged':>9s}  best setting")
    for res in results:
        metrics = ["rmse"] if res["loss"] == "squared" else ["auc", "logloss"]
        d = res["default"] or {}
        for i, m in enumerate(metrics):
            b = res["best"].get(m, {})
            gap = res["default_gap"].get(m)
            div = f"{len(res['diverged'])}/{res['grid_runs']}" if i == 0 else ""
            print(f"{res['set'] if i == 0 else '':14s} {m:8s} {fmt(d.get(m)):>8s} "
                  f"{fmt(b.get('value')):>8s} {pct(gap):>7s} {pct(resolution.two_se(res, m)):>7s} "
                  f"{pct(resolution.mean_gap(res, m)):>7s} "
                  f"{fmt(res['reference'].get(m)):>8s} {div:>9s}  {b.get('setting', '-')}")
        if d.get("status") not in (None, "ok"):
            print(f"{'':14s} default run: {d.get('status')}")
    print("gap: the default's relative gap to the best (logloss/RMSE relative to max(best, "
          "0.01)); 2se: two standard errors of the test metric (AUC: Hanley-McNeil; logloss, "
          "RMSE: per-row losses), as relative as the gap; mgap: the gap between the default's "
          "mean over its runs and the best cell's mean over its repeats (no selection)")
    print("ref: xLearn's best where measured; synth: the Bayes figures of its test rows")
    resolution.print_repeats(results)
    resolution.print_closest(results)
    for res in results:
        if res["diverged"]:
            per_opt = {}
            for setting in res["diverged"]:
                per_opt[setting.split()[0]] = per_opt.get(setting.split()[0], 0) + 1
            counts = ", ".join(f"{o} {n}" for o, n in per_opt.items())
            print(f"{res['set']}: diverged ({counts}): {', '.join(res['diverged'])}")
        if res["failed"]:
            print(f"{res['set']}: failed: {', '.join(res['failed'])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--grid", choices=sorted(BATCHES), default="full",
                    help="batch sizes: full = 1, 32, 1024, 4096; quick = 32, 1024")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated data sets")
    ap.add_argument("--optimizers", default="", help="comma-separated subset of the grid")
    ap.add_argument("--lrs", default="", help="comma-separated lrs instead of the grid's")
    ap.add_argument("--batches", default="", help="comma-separated batch sizes instead")
    ap.add_argument("--l2s", default="",
                    help="comma-separated model.l2_w = model.l2_v values for every set instead "
                    "of each set's own L2 axis (0 for all but movielens)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="re-runs (train.seed 1..R) of the default and of each best cell")
    ap.add_argument("--epochs-scale", type=float, default=1.0,
                    help="multiplies each set's epochs (at least 1)")
    ap.add_argument("--set", action="append", default=[],
                    help="KEY=VALUE added to every run (e.g. an option under test); "
                    "OPT:KEY=VALUE only to runs of optimizer OPT (the default run included "
                    "when the default optimizer is OPT)")
    ap.add_argument("--tag", default="latest", help="JSON file runs/quality/quality-TAG.json")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--from-json", default="",
                    help="print the table of earlier runs' JSON (comma-separated files: one "
                    "table, the closest fixed setting over all their sets) and exit")
    ap.add_argument("--fmps", default="", help="binary to run (default: build/fmps)")
    ap.add_argument("--mpi", type=int, default=0, metavar="NP",
                    help="run every training under mpirun -np NP with cluster.servers 1 "
                    "(1 server rank, NP-1 workers) instead of single-node")
    args = ap.parse_args()
    args.optimizers = [o for o in args.optimizers.split(",") if o]
    args.lrs = [float(x) for x in args.lrs.split(",") if x]
    args.batches = [int(x) for x in args.batches.split(",") if x]
    args.l2s = [float(x) for x in args.l2s.split(",") if x]
    if args.from_json:
        old = []
        for path in args.from_json.split(","):
            with open(path) as f:
                old += json.load(f)["results"]
        print_table([summarize(r["set"], dict(SETS[r["set"]], ref=r.get("reference", {})),
                               r["runs"], r) for r in old])
        return
    os.chdir(args.repo)
    fmps = os.path.abspath(args.fmps) if args.fmps else os.path.join(args.repo, "build", "fmps")
    outroot = os.path.join("runs", "quality")
    names = [s for s in args.sets.split(",") if s]
    for n in names:
        if n not in SETS:
            sys.exit(f"quality: unknown set '{n}' (known: {', '.join(SETS)})")
    t0 = time.perf_counter()
    results = [run_set(fmps, n, SETS[n], args, outroot) for n in names]
    mode = f"mpirun -np {args.mpi} (1 server)" if args.mpi else "single-node"
    print(f"fmps quality sweep: {mode}, grid {args.grid}, epochs x{args.epochs_scale}, "
          f"extra {args.set or 'none'}, {time.perf_counter() - t0:.0f} s")
    print_table(results)
    path = os.path.join(outroot, f"quality-{args.tag}.json")
    with open(path, "w") as f:
        json.dump({"grid": args.grid, "epochs_scale": args.epochs_scale, "extra": args.set,
                   "mpi_ranks": args.mpi,
                   "results": results}, f, indent=1)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
