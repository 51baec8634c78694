#!/usr/bin/env bash
# Runs an fmps training job as an MPI job with S server ranks and W worker ranks, on this
# machine or (-f) on the hosts of a hostfile (ranks 0..S-1 are servers, the rest workers).
#
# Usage:
#   launch/run_local.sh [-s S] [-w W] [-f HOSTFILE [-i CIDR]] CONFIG.yaml [fmps train args...]
#   launch/run_local.sh -h | --help     this text
#     -s S   server ranks (default 1); passed to fmps as --set cluster.servers=S
#     -w W   worker ranks (default 2)
#     -f HOSTFILE  run on the hosts of this Open MPI hostfile instead of this machine:
#            adds --hostfile HOSTFILE --map-by node (rank r goes to host r mod hosts, so
#            the servers, the first ranks, land on different hosts) and --mca btl tcp,self
#     -i CIDR  with -f: the only network MPI uses, e.g. 10.1.0.0/16 (--mca
#            btl_tcp_if_include CIDR --mca oob_tcp_if_include CIDR)
#     extra arguments go to `fmps train` unchanged, e.g. --set optimizer.lr=0.02
#
# Examples:
#   launch/run_local.sh configs/quickstart.yaml
#   launch/run_local.sh -s 2 -w 4 configs/libsvm.yaml --set train.epochs=3
#   launch/run_local.sh -f hosts.txt -i 10.1.0.0/16 -s 2 -w 6 exp.yaml
#
# Runs `mpirun -np S+W --bind-to none build/fmps train ...`, adding --oversubscribe --mca
# mpi_yield_when_idle 1 when S+W exceeds the cores of this machine (ranks then share cores;
# yielding when idle keeps waiting ranks from spinning) and --allow-run-as-root when run as
# root. With a core per rank there is nothing to yield to but the other ranks' threads: a
# server rank that yields whenever it polls an empty queue hands its core to them, and its
# next request then waits for that core (measured on 2 cores, MPI 1 + 1: 5-10% fewer rows/s
# with the flag, slower in 10 of 14 paired runs). The binary is build/fmps of this
# repository (build it with launch/setup.sh; the environment variable FMPS_BINARY names
# another). Relative paths in CONFIG are relative to the
# current directory, as for `fmps train`. Prints the mpirun command, then exits with its
# (fmps's) status. With -f, the --oversubscribe rule counts the slots of the hostfile
# (a line without slots= counts 1) instead of this machine's cores.
set -euo pipefail

usage() {
  echo "usage: $0 [-s SERVERS] [-w WORKERS] CONFIG.yaml [fmps train args...]" >&2
  echo "       $0 -h | --help" >&2
  exit 2
}

# -h / --help: the header comment above, on stdout, exit 0.
help() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit 0
}
# Long options before the config: only --help exists.
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --help) help ;;
    --*) echo "run_local: unknown option ${args[i]}" >&2; usage ;;
    -s | -w | -f | -i) i=$((i + 1)) ;;
    -*) ;;
    *) break ;;
  esac
done

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

servers=1
workers=2
hostfile=""
subnet=""
while getopts ":s:w:f:i:h" opt; do
  case "$opt" in
    s) servers="$OPTARG" ;;
    w) workers="$OPTARG" ;;
    f) hostfile="$OPTARG" ;;
    i) subnet="$OPTARG" ;;
    h) help ;;
    :) echo "run_local: option -$OPTARG needs a value" >&2; usage ;;
    *) echo "run_local: unknown option -$OPTARG" >&2; usage ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -ge 1 ] || usage
config="$1"
shift

is_count "$servers" || { echo "run_local: -s must be a positive integer, got '$servers'" >&2; exit 2; }
is_count "$workers" || { echo "run_local: -w must be a positive integer, got '$workers'" >&2; exit 2; }
[ -f "$config" ] || { echo "run_local: config file '$config' not found" >&2; exit 2; }
[ -z "$hostfile" ] || [ -f "$hostfile" ] || { echo "run_local: hostfile '$hostfile' not found" >&2; exit 2; }
[ -z "$subnet" ] || [ -n "$hostfile" ] || { echo "run_local: -i needs -f HOSTFILE" >&2; exit 2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fmps="${FMPS_BINARY:-$repo/build/fmps}"
if [ ! -x "$fmps" ]; then
  echo "run_local: $fmps not found; build it first with: bash $repo/launch/setup.sh" >&2
  exit 1
fi
command -v mpirun >/dev/null 2>&1 || {
  echo "run_local: mpirun not found; install Open MPI with: bash $repo/launch/setup.sh" >&2
  exit 1
}

np=$((servers + workers))
cores="$(nproc)"
mpi_args=(-np "$np" --bind-to none)
where="on $cores core(s)"
if [ -n "$hostfile" ]; then
  # Slots of the hostfile: slots=N per line, 1 without; comments and blank lines skipped.
  cores="$(sed 's/#.*//' "$hostfile" | awk 'NF { n = 1; for (i = 2; i <= NF; i++)
    if ($i ~ /^slots=/) n = substr($i, 7); s += n } END { print s + 0 }')"
  where="on the hosts of $hostfile ($cores slot(s))"
  mpi_args+=(--hostfile "$hostfile" --map-by node --mca btl tcp,self)
  if [ -n "$subnet" ]; then
    mpi_args+=(--mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet")
  fi
fi
if [ "$np" -gt "$cores" ]; then mpi_args+=(--oversubscribe --mca mpi_yield_when_idle 1); fi
if [ "$(id -u)" -eq 0 ]; then mpi_args+=(--allow-run-as-root); fi

cmd=(mpirun "${mpi_args[@]}" "$fmps" train "$config" --set "cluster.servers=$servers" "$@")
echo "run_local: $servers server(s) + $workers worker(s) $where:" >&2
printf '%q ' "${cmd[@]}" >&2
echo >&2
exec "${cmd[@]}"
