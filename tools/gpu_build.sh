#!/usr/bin/env bash
# Builds shazip with CUDA on the GPU machine (no apt, no internet: CUDA, nvcc,
# cmake, ninja and PyTorch with its LibTorch are there) from a fresh copy of the
# tree, runs the whole test suite ([gpu] tests included), and optionally the GPU
# benchmark.
#
# The Debian -dev packages shazip builds against travel as unpacked .deb files:
# on a Debian machine, `tools/gpu_build.sh fetch` downloads libcli11-dev,
# catch2, libzstd-dev and libzstd1 and unpacks them under .debs/root (an
# ignored folder; pass it to the device tool's `carry`).
#
# Usage: tools/gpu_build.sh fetch              (on the Debian machine)
#        tools/gpu_build.sh [test|bench CORPUS_DIR]   (on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.debs/root"
mode="${1:-test}"

if [[ $mode == fetch ]]; then
  mkdir -p .debs && cd .debs
  apt-get download libcli11-dev catch2 libzstd-dev libzstd1
  rm -rf root && mkdir root
  for deb in ./*.deb; do dpkg -x "$deb" root; done
  echo "gpu_build.sh: unpacked into .debs/root; carry .debs"
  exit 0
fi

[[ -d $root/usr ]] || { echo "gpu_build.sh: no $root (run 'tools/gpu_build.sh fetch' on Debian and carry .debs)" >&2; exit 1; }
torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSHAZIP_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$root/usr" \
  -DZSTD_INCLUDE_DIR="$root/usr/include" \
  -DZSTD_LIBRARY="$root/usr/lib/x86_64-linux-gnu/libzstd.so.1"
cmake --build build-gpu -j "$(nproc)"

case "$mode" in
  test)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    ctest --test-dir build-gpu --output-on-failure -j 4
    ;;
  bench)
    corpus="${2:?usage: tools/gpu_build.sh bench CORPUS_DIR}"
    for f in "$corpus/silesia/dickens" "$corpus/enwik/enwik8-head4M"; do
      build-gpu/shazip -b --device cuda --levels 5,6,7,8,9 --markdown "$f"
    done
    ;;
  *)
    echo "usage: tools/gpu_build.sh fetch | test | bench CORPUS_DIR" >&2
    exit 2
    ;;
esac
