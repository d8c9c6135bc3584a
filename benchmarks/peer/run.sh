#!/usr/bin/env bash
# Peer benchmark: trains the same pre-norm GPT (4 layers, dim 128, 4 heads, vocab 256,
# RMSNorm, RoPE, SwiGLU, AdamW, clip 1.0) at batch 16 × 128 tokens in weft (`weft train
# --backend cpu`, release) and in PyTorch-CPU eager (torch_gpt.py), softmax and Cog-signed
# middle layers, in one invocation, and prints tokens/s of both and weft ÷ PyTorch.
#
#   bash benchmarks/peer/run.sh [REPEATS]        # default 3 repeats, alternating weft / torch
#
# Environment:
#   THREADS      cores for both (default: nproc); weft gets RAYON_NUM_THREADS, torch
#                torch.set_num_threads
#   WEFT         a weft binary to use (default: builds `cargo build --release --bin weft`)
#   PEER_VENV    the virtualenv holding torch (default benchmarks/peer/.venv, created with
#                `pip install torch` from PyPI when missing; PIP_INDEX_URL may point pip at a
#                CPU-only wheel index to avoid the CUDA libraries PyPI's wheel pulls in)
#   WEFT_STEPS   weft training steps per run (default 20; the first 5 are warm-up)
#   TORCH_STEPS  timed PyTorch steps per run (default 10, after 3 warm-up steps)
#
# PyTorch's OpenMP threads spin-wait, so on a loaded machine torch with THREADS threads can run
# many times slower than with one: torch is also timed with 1 thread, and the ratio is weft over
# the faster of the two (the conservative comparison).
#
# weft's number is `tokens_per_s` from its metrics.jsonl: the median of the 5-step windows
# after the first (the first window holds graph building and the step-0 trace).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
repeats="${1:-3}"
threads="${THREADS:-$(nproc)}"
venv="${PEER_VENV:-$here/.venv}"
weft_steps="${WEFT_STEPS:-20}"
torch_steps="${TORCH_STEPS:-10}"
data="$root/examples/data/shakespeare.txt"

if [[ -z "${WEFT:-}" ]]; then
  (cd "$root" && cargo build --release --bin weft >&2)
  WEFT="${CARGO_TARGET_DIR:-$root/target}/release/weft"
fi
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "installing torch into $venv (PyPI)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch numpy >&2
fi
py="$venv/bin/python"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

weft_tps() { # weft_tps SPEC: median tokens_per_s of the windows after the first
  local spec=$1 out="$tmp/run"
  rm -rf "$out"
  RAYON_NUM_THREADS="$threads" "$WEFT" train "$spec" --backend cpu --steps "$weft_steps" \
    --out "$out" >/dev/null 2>"$tmp/weft.err" || { cat "$tmp/weft.err" >&2; return 1; }
  "$py" - "$out/metrics.jsonl" <<'EOF'
import json, statistics, sys
rows = [r for r in map(json.loads, filter(str.strip, open(sys.argv[1]))) if r.get("kind") == "train"]
tps = [r["tokens_per_s"] for r in rows[1:]] or [rows[-1]["tokens_per_s"]]
print(f"{statistics.median(tps):.0f}")
EOF
}

torch_tps() { # torch_tps RULE THREADS
  "$py" "$here/torch_gpt.py" --rule "$1" --threads "$2" --steps "$torch_steps" \
    --data "$data" | "$py" -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["tokens_per_s"])'
}

echo "# peer benchmark: B16 T128, $threads threads, $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# weft: $("$WEFT" --version 2>/dev/null || echo "$WEFT"); torch: $("$py" -c 'import torch; print(torch.__version__)')"
printf '%-8s %-3s %12s %12s %12s %8s\n' rule run weft_tok/s torch_tok/s torch_1thr ratio
for rule in softmax cog; do
  spec="$here/gpt_b16_t128.weft"
  [[ $rule == cog ]] && spec="$here/cog_b16_t128.weft"
  for r in $(seq 1 "$repeats"); do
    w=$(weft_tps "$spec")
    t=$(torch_tps "$rule" "$threads")
    t1=$t
    [[ $threads -gt 1 ]] && t1=$(torch_tps "$rule" 1)
    best=$(awk -v a="$t" -v b="$t1" 'BEGIN{print (a > b ? a : b)}')
    printf '%-8s %-3s %12s %12s %12s %8s\n' "$rule" "$r" "$w" "$t" "$t1" \
      "$(awk -v a="$w" -v b="$best" 'BEGIN{printf "%.2f", a/b}')"
  done
done
