#!/usr/bin/env bash
# Builds the seed corpus of the fuzz targets into OUT_DIR/<target>/ (run by tests/fuzz/run.sh;
# nothing here is checked in): the first lines of the real data sets in ../shared/data behind
# a few option bytes (see fuzz_targets.h), the example configs of configs/, encoded wire
# messages written by the wire_seeds tool, model files and checkpoint shards (real and
# crafted) written by the file_seeds tool.
# Usage: tests/fuzz/make_corpus.sh OUT_DIR WIRE_SEEDS_BINARY FILE_SEEDS_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
wire_seeds=$2
file_seeds=$3
data=../shared/data
rm -rf "$out"
mkdir -p "$out"/{libsvm,libffm,criteo,csv,config,wire}

# seed TARGET FILE LINES: one seed per option byte, each "<byte><first LINES lines of FILE>".
seed() {
  local target=$1 file=$2 lines=$3 name
  name=$(basename "$file")
  for opt in 00 13 2e 5b f4; do
    { printf "\\x$opt"; head -n "$lines" "$file"; } >"$out/$target/${name}_${lines}_$opt"
  done
}

if [ -d "$data" ]; then
  for f in a9a/a9a agaricus/agaricus.txt.train heart_scale/heart_scale \
           angel_libsvm/census_148d_train.libsvm angel_libsvm/w6a_300d_train.libsvm; do
    seed libsvm "$data/$f" 3
    seed libsvm "$data/$f" 20
  done
  seed libffm "$data/xlearn_criteo/small_train.txt" 3
  seed libffm "$data/xlearn_criteo/small_train.txt" 20
  seed criteo "$data/jqsl_pytorchfm_criteo/train.txt" 3
  seed criteo "$data/jqsl_pytorchfm_criteo/train.txt" 20
  for f in guestwalk_criteo_tiny/train.tiny.csv deepctr_samples/criteo_sample.txt \
           deepctr_samples/avazu_sample.txt deepctr_samples/movielens_sample.txt; do
    seed csv "$data/$f" 3
    seed csv "$data/$f" 20
  done
else
  echo "make_corpus: $data not present; data-format targets start from a tiny built-in seed" >&2
  printf '\x001 3:1 7:0.5\n0 2:1\n' >"$out/libsvm/tiny"
  printf '\x001 0:3:1 1:7:0.5\n0 0:2:1\n' >"$out/libffm/tiny"
  printf '\x001\t5\t\t3\ta1b2c3d4\n' >"$out/criteo/tiny"
  printf '\x00label,I1,C1\n1,3.5,ab\n0,,cd\n' >"$out/csv/tiny"
fi

cp configs/*.yaml "$out/config/"
# A config with every section and a --set override line (see FuzzConfig).
cat >"$out/config/full.yaml" <<'YAML'
data: {train: [a.txt, b.txt], format: csv, hash_bits: 20, on_error: fail,
       csv: {label: y, numeric: [n1], categorical: [c1], ignore: [id], delimiter: ";", transform: log_bucket}}
model: {k: 4, loss: squared, init_std: 0.1, l2_w: 0.5, l2_v: 1e-3, min_count: 3}
optimizer: {name: adam, lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-6}
train: {epochs: 3, batch_size: 64, consistency: async, max_delay: 4, seed: 7, progress_seconds: 0.5}
cluster: {servers: 2, local_servers: 2, local_workers: 3, timeout_seconds: 30}
checkpoint: {dir: ckpt, every_seconds: 60, keep: 3}
output: {dir: out}
#set optimizer.lr=0.02
YAML

"$wire_seeds" "$out/wire"
"$file_seeds" "$out"
for t in libsvm libffm criteo csv config wire model shard; do
  echo "make_corpus: $t: $(ls "$out/$t" | wc -l) seeds" >&2
done
