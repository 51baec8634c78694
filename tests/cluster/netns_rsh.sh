#!/usr/bin/env bash
# Open MPI's "remote shell" for a namespace cluster (tests/cluster/netns_cluster.sh): mpirun
# runs in RUN-head and is given `--mca plm_rsh_agent <this script>`; to start its daemon on
# host 10.231.0.(10+I) it calls `<this script> 10.231.0.(10+I) COMMAND...`, as it would call
# ssh. The script finds RUN from the namespace it is called in and runs COMMAND (a shell
# command line, as ssh would pass it to the remote shell) inside namespace RUN-hI.
set -euo pipefail

while [[ "${1:-}" == -* ]]; do shift; done  # ssh options (none expected)
[ "$#" -ge 2 ] || { echo "netns_rsh: usage: $0 HOST COMMAND..." >&2; exit 255; }
host="$1"
shift
[[ "$host" =~ ^10\.231\.0\.([0-9]+)$ ]] || { echo "netns_rsh: unknown host '$host'" >&2; exit 255; }
index=$((BASH_REMATCH[1] - 10))
self="$(ip netns identify $$ 2>/dev/null || true)"
[[ "$self" =~ ^(fmps[0-9]+)-(head|h[0-9]+)$ ]] || {
  echo "netns_rsh: not called inside a netns cluster namespace ('$self')" >&2
  exit 255
}
# Its own UTS namespace too, so the host's hostname (what MPI_Get_processor_name returns)
# is its namespace's name, as on separate machines.
ns="${BASH_REMATCH[1]}-h$index"
exec ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "$ns" "$*"
