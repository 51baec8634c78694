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
# With the Python module built, the package lands in the prefix's dist-packages of Debian's
# python3 (on its sys.path for the /usr/local prefix) and imports from there.
if compgen -G "$1/python/fmps/_core*.so" >/dev/null; then
  site="$(find "$tmp/prefix/lib" -path '*/dist-packages/fmps/__init__.py' | head -n 1)"
  [ -n "$site" ] || die "no fmps package under $tmp/prefix/lib/python3*/dist-packages"
  (cd / && PYTHONPATH="$(dirname "$(dirname "$site")")" /usr/bin/python3 -c \
      'import fmps, os, sys; sys.exit(0 if fmps.__file__.startswith(os.environ["PYTHONPATH"]) else 1)') ||
    die "the installed fmps package does not import"
fi
echo "PASS"
