#!/usr/bin/env bash
# Builds shazip with CUDA on the GPU machine (no apt, no internet: CUDA, nvcc,
# cmake, ninja and PyTorch with its LibTorch are there) from a fresh copy of the
# tree, runs the whole test suite ([gpu] tests included), and optionally the GPU
# benchmark.
#
# Only the repository travels to the GPU machine (not ../shared), so the Debian
# -dev packages shazip builds against and the benchmark's two files travel in
# an ignored folder: on a Debian machine, `tools/gpu_build.sh fetch [CORPUS]`
# downloads libcli11-dev, catch2, libzstd-dev and libzstd1, unpacks them under
# .debs/root, and copies silesia/dickens and enwik/enwik8-head4M from CORPUS
# (unpacked by ../shared/corpora/unpack.sh) to .debs/corpus, 14 MB. Pass .debs
# to the device tool's `carry`.
#
# Usage: tools/gpu_build.sh fetch [CORPUS_DIR]     (on the Debian machine)
#        tools/gpu_build.sh quick                  (on the GPU machine)
#        tools/gpu_build.sh test
#        tools/gpu_build.sh bench [LEVELS [BYTES [FILES...]]]
#        tools/gpu_build.sh groups [LEVEL [GROUPS [BYTES [FILE]]]]
#        tools/gpu_build.sh paths [LEVEL [BYTES [FILE]]]
#
# quick is the first call of a device session, sized for one 10-minute call
# and cut to QUICK_SECONDS (default 540, the build included; each step gets
# what is left, so the call ends with its figures): the build of what it runs,
# the [gpu] tests (the CDF kernels against the CPU quantizer; the CUDA step and
# training kernels against the CPU's bits; format 10's GPU archives equal to
# the CPU's, repeatable, decoding without a GPU), then `shazip -b --progress`
# of all of dickens and enwik8-head4M at presets 6-9, each cut off after 40-80
# s (a GPU preset takes all its streams only on a large input, 32 KB per
# stream; a run cut off still leaves its speed and running bpc in the
# progress lines), then format 10's products plain against tiled (paths,
# preset 7, 128 streams of 3 KB). GPU_OUT names a folder for the logs
# (tests.log, bench.md, bench.log, paths.log). test runs the whole suite.
# bench runs `shazip -b --device cuda` (compress, decompress, compare, against
# zstd) on each file, by default .debs/corpus/*, at LEVELS (default 6,7,8,9),
# on the first BYTES bytes of each (default: all) and prints Markdown rows.
# A device session has 15 minutes in all and 10 per call, the machine's start
# included: at 100 KB/s a round trip of dickens (10 MB) takes over 3 minutes
# per preset. A prefix is coded in fewer streams than the whole file (32 KB
# per stream at least: 500 KB gives 15), so its speed is not the preset's.
#
# groups runs build-gpu/bench_model --device cuda at preset LEVEL (default 8)
# with each training-group count in GROUPS (default 1,2,4,8,16; format 8,
# docs/DESIGN.md "training groups") on the first BYTES (default 1000000) of
# FILE (default .debs/corpus/dickens), in streams of 2 KB (PATHS_MIN_STREAM)
# so that the preset's streams are all there: KB/s against bpc, to choose
# presets 6-9's G, whose speed cost only a GPU can tell.
#
# paths runs build-gpu/bench_model --device cuda at preset LEVEL (default 7)
# on the first BYTES (default 300000) of FILE (default .debs/corpus/dickens),
# in streams of 2 KB (PATHS_MIN_STREAM) up to the preset's count, four ways:
# LibTorch's step and training (format 8), shazip's CUDA step
# kernels with LibTorch's training (format 9), and both on shazip's kernels
# (format 10) with their products plain and tiled (the same output): what
# each set of kernels buys, predict and train seconds apart (the training
# inline, --async 0, so that "train s" is its GPU time).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.debs/root"
mode="${1:-test}"

if [[ $mode == fetch ]]; then
  corpus_src=""
  [[ $# -ge 2 ]] && corpus_src="$(realpath "$2")"
  mkdir -p .debs && cd .debs
  apt-get download libcli11-dev catch2 libzstd-dev libzstd1
  rm -rf root && mkdir root
  for deb in ./*.deb; do dpkg -x "$deb" root; done
  if [[ -n $corpus_src ]]; then
    mkdir -p corpus
    for f in silesia/dickens enwik/enwik8-head4M; do
      [[ -f $corpus_src/$f ]] || { echo "gpu_build.sh: no $corpus_src/$f (unpack the corpora there first)" >&2; exit 1; }
      cp "$corpus_src/$f" corpus/
    done
  fi
  echo "gpu_build.sh: unpacked into .debs/root${corpus_src:+, corpus files in .debs/corpus}; carry .debs"
  exit 0
fi

[[ -d $root/usr ]] || { echo "gpu_build.sh: no $root (run 'tools/gpu_build.sh fetch' on Debian and carry .debs)" >&2; exit 1; }
torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
generator=()
keep_going=()
command -v ninja >/dev/null && generator=(-G Ninja) && keep_going=(-- -k 0)
# The device's own architecture (cmake >= 3.24 asks the GPU), not CMakeLists'
# default "80 90": half the nvcc time.
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSHAZIP_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${SHAZIP_CUDA_ARCHITECTURES:-native}" \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$root/usr" \
  -DZSTD_INCLUDE_DIR="$root/usr/include" \
  -DZSTD_LIBRARY="$root/usr/lib/x86_64-linux-gnu/libzstd.so.1"
# quick builds only what it runs (test_simt and bench_ops run the same on any
# CPU); every error at once (-k 0), since a device call is short.
targets=()
[[ $mode == quick ]] && targets=(--target shazip test_gpu test_model test_cli bench_model)
cmake --build build-gpu -j "$(nproc)" "${targets[@]}" "${keep_going[@]}"

bench() {
  local levels="$1" bytes="$2"
  shift 2
  local files=("$@")
  [[ ${#files[@]} -gt 0 ]] || files=(.debs/corpus/*)
  nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for f in "${files[@]}"; do
    [[ -f $f ]] || { echo "gpu_build.sh: no file $f" >&2; exit 1; }
    local input="$f"
    if [[ $bytes -gt 0 ]]; then
      input="$tmp/$(basename "$f")-head$bytes"
      head -c "$bytes" "$f" > "$input"
    fi
    # One slow run must not take the whole device call: each preset on each
    # file gets BENCH_TIMEOUT seconds (default 240), then the next one runs.
    local level
    for level in ${levels//,/ }; do
      timeout "${BENCH_TIMEOUT:-240}" build-gpu/shazip -b --device cuda --levels "$level" --markdown "$input" ||
        echo "gpu_build.sh: shazip -b -$level on $input failed or ran past ${BENCH_TIMEOUT:-240} s (status $?)"
    done
  done
}

# bench_model on the GPU at one preset, kernel paths "STEP TRAIN TILED"
# (default the four of paths above), each cut off after BENCH_TIMEOUT seconds.
paths() {
  local level="$1" bytes="$2" file="$3"
  shift 3
  local combos=("$@")
  [[ ${#combos[@]} -gt 0 ]] || combos=("0 0 1" "1 0 1" "1 1 0" "1 1 1")
  [[ -f $file ]] || { echo "gpu_build.sh: no file $file" >&2; exit 1; }
  local kernels step train tiled
  for kernels in "${combos[@]}"; do
    read -r step train tiled <<< "$kernels"
    echo "CUDA step kernels $step, CUDA training kernels $train, tiled products $tiled"
    timeout "${BENCH_TIMEOUT:-240}" build-gpu/bench_model --device cuda -p "$level" --cuda-kernels "$step" \
      --cuda-train-kernels "$train" --tiled "$tiled" --async 0 --min-stream "${PATHS_MIN_STREAM:-2048}" -n "$bytes" "$file" ||
      echo "gpu_build.sh: bench_model -p $level ($kernels) failed or ran past ${BENCH_TIMEOUT:-240} s (status $?)"
  done
}

case "$mode" in
  quick)
    # One device call, cut to QUICK_SECONDS (default 540, from the script's
    # start, the build included): each step gets what is left, in the order
    # of what the issue asks for first, so that the call ends with its
    # figures rather than being killed mid-run. Bench rows go to stdout;
    # GPU_OUT (the device tool's $OUT) gets the tests' and benches' logs.
    deadline=$(( ${QUICK_SECONDS:-540} ))
    out="${GPU_OUT:-$(mktemp -d)}"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
    echo "gpu_build.sh: built at $SECONDS s"
    # capped CAP CMD...: CMD under a timeout of CAP seconds or what is left
    # before the deadline (less 15 s to report), skipped with under 20 s left.
    capped() {
      local cap="$1" left=$(( deadline - SECONDS - 15 ))
      shift
      (( left < cap )) && cap=$left
      if (( cap < 20 )); then echo "gpu_build.sh: skipped (deadline): $*"; return 0; fi
      local t0=$SECONDS rc=0
      timeout "$cap" "$@" || rc=$?
      echo "gpu_build.sh: $* -> status $rc after $(( SECONDS - t0 )) s (cap $cap s)"
      return 0
    }
    status=0
    # The [gpu] tests: the CDF kernels against the CPU quantizer, the CUDA
    # step and training kernels against the CPU's bits, a CUDA predictor's
    # tables, CLI round trips and repeatable archives.
    for t in "60 test_gpu" "150 test_model [gpu]" "150 test_cli [gpu]"; do
      read -r cap exe tag <<< "$t"
      capped "$cap" build-gpu/$exe ${tag:+"$tag"} --durations yes 2>&1 | tee -a "$out/tests.log" | grep -v '^[0-9.]* s: ' || true
      grep -q 'All tests passed' <(tail -3 "$out/tests.log") || status=1
    done
    tail -3 "$out/tests.log"
    # Whole files, each preset's run capped: a GPU preset takes all its
    # streams only on a large input (32 KB per stream at least: 128 streams
    # from 4 MB), so a prefix would time too few. A run cut off still tells
    # its speed and running bpc: --progress writes a line a second.
    for run in "80 7 dickens" "80 9 dickens" "60 7 enwik8-head4M" "50 6 dickens" "50 8 dickens" \
               "50 9 enwik8-head4M" "40 6 enwik8-head4M" "40 8 enwik8-head4M"; do
      read -r cap level name <<< "$run"
      log="$(mktemp)"
      capped "$cap" build-gpu/shazip -b -q --progress --no-zstd --device "${QUICK_DEVICE:-cuda}" --levels "$level" \
        --markdown ".debs/corpus/$name" 2> "$log" | tee -a "$out/bench.md"
      cat "$log" >> "$out/bench.log"
      # The compression's last line; the decompression's if it ran to the end.
      { grep ' compressing' "$log" || true; } | tail -1
      [[ ! -s $log ]] || grep -q 'decompressing 100.0%' "$log" || echo "gpu_build.sh: $name at preset $level cut off"
      rm -f "$log"
    done
    # Format 10's products plain against tiled: preset 7, 128 streams of
    # 3 KB (the attention's memory full after 1 KB of each).
    if (( deadline - SECONDS > 100 )); then
      BENCH_TIMEOUT=40 paths 7 400000 .debs/corpus/dickens "1 1 0" "1 1 1" 2>&1 | tee -a "$out/paths.log"
    fi
    echo "gpu_build.sh: done at $SECONDS s"
    exit "$status"
    ;;
  test)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    ctest --test-dir build-gpu --output-on-failure -j 4
    ;;
  bench)
    levels="${2:-6,7,8,9}"
    bytes="${3:-0}"
    shift $(( $# < 3 ? $# : 3 ))
    bench "$levels" "$bytes" "$@"
    ;;
  groups)
    level="${2:-8}"
    groups="${3:-1,2,4,8,16}"
    bytes="${4:-1000000}"
    file="${5:-.debs/corpus/dickens}"
    [[ -f $file ]] || { echo "gpu_build.sh: no file $file" >&2; exit 1; }
    nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv
    for g in ${groups//,/ }; do
      build-gpu/bench_model --device cuda -p "$level" --groups "$g" --min-stream "${PATHS_MIN_STREAM:-2048}" \
        -n "$bytes" "$file"
    done
    ;;
  paths)
    nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv
    paths "${2:-7}" "${3:-300000}" "${4:-.debs/corpus/dickens}"
    ;;
  *)
    echo "usage: tools/gpu_build.sh fetch [CORPUS_DIR] | quick | test | bench [LEVELS [BYTES [FILES...]]]" \
      "| groups [LEVEL [GROUPS [BYTES [FILE]]]] | paths [LEVEL [BYTES [FILE]]]" >&2
    exit 2
    ;;
esac
