#!/usr/bin/env bash
# Checks that `cmake --install BUILD --prefix P` puts a working fmps into P/bin, the
# binary launch/setup.sh installs into /usr/local/bin so that `fmps` is on PATH.
#
# Usage: bash tests/worker/cli/install_test.sh BUILD_DIR        (exit 0 = pass)
set -euo pipefail

die() { echo "FAIL: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cmake --install "$1" --prefix "$tmp/prefix" >"$tmp/log" 2>&1 ||
  die "cmake --install failed: $(cat "$tmp/log")"
[ -x "$tmp/prefix/bin/fmps" ] || die "no executable bin/fmps under the prefix"
PATH="$tmp/prefix/bin:$PATH" fmps --version | grep -q '^fmps ' ||
  die "the installed fmps does not run"
echo "PASS"
