#!/usr/bin/env bash
# Training rows/s over TCP between namespace hosts (tests/cluster/netns_cluster.sh: 1 server
# on host 0, workers on hosts 1 and 2) beside the same 1 server + 2 workers on one host,
# where Open MPI uses shared memory; same data (Criteo-shaped planted FM, as the benchmark
# suite makes it), async, k = 8, adagrad lr 0.02, batch 1024, 1 epoch, as the suite trains. Runs alternate, REPEATS times each;
# prints each run's rows/s (summary.json) and the medians. Needs root; not part of ctest.
#
# Usage: bash tests/cluster/tcp_vs_shm.sh FMPS_BINARY [ROWS (default 500000)] [REPEATS (3)]
set -euo pipefail

fmps="$(realpath "$1")"
rows="${2:-500000}"
repeats="${3:-3}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="$repo/tests/cluster/netns_cluster.sh"
bash "$cluster" check
tmp="$(mktemp -d)"
run=""
trap '[ -z "$run" ] || bash "$cluster" down "$run"; rm -rf "$tmp"' EXIT
run="$(bash "$cluster" up 3 $$)"
for i in 0 1 2; do echo "10.231.0.$((10 + i)) slots=2"; done >"$tmp/hosts"
export OMPI_MCA_plm_rsh_agent="$repo/tests/cluster/netns_rsh.sh" OMPI_MCA_plm_rsh_no_tree_spawn=1
export FMPS_BINARY="$fmps"

"$fmps" synth --out "$tmp/data" --rows "$rows" --test-rows 1000 --fields 39 --vocab 1050000 \
  --k 8 --seed 1 >/dev/null
cat >"$tmp/exp.yaml" <<EOF
data: {train: $tmp/data/train.libsvm, format: libsvm}
model: {k: 8}
optimizer: {name: adagrad, lr: 0.02}
train: {epochs: 1, batch_size: 1024, consistency: async}
EOF
rate() { grep -o '"rows_per_s":[0-9.]*' "$1/summary.json" | cut -d: -f2; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
for ((i = 0; i < repeats; i++)); do
  bash "$repo/launch/run_local.sh" -s 1 -w 2 "$tmp/exp.yaml" --set "output.dir=$tmp/shm$i" \
    >/dev/null 2>&1
  ip netns exec "$run-head" bash "$repo/launch/run_local.sh" -f "$tmp/hosts" -i 10.231.0.0/24 \
    -s 1 -w 2 "$tmp/exp.yaml" --set "output.dir=$tmp/tcp$i" >/dev/null 2>&1
  echo "run $i: shared memory $(rate "$tmp/shm$i") rows/s, TCP between namespaces $(rate "$tmp/tcp$i") rows/s"
done
echo "median: shared memory $(for ((i = 0; i < repeats; i++)); do rate "$tmp/shm$i"; done | median)" \
     "rows/s, TCP $(for ((i = 0; i < repeats; i++)); do rate "$tmp/tcp$i"; done | median) rows/s"
