#!/usr/bin/env bash
# Checks the launch tooling without MPI or a cluster:
#   1. bash -n (syntax) on every launch/*.sh and launch/slurm.sbatch;
#   2. launch/plot_metrics.py turns a small hand-written metrics.jsonl into a PNG
#      (checked by its magic bytes), with and without -o;
#   3. plot_metrics.py exits non-zero on a missing file and on a file with no usable events;
#   4. run_local.sh -h / --help prints its usage on stdout and exits 0; an unknown long
#      option is named and exits 2.
# Parts 2-3 are skipped (printing "SKIP: ...") when python3 or matplotlib is missing.
#
# Usage: bash tests/launch/launch_test.sh        (from anywhere; exit 0 = pass)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

die() { echo "FAIL: $*" >&2; exit 1; }

# 1. Syntax of the shell scripts.
shopt -s nullglob
scripts=("$repo"/launch/*.sh "$repo"/launch/slurm.sbatch)
[ "${#scripts[@]}" -gt 1 ] || die "no launch scripts found under $repo/launch"
for s in "${scripts[@]}"; do
  bash -n "$s" || die "bash -n $s"
done
echo "ok: bash -n on ${#scripts[@]} launch scripts"

# 4. run_local.sh's help and its unknown options (checked before anything needs MPI).
for h in --help -h "-s 2 --help"; do
  # shellcheck disable=SC2086
  out="$(bash "$repo/launch/run_local.sh" $h 2>/dev/null)" || die "run_local.sh $h exited $?"
  grep -q "^Usage:" <<<"$out" || die "run_local.sh $h printed no usage on stdout"
done
set +e
err="$(bash "$repo/launch/run_local.sh" --frobnicate x.yaml 2>&1 >/dev/null)"
status=$?
set -e
[ "$status" -eq 2 ] || die "run_local.sh --frobnicate exited $status, not 2"
grep -q "unknown option --frobnicate" <<<"$err" || die "run_local.sh did not name --frobnicate: $err"
for bad in "-i 10.0.0.0/8" "-f $tmp/no-such-hostfile"; do
  set +e
  # shellcheck disable=SC2086
  err="$(bash "$repo/launch/run_local.sh" $bad "$repo/configs/quickstart.yaml" 2>&1 >/dev/null)"
  status=$?
  set -e
  [ "$status" -eq 2 ] || die "run_local.sh $bad exited $status, not 2"
  grep -q "needs -f HOSTFILE\|hostfile .* not found" <<<"$err" || die "run_local.sh $bad: $err"
done
echo "ok: run_local.sh --help and unknown options"

# 2-3. plot_metrics.py; it re-runs itself with /usr/bin/python3 when the python3 on PATH
# lacks matplotlib, so matplotlib counts as present if either python has it.
python=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import matplotlib' >/dev/null 2>&1; then
    python="$p"
    break
  fi
done
if [ -z "$python" ]; then
  echo "SKIP: plot_metrics.py checks (python3 with matplotlib not found;" \
       "apt-get install python3-matplotlib)"
  exit 0
fi
plot="$repo/launch/plot_metrics.py"

is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }

mkdir -p "$tmp/run"
cat >"$tmp/run/metrics.jsonl" <<'EOF'
{"event":"progress","time_s":0.5,"epoch":1,"fraction":0.5,"rows":5000,"rows_per_s":10000,"train_logloss":0.62}
{"event":"progress","time_s":1.0,"epoch":1,"fraction":1,"rows":10000,"rows_per_s":10000,"train_logloss":0.55}
{"event":"eval","time_s":1.1,"epoch":1,"rows":10000,"rows_per_s":10000,"train_logloss":0.55,"test_rows":1000,"test_logloss":0.57,"test_auc":0.71}
{"event":"progress","time_s":1.5,"epoch":2,"fraction":0.5,"rows":15000,"rows_per_s":10000,"train_logloss":null}

{"event":"progress","time_s":2.0,"epoch":2,"fraction":1,"rows":20000,"rows_per_s":10000,"train_logloss":0.50}
{"event":"eval","time_s":2.1,"epoch":2,"rows":20000,"rows_per_s":10000,"train_logloss":0.50,"test_rows":1000,"test_logloss":0.54,"test_auc":null}
EOF

"$python" "$plot" "$tmp/run/metrics.jsonl" -o "$tmp/curves.png" >/dev/null ||
  die "plot_metrics.py -o failed"
[ -s "$tmp/curves.png" ] || die "no PNG written to $tmp/curves.png"
is_png "$tmp/curves.png" || die "$tmp/curves.png is not a PNG"

"$python" "$plot" "$tmp/run/metrics.jsonl" >/dev/null || die "plot_metrics.py failed"
is_png "$tmp/run/learning_curves.png" || die "default output learning_curves.png missing"
echo "ok: plot_metrics.py writes PNGs"

if "$python" "$plot" "$tmp/does-not-exist.jsonl" -o "$tmp/x.png" 2>"$tmp/err"; then
  die "plot_metrics.py succeeded on a missing file"
fi
[ "$(wc -l <"$tmp/err")" -eq 1 ] || die "expected a one-line message, got: $(cat "$tmp/err")"
[ ! -e "$tmp/x.png" ] || die "a PNG was written for a missing file"

printf '\n{"event":"progress","rows":null}\nnot json\n' >"$tmp/empty.jsonl"
if "$python" "$plot" "$tmp/empty.jsonl" -o "$tmp/y.png" 2>/dev/null; then
  die "plot_metrics.py succeeded on a file without usable events"
fi
echo "ok: plot_metrics.py fails on a missing file and on one without usable events"
echo "PASS"
