#!/usr/bin/env python3
"""fmps benchmark driver (standard library only); run through tests/bench/run.sh.

Runs the fmps_bench micro-benchmarks, end-to-end `fmps train` (single-node 1+1, MPI 1+1,
MPI 1+2, MPI 1+3) and `fmps predict`, each at least 3 times; prints medians with min-max next
to the targets, the scaling case (MPI 1 server + 1, 2, 3 workers: rows/s, server busy
fraction, per-core costs from each rank's CPU time) and the capacity model's inputs and the
cluster it sizes (README "Capacity model"); writes the table to runs/bench/bench.json.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ffm_bench  # noqa: E402  (the FFM cases, beside this file)

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

def micro(repo, table, reps, quick, outdir, train_file):
    exe = os.path.join(repo, "build", "tests", "bench", "fmps_bench")
    if not os.path.exists(exe):
        log("build/tests/bench/fmps_bench missing (Google Benchmark not installed?): "
            "micro-benchmarks skipped")
        table.add("micro", "fmps_bench (not built)", [], "")
        return None, {}
    out = os.path.join(outdir, "micro.json")
    cmd = [exe, f"--benchmark_repetitions={reps}", "--benchmark_format=json",
           f"--benchmark_out={out}", "--benchmark_out_format=json"]
    if quick:
        cmd.append("--benchmark_min_time=0.05")
    # BM_ServerReplay replays the end-to-end cases' training file: the same 10^6-key store.
    run(cmd, timeout=900, stdout=subprocess.DEVNULL,
        env=dict(os.environ, FMPS_BENCH_TRAIN=train_file))
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
            table.add("FM kernel ForwardBackward (1024 rows x 39 nnz)",
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
    pull16 = [1e9 / v for v in vals("BM_StorePullK16", "items_per_second")]
    rows16 = [1e9 / v for v in vals("BM_StorePushRowsK16", "items_per_second")]
    sec16 = "ParamStore, 10^6 keys, k=16, adagrad, 8192 keys/call (capacity model's k)"
    table.add(sec16, "Pull (lookup)", pull16, "ns/key")
    table.add(sec16, "Push by the pull's row handles", rows16, "ns/key")
    table.add(sec16, "Pull + Push by handles (a key's round trip)",
              [a + b for a, b in zip(pull16, rows16)], "ns/key")
    b16 = vals("BM_StoreBytesK16/opt:1/iterations:1", "bytes_per_key")
    raw16 = vals("BM_StoreBytesK16/opt:1/iterations:1", "raw_bytes_per_key")
    table.add(sec16, f"adagrad: bytes/key (raw {fmt(raw16[0]) if raw16 else '?'})", b16, "B/key")
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

    # Where a single-node epoch's CPU goes, per training row, from the micro-benchmarks
    # above: the bound they put on rows/s once the 3 busy threads (prefetch: parse + dedup;
    # worker: FM; server) share the machine's 2 cores.
    sec_b = "Single-node bound: CPU per training row by stage (k=8, from the micro-benchmarks)"
    parse_ns = [1e9 / v for v in vals("BM_Parse/fmt:0", "items_per_second")]
    dedup_ns = [n * 1e9 / v for v, n in zip(vals("BM_Dedup", "items_per_second"),
                                            vals("BM_Dedup", "nnz_per_row"))]
    fm_ns = [1e9 / v for v in vals("BM_FmCache/8", "items_per_second")]
    replay = "BM_ServerReplay/load:0"
    key_ns = [1e9 / v for v in vals(replay, "items_per_second")]
    first_ns = vals(replay, "first_pass_ns_per_key")
    loaded_ns = [1e9 / v for v in vals("BM_ServerReplay/load:1", "items_per_second")]
    loaded_first_ns = vals("BM_ServerReplay/load:1", "first_pass_ns_per_key")
    kpr = vals(replay, "keys_per_row")
    server_ns = [n * k for n, k in zip(key_ns, kpr)]
    table.add(sec_b, "prefetch thread: parse libsvm", parse_ns, "ns/row")
    table.add(sec_b, "prefetch thread: deduplicate the batch's keys", dedup_ns, "ns/row")
    table.add(sec_b, "worker thread: FM forward + backward (in cache)", fm_ns, "ns/row")
    table.add(sec_b, "server thread: pull + push by handles, per unique key", key_ns, "ns/key",
              note=f"the end-to-end training file's batches replayed on a trained store; "
                   f"{fmt(statistics.median(kpr)) if kpr else '?'} unique keys/row")
    table.add(sec_b, "  the same, first pass (creates the keys, as epoch 1 does)", first_ns,
              "ns/key")
    table.add(sec_b, "  the same, beside a thread parsing + deduplicating", loaded_ns, "ns/key",
              note="the prefetch thread's work on the other core")
    table.add(sec_b, "  the same, first pass, beside parsing + deduplicating", loaded_first_ns,
              "ns/key", note="an epoch-1 server thread in situ, but for FM and messaging")
    table.add(sec_b, "server thread: pull + push by handles", server_ns, "ns/row")
    total = [sum(t) for t in zip(parse_ns, dedup_ns, fm_ns, server_ns)]
    table.add(sec_b, "all stages", total, "ns/row",
              note="excludes messaging, copies and thread hand-offs")
    table.add(sec_b, "bound: 2 cores / all stages", [2e9 / t for t in total], "rows/s",
              note="if the stages ran in situ as fast as alone")
    table.add(sec_b, "bound: server thread alone", [1e9 / t for t in server_ns], "rows/s",
              note="in situ it is slower: see 'server thread CPU per key' under single-node")
    table.add(sec_b, "bound: server thread alone, first pass",
              [1e9 / (n * k) for n, k in zip(first_ns, kpr)], "rows/s",
              note="one epoch over new keys, as the end-to-end cases run")
    table.add(sec_b, "bound: server thread beside parse + dedup, first pass",
              [1e9 / (n * k) for n, k in zip(loaded_first_ns, kpr)], "rows/s",
              note="the measured limit of the single-node case: compare its rows/s")

    def med(v):
        return statistics.median(v) if v else None

    figures = {
        "store_ns_k8": med([a + b for a, b in zip(pull, rows)]),
        "store_ns_k16": med([a + b for a, b in zip(pull16, rows16)]),
        "bytes_per_key_k16": med(b16),
        "raw_bytes_per_key_k16": med(raw16),
        "fm_cache_k8": med(vals("BM_FmCache/8", "items_per_second")),
        "fm_cache_k16": med(vals("BM_FmCache/16", "items_per_second")),
        "parse_libsvm": med(vals("BM_Parse/fmt:0", "items_per_second")),
        "parse_criteo": med(vals("BM_Parse/fmt:2", "items_per_second")),
    }
    return data.get("context"), figures


# ---- end to end ----------------------------------------------------------------------------

# The headline learning rate: the best test logloss of LR_SWEEP on this data (the sweep
# runs with the suite and the table shows whether BENCH_LR is still its best).
BENCH_LR = 0.02
LR_SWEEP = (0.005, 0.01, 0.02, 0.05)


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
  lr: {BENCH_LR}
train:
  epochs: 1
  batch_size: 1024
  consistency: async
  max_delay: 4
  progress_seconds: 30
""")


# /usr/bin/time format of every timed fmps process: peak RSS KiB, user s, system s, wall s.
TIME_FORMAT = "%M %U %S %e"


def read_time(path):
    """{"rss": MiB, "cpu": user + system s, "wall": s} from a TIME_FORMAT file, or Nones."""
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        kib, user, sys_, wall = lines[-1].split()
        return {"rss": int(kib) / 1024.0, "cpu": float(user) + float(sys_), "wall": float(wall)}
    except (OSError, ValueError, IndexError):
        return {"rss": None, "cpu": None, "wall": None}


def train_single(repo, fmps, cfg, out):
    time_file = os.path.join(out, "time.txt")
    os.makedirs(out, exist_ok=True)
    run(["/usr/bin/time", "-f", TIME_FORMAT, "-o", time_file, fmps, "train", cfg,
         "--set", f"output.dir={out}", "--set", "cluster.local_servers=1",
         "--set", "cluster.local_workers=1"], stdout=sys.stderr)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    return s, {"process": read_time(time_file)}


def train_mpi(repo, fmps, cfg, out, servers, workers):
    """The mpirun command of launch/run_local.sh -s S -w W, with each rank's fmps wrapped in
    /usr/bin/time for its peak RSS and CPU time. Returns (summary.json, {rank label: times})."""
    os.makedirs(out, exist_ok=True)
    np_ = servers + workers
    args = ["mpirun", "-np", np_, "--bind-to", "none"]
    if np_ > (os.cpu_count() or 1):
        args += ["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"]
    if os.geteuid() == 0:
        args.append("--allow-run-as-root")
    wrap = (f'exec /usr/bin/time -f "{TIME_FORMAT}" -o "' + out +
            '/time.rank$OMPI_COMM_WORLD_RANK" "$0" "$@"')
    args += ["sh", "-c", wrap, fmps, "train", cfg, "--set", f"cluster.servers={servers}",
             "--set", f"output.dir={out}"]
    run(args, stdout=sys.stderr)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    times = {}
    for r in range(np_):
        role = "server" if r < servers else "worker"
        times[f"rank{r} ({role})"] = read_time(os.path.join(out, f"time.rank{r}"))
    return s, times


def end_to_end(repo, fmps, meta, table, reps, outdir):
    cfg = os.path.join(outdir, "bench.yaml")
    write_config(cfg, meta)
    cases = [("single-node 1 server + 1 worker", "single", None),
             ("MPI 1 server + 1 worker", "mpi11", (1, 1)),
             ("MPI 1 server + 2 workers", "mpi12", (1, 2)),
             ("MPI 1 server + 3 workers", "mpi13", (1, 3))]
    results = {tag: (label, [], []) for label, tag, _ in cases}
    # Repetition-major order: each round runs every case once, so that the machine's slow
    # and fast spells (a shared VM) fall on all cases alike, and the ratios between cases
    # (MPI 1+1 vs single-node) compare runs made close together in time.
    for i in range(reps):
        for label, tag, mpi in cases:
            out = os.path.join(outdir, "out", f"{tag}_r{i}")
            if mpi is None:
                s, t = train_single(repo, fmps, cfg, out)
            else:
                s, t = train_mpi(repo, fmps, cfg, out, *mpi)
            results[tag][1].append(s)
            results[tag][2].append(t)
    single_med = statistics.median(s["rows_per_s"] for s in results["single"][1])
    for tag, (label, sums, times) in results.items():
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
        for rank in times[0]:
            table.add(sec, f"peak RSS {rank}", [r[rank]["rss"] for r in times], "MiB")
        if tag == "single" and all("server_busy_s" in s for s in sums):
            # The server thread in situ, next to its cost replayed alone (single-node bound).
            table.add(sec, "server thread busy during training (server_busy_s / train_s)",
                      [s["server_busy_s"] / s["train_s"] for s in sums], "")
            table.add(sec, "server thread CPU per key (pull + push, in situ)",
                      [s["server_busy_s"] * 1e9 / s["push_keys_applied"] for s in sums], "ns/key",
                      note="vs 'server thread: pull + push by handles, per unique key' alone")
            table.add(sec, "server-bound rows/s (1 / server CPU per row, in situ)",
                      [s["rows_trained"] / s["server_busy_s"] for s in sums], "rows/s")
        if tag == "single":
            lr_sweep(fmps, cfg, outdir, table, sec, sums)
            table.add(sec, "num_keys (distinct keys)", [s.get("num_keys") for s in sums], "keys")
            if "server_bytes_per_key" in sums[0]:
                table.add(sec, "server bytes/key (summary.json)",
                          [s["server_bytes_per_key"] for s in sums], "B/key")
    return os.path.join(outdir, "out", "single_r0", "model.fmps"), results


def lr_sweep(fmps, cfg, outdir, table, sec, headline):
    """One single-node run per learning rate of LR_SWEEP (the headline runs stand for
    BENCH_LR): the headline config's test logloss must be the sweep's best (within 0.001,
    async runs differ slightly)."""
    best = None
    for lr in LR_SWEEP:
        if lr == BENCH_LR:
            loss = statistics.median(s["test_logloss"] for s in headline)
        else:
            out = os.path.join(outdir, "out", f"lr_{lr}")
            os.makedirs(out, exist_ok=True)
            try:
                run([fmps, "train", cfg, "--set", f"output.dir={out}", "--set",
                     "cluster.local_servers=1", "--set", "cluster.local_workers=1", "--set",
                     f"optimizer.lr={lr}"], stdout=sys.stderr)
                with open(os.path.join(out, "summary.json")) as f:
                    loss = json.load(f)["test_logloss"]
            except RuntimeError:  # e.g. stopped as diverged
                loss = float("inf")
        table.add(sec, f"lr sweep: test logloss at lr {lr}", [loss], "")
        best = loss if best is None else min(best, loss)
    mine = statistics.median(s["test_logloss"] for s in headline)
    table.add(sec, f"test logloss at lr {BENCH_LR} (headline) vs sweep best {fmt(best)}", [mine],
              "", best + 0.001, "<=", note="no worse than the best of the sweep")


# ---- capacity model ------------------------------------------------------------------------

BATCH_ROWS = 1024  # train.batch_size of bench.yaml
SAMPLE_BATCHES = 100


def batch_stats(train_path):
    """Unique keys per BATCH_ROWS-row minibatch (the feature ids plus the bias key, as a pull
    sends them) and non-zeros per row, over the first SAMPLE_BATCHES batches of the file."""
    uniq, nnz, rows = [], 0, 0
    ids = set()
    with open(train_path) as f:
        for line in f:
            feats = line.split()[1:]
            nnz += len(feats)
            ids.update(t.split(":", 1)[0] for t in feats)
            rows += 1
            if rows % BATCH_ROWS == 0:
                uniq.append(len(ids) + 1)
                ids.clear()
                if len(uniq) == SAMPLE_BATCHES:
                    break
    return {"unique_keys_per_batch": statistics.mean(uniq), "batches": len(uniq),
            "nnz_per_row": nnz / max(1, rows)}


def varint_len(v):
    v = int(v)
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def message_overhead(num_keys, num_vals, num_counts=0, ref=0, request_id=5000):
    """Bytes of one wire message besides its arrays (common/comm/wire.h): u32 length prefix, the
    proto3 WireHeader (fields 1-8 and 11 as varints when non-zero, 9-10 fixed64) and the
    8-byte checksum. request_id and step are taken as typical mid-epoch values."""
    varints = [1, 1, request_id, request_id, 1, num_keys, num_vals, num_counts, ref]
    header = sum(1 + varint_len(v) for v in varints if v) + 2 * (1 + 8)
    return 4 + header + 8


def wire_bytes_per_batch(u, k, servers=1, counts=False):
    """(worker -> servers, servers -> worker) bytes for one minibatch of u unique keys in the
    async trainer: pull (8 B/key) + its reply (4(1+k) B/key), push of gradients by the pull's
    kept rows (4(1+k) B/key, no keys; + 4 B/key of counts when min_count > 1) + its empty
    reply; one message of each per server, the keys split evenly."""
    w = 1 + k
    per = u / servers
    out = servers * (message_overhead(per, 0) + 8 * per
                     + message_overhead(0, per * w, per if counts else 0, ref=5000)
                     + 4 * w * per + (4 * per if counts else 0))
    back = servers * (message_overhead(0, per * w) + 4 * w * per + message_overhead(0, 0))
    return out, back


def scaling(results, stats, table):
    """The scaling case: MPI 1 server + 1, 2, 3 workers (oversubscribed beyond 1 + 1 on a
    2-core machine). Per-rank CPU time (user + sys of /usr/bin/time) gives the server's busy
    fraction and the per-core costs the capacity model uses, which do not depend on how
    the ranks share the cores. Returns medians for the capacity model."""
    u = stats["unique_keys_per_batch"]
    cores = os.cpu_count() or 1
    sec = (f"scaling: MPI 1 server + W workers, 1 epoch (W + 1 ranks on {cores} cores; "
           f"keys served = push_keys_applied, each pulled and pushed)")
    out = {}
    base = None
    for w in (1, 2, 3):
        tag = f"mpi1{w}"
        if tag not in results:
            continue
        _, sums, times = results[tag]
        rps, busy, kps, ns_key, worker_rate, used, kpr = [], [], [], [], [], [], []
        for s_, t in zip(sums, times):
            rows = s_["rows_trained"]
            # The servers' count of keys pushed (each also pulled); else the sample's estimate.
            keys = s_.get("push_keys_applied") or rows / BATCH_ROWS * u
            kpr.append(keys / rows)
            srv = t["rank0 (server)"]
            wcpu = sum(v["cpu"] for r, v in t.items() if "worker" in r)
            wall = max(v["wall"] for v in t.values())
            rps.append(s_["rows_per_s"])
            busy.append(srv["cpu"] / srv["wall"])
            kps.append(keys / s_["train_s"])
            ns_key.append(srv["cpu"] / keys * 1e9)
            worker_rate.append(rows / wcpu)
            used.append(sum(v["cpu"] for v in t.values()) / wall)
        med = statistics.median(rps)
        if base is None:
            base = med
        label = f"1+{w}"
        table.add(sec, f"{label}: rows/s", rps, "rows/s",
                  note=f"x{med / base:.2f} of 1+1; ranks use "
                       f"{statistics.median(used):.2f} of {cores} cores")
        table.add(sec, f"{label}: rows/s per worker", [v / w for v in rps], "rows/s")
        table.add(sec, f"{label}: server busy (rank 0 CPU / wall)", busy, "core",
                  note="incl. start, eval, model write")
        table.add(sec, f"{label}: keys/s served by the server", kps, "keys/s",
                  note=f"{statistics.median(kpr):.2f} keys/row (sample: {u / BATCH_ROWS:.2f})")
        table.add(sec, f"{label}: server CPU per key served", ns_key, "ns/key",
                  note="pull + push incl. transport; upper bound")
        table.add(sec, f"{label}: rows per worker CPU-second", worker_rate, "rows/s")
        table.add(sec, f"{label}: server saturates at (1 core)",
                  [1e9 / v / r for v, r in zip(ns_key, kpr)], "rows/s",
                  note="1e9 / (CPU per key served x keys per row)")
        out[w] = {"rows_per_s": med, "server_ns_per_key": statistics.median(ns_key),
                  "worker_rows_per_cpu_s": statistics.median(worker_rate),
                  "server_busy": statistics.median(busy)}
    return out


CRITEO_ROWS_PER_DAY = 4e9
CRITEO_KEYS = 1e9
CRITEO_K = 16
EPOCH_S = 3600
SERVER_RAM_GIB = 128
RAM_USABLE = 0.75  # of a server's RAM for its stores and their checkpoint snapshot
ADAGRAD_S = 1


def capacity(stats, micro_fig, single_rps, scal, table):
    """Prints the capacity model's measured inputs and the cluster it sizes for
    Criteo-1TB-scale work (formulas: README "Capacity model")."""
    u = stats["unique_keys_per_batch"]
    sec = f"capacity model inputs (measured here, k={K} unless noted)"
    table.add(sec, f"unique keys per {BATCH_ROWS}-row batch", [u], "keys",
              note=f"first {stats['batches']} batches; {u / BATCH_ROWS:.1f} per row of "
                   f"{stats['nnz_per_row']:.1f} nnz")
    wire = {}
    for k in (K, CRITEO_K):
        o, b = wire_bytes_per_batch(u, k)
        wire[k] = (o / BATCH_ROWS, b / BATCH_ROWS)
        table.add(sec, f"wire bytes per row, k={k} (out + in)", [(o + b) / BATCH_ROWS],
                  "B/row", note=f"out {o / BATCH_ROWS:.0f} + in {b / BATCH_ROWS:.0f}")
    table.add(sec, "worker core rows/s: single-node (wall)", [single_rps], "rows/s",
              note="1 worker thread + 1 server thread")
    worker_rate = scal.get(1, {}).get("worker_rows_per_cpu_s")
    if worker_rate:
        table.add(sec, "worker core rows/s: MPI 1+1 (CPU time)", [worker_rate],
                  "rows/s")
    srv_ns = scal.get(1, {}).get("server_ns_per_key")
    if micro_fig.get("store_ns_k8"):
        table.add(sec, "server core keys/s: store only",
                  [1e9 / micro_fig["store_ns_k8"]], "keys/s", note="1e9 / Pull + Push by handles")
    if srv_ns:
        table.add(sec, "server core keys/s: MPI 1+1 (CPU time)",
                  [1e9 / srv_ns], "keys/s", note="incl. transport, codec, eval, model write")
    if micro_fig.get("store_ns_k16"):
        table.add(sec, "server core keys/s, k=16: store only", [1e9 / micro_fig["store_ns_k16"]],
                  "keys/s")
    if micro_fig.get("bytes_per_key_k16"):
        table.add(sec, "server bytes/key, k=16 adagrad",
                  [micro_fig["bytes_per_key_k16"]], "B/key")
    needed = [micro_fig.get(n) for n in ("store_ns_k8", "store_ns_k16", "bytes_per_key_k16",
                                         "fm_cache_k8", "fm_cache_k16", "parse_libsvm",
                                         "parse_criteo")]
    if not (worker_rate and srv_ns and all(needed)):
        log("capacity model: inputs missing (micro-benchmarks or MPI 1+1), model not sized")
        return None

    sec = (f"capacity model: {CRITEO_ROWS_PER_DAY:.0e} rows in a {EPOCH_S // 3600}-hour epoch, "
           f"{CRITEO_KEYS:.0e} keys, k={CRITEO_K}, adagrad")
    rate = CRITEO_ROWS_PER_DAY / EPOCH_S
    table.add(sec, "rows/s needed", [rate], "rows/s")
    # Worker: the measured per-row cost plus the FM kernel's extra cost at k = 16.
    t16 = 1 / worker_rate + 1 / micro_fig["fm_cache_k16"] - 1 / micro_fig["fm_cache_k8"]
    t16_tsv = t16 + 1 / micro_fig["parse_criteo"] - 1 / micro_fig["parse_libsvm"]
    for lbl, t in (("libsvm", t16), ("criteo TSV", t16_tsv)):
        table.add(sec, f"worker core rows/s, k=16, {lbl}", [1 / t], "rows/s")
        table.add(sec, f"worker cores for the epoch, {lbl}", [rate * t], "cores")
    # Server: the store's measured k = 16 cost plus 1+1's transport cost per key scaled by
    # the wire bytes per key (8 key + 2 x 4(1+k) values).
    overhead = max(0.0, srv_ns - micro_fig["store_ns_k8"])
    ns16 = micro_fig["store_ns_k16"] + overhead * (8 + 8 * (1 + CRITEO_K)) / (8 + 8 * (1 + K))
    table.add(sec, "server CPU per key, k=16 (pull + push)", [ns16], "ns/key")
    cores = {}
    for lbl, upr in (("synth skew", u / BATCH_ROWS), ("no repeats", stats["nnz_per_row"] + 1 / BATCH_ROWS)):
        kps = rate * upr
        cores[lbl] = kps * ns16 / 1e9
        table.add(sec, f"server cores for updates, {lbl}", [cores[lbl]], "cores",
                  note=f"{upr:.1f} keys/row, {kps:.3g} keys/s")
    row_bytes = 4 * (2 + (1 + CRITEO_K) * (1 + ADAGRAD_S))
    bpk = micro_fig["bytes_per_key_k16"]
    store_gib = CRITEO_KEYS * bpk / 2**30
    peak_gib = CRITEO_KEYS * (bpk + 1.125 * row_bytes) / 2**30
    budget = SERVER_RAM_GIB * RAM_USABLE
    table.add(sec, "server memory: store", [store_gib], "GiB", note=f"{bpk:.0f} B/key")
    table.add(sec, "server memory: store + ckpt snapshot", [peak_gib], "GiB",
              note=f"snapshot {1.125 * row_bytes:.0f} B/key")
    note = f"{SERVER_RAM_GIB} GiB, {RAM_USABLE:.0%} usable"
    table.add(sec, "server machines for memory: store", [store_gib / budget], "machines",
              note=note)
    table.add(sec, "server machines: store + ckpt snapshot", [peak_gib / budget], "machines",
              note=note)
    ow, iw = wire[CRITEO_K]
    table.add(sec, "network per worker core, out", [ow / t16 / 1e6], "MB/s",
              note=f"in {iw / t16 / 1e6:.0f} MB/s")
    table.add(sec, "network into all servers together", [rate * ow / 1e6],
              "MB/s", note=f"out {rate * iw / 1e6:.0f} MB/s; divide by the server ranks")
    return {"rows_per_s_needed": rate, "worker_rows_per_core_k16": 1 / t16,
            "worker_rows_per_core_k16_tsv": 1 / t16_tsv, "server_ns_per_key_k16": ns16,
            "server_cores": cores, "store_gib": store_gib, "peak_gib": peak_gib,
            "wire_per_row_k16": wire[CRITEO_K], "wire_per_row_k8": wire[K]}


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
    ap.add_argument("--ffm-only", action="store_true", help="run only the FFM cases")
    a = ap.parse_args()
    repo = a.repo
    fmps = os.path.join(repo, "build", "fmps")
    outdir = os.path.join(repo, "runs", "bench")
    os.makedirs(outdir, exist_ok=True)
    t_start = time.perf_counter()
    rows, test_rows = (200_000, 20_000) if a.quick else (2_000_000, 100_000)
    mach = machine()
    table = Table()

    if a.ffm_only:
        return run_ffm_only(repo, fmps, outdir, a, mach, table)
    meta = make_data(repo, fmps, rows, test_rows)
    ctx, micro_fig = micro(repo, table, a.reps, a.quick, outdir, meta["train"])
    model, results = end_to_end(repo, fmps, meta, table, a.reps, outdir)
    predict(fmps, model, meta, table, a.reps)
    stats = batch_stats(meta["train"])
    scal = scaling(results, stats, table)
    single_rps = statistics.median(s["rows_per_s"] for s in results["single"][1])
    model_out = capacity(stats, micro_fig, single_rps, scal, table)
    ffm_bench.ffm_cases(repo, fmps, run, log, train_single, train_mpi, table, a.reps, a.quick,
                        outdir, VOCAB, SEED)

    info = {"mode": "quick" if a.quick else "full", "rows": rows, "test_rows": test_rows,
            "train_mb": os.path.getsize(meta["train"]) / 1e6, "reps": a.reps}
    print_table(table, mach, info)
    total = time.perf_counter() - t_start
    print(f"total time {total:.0f} s; JSON: {os.path.join(outdir, 'bench.json')}")
    with open(os.path.join(outdir, "bench.json"), "w") as f:
        json.dump({"machine": mach, "run": info, "data": meta, "vocab": VOCAB, "fields": FIELDS,
                   "k": K, "benchmark_context": ctx, "total_s": total, "batch_stats": stats,
                   "capacity_model": model_out, "cases": table.rows},
                  f, indent=1)
    failed = [r["section"] + ": " + r["name"] for r in table.rows if r["pass"] is False]
    if failed:
        print(f"{len(failed)} figure(s) below target")


def run_ffm_only(repo, fmps, outdir, a, mach, table):
    """--ffm-only: the FFM cases alone (ffm_bench.py), printed and written to ffm.json."""
    ffm_bench.ffm_cases(repo, fmps, run, log, train_single, train_mpi, table, a.reps, a.quick,
                        outdir, VOCAB, SEED)
    rows = 200_000 if a.quick else 1_000_000
    print_table(table, mach, {"mode": "ffm only", "rows": rows, "test_rows": rows // 10,
                              "train_mb": 0, "reps": a.reps})
    with open(os.path.join(outdir, "ffm.json"), "w") as f:
        json.dump({"machine": mach, "cases": table.rows}, f, indent=1)


if __name__ == "__main__":
    main()
