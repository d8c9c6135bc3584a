#!/usr/bin/env bash
# A/B of two weft builds on the peer benchmark's model: alternates `weft train SPEC --backend
# cpu --steps 20` between binary A and binary B, N pairs, and prints each run's tokens/s (the
# median of its 5-step windows after the first) and the mean of each side. On a machine whose
# speed drifts (a shared VM), pairs run back to back carry a comparison that single runs do not.
#
#   bash benchmarks/peer/ab.sh WEFT_A WEFT_B [PAIRS] [SPEC]
#
# PAIRS defaults to 6, SPEC to benchmarks/peer/gpt_b16_t128.weft; THREADS as in run.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
a=$1 b=$2 pairs=${3:-6} spec=${4:-$here/gpt_b16_t128.weft}
threads="${THREADS:-$(nproc)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tps() { # tps BINARY: one run's median window tokens/s
  rm -rf "$tmp/run"
  RAYON_NUM_THREADS="$threads" "$1" train "$spec" --backend cpu --steps 20 --out "$tmp/run" \
    >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; return 1; }
  python3 - "$tmp/run/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [r for r in map(json.loads, filter(str.strip, open(sys.argv[1]))) if r.get("kind") == "train"]
print(round(statistics.median(r["tokens_per_s"] for r in rows[1:])))
PY
}
sa=0 sb=0 wins=0
echo "pair   A_tok/s   B_tok/s"
for i in $(seq 1 "$pairs"); do
  x=$(tps "$a") y=$(tps "$b")
  sa=$((sa + x)) sb=$((sb + y))
  ((y > x)) && wins=$((wins + 1))
  printf "%4d %9d %9d\n" "$i" "$x" "$y"
done
echo "mean   $((sa / pairs))   $((sb / pairs))   (B faster in $wins of $pairs pairs)"
