#!/usr/bin/env bash
# Compresses and decompresses every text file of a corpus directory with the
# shazip CLI (default preset unless SHAZIP_FLAGS says otherwise), verifies the
# round trip, and prints one Markdown table row per file with zstd -19 beside it.
#
# Usage: benchmarks/corpus.sh CORPUS_DIR [SHAZIP_BINARY]
#   CORPUS_DIR: e.g. the output of ../shared/corpora/unpack.sh (enwik/, calgary/, ...)
# A file counts as text when fewer than 1% of its bytes are outside printable
# ASCII, tab, CR and LF.
set -euo pipefail
corpus="${1:?usage: benchmarks/corpus.sh CORPUS_DIR [SHAZIP_BINARY]}"
bin="${2:-$(dirname "$0")/../build/shazip}"
flags="${SHAZIP_FLAGS:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
echo "| file | bytes | shazip bytes | shazip bpc | compress KB/s | decompress KB/s | zstd -19 bytes | zstd -19 bpc | vs zstd -19 | round trip |"
echo "|---|---|---|---|---|---|---|---|---|---|"
find -L "$corpus" -type f | sort | while read -r f; do
  size=$(stat -L -c %s "$f")
  [[ $size -gt 0 ]] || continue
  other=$(LC_ALL=C tr -d '\11\12\15\40-\176' < "$f" | wc -c)
  (( other * 100 < size )) || continue
  rel="${f#"$corpus"/}"
  cp "$f" "$work/in"
  t0=$(now)
  # shellcheck disable=SC2086
  "$bin" -q -f $flags "$work/in" -o "$work/in.shz"
  t1=$(now)
  "$bin" -q -f -d "$work/in.shz" -o "$work/out"
  t2=$(now)
  ok="verified"
  cmp -s "$work/in" "$work/out" || ok="FAILED"
  shz=$(stat -c %s "$work/in.shz")
  zst=$(zstd -q -19 -c "$work/in" | wc -c)
  awk -v f="$rel" -v n="$size" -v s="$shz" -v z="$zst" -v a="$t0" -v b="$t1" -v c="$t2" -v ok="$ok" 'BEGIN {
    printf "| %s | %d | %d | %.3f | %.2f | %.2f | %d | %.3f | %+.1f%% | %s |\n",
      f, n, s, 8 * s / n, n / 1024 / (b - a), n / 1024 / (c - b), z, 8 * z / n, 100 * (s / z - 1), ok }'
done
