#!/bin/bash
# launch/slurm.sbatch on preemption, with stand-ins for srun (runs the command, forwarding
# SIGTERM to it) and scontrol (records its arguments): SIGTERM to the batch script makes
# fmps write a final checkpoint and exit 143, the script requeues the job, and the requeued
# run (SLURM_RESTART_COUNT=1) resumes and trains every row of every epoch.
# Usage: sbatch_preempt_test.sh FMPS_BINARY
set -euo pipefail

fmps="$1"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
die() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$tmp/bin" "$tmp/home/build"
ln -s "$fmps" "$tmp/home/build/fmps"
cat >"$tmp/bin/srun" <<'SH'
#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
"$@" &
child=$!
trap 'kill -TERM "$child"' TERM
status=0
wait "$child" || status=$?
if [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; then
  status=0
  wait "$child" || status=$?
fi
exit "$status"
SH
cat >"$tmp/bin/scontrol" <<SH
#!/bin/bash
echo "\$*" >>"$tmp/scontrol.log"
SH
chmod +x "$tmp/bin/srun" "$tmp/bin/scontrol"

rows=200000
"$fmps" synth --out "$tmp/data" --rows "$rows" --test-rows 1000 --vocab 5000 --seed 9 \
  >/dev/null 2>&1 || die "fmps synth failed"
cat >"$tmp/exp.yaml" <<YAML
data:
  train: $tmp/data/train.libsvm
  format: libsvm
model:
  k: 4
train:
  epochs: 4
  batch_size: 128
  consistency: bsp
  progress_seconds: 0.05
cluster:
  local_workers: 2
output:
  dir: $tmp/run
checkpoint:
  dir: $tmp/ckpt
  every_seconds: 1000
YAML

export PATH="$tmp/bin:$PATH" SLURM_JOB_ID=42 CONFIG="$tmp/exp.yaml" FMPS_HOME="$tmp/home"
export SLURM_SUBMIT_DIR="$tmp"

# First run: SIGTERM to the batch script once training is under way.
bash "$repo/launch/slurm.sbatch" >/dev/null 2>"$tmp/err" &
job=$!
for _ in $(seq 3000); do
  grep -q 'epoch 1/' "$tmp/err" 2>/dev/null && break
  sleep 0.02
done
kill -TERM "$job"
status=0
wait "$job" || status=$?
[ "$status" -eq 143 ] || die "sbatch exited $status, not 143: $(cat "$tmp/err")"
grep -q '^fmps: interrupted by SIGTERM; a final checkpoint was written' "$tmp/err" ||
  die "no final checkpoint line: $(cat "$tmp/err")"
[ "$(cat "$tmp/scontrol.log" 2>/dev/null)" = "requeue 42" ] || die "the job was not requeued"
[ ! -e "$tmp/run/model.fmps" ] || die "a model was written by the interrupted run"

# The requeued run resumes and finishes.
SLURM_RESTART_COUNT=1 bash "$repo/launch/slurm.sbatch" >/dev/null 2>"$tmp/err2" || die "requeued run: $(cat "$tmp/err2")"
grep -q '^fmps: resuming from' "$tmp/err2" || die "the requeued run did not resume"
trained="$(grep -o '"rows_trained": *[0-9]*' "$tmp/run/summary.json" | grep -o '[0-9]*$')"
[ "$trained" -eq $((4 * rows)) ] || die "rows_trained $trained, expected $((4 * rows))"
echo "sbatch_preempt_test: ok"
