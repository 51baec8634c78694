#!/usr/bin/env bash
# A cluster of N "hosts" on this machine: Linux network namespaces joined by veth pairs to a
# bridge, for running fmps under mpirun over TCP as if on N machines (needs root: it creates
# namespaces and links).
#
# Usage:
#   netns_cluster.sh check              exit 0 if namespaces and veth pairs can be made here,
#                                       else print why on stderr and exit 77 (ctest's skip)
#   netns_cluster.sh up N [OWNER_PID]   create a cluster of N hosts (1..50); print its run
#                                       name (e.g. fmps7) on stdout. OWNER_PID (default: the
#                                       caller's pid) is the process whose death makes the
#                                       cluster stale: a later `up` or `clean` removes it.
#   netns_cluster.sh down RUN           remove cluster RUN (namespaces, links, processes)
#   netns_cluster.sh clean              remove every cluster whose owner has died
#
# Layout of cluster RUN (nothing is added to the caller's network namespace):
#   RUN-head   the head node: bridge br0 at 10.231.0.1/24, where mpirun runs; a veth end
#              vhI per host, attached to the bridge. Bring host I's link down with
#              `ip -n RUN-head link set vhI down`.
#   RUN-hI     host I (0-based): loopback and eth0 = 10.231.0.(10+I)/24, the other end of vhI.
# tcp_retries2 is lowered in every namespace (see set_tcp_retries below).
# No namespace has a default route, so no address outside 10.231.0.0/24 can be reached.
# Every run uses the same subnet inside its own namespaces, so parallel runs never collide;
# run names are allocated under /run/fmps-netns (one directory per run, holding the owner's
# pid). `down` kills every process still running inside the run's namespaces first.
set -euo pipefail

state=/run/fmps-netns
subnet_prefix=10.231.0

skip() { echo "netns cluster unavailable: $*" >&2; exit 77; }

check() {
  [ "$(id -u)" -eq 0 ] || skip "not root (needs CAP_NET_ADMIN to create network namespaces)"
  command -v ip >/dev/null 2>&1 || skip "iproute2's ip command not found"
  local probe="fmps-probe-$$"
  ip netns add "$probe" 2>/dev/null || skip "cannot create a network namespace (ip netns add)"
  if ! ip -n "$probe" link add pa type veth peer name pb 2>/dev/null; then
    ip netns del "$probe" 2>/dev/null || true
    skip "cannot create a veth pair"
  fi
  if ! ip -n "$probe" link add pbr type bridge 2>/dev/null; then
    ip netns del "$probe" 2>/dev/null || true
    skip "cannot create a bridge"
  fi
  ip netns del "$probe"
}

# Kills every process in namespace $1, then deletes it.
remove_ns() {
  local ns="$1" pids
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || return 0
  pids="$(ip netns pids "$ns" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}

down() {
  local run="$1" ns
  [[ "$run" =~ ^fmps[0-9]+$ ]] || { echo "netns_cluster: bad run name '$run'" >&2; exit 2; }
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$run-(head|h[0-9]+)$"); do
    remove_ns "$ns"
  done
  rm -rf "${state:?}/$run"
}

clean() {
  local dir run owner
  mkdir -p "$state"
  for dir in "$state"/fmps*; do
    [ -d "$dir" ] || continue
    run="$(basename "$dir")"
    if [ ! -f "$dir/owner" ]; then
      # Being made by a concurrent `up` (owner written next), unless a minute old.
      [ -z "$(find "$dir" -maxdepth 0 -mmin +1)" ] || down "$run"
      continue
    fi
    owner="$(cat "$dir/owner")"
    if [[ ! "$owner" =~ ^[0-9]+$ ]] || [ "$owner" -le 1 ] || ! kill -0 "$owner" 2>/dev/null; then
      down "$run"
    fi
  done
}

# net.ipv4.tcp_retries2 of namespace $1 (per namespace): how long TCP retransmits unacknowledged
# data before giving up on a connection, about 0.2 s * (2^($2+1) - 1): 1.4 s with 2, 12.6 s
# with 5 (the default, 15, is about 15 min). mpirun (in the head) then gives up on the daemon
# of a host whose link died ~3 s after it first has to tell it something (to kill its ranks),
# and that daemon gives up on mpirun ~13 s after; MPI's own links between hosts survive a
# link that returns within 12 s. TCP checks the limit only when a retransmission timer fires
# (after 0.2, 0.6, 1.4, 3.0, 6.2 s, ...), so 2 in the head gives up 1.4-3 s after.
set_tcp_retries() {
  ip netns exec "$1" sysctl -q -w "net.ipv4.tcp_retries2=$2"
}

up() {
  local n="$1" owner="${2:-$PPID}" id run i
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 50 ] || { echo "netns_cluster: N must be 1..50" >&2; exit 2; }
  check
  clean
  for ((id = 1; ; id++)); do
    mkdir "$state/fmps$id" 2>/dev/null && break  # atomic: the first free name is ours
  done
  run="fmps$id"
  echo "$owner" >"$state/$run/owner"
  ip netns add "$run-head"
  ip -n "$run-head" link set lo up
  ip -n "$run-head" link add br0 type bridge
  ip -n "$run-head" addr add "$subnet_prefix.1/24" dev br0
  ip -n "$run-head" link set br0 up
  set_tcp_retries "$run-head" 2
  for ((i = 0; i < n; i++)); do
    ip netns add "$run-h$i"
    ip -n "$run-h$i" link set lo up
    ip link add "vh$i" netns "$run-head" type veth peer name eth0 netns "$run-h$i"
    ip -n "$run-head" link set "vh$i" master br0
    ip -n "$run-head" link set "vh$i" up
    ip -n "$run-h$i" addr add "$subnet_prefix.$((10 + i))/24" dev eth0
    ip -n "$run-h$i" link set eth0 up
    set_tcp_retries "$run-h$i" 5
  done
  echo "$run"
}

case "${1:-}" in
  check) check ;;
  up) [ "$#" -ge 2 ] || { echo "usage: $0 up N [OWNER_PID]" >&2; exit 2; }; up "$2" "${3:-$PPID}" ;;
  down) [ "$#" -eq 2 ] || { echo "usage: $0 down RUN" >&2; exit 2; }; down "$2" ;;
  clean) clean ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
