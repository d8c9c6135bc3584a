#!/usr/bin/env bash
# Peer benchmark for a GGUF model (issue 15): `weft generate` (release, CPU backend, the
# native Llama path) against Hugging Face transformers loading the same file
# (gguf_decode.py), on greedy decode speed and the prefill of a 512-token prompt.
#
#   bash benchmarks/peer/gguf_decode.sh MODEL.gguf [REPEATS]     # default 3, alternating
#
# Environment:
#   THREADS    cores for both (default 2): RAYON_NUM_THREADS for weft, torch.set_num_threads
#   WEFT       a weft binary (default: `cargo build --release --bin weft`)
#   PEER_VENV  a virtualenv with torch, transformers, gguf (default benchmarks/peer/.venv,
#              created from PyPI when missing: the CUDA build of torch, ~3 GB)
#   NEW        new tokens per decode run (default 64; both sides ignore eos)
#
# Both sides decode "The capital of France is" greedily with a KV cache; decode tokens/s is
# (NEW - 1) tokens over the time after the prompt's forward. The 512-token prompt is cut from
# examples/data/shakespeare.txt by the peer's tokenizer and given to weft as text (weft's
# tokenizer.json, built from the same GGUF metadata, must give the same 512 tokens: checked).
# Prefill = the prompt's forward keeping the last position's logits. Each side's number is the
# median over REPEATS runs; torch is also run with 1 thread and the faster torch counts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
gguf="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
repeats="${2:-3}"
threads="${THREADS:-2}"
new="${NEW:-64}"
venv="${PEER_VENV:-$here/.venv}"

if [[ -z "${WEFT:-}" ]]; then
  (cd "$root" && cargo build --release --bin weft >&2)
  WEFT="${CARGO_TARGET_DIR:-$root/target}/release/weft"
fi
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import torch, transformers, gguf' 2>/dev/null; then
  echo "installing torch, transformers, gguf into $venv (PyPI)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch transformers gguf numpy >&2
fi
py="$venv/bin/python"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$WEFT" import "$gguf" --out "$tmp/m.weft" --weights "$tmp/m.safetensors" 2>/dev/null

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

weft_decode() {
  RAYON_NUM_THREADS="$threads" "$WEFT" generate "$tmp/m.weft" --weights "$tmp/m.safetensors" \
    --backend cpu --text "The capital of France is" --max-new "$new" --ignore-eos \
    2>&1 >/dev/null | sed -n 's/.*decode \([0-9.]*\) tokens\/s.*/\1/p'
}
weft_prefill() {
  local log
  log=$(RAYON_NUM_THREADS="$threads" "$WEFT" generate "$tmp/m.weft" --weights "$tmp/m.safetensors" \
    --backend cpu --text "$(cat "$tmp/prompt512.txt")" --max-new 1 2>&1 >/dev/null)
  grep -q '^512 prompt tokens' <<<"$log" || { echo "weft: the prompt is not 512 tokens: $log" >&2; return 1; }
  sed -n 's/.*prefill \([0-9.]*\) s.*/\1/p' <<<"$log"
}
peer() { # peer THREADS
  "$py" "$here/gguf_decode.py" "$gguf" --threads "$1" --new "$new" --repeats 1 \
    --source "$root/examples/data/shakespeare.txt" --prompt-out "$tmp/prompt512.txt" 2>/dev/null | tail -1
}

: >"$tmp/wd"; : >"$tmp/wp"; : >"$tmp/peer"
for ((r = 0; r < repeats; r++)); do
  peer "$threads" >>"$tmp/peer"
  peer 1 >>"$tmp/peer"
  weft_decode >>"$tmp/wd"
  weft_prefill >>"$tmp/wp"
done
wd=$(median <"$tmp/wd")
wp=$(median <"$tmp/wp")
"$py" - "$tmp/peer" "$wd" "$wp" "$threads" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
wd, wp, threads = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
def med(t, k):
    return statistics.median(r[k] for r in rows if r["threads"] == t)
best_decode = max(med(threads, "decode_tokens_per_s"), med(1, "decode_tokens_per_s"))
best_prefill = min(med(threads, "prefill_512_s"), med(1, "prefill_512_s"))
print(f"peer: transformers {rows[0]['transformers']}, torch {rows[0]['torch']}; greedy {rows[0]['greedy']!r}")
for t in sorted({r['threads'] for r in rows}):
    print(f"  torch {t} thread(s): decode {med(t, 'decode_tokens_per_s'):.2f} tokens/s, "
          f"prefill 512 {med(t, 'prefill_512_s'):.3f} s, forward 512 (all logits) {med(t, 'forward_512_s'):.3f} s")
print(f"weft ({threads} threads): decode {wd:.2f} tokens/s, prefill 512 {wp:.3f} s")
print(f"decode: weft / transformers = {wd / best_decode:.2f}x")
print(f"prefill 512: transformers time / weft time = {best_prefill / wp:.2f}x")
EOF
