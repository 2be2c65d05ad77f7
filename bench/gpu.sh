#!/usr/bin/env bash
# The performance workloads on a CUDA GPU, memsweep against transformers in the same run, in one go:
#   bash bench/gpu.sh [OUT_DIR]          (default OUT_DIR: bench/gpu-out)
# Needs an NVIDIA GPU, the CUDA toolkit (nvcc), a C++ compiler, cmake (ninja if present) and a python3 with a CUDA
# torch, transformers and safetensors. Builds memsweep against that torch's libtorch (.ci/build-cuda, into
# build-gpu/; MPI and tests left out), then runs, each stage with its own time limit and log:
#   info          memsweep info (libtorch, devices)
#   forward-*     workload (3): teacher-forced forward at several batch x length, bfloat16, against transformers'
#                 eager and sdpa attention, with the GPU's bf16 matmul rate (bench/forward_throughput.py)
#   memorize-*    workload (1): a full single-block memorization sweep, bfloat16 (bench/memorization_sweep.py)
#   split         with 2+ GPUs: a model split over them (--devices K) equals the unsplit one (bench/split_devices.py)
# for a pythia-70m-shaped and a pythia-1.4b-shaped random-init model. The stages' limits add up to more than 10
# minutes (a typical per-command limit on a lent machine): MEMSWEEP_GPU_STAGES="split forward-70m" runs only the
# stages named (the build always runs; a second call on the same machine finds it done and only relinks). The multiple-choice sweep (workload 2) needs
# lm-evaluation-harness, which such a machine may lack: run bench on a CPU machine for it.
# C++ libraries the machine lacks come from Debian packages in bench/gpu-deps/ (bench/gpu-deps.sh fetches them
# where apt works), unpacked into a private prefix (never into /).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bench/gpu-out}
mkdir -p "$out"
python=${PYTHON:-python3}
summary="$out/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }

only=" ${MEMSWEEP_GPU_STAGES:-} "
stage() {  # stage NAME SECONDS COMMAND...: runs it with a time limit, output to OUT/NAME.log and the screen
  local name=$1 limit=$2; shift 2
  if [[ "$only" != "  " && "$only" != *" $name "* && "$name" != build ]]; then return 0; fi
  local start=$(date +%s)
  echo "=== $name"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local status=${PIPESTATUS[0]}
  say "$(printf '%-22s %5ds  exit %s' "$name" "$(($(date +%s) - start))" "$status")"
  return "$status"
}

say "gpu.sh $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$summary"
"$python" -c 'import torch, transformers; print("torch", torch.__version__, "CUDA", torch.version.cuda, "| transformers", transformers.__version__)' | tee -a "$summary"

# C++ dependencies: the system's, else the unpacked Debian packages.
deps="${MEMSWEEP_DEPS_PREFIX:-/tmp/memsweep-deps}"
if compgen -G "$root/bench/gpu-deps/*.deb" >/dev/null; then
  mkdir -p "$deps"
  for deb in "$root"/bench/gpu-deps/*.deb; do
    if command -v dpkg >/dev/null; then dpkg -x "$deb" "$deps"
    else (cd "$deps" && ar p "$deb" "$(ar t "$deb" | grep '^data.tar')" | tar -x -J 2>/dev/null || ar p "$deb" "$(ar t "$deb" | grep '^data.tar')" | tar -x --zstd); fi
  done
  export CMAKE_PREFIX_PATH="$deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export PKG_CONFIG_PATH="$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$deps"
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # pkgconf's own library
  command -v pkg-config >/dev/null || export PATH="$deps/usr/bin:$PATH" PKG_CONFIG="$deps/usr/bin/pkgconf"
  [[ -e "$deps/usr/bin/pkg-config" ]] || ln -sf pkgconf "$deps/usr/bin/pkg-config"
  say "C++ libraries from $(ls "$root"/bench/gpu-deps/*.deb | wc -l) Debian packages unpacked in $deps"
fi

export MEMSWEEP_NO_SETUP=1 MEMSWEEP_BUILD_DIR="$root/build-gpu"
export MEMSWEEP_TORCH_PREFIX=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
export MEMSWEEP_CMAKE_ARGS="-DMEMSWEEP_WITH_MPI=OFF -DMEMSWEEP_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release"
stage build 300 bash "$root/.ci/build-cuda" || { say "build failed: see $out/build.log"; exit 1; }
unset LD_LIBRARY_PATH  # the binary finds its libraries through its run path; python3 keeps the system's
bin="$root/build-gpu/memsweep"

stage info 30 "$bin" info --matmul-size 1024
stage split 60 "$python" "$root/bench/split_devices.py" --memsweep "$bin"
stage forward-70m 100 "$python" "$root/bench/forward_throughput.py" --shape pythia-70m --device cuda --dtype bfloat16 \
  --shapes 1x64,8x64,8x512,32x512,64x1024 --repeats 10 --memsweep "$bin"
stage memorize-70m 150 "$python" "$root/bench/memorization_sweep.py" --shape pythia-70m --device cuda --dtype bfloat16 \
  --rows 256 --batch 64 --repeats 5 --memsweep "$bin"
stage forward-1.4b 100 "$python" "$root/bench/forward_throughput.py" --shape pythia-1.4b --device cuda --dtype bfloat16 \
  --shapes 1x64,8x512,32x512 --repeats 5 --memsweep "$bin"
stage memorize-1.4b 200 "$python" "$root/bench/memorization_sweep.py" --shape pythia-1.4b --device cuda --dtype bfloat16 \
  --rows 64 --batch 64 --repeats 3 --memsweep "$bin"
echo; cat "$summary"
