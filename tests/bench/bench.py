#!/usr/bin/env python3
"""fmps benchmark driver (standard library only); run through tests/bench/run.sh.

Runs the fmps_bench micro-benchmarks, end-to-end `fmps train` (single-node 1+1, MPI 1+1,
MPI 1+2) and `fmps predict`, each at least 3 times; prints medians with min-max next to
the targets and writes the table to runs/bench/bench.json.
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

FIELDS = 39
K = 8
# Chosen so that ~10^6 distinct keys appear in the 2*10^6 training rows (Zipf 1.1 per
# field, vocab/39 values per field; measured: see the num_keys row of the table).
VOCAB = 1_050_000
SEED = 1


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout=600, **kw):
    log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    t0 = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], timeout=timeout, **kw)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"command failed with status {p.returncode}: {cmd}")
    return dt


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "mem_gb": mem_gb,
            "kernel": platform.release()}


class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, name, values, unit, target=None, op=None, note=""):
        """target: number; op: '>=' or '<='. values: list of per-repetition figures."""
        vals = [float(v) for v in values if v is not None]
        row = {"section": section, "name": name, "unit": unit, "values": vals,
               "median": statistics.median(vals) if vals else None,
               "min": min(vals) if vals else None, "max": max(vals) if vals else None,
               "target": target, "target_op": op, "note": note, "pass": None}
        if vals and target is not None:
            row["pass"] = (row["median"] >= target) if op == ">=" else (row["median"] <= target)
        self.rows.append(row)
        return row


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def print_table(table, mach, info):
    print()
    print(f"fmps benchmarks  ({info['mode']})  machine: {mach['cpu']}, {mach['cores']} cores, "
          f"{mach['mem_gb']} GB RAM")
    print(f"data: fmps synth {info['rows']} train + {info['test_rows']} test rows, "
          f"{FIELDS} fields, vocab {VOCAB}, k {K}, seed {SEED} (libsvm, "
          f"{info['train_mb']:.0f} MB); {info['reps']} runs per case")
    hdr = f"{'case':<44} {'median':>10} {'min-max':>19} {'unit':<9} {'target':>12}  ok"
    print(hdr)
    print("-" * len(hdr))
    section = None
    for r in table.rows:
        if r["section"] != section:
            section = r["section"]
            print(f"[{section}]")
        mm = f"{fmt(r['min'])}-{fmt(r['max'])}" if r["values"] else "-"
        tgt = f"{r['target_op']} {fmt(r['target'])}" if r["target"] is not None else ""
        ok = {True: "PASS", False: "FAIL", None: ""}[r["pass"]]
        line = f"  {r['name']:<42} {fmt(r['median']):>10} {mm:>19} {r['unit']:<9} {tgt:>12}  {ok}"
        if r["note"]:
            line += f"  ({r['note']})"
        print(line)
    print()


# ---- data ----------------------------------------------------------------------------------

def make_data(repo, fmps, rows, test_rows):
    d = os.path.join(repo, "runs", "bench", "data", f"r{rows}_t{test_rows}_v{VOCAB}_s{SEED}")
    meta = os.path.join(d, "meta.json")
    if os.path.exists(meta):
        with open(meta) as f:
            m = json.load(f)
        if (m.get("rows") == rows and m.get("test_rows") == test_rows
                and os.path.exists(m["train"]) and os.path.exists(m["test"])):
            log(f"reusing data in {d}")
            return m
    run([fmps, "synth", "--out", d, "--rows", rows, "--test-rows", test_rows, "--fields", FIELDS,
         "--vocab", VOCAB, "--k", K, "--seed", SEED, "--format", "libsvm"], timeout=900,
        stdout=sys.stderr)
    with open(meta) as f:
        return json.load(f)


# ---- micro-benchmarks ----------------------------------------------------------------------

def micro(repo, table, reps, quick, outdir):
    exe = os.path.join(repo, "build", "tests", "bench", "fmps_bench")
    if not os.path.exists(exe):
        log("build/tests/bench/fmps_bench missing (Google Benchmark not installed?): "
            "micro-benchmarks skipped")
        table.add("micro", "fmps_bench (not built)", [], "")
        return None
    out = os.path.join(outdir, "micro.json")
    cmd = [exe, f"--benchmark_repetitions={reps}", "--benchmark_format=json",
           f"--benchmark_out={out}", "--benchmark_out_format=json"]
    if quick:
        cmd.append("--benchmark_min_time=0.05")
    run(cmd, timeout=900, stdout=subprocess.DEVNULL)
    with open(out) as f:
        data = json.load(f)
    by = {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        by.setdefault(b["run_name"], []).append(b)

    def vals(name, key):
        return [b[key] for b in by.get(name, []) if key in b]

    for where, bm, tr in (("cache", "BM_FmCache", "4096"), ("big", "BM_FmBig", "10^7")):
        for k in (4, 8, 16, 32):
            name = f"{bm}/{k}"
            tgt = 5e6 if (where == "cache" and k == 8) else None
            table.add("FM kernel FmForwardBackward (1024 rows x 39 nnz)",
                      f"k={k}, {tr}-row table", vals(name, "items_per_second"), "rows/s",
                      tgt, ">=" if tgt else None)
    pull = [1e9 / v for v in vals("BM_StorePull", "items_per_second")]
    push = [1e9 / v for v in vals("BM_StorePush", "items_per_second")]
    sec = "ParamStore, 10^6 keys, k=8, adagrad, 8192 keys/call"
    table.add(sec, "Pull (lookup)", pull, "ns/key", 25, "<=")
    table.add(sec, "Push (lookup + adagrad update)", push, "ns/key", 25, "<=")
    rows = [1e9 / v for v in vals("BM_StorePushRows", "items_per_second")]
    table.add(sec, "Push by the pull's row handles (trainer path)", rows, "ns/key", 25, "<=")
    table.add(sec, "Pull + Push by handles (a key's round trip)", [a + b for a, b in zip(pull, rows)],
              "ns/key", 25, "<=", note="strictest reading of the target")
    floor_r = [1e9 / v for v in vals("BM_MemFloorRead", "items_per_second")]
    floor_w = [1e9 / v for v in vals("BM_MemFloorWrite", "items_per_second")]
    table.add(sec, "memory floor: read 1 random row (no lookup)", floor_r, "ns/key",
              note="machine limit under Pull")
    table.add(sec, "memory floor: update 1 random row (no lookup)", floor_w, "ns/key",
              note="machine limit under Push")
    opt_names = {0: "sgd", 1: "adagrad", 2: "adam", 3: "ftrl"}
    for i, o in opt_names.items():
        name = f"BM_StoreBytes/opt:{i}/iterations:1"
        bpk = vals(name, "bytes_per_key")
        raw = vals(name, "raw_bytes_per_key")
        ratio = vals(name, "ratio")
        table.add("ParamStore memory, 10^6 keys, k=8", f"{o}: bytes/key (raw {fmt(raw[0]) if raw else '?'})",
                  bpk, "B/key")
        table.add("ParamStore memory, 10^6 keys, k=8", f"{o}: bytes/key / raw payload", ratio,
                  "x", 1.5, "<=")
    for i, f_ in ((0, "libsvm"), (2, "criteo")):
        name = f"BM_Parse/fmt:{i}"
        mbs = [v / 1e6 for v in vals(name, "bytes_per_second")]
        tgt = 600 if f_ == "libsvm" else None
        table.add("Reader parse (ShardReader, 2*10^5 synth rows, page cache)", f"{f_} MB/s", mbs,
                  "MB/s", tgt, ">=" if tgt else None)
        table.add("Reader parse (ShardReader, 2*10^5 synth rows, page cache)", f"{f_} rows/s",
                  vals(name, "items_per_second"), "rows/s")
    return data.get("context")


# ---- end to end ----------------------------------------------------------------------------

def write_config(path, meta):
    with open(path, "w") as f:
        f.write(f"""# written by tests/bench/bench.py
data:
  train: {meta['train']}
  test: {meta['test']}
  format: libsvm
model:
  k: {K}
  loss: logistic
optimizer:
  name: adagrad
  lr: 0.01
train:
  epochs: 1
  batch_size: 1024
  consistency: async
  max_delay: 4
  progress_seconds: 30
""")


def read_rss(path):
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        return int(lines[-1]) / 1024.0  # KiB -> MiB
    except (OSError, ValueError, IndexError):
        return None


def train_single(repo, fmps, cfg, out):
    rss_file = os.path.join(out, "rss.txt")
    os.makedirs(out, exist_ok=True)
    run(["/usr/bin/time", "-f", "%M", "-o", rss_file, fmps, "train", cfg,
         "--set", f"output.dir={out}", "--set", "cluster.local_servers=1",
         "--set", "cluster.local_workers=1"], stdout=sys.stderr)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    return s, {"process": read_rss(rss_file)}


def train_mpi(repo, fmps, cfg, out, servers, workers):
    """The mpirun command of launch/run_local.sh -s S -w W, with each rank's fmps wrapped in
    /usr/bin/time for its peak RSS."""
    os.makedirs(out, exist_ok=True)
    np_ = servers + workers
    args = ["mpirun", "-np", np_, "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1"]
    if np_ > (os.cpu_count() or 1):
        args.append("--oversubscribe")
    if os.geteuid() == 0:
        args.append("--allow-run-as-root")
    wrap = ('exec /usr/bin/time -f %M -o "' + out +
            '/rss.rank$OMPI_COMM_WORLD_RANK" "$0" "$@"')
    args += ["sh", "-c", wrap, fmps, "train", cfg, "--set", f"cluster.servers={servers}",
             "--set", f"output.dir={out}"]
    run(args, stdout=sys.stderr)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    rss = {}
    for r in range(np_):
        role = "server" if r < servers else "worker"
        rss[f"rank{r} ({role})"] = read_rss(os.path.join(out, f"rss.rank{r}"))
    return s, rss


def end_to_end(repo, fmps, meta, table, reps, outdir):
    cfg = os.path.join(outdir, "bench.yaml")
    write_config(cfg, meta)
    cases = [("single-node 1 server + 1 worker", "single", None),
             ("MPI 1 server + 1 worker", "mpi11", (1, 1)),
             ("MPI 1 server + 2 workers", "mpi12", (1, 2))]
    results = {}
    for label, tag, mpi in cases:
        sums, rsss = [], []
        for i in range(reps):
            out = os.path.join(outdir, "out", f"{tag}_r{i}")
            if mpi is None:
                s, rss = train_single(repo, fmps, cfg, out)
            else:
                s, rss = train_mpi(repo, fmps, cfg, out, *mpi)
            sums.append(s)
            rsss.append(rss)
        results[tag] = (label, sums, rsss)
    single_med = statistics.median(s["rows_per_s"] for s in results["single"][1])
    for tag, (label, sums, rsss) in results.items():
        sec = f"fmps train, 1 epoch: {label}"
        rps = [s["rows_per_s"] for s in sums]
        if tag == "single":
            table.add(sec, "rows/s (summary.json)", rps, "rows/s", 1e6, ">=")
        elif tag == "mpi11":
            table.add(sec, "rows/s (summary.json)", rps, "rows/s", 0.7 * single_med, ">=",
                      note="target 0.7 x single-node median")
        else:
            table.add(sec, "rows/s (summary.json)", rps, "rows/s")
        table.add(sec, "wall s (incl. eval + model write)", [s["wall_s"] for s in sums], "s")
        table.add(sec, "test logloss", [s.get("test_logloss") for s in sums], "")
        for rank in rsss[0]:
            table.add(sec, f"peak RSS {rank}", [r[rank] for r in rsss], "MiB")
        if tag == "single":
            table.add(sec, "num_keys (distinct keys)", [s.get("num_keys") for s in sums], "keys")
            if "server_bytes_per_key" in sums[0]:
                table.add(sec, "server bytes/key (summary.json)",
                          [s["server_bytes_per_key"] for s in sums], "B/key")
    return os.path.join(outdir, "out", "single_r0", "model.fmps")


def predict(fmps, model, meta, table, reps):
    rows = meta["rows"]
    cores = os.cpu_count() or 1
    for label, extra, tgt in (("--threads 1 (per core)", ["--threads", "1"], 1e6),
                              (f"default threads ({cores} cores)", [], 1e6 * cores)):
        vals = []
        for _ in range(reps):
            dt = run([fmps, "predict", "--model", model, "--data", meta["train"]] + extra,
                     stdout=subprocess.DEVNULL)
            vals.append(rows / dt)
        table.add(f"fmps predict, {rows} rows (wall, incl. model load)", label, vals, "rows/s",
                  tgt, ">=")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    repo = a.repo
    fmps = os.path.join(repo, "build", "fmps")
    outdir = os.path.join(repo, "runs", "bench")
    os.makedirs(outdir, exist_ok=True)
    t_start = time.perf_counter()
    rows, test_rows = (200_000, 20_000) if a.quick else (2_000_000, 100_000)
    mach = machine()
    table = Table()

    meta = make_data(repo, fmps, rows, test_rows)
    ctx = micro(repo, table, a.reps, a.quick, outdir)
    model = end_to_end(repo, fmps, meta, table, a.reps, outdir)
    predict(fmps, model, meta, table, a.reps)

    info = {"mode": "quick" if a.quick else "full", "rows": rows, "test_rows": test_rows,
            "train_mb": os.path.getsize(meta["train"]) / 1e6, "reps": a.reps}
    print_table(table, mach, info)
    total = time.perf_counter() - t_start
    print(f"total time {total:.0f} s; JSON: {os.path.join(outdir, 'bench.json')}")
    with open(os.path.join(outdir, "bench.json"), "w") as f:
        json.dump({"machine": mach, "run": info, "data": meta, "vocab": VOCAB, "fields": FIELDS,
                   "k": K, "benchmark_context": ctx, "total_s": total, "cases": table.rows},
                  f, indent=1)
    failed = [r["section"] + ": " + r["name"] for r in table.rows if r["pass"] is False]
    if failed:
        print(f"{len(failed)} figure(s) below target")


if __name__ == "__main__":
    main()
