#!/usr/bin/env bash
# Incompressible inputs stored early (shazip 0.27, at a glance since 0.28):
# for inputs made from the corpus by other compressors, and random bytes,
# the archive size and wall seconds of `shazip -q -c` with the early store
# as it is (the default: the glance, then the model's check), with the
# model's check alone (SHAZIP_NO_GLANCE=1, as shazip 0.27) and without
# either (--no-early-store, the whole input coded as before 0.27), with
# each archive's round trip checked. A Markdown table on standard output.
#
# Usage: benchmarks/incompressible.sh CORPUS_DIR [SHAZIP]
#   CORPUS_DIR  the output of ../shared/corpora/unpack.sh
#   SHAZIP      the binary (default: build/shazip)
# Needs zstd, xz, gzip and bzip2. BIG=0 leaves out the 20 MB input (whose
# --no-early-store run takes some 6 minutes on 2 cores); LEVEL=-4 (say)
# compresses at that preset instead of the default.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CORPUS_DIR [SHAZIP]" >&2; exit 2; }
corpus="$(realpath "$1")"
shazip="$(realpath "${2:-$(cd "$(dirname "$0")/.." && pwd)/build/shazip}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The inputs: compressed text of the corpus (the compressors are
# deterministic: the same bytes on every machine with their versions), and
# random bytes (different each run, alike in what matters here).
zstd -q -19 -c "$corpus/silesia/nci" > "$work/nci.zst"
zstd -q -19 -c "$corpus/calgary/book1" > "$work/book1.zst"
xz -9 -c "$corpus/calgary/book2" > "$work/book2.xz"
gzip -9 -n -c "$corpus/enwik/enwik6" > "$work/enwik6.gz"
bzip2 -9 -c "$corpus/canterbury/alice29.txt" > "$work/alice29.txt.bz2"
head -c 300000 /dev/urandom > "$work/random"
inputs="nci.zst book1.zst book2.xz enwik6.gz alice29.txt.bz2 random"
if [ "${BIG:-1}" != 0 ]; then
  for f in dickens mr nci ooffice osdb reymont x-ray xml; do
    zstd -q -3 -c "$corpus/silesia/$f"
  done > "$work/silesia.zst"
  head -c 20000000 "$work/silesia.zst" > "$work/silesia-20M.zst"
  inputs="$inputs silesia-20M.zst"
fi

seconds() {  # seconds CMD... > OUT: wall seconds of CMD, its output to OUT
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  echo "$end - $start" | bc >&3
}
echo "| input | bytes | default: archive, s | SHAZIP_NO_GLANCE=1: archive, s | --no-early-store: archive, s |"
echo "|---|---|---|---|---|"
for name in $inputs; do
  f="$work/$name"
  row="| $name | $(stat -c %s "$f")"
  for flags in "" "SHAZIP_NO_GLANCE=1" "--no-early-store"; do
    envs=""
    case "$flags" in *=*) envs=$flags flags="" ;; esac
    s=$( { seconds env $envs "$shazip" -q -c ${LEVEL:-} $flags "$f" > "$work/out.shz"; } 3>&1 )
    "$shazip" -q -d -c "$work/out.shz" | cmp -s - "$f" || { echo "round trip failed: $name $envs $flags" >&2; exit 1; }
    stored=""
    "$shazip" -l "$work/out.shz" | grep -q "method *stored" && stored=" (stored)"
    row="$row | $(stat -c %s "$work/out.shz")$stored, $(printf %.2f "$s")"
  done
  echo "$row |"
done
