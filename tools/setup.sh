#!/usr/bin/env bash
# Installs what shazip needs from Debian (bookworm), configures and builds it,
# then runs one of:
#   tools/setup.sh demo [FILE]   compress FILE (default: the GPL-3 text that
#                                every Debian machine has), show the archive
#                                size, bits per character and zstd -19 on the
#                                same file, and round-trip it
#   tools/setup.sh test          the whole test suite through ctest, then the
#                                torch-free tests again under AddressSanitizer
#                                and UndefinedBehaviorSanitizer, then short
#                                libFuzzer runs (clang)
#   tools/setup.sh build         build only
# Idempotent: installs only missing packages, reuses the build directory.
# Environment: BUILD_DIR (default build), JOBS (default nproc).
set -euo pipefail

cd "$(dirname "$0")/.."
mode="${1:-build}"
build_dir="${BUILD_DIR:-build}"
jobs="${JOBS:-$(nproc)}"

packages=(cmake g++ make libtorch-dev libopenblas0-openmp libzstd-dev libcli11-dev catch2 zstd)
# The tests also build the libFuzzer targets, which need clang.
if [[ $mode == test ]]; then packages+=(clang libclang-rt-14-dev); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$build_dir" -j "$jobs" >&2

case "$mode" in
  build) ;;
  test)
    ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$jobs"
    # The torch-free tests again under AddressSanitizer and UBSan (the same
    # build also makes test_model, test_cli and shazip sanitized on request:
    # cmake --build build-sanitize --target test_cli).
    cmake -S . -B "$build_dir-sanitize" -DCMAKE_BUILD_TYPE=Debug -DSHAZIP_SANITIZE=ON >&2
    cmake --build "$build_dir-sanitize" -j "$jobs" --target test_coder test_container test_mix test_plot test_kernels >&2
    ctest --test-dir "$build_dir-sanitize" --output-on-failure --no-tests=error -j "$jobs" -R '^sanitized:'
    # Short libFuzzer runs (header parser, coder and mixing stage, whole
    # archives), seeded with the golden archives.
    cmake -S . -B "$build_dir-fuzz" -DCMAKE_CXX_COMPILER=clang++ -DSHAZIP_FUZZ=ON \
      -DSHAZIP_BUILD_TESTS=OFF -DSHAZIP_BUILD_BENCHMARKS=OFF >&2
    cmake --build "$build_dir-fuzz" -j "$jobs" --target fuzz_header fuzz_mix fuzz_decode >&2
    ctest --test-dir "$build_dir-fuzz" --output-on-failure --no-tests=error -j "$jobs"
    ;;
  demo)
    exec bash tools/demo.sh "$build_dir/shazip" "${2:-/usr/share/common-licenses/GPL-3}"
    ;;
  *)
    echo "usage: tools/setup.sh [build|test|demo [FILE]]" >&2
    exit 2
    ;;
esac
