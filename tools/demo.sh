#!/usr/bin/env bash
# Compresses one file with shazip, compares with zstd -19, and round-trips it.
# Usage: tools/demo.sh SHAZIP_BINARY FILE
set -euo pipefail
bin="$1"
file="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
name="$(basename "$file")"
cp "$file" "$work/$name"

echo "== shazip $("$bin" -V)"
"$bin" -v "$work/$name"
"$bin" -l "$work/$name.shz"
zstd -q -19 -c "$work/$name" > "$work/$name.zst"
xz_line=""
if command -v xz > /dev/null; then
  xz -9e -c "$work/$name" > "$work/$name.xz"
  xz_line="$(stat -c %s "$work/$name.xz")"
fi
orig=$(stat -c %s "$work/$name")
shz=$(stat -c %s "$work/$name.shz")
zst=$(stat -c %s "$work/$name.zst")
echo
echo "== $name: $orig bytes"
awk -v o="$orig" -v s="$shz" -v z="$zst" -v x="$xz_line" 'BEGIN {
  printf "  %-10s %10d bytes  %.3f bits per character\n", "shazip", s, 8 * s / o
  printf "  %-10s %10d bytes  %.3f bits per character\n", "zstd -19", z, 8 * z / o
  if (x != "") printf "  %-10s %10d bytes  %.3f bits per character\n", "xz -9e", x, 8 * x / o
  larger = (s > z)
  printf "  shazip is %.1f%% %s than zstd -19\n", 100 * (larger ? s / z - 1 : 1 - s / z), (larger ? "larger" : "smaller")
}'
mv "$work/$name" "$work/$name.orig"
"$bin" -q -d "$work/$name.shz"
cmp "$work/$name" "$work/$name.orig"
echo "  round trip: identical"
