#!/usr/bin/env bash
# Fetches, where apt works, the Debian packages of the C++ libraries memsweep links, into bench/gpu-deps/, for a
# GPU machine that has CUDA, a compiler and a CUDA torch but no package registry (bench/gpu.sh unpacks them into a
# private prefix there). Debian 12 packages; they run on a newer glibc (e.g. Ubuntu 24.04).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/bench/gpu-deps"
cd "$root/bench/gpu-deps"
apt-get download libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0 libpcre2-dev libpcre2-8-0 \
  libutf8proc-dev libutf8proc2 libtomlplusplus-dev libtomlplusplus3 nlohmann-json3-dev libsqlite3-dev libsqlite3-0 libssl-dev \
  libssl3 pkgconf pkgconf-bin libpkgconf3
ls -l "$root/bench/gpu-deps"
