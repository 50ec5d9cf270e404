#!/usr/bin/env bash
# The mixing stage's tuning sets, as RESULTS.md's sections since "Class
# contexts" measure them: the default preset's SHA-RNN probabilities
# recorded once per file (bench_model --dump-nn, the streams and segment
# length shazip gives each input), then the mixing stage replayed over them
# by bench_mix with any of its switches, and the bits per byte weighted by
# size over two sets:
#   small  the 17 Calgary and Canterbury files below 1 MiB (bib, geo, news,
#          book2, obj2, paper1, paper2, progc, progl, trans, alice29,
#          asyoulik, cp.html, fields.c, plrabn12, lcet10, sum)
#   large  book1, bible, world192 and enwik8-head4M
# Replays run two at a time (the bits do not depend on load; the times do:
# compare speeds with bench_mix alone, one run at a time).
#
# Usage: benchmarks/mix_sets.sh CORPUS_DIR DUMP_DIR [BENCH_MIX_ARGS...]
#   CORPUS_DIR  the output of ../shared/corpora/unpack.sh
#   DUMP_DIR    where the recordings are kept (made when missing: about four
#               minutes on 2 cores; remake them when the SHA-RNN changes)
#   BENCH_MIX_ARGS  after --level 2, the sets' level: e.g. --level 3, or
#               --shape-contexts 0 for format 23's stage (--layer2-inputs 0
#               as well for format 22's, --mixer-selectors 0
#               as well for format 21's, --more-runs 0 --word-indirect 0 too
#               for format 20's, --long-matches 0 --scope-context 0 too for
#               format 19's, --table-shapes 0 too for format 18's,
#               --text-contexts 0 too for format 17's)
# Prints one line per set, "small 1.77147" and "large 1.36820" for shazip
# 0.30's stage at level 2 (0.29's: 1.77508 and 1.37108; 0.26's: 1.77994
# and 1.37428; 0.25's: 1.78277 and 1.37769; 0.24's: 1.78535 and 1.38275;
# 0.23's: 1.78833 and 1.38662; 0.22's: 1.78896 and 1.38957),
# and leaves each file's bench_mix line in DUMP_DIR/last/.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CORPUS_DIR DUMP_DIR [BENCH_MIX_ARGS...]" >&2; exit 2; }
corpus="$(realpath "$1")"
dumps="$2"
shift 2
build="$(cd "$(dirname "$0")/.." && pwd)/build"
small="calgary/bib calgary/geo calgary/news calgary/book2 calgary/obj2 calgary/paper1 calgary/paper2
       calgary/progc calgary/progl calgary/trans canterbury/alice29.txt canterbury/asyoulik.txt
       canterbury/cp.html canterbury/fields.c canterbury/plrabn12.txt canterbury/lcet10.txt canterbury/sum"
large="calgary/book1 large/bible.txt large/world192.txt enwik/enwik8-head4M"

mkdir -p "$dumps/last"
for f in $small $large; do
  [ -f "$corpus/$f" ] || { echo "mix_sets.sh: $corpus/$f is missing" >&2; exit 1; }
  dump="$dumps/$(basename "$f").nn"
  [ -s "$dump" ] && continue
  echo "recording $f" >&2
  "$build/bench_model" -t 1 --dump-nn "$dump.tmp" "$corpus/$f" > /dev/null
  mv "$dump.tmp" "$dump"
done

export MIX_SETS_BUILD="$build" MIX_SETS_CORPUS="$corpus" MIX_SETS_DUMPS="$dumps"
# The large files first: they take longest.
printf '%s\n' $large $small | xargs -P 2 -I{} sh -c '
  n=$(basename "{}")
  "$MIX_SETS_BUILD/bench_mix" --nn "$MIX_SETS_DUMPS/$n.nn" "$@" "$MIX_SETS_CORPUS/{}" > "$MIX_SETS_DUMPS/last/$n.txt"
' sh --level 2 "$@"

for set in small large; do
  files=$small
  [ "$set" = large ] && files=$large
  for f in $files; do
    n=$(basename "$f")
    bpc=$(sed -n 's/.* mixed \([0-9.]*\) bpc.*/\1/p' "$dumps/last/$n.txt")
    [ -n "$bpc" ] || { echo "mix_sets.sh: no result for $f (see $dumps/last/$n.txt)" >&2; exit 1; }
    echo "$(stat -L -c %s "$corpus/$f") $bpc"
  done | awk -v set="$set" '{ bits += $1 * $2; bytes += $1 } END { printf "%s %.5f\n", set, bits / bytes }'
done
