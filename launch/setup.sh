#!/usr/bin/env bash
# Installs the Debian packages fmps needs (only those missing; needs root or sudo), builds
# fmps in Release into ./build, installs the binary as /usr/local/bin/fmps (on PATH) and
# generates the Python protobuf modules into build/python (for launch/model_reader.py).
# Idempotent: a second run installs no package and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin
  libeigen3-dev
  libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev
  libgtest-dev libgmock-dev
  libxxhash-dev
  libbenchmark-dev
  libfaiss-dev
  pybind11-dev python3-pybind11 python3-dev
  python3 python3-matplotlib python3-protobuf
  python3-numpy python3-scipy python3-sklearn python3-pytest
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
# fmps on PATH: /usr/local/bin/fmps (FMPS_PREFIX=DIR installs into DIR/bin instead).
prefix="${FMPS_PREFIX:-/usr/local}"
sudo=""
if [ ! -w "$prefix" ] && [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo cmake --install build --prefix "$prefix" >/dev/null
echo "setup: installed $prefix/bin/fmps" >&2

# Python modules for reading model files (launch/model_reader.py).
mkdir -p build/python
protoc -Icommon/proto --python_out=build/python common/proto/fmps.proto
