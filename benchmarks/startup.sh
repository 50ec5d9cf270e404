#!/usr/bin/env bash
# Start-up cost of short CLI runs: each command run by two shazip binaries in
# turn (old, new / new, old / old, new), wall seconds. For changes that touch
# what every run pays before coding (library loading, the kernel-pinning
# restart, table set-up).
# Usage: benchmarks/startup.sh OLD_SHAZIP NEW_SHAZIP CORPUS_DIR
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 OLD_SHAZIP NEW_SHAZIP CORPUS_DIR" >&2; exit 2; }
old="$(realpath "$1")" new="$(realpath "$2")"
paper1="$3/calgary/paper1"
golden="$(cd "$(dirname "$0")/.." && pwd)/tests/golden/v6/design.txt.shz"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
head -c 4000 "$paper1" > "$work/4k"
"$new" -q -c "$work/4k" > "$work/4k.shz"
"$new" -q -c "$paper1" > "$work/paper1.shz"

seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" > /dev/null 2>&1
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
for args in "-V" "-l $work/4k.shz" "-q -c $work/4k" "-q -d -c $work/4k.shz" \
            "-q -c $paper1" "-q -d -c $work/paper1.shz" "-q -d -c $golden"; do
  o="" n=""
  for pair in 1 2 3; do
    if [ "$pair" = 2 ]; then
      n="$n $(seconds "$new" $args)"; o="$o $(seconds "$old" $args)"
    else
      o="$o $(seconds "$old" $args)"; n="$n $(seconds "$new" $args)"
    fi
  done
  echo "shazip ${args//$work\//} | old:$o | new:$n"
done
