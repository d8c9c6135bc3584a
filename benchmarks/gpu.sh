#!/usr/bin/env bash
# The GPU check, in two halves, for a session that is lent a GPU machine through the device
# tool (no Rust toolchain and no network there; 64 MiB may travel; 10 minutes per command).
#
#   bash benchmarks/gpu.sh prepare   # here: release `weft` and the wgpu test binaries,
#                                    # stripped, into .dev/; Vulkan loader debs into .gl/
#   bash benchmarks/gpu.sh run       # there (device tool, carry [".dev", ".gl"]):
#                                    # GPU tests, weft bench --full, weft tune, timed training
#
# `run` writes under $OUT (default ./gpu-out) at most the 8 files the device tool brings back:
# summary.md (a row per stage, tokens/s), all.log (every stage's output), bench.md,
# metrics-*.jsonl and the autotune cache. Each stage has its own time limit so one slow stage
# cannot eat the others'; the limits add up to 9 minutes, inside one 10-minute command.
set -uo pipefail
cd "$(dirname "$0")/.."

# wgpu test binaries that compare generated kernels with the CPU reference.
GPU_TESTS=(wgpu_ops wgpu_attention wgpu_matmul_tiles wgpu_examples wgpu_transformer)

prepare() {
  set -e
  for p in /.dev/ /.gl/; do grep -qsxF "$p" .git/info/exclude || echo "$p" >>.git/info/exclude; done
  rm -rf .dev && mkdir -p .dev/bin .gl
  cargo build --release --locked --bin weft
  cp "${CARGO_TARGET_DIR:-target}/release/weft" .dev/bin/weft
  # Test binaries are built in release too: smaller, and the kernels' host side is not timed.
  for t in "${GPU_TESTS[@]}"; do
    exe=$(cargo test --release --locked -p weft-runtime --test "$t" --no-run --message-format=json 2>/dev/null |
      grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
    cp "$exe" ".dev/bin/$t"
  done
  strip .dev/bin/*
  # Stripped, the binaries are about 20 MB each: packed, they fit the 64 MiB that may travel.
  tar -C .dev -czf .dev/bin.tar.gz bin && rm -rf .dev/bin
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    mkdir -p /tmp/amd64/partial
    # shellcheck disable=SC2086
    apt-get $o update -qq && (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
  du -sh .dev .gl
  echo "carry [\".dev\", \".gl\"] and run: bash benchmarks/gpu.sh run"
}

stage() { # stage NAME SECONDS COMMAND...: run with a limit, append its output to all.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/all.log"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/stage.log" 2>&1
  local rc=$?
  cat "$OUT/stage.log" >>"$OUT/all.log"
  echo "| $name | $rc | $((SECONDS - t0)) s |" >>"$OUT/summary.md"
  tail -3 "$OUT/stage.log"
}

tokens_per_s() { # the mean tokens_per_s of a run directory's train lines after the first
  grep '"train"' "$1/metrics.jsonl" 2>/dev/null | tail -n +2 |
    grep -o '"tokens_per_s":[0-9.e+]*' | cut -d: -f2 |
    awk '{ s += $1; n++ } END { if (n) printf "%.0f tokens/s over %d logged intervals\n", s / n, n; else print "no train lines" }'
}

run() {
  OUT=${OUT:-$PWD/gpu-out}
  mkdir -p "$OUT"
  tar -C .dev -xzf .dev/bin.tar.gz
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
  # Tests find the repo through CARGO_MANIFEST_DIR baked in at build time (/work/main/...).
  [ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
  export WEFT_REQUIRE_GPU=1 WEFT_CACHE_DIR="$OUT/cache"
  {
    echo "# weft on a GPU machine, $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "| stage | exit | wall |"
    echo "|---|---|---|"
  } >"$OUT/summary.md"
  for t in "${GPU_TESTS[@]}"; do stage "test-$t" 45 ".dev/bin/$t"; done
  stage tune-gpt 40 .dev/bin/weft tune examples/gpt.weft --batch 16 --seq 128
  stage tune-gpt2-small 60 .dev/bin/weft tune benchmarks/gpu/gpt2_small.weft --batch 8 --seq 1024
  stage bench 120 .dev/bin/weft bench --backend all --full --out "$OUT/bench.md"
  stage train-gpt 40 .dev/bin/weft train examples/gpt.weft --backend wgpu --steps 60 --out "$OUT/runs/gpt"
  stage train-gpt2-small 75 .dev/bin/weft train benchmarks/gpu/gpt2_small.weft --backend wgpu --steps 20 --out "$OUT/runs/gpt2_small"
  {
    echo
    echo "gpt.weft (B16 T64, wgpu): $(tokens_per_s "$OUT/runs/gpt")"
    echo "gpt2_small.weft (B8 T1024, wgpu): $(tokens_per_s "$OUT/runs/gpt2_small")"
  } >>"$OUT/summary.md"
  # Only a few files come back: keep the metrics, drop checkpoints and traces.
  for r in gpt gpt2_small; do cp "$OUT/runs/$r/metrics.jsonl" "$OUT/metrics-$r.jsonl" 2>/dev/null; done
  cp "$OUT"/cache/autotune-*.json "$OUT/" 2>/dev/null
  rm -rf "$OUT/runs" "$OUT/cache" "$OUT/stage.log"
  cat "$OUT/summary.md"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash benchmarks/gpu.sh prepare|run" >&2; exit 2 ;;
esac
