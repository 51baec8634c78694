#!/usr/bin/env bash
# Checks launch/model_reader.py against `fmps predict`:
#   1. a small libsvm data set (fmps synth), a tiny model trained in single-node mode;
#   2. fmps predict and the Python reader score the same 500 test rows: every probability
#      agrees within 1e-5 (absolute); the same for a squared-loss model's scores;
#   3. --limit N prints N lines; a hashed model is refused with a message naming hash_bits 0;
#   4. it runs as is from standard input; 5. another script can import it (read the model,
#      score rows); 6. without google.protobuf it fails with one line naming python3-protobuf.
#   7. a damaged copy of the model (one byte of a parameter changed) is refused in one line
#      naming the file (the file's checksum); a version-1 file (written before the checksum:
#      no final keyless record) is scored by both, each warning that it is unverified.
#   8. a field-aware model (model.kind ffm, libffm data from synth --model ffm) and an FM
#      trained on the same libffm rows: both agree with fmps predict.
# Prints "SKIP: ..." and exits 0 when python3-protobuf (or protoc) is unavailable.
#
# Usage: bash tests/worker/cli/model_reader_test.sh path/to/fmps        (exit 0 = pass)
# ctest: add_test(NAME model_reader_test
#                 COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/model_reader_test.sh $<TARGET_FILE:fmps>)
set -euo pipefail

die() { echo "FAIL: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 path/to/fmps"
fmps="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[ -x "$fmps" ] || die "$1 is not an executable"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
reader="$repo/launch/model_reader.py"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# model_reader.py runs under the python that starts it: Debian's /usr/bin/python3 (with
# python3-protobuf) when there is one, else the first python3 on PATH that has protobuf.
python=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import google.protobuf' >/dev/null 2>&1; then
    python="$p"
    break
  fi
done
if [ -z "$python" ]; then
  echo "SKIP: model_reader.py checks (python3 with google.protobuf not found;" \
       "apt-get install python3-protobuf)"
  exit 0
fi
if ! command -v protoc >/dev/null 2>&1; then
  echo "SKIP: model_reader.py checks (protoc not found; apt-get install protobuf-compiler)"
  exit 0
fi
mkdir -p "$tmp/python"
protoc -I"$repo/common/proto" --python_out="$tmp/python" "$repo/common/proto/fmps.proto" ||
  die "protoc could not generate fmps_pb2.py"

# 1. Data and a tiny logistic model.
"$fmps" synth --out "$tmp/d" --rows 5000 --test-rows 500 --fields 8 --vocab 400 --k 4 \
  --seed 11 >/dev/null || die "fmps synth failed"
cat >"$tmp/exp.yaml" <<EOF
data:
  train: $tmp/d/train.libsvm
  format: libsvm
model:
  k: 4
train:
  epochs: 2
cluster:
  local_workers: 1
output:
  dir: $tmp/run
EOF
"$fmps" train "$tmp/exp.yaml" >/dev/null 2>&1 || die "fmps train failed"
model="$tmp/run/model.fmps"
[ -s "$model" ] || die "no model written"

# Largest |a - b| over two files of one number per line; fails unless both have `rows` lines.
compare() {
  local a="$1" b="$2" rows="$3" what="$4"
  [ "$(wc -l <"$a")" -eq "$rows" ] || die "$what: $a has $(wc -l <"$a") lines, want $rows"
  [ "$(wc -l <"$b")" -eq "$rows" ] || die "$what: $b has $(wc -l <"$b") lines, want $rows"
  paste "$a" "$b" | awk -v what="$what" '
    { d = $1 - $2; if (d < 0) d = -d; if (d > m) { m = d; at = NR } }
    END {
      if (m > 1e-5) { printf "FAIL: %s: line %d differs by %g\n", what, at, m; exit 1 }
      printf "ok: %s: %d rows agree (max |diff| %g)\n", what, NR, m
    }' || exit 1
}

# 2. Same rows, same probabilities.
"$fmps" predict --model "$model" --data "$tmp/d/test.libsvm" --out "$tmp/fmps.txt" ||
  die "fmps predict failed"
"$python" "$reader" "$tmp/python" "$model" "$tmp/d/test.libsvm" >"$tmp/py.txt" ||
  die "model_reader.py failed"
compare "$tmp/fmps.txt" "$tmp/py.txt" 500 "logistic probabilities"
awk '$1 <= 0 || $1 >= 1 { print "FAIL: probability out of (0, 1): " $1; exit 1 }' "$tmp/py.txt"

# Squared loss: raw scores.
"$fmps" train "$tmp/exp.yaml" --set model.loss=squared --set output.dir="$tmp/run_sq" \
  >/dev/null 2>&1 || die "fmps train (squared) failed"
"$fmps" predict --model "$tmp/run_sq/model.fmps" --data "$tmp/d/test.libsvm" \
  --out "$tmp/fmps_sq.txt" || die "fmps predict (squared) failed"
"$python" "$reader" "$tmp/python" "$tmp/run_sq/model.fmps" "$tmp/d/test.libsvm" \
  >"$tmp/py_sq.txt" || die "model_reader.py (squared) failed"
compare "$tmp/fmps_sq.txt" "$tmp/py_sq.txt" 500 "squared-loss scores"

# 3. --limit, and a model it does not handle.
"$python" "$reader" "$tmp/python" "$model" "$tmp/d/test.libsvm" --limit 7 >"$tmp/py7.txt" ||
  die "model_reader.py --limit failed"
[ "$(wc -l <"$tmp/py7.txt")" -eq 7 ] || die "--limit 7 printed $(wc -l <"$tmp/py7.txt") lines"
cmp -s "$tmp/py7.txt" <(head -n 7 "$tmp/py.txt") || die "--limit 7 rows differ from the first 7"
echo "ok: --limit"

"$fmps" train "$tmp/exp.yaml" --set data.hash_bits=16 --set output.dir="$tmp/run_hashed" \
  >/dev/null 2>&1 || die "fmps train (hashed) failed"
if "$python" "$reader" "$tmp/python" "$tmp/run_hashed/model.fmps" "$tmp/d/test.libsvm" \
  >/dev/null 2>"$tmp/err"; then
  die "model_reader.py accepted a hash_bits 16 model"
fi
grep -q "hash_bits 0" "$tmp/err" || die "unclear message for a hashed model: $(cat "$tmp/err")"
echo "ok: hashed model refused: $(cat "$tmp/err")"

# 4. Run from standard input, as is.
"$python" - "$tmp/python" "$model" "$tmp/d/test.libsvm" <"$reader" >"$tmp/py_stdin.txt" ||
  die "model_reader.py run from standard input failed"
cmp -s "$tmp/py_stdin.txt" "$tmp/py.txt" || die "model_reader.py from standard input differs"
echo "ok: runs from standard input"

# 5. Imported by another script, from another directory: read the model, score rows.
(cd "$tmp" && "$python" - "$repo/launch" "$tmp/python" "$model" "$tmp/d/test.libsvm" \
  >"$tmp/py_import.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import model_reader
model = model_reader.load_model(sys.argv[2], sys.argv[3])
for p in model_reader.predict_rows(model, model_reader.libsvm_rows(sys.argv[4])):
    print(f"{p:.7g}")
PY
) || die "importing model_reader failed"
cmp -s "$tmp/py_import.txt" "$tmp/py.txt" || die "model_reader imported gives other predictions"
echo "ok: importable"

# 6. Without google.protobuf: one clear line, exit 1.
if "$python" -c 'import sys; sys.modules["google"] = None; sys.argv = sys.argv[1:]
exec(compile(open(sys.argv[0]).read(), sys.argv[0], "exec"))' \
  "$reader" "$tmp/python" "$model" "$tmp/d/test.libsvm" >/dev/null 2>"$tmp/err"; then
  die "model_reader.py ran without google.protobuf"
fi
[ "$(wc -l <"$tmp/err")" -eq 1 ] || die "not one line without protobuf: $(cat "$tmp/err")"
grep -q "python3-protobuf" "$tmp/err" || die "unclear message without protobuf: $(cat "$tmp/err")"
echo "ok: without protobuf: $(cat "$tmp/err")"

# 7. A damaged model: one byte of the last parameter (the final record is 15 bytes).
size=$(stat -c %s "$model")
cp "$model" "$tmp/damaged.fmps"
printf '\x5a' | dd of="$tmp/damaged.fmps" bs=1 seek=$((size - 20)) conv=notrunc status=none
cmp -s "$model" "$tmp/damaged.fmps" && die "the damaged copy is identical"
if "$python" "$reader" "$tmp/python" "$tmp/damaged.fmps" "$tmp/d/test.libsvm" \
  >/dev/null 2>"$tmp/err"; then
  die "model_reader.py accepted a damaged model"
fi
[ "$(wc -l <"$tmp/err")" -eq 1 ] || die "not one line for a damaged model: $(cat "$tmp/err")"
grep -q "$tmp/damaged.fmps: damaged model file" "$tmp/err" ||
  die "unclear message for a damaged model: $(cat "$tmp/err")"
echo "ok: damaged model refused: $(cat "$tmp/err")"

# The model rewritten as a version-1 file: the last chunk with keys marked last, no checksum.
"$python" - "$tmp/python" "$model" "$tmp/v1.fmps" <<'PY'
import struct, sys
sys.path.insert(0, sys.argv[1])
import fmps_pb2
data = open(sys.argv[2], "rb").read()
recs, at = [], 8
while at < len(data):
    (n,) = struct.unpack_from("<I", data, at)
    recs.append(data[at + 4:at + 4 + n])
    at += 4 + n
header = fmps_pb2.ModelHeader()
header.ParseFromString(recs[0])
header.version = 1
chunk = fmps_pb2.ModelChunk()
chunk.ParseFromString(recs[-2])
chunk.last = True
out = [header.SerializeToString()] + recs[1:-2] + [chunk.SerializeToString()]
with open(sys.argv[3], "wb") as f:
    f.write(b"FMPSMDL1" + b"".join(struct.pack("<I", len(r)) + r for r in out))
PY
"$fmps" predict --model "$tmp/v1.fmps" --data "$tmp/d/test.libsvm" --out "$tmp/fmps_v1.txt" \
  2>"$tmp/err" || die "fmps predict refused a version-1 model: $(cat "$tmp/err")"
grep -q "$tmp/v1.fmps: model file written before model files carried a checksum" "$tmp/err" ||
  die "fmps predict did not warn about a version-1 model: $(cat "$tmp/err")"
cmp -s "$tmp/fmps.txt" "$tmp/fmps_v1.txt" || die "version-1 model scores differ"
"$python" "$reader" "$tmp/python" "$tmp/v1.fmps" "$tmp/d/test.libsvm" >"$tmp/py_v1.txt" \
  2>"$tmp/err" || die "model_reader.py refused a version-1 model: $(cat "$tmp/err")"
grep -q "warning: $tmp/v1.fmps: model file written before" "$tmp/err" ||
  die "model_reader.py did not warn about a version-1 model: $(cat "$tmp/err")"
cmp -s "$tmp/py.txt" "$tmp/py_v1.txt" || die "version-1 model scores differ (Python)"
echo "ok: version-1 model loaded with warnings"

# 8. FFM and FM models of libffm rows.
"$fmps" synth --out "$tmp/f" --rows 5000 --test-rows 300 --fields 5 --vocab 200 --k 4 \
  --format libffm --model ffm --seed 11 >/dev/null || die "fmps synth --model ffm failed"
for kind in ffm fm; do
  fields=""
  [ "$kind" = ffm ] && fields="--set model.kind=ffm --set model.fields=5"
  "$fmps" train "$tmp/exp.yaml" --set data.train="$tmp/f/train.libffm" --set data.format=libffm \
    $fields --set output.dir="$tmp/run_$kind" >/dev/null 2>&1 || die "fmps train ($kind) failed"
  "$fmps" predict --model "$tmp/run_$kind/model.fmps" --data "$tmp/f/test.libffm" \
    --out "$tmp/fmps_$kind.txt" || die "fmps predict ($kind) failed"
  "$python" "$reader" "$tmp/python" "$tmp/run_$kind/model.fmps" "$tmp/f/test.libffm" \
    >"$tmp/py_$kind.txt" || die "model_reader.py ($kind) failed"
  compare "$tmp/fmps_$kind.txt" "$tmp/py_$kind.txt" 300 "libffm $kind probabilities"
done
echo "PASS"
