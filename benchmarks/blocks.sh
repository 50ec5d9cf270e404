#!/usr/bin/env bash
# Parallel blocks (shazip -j), the figures in RESULTS.md "Parallel blocks".
#
#   benchmarks/blocks.sh sizes SHAZIP FILE [BLOCK...]
#     archive size of FILE whole and in blocks of each BLOCK (default 8M 4M
#     2M 1M), with the cost against the whole; every archive decoded with
#     -j 2 and compared.
#   benchmarks/blocks.sh speed SHAZIP FILE
#     the first 2 MiB of FILE in two 1 MiB blocks, three ways, alternating
#     (A B C C B A): one process with -j 2, two processes with one piece
#     each, one process with -j 1; wall seconds. The three make the same
#     bytes (checked).
set -euo pipefail
usage() { echo "usage: $0 sizes SHAZIP FILE [BLOCK...] | speed SHAZIP FILE" >&2; exit 2; }
[ $# -ge 3 ] || usage
mode="$1" shazip="$(realpath "$2")" file="$(realpath "$3")"
shift 3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# seconds OUT COMMAND...: runs COMMAND with its standard output to OUT.
seconds() {
  local out="$1" start
  shift
  start=$(date +%s.%N)
  "$@" > "$out"
  echo "$(date +%s.%N) - $start" | bc
}

case "$mode" in
  sizes)
    [ $# -gt 0 ] || set -- 8M 4M 2M 1M
    "$shazip" -q -c "$file" > "$work/whole.shz"
    whole=$(stat -c %s "$work/whole.shz")
    echo "whole: $whole bytes"
    for block in "$@"; do
      "$shazip" -q -c -j 2 --block-size "$block" "$file" > "$work/$block.shz"
      size=$(stat -c %s "$work/$block.shz")
      "$shazip" -q -d -c -j 2 "$work/$block.shz" | cmp -s - "$file" || { echo "$block: round trip FAILED" >&2; exit 1; }
      echo "$block blocks: $size bytes ($(echo "scale=2; 100 * ($size - $whole) / $whole" | bc)%), round trip identical"
    done
    ;;
  speed)
    head -c $((2 << 20)) "$file" > "$work/two"
    head -c $((1 << 20)) "$work/two" > "$work/p0"
    tail -c +$(((1 << 20) + 1)) "$work/two" > "$work/p1"
    a() { echo "one process, -j 2: $(seconds "$work/a.shz" "$shazip" -q -c -j 2 --block-size 1M "$work/two") s"; }
    b() {
      echo "two processes: $(seconds /dev/null bash -c "'$shazip' -q -c '$work/p0' > '$work/b0.shz' & '$shazip' -q -c '$work/p1' > '$work/b1.shz' & wait") s"
    }
    c() { echo "one process, -j 1: $(seconds "$work/c.shz" "$shazip" -q -c -j 1 --block-size 1M "$work/two") s"; }
    a; b; c; c; b; a
    cat "$work/b0.shz" "$work/b1.shz" | cmp -s - "$work/a.shz" && cmp -s "$work/a.shz" "$work/c.shz" ||
      { echo "the three ways made different archives" >&2; exit 1; }
    echo "same archives"
    ;;
  *) usage ;;
esac
