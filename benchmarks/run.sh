#!/usr/bin/env bash
# Runs `shazip -b` (the default preset against zstd -3, -19 and -22 --long, every
# round trip checked) over the text files of a corpus directory and rewrites the
# table between the bench-table markers in benchmarks/RESULTS.md, with the
# machine, the date and the command. Also draws enwik6's learning curve to
# docs/enwik6-learning.svg when enwik6 is among the files.
#
# Usage: benchmarks/run.sh CORPUS_DIR [MAX_BYTES] [SHAZIP_BINARY]
#   CORPUS_DIR: e.g. the output of ../shared/corpora/unpack.sh (enwik/, calgary/, ...)
#   MAX_BYTES:  skip larger files (default 4100000: the CPU set, everything up to
#               large/bible.txt; enwik8-head4M and silesia's big files are the
#               GPU benchmark's)
# A file counts as text when fewer than 1% of its bytes are outside printable
# ASCII, tab, CR and LF. Took 10 minutes on 2 cores (2026-12-05, shazip 0.15).
set -euo pipefail
corpus="${1:?usage: benchmarks/run.sh CORPUS_DIR [MAX_BYTES] [SHAZIP_BINARY]}"
max_bytes="${2:-4100000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${3:-$root/build/shazip}"
results="$root/benchmarks/RESULTS.md"

files=()
while read -r f; do
  size=$(stat -L -c %s "$f")
  (( size > 0 && size <= max_bytes )) || continue
  other=$(LC_ALL=C tr -d '\11\12\15\40-\176' < "$f" | wc -c)
  (( other * 100 < size )) || continue
  files+=("$f")
done < <(find -L "$corpus" -type f | sort)
(( ${#files[@]} > 0 )) || { echo "run.sh: no text files under $corpus" >&2; exit 1; }
# enwik6 first: -b plots the first file's learning curve.
ordered=()
for f in "${files[@]}"; do [[ $(basename "$f") == enwik6 ]] && ordered+=("$f"); done
for f in "${files[@]}"; do [[ $(basename "$f") == enwik6 ]] || ordered+=("$f"); done
plot=()
[[ $(basename "${ordered[0]}") == enwik6 ]] && plot=(--plot "$root/docs/enwik6-learning.svg")

table="$(mktemp)"
trap 'rm -f "$table"' EXIT
start=$(date +%s)
"$bin" -b --markdown "${plot[@]}" "${ordered[@]}" > "$table"
minutes=$(( ($(date +%s) - start + 59) / 60 ))

cpu="$(LC_ALL=C lscpu | sed -n 's/^Model name: *//p' | head -1)"
{
  echo "<!-- bench-table:begin (written by benchmarks/run.sh; do not edit by hand) -->"
  echo "Measured $(date -u +%Y-%m-%d) by \`benchmarks/run.sh $corpus $max_bytes\` with $("$bin" -V);"
  echo "machine: ${cpu:-unknown CPU}, $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; $minutes minutes in all."
  echo "\"vs zstd -19\" compares archive sizes; the SHA-RNN column is the neural model's own"
  echo "cross-entropy before mixing; speeds are one run each."
  echo
  cat "$table"
  echo "<!-- bench-table:end -->"
} > "$table.block"
if grep -q '<!-- bench-table:begin' "$results"; then
  awk -v block="$table.block" '
    /<!-- bench-table:begin/ { while ((getline line < block) > 0) print line; skip = 1; next }
    /<!-- bench-table:end/ { skip = 0; next }
    !skip { print }' "$results" > "$results.new"
else
  { cat "$results"; echo; echo "## Benchmark mode over the corpus (issue 5)"; echo; cat "$table.block"; } > "$results.new"
fi
mv "$results.new" "$results"
rm -f "$table.block"
echo "run.sh: table written to $results"
