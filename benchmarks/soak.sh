#!/usr/bin/env bash
# Soak: round trips of many different inputs for as long as asked, to catch
# what the test suite's fixed inputs cannot: a race between the coding
# thread, the training thread and the prefaulting threads that shows only
# under some interleaving (run it beside other load, or with SOAK_CPUS=0 to
# put both threads on one core), or an input shape no test has. Each round
# takes a random slice of a random corpus file (1 byte to 512 KB, each
# power of two's range as likely; text and binary), sometimes two slices
# back to back or random bytes between two, a random preset of 1-3,
# sometimes -j 2 with a random block size, compresses it, tests the archive
# (-t), decodes it and compares; any failure keeps its input and archive in
# FAIL_DIR and the script goes on.
# The rounds repeat from SEED (slices, sizes, options; not the random bytes).
#
# Usage: benchmarks/soak.sh CORPUS_DIR MINUTES [SHAZIP]
#   CORPUS_DIR  the output of ../shared/corpora/unpack.sh
#   SHAZIP      the binary (default: build/shazip)
# Environment: SEED (default 1), FAIL_DIR (default ./soak-failures),
# SOAK_CPUS (a taskset CPU list for shazip, e.g. 0; default: no pinning).
# Prints one line per round and a summary; exits 1 if any round failed.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CORPUS_DIR MINUTES [SHAZIP]" >&2; exit 2; }
corpus="$(realpath "$1")"
minutes="$2"
shazip="$(realpath "${3:-$(cd "$(dirname "$0")/.." && pwd)/build/shazip}")"
fail_dir="${FAIL_DIR:-$PWD/soak-failures}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
RANDOM="${SEED:-1}"
run=()
[ -n "${SOAK_CPUS:-}" ] && run=(taskset -c "$SOAK_CPUS")

mapfile -t files < <(find "$corpus" -type f -size +0 | sort)
[ ${#files[@]} -gt 0 ] || { echo "soak.sh: no files under $corpus" >&2; exit 2; }

# rand N: r = 0..N-1 from bash's seeded generator (30 bits). A variable, not
# an echo: a $(...) subshell reseeds RANDOM, and the rounds would not repeat.
rand() {
  r=$(((RANDOM << 15 | RANDOM) % $1))
}
slice() {  # slice >> FILE: a random piece of a random corpus file
  local f size len
  rand ${#files[@]}
  f="${files[$r]}"
  size=$(stat -c %s "$f")
  rand 18
  rand $((2 << r))
  len=$((1 + r))  # 1 byte to 512 KB, each power of two's range as likely
  [ "$len" -gt "$size" ] && len=$size
  rand $((size - len + 1))
  head -c $((r + len)) "$f" | tail -c "$len"
}

end=$(($(date +%s) + minutes * 60))
rounds=0 failed=0 bytes=0
while [ "$(date +%s)" -lt "$end" ]; do
  rounds=$((rounds + 1))
  in="$work/in"
  slice > "$in"
  shape=slice
  rand 4
  case $r in
    0) slice >> "$in"; shape="two slices" ;;
    1) rand 300000; head -c $((1 + r)) /dev/urandom >> "$in"; slice >> "$in"; shape="slice, random, slice" ;;
  esac
  rand 3
  preset=$((1 + r))
  opts=(-q -f "-$preset")
  rand 4
  if [ "$r" -eq 0 ]; then
    rand 256
    opts+=(-j 2 --block-size $((64 + r))K)
  fi
  n=$(stat -c %s "$in")
  bytes=$((bytes + n))
  status=ok
  if ! "${run[@]}" "$shazip" "${opts[@]}" -c "$in" > "$work/in.shz"; then
    status="compress failed"
  elif ! "${run[@]}" "$shazip" -q -t "$work/in.shz"; then
    status="test failed"
  elif ! "${run[@]}" "$shazip" -q -d -c "$work/in.shz" > "$work/out"; then
    status="decompress failed"
  elif ! cmp -s "$in" "$work/out"; then
    status="round trip differs"
  fi
  echo "round $rounds: $n bytes ($shape), ${opts[*]:2}: $status"
  if [ "$status" != ok ]; then
    failed=$((failed + 1))
    mkdir -p "$fail_dir"
    cp "$in" "$fail_dir/round$rounds.in"
    cp "$work/in.shz" "$fail_dir/round$rounds.shz" 2> /dev/null || true
  fi
done
echo "soak: $rounds rounds, $bytes bytes, $failed failed (seed ${SEED:-1}, $minutes minutes, $("$shazip" -V | head -1))"
[ "$failed" -eq 0 ]
