#!/usr/bin/env bash
# The GPU check, in two halves, for a session that is lent a GPU machine through the device
# tool (no Rust toolchain and no network there; 64 MiB may travel; 10 minutes per command).
#
#   bash benchmarks/gpu.sh prepare   # here: release `weft` and the wgpu test binaries,
#                                    # stripped, into .dev/; Vulkan loader debs into .gl/
#   bash benchmarks/gpu.sh run       # there (device tool, carry [".dev", ".gl"]):
#                                    # GPU tests, weft bench --full, weft tune, timed training
#   bash benchmarks/gpu.sh kernels   # there, a short second run: wgpu kernels at --full
#                                    # sizes and the per-kernel profile of a training step
#   bash benchmarks/gpu.sh cmd CMD…  # there, one command against the packed binaries
#
# `run` writes under $OUT (default ./gpu-out) at most the 8 files the device tool brings back:
# summary.md (a row per stage, tokens/s), all.log (every stage's output), bench.md,
# metrics-*.jsonl, peer.jsonl (PyTorch-CUDA on the same GPU: benchmarks/peer/torch_gpu_kernels.py
# and torch_gpt.py --device cuda) and the autotune cache. Each stage has its own time limit so
# one slow stage cannot eat the others'. The limits add up to 10.6 minutes; the stages took
# 5.5 on the H200 (2026-12-04), well inside one 10-minute command.
#
# WEFT_GPU_TINY=1 (for trying the script on lavapipe in a few minutes, never for numbers):
# bench --quick, tuning at B1 T16, a 2-layer width-64 copy of gpt2_small and a few steps.
# WEFT_BIN_DIR=DIR runs the `weft` (and test binaries, where present) in DIR instead of the
# packed .dev/ ones, e.g. a local debug build.
set -uo pipefail
cd "$(dirname "$0")/.."

# wgpu test binaries that compare generated kernels with the CPU reference.
GPU_TESTS=(wgpu_ops wgpu_attention wgpu_matmul_tiles wgpu_examples wgpu_transformer wgpu_train kernel_counts)
# Their time limits on the GPU machine (seconds; measured 1-23 s there, wgpu_examples more).
TEST_LIMITS=(15 15 40 45 15 30 10)

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
  pwd >.dev/root
  # The device's copy of the tree may not carry this checkout's git state.
  git rev-parse --short HEAD >.dev/commit
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

host_bytes() { # host<->device bytes per step (the last train line's host_device_bytes)
  grep '"train"' "$1/metrics.jsonl" 2>/dev/null | tail -1 |
    grep -o '"host_device_bytes":[0-9.e+]*' | cut -d: -f2 |
    awk '{ printf "%.0f host<->device bytes per step\n", $1 } END { if (!NR) print "no host_device_bytes" }'
}

setup() { # unpack the binaries, install the Vulkan loader, start summary.md
  OUT=${OUT:-$PWD/gpu-out}
  mkdir -p "$OUT"
  if [ -n "${WEFT_BIN_DIR:-}" ]; then
    bin=$(cd "$WEFT_BIN_DIR" && pwd)
  else
    tar -C .dev -xzf .dev/bin.tar.gz
    bin=$PWD/.dev/bin
  fi
  if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
  # Tests find the repo through CARGO_MANIFEST_DIR baked in at build time: the checkout
  # `prepare` ran in (.dev/root).
  local root
  root=$(cat .dev/root 2>/dev/null || echo /work/main)
  [ -e "$root" ] || { mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"; }
  export WEFT_REQUIRE_GPU=1 WEFT_CACHE_DIR="$OUT/cache"
  {
    echo "# weft on a GPU machine, $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    echo "binaries built at commit $(cat .dev/commit 2>/dev/null || echo unknown)"
    echo
    echo "| stage | exit | wall |"
    echo "|---|---|---|"
  } >"$OUT/summary.md"
}

run() {
  local tiny=${WEFT_GPU_TINY:-0}
  setup
  # gpt.weft at B16 T128 and its Cog twin: the specs PyTorch's torch_gpt.py builds exactly.
  local gpt=benchmarks/peer/gpt_b16_t128.weft cog=benchmarks/peer/cog_b16_t128.weft
  local gpt2=examples/scale/gpt2_small.weft
  if [ "$tiny" = 1 ]; then
    # Same spec, 2 layers of width 64 (in examples/scale/ for its data path).
    gpt2=examples/scale/gpt2_tiny.weft
    sed -e 's/vocab = 50304/vocab = 256/' -e 's/dim = 768/dim = 64/' -e 's/heads = 12 /heads = 4 /' \
      -e 's/layers = 12/layers = 2/' -e 's/ctx = 1024/ctx = 64/' -e 's/seq = 1024/seq = 64/' \
      -e 's/batch = 8/batch = 2/' examples/scale/gpt2_small.weft >"$gpt2"
    # gpt.weft at B2 T32 (out of examples/, whose every spec the tests count).
    gpt=examples/scale/gpt_tiny.weft
    sed -e 's/batch = 16/batch = 2/' -e 's/seq = 64/seq = 32/' -e 's|"data/|"../data/|' examples/gpt.weft >"$gpt"
  fi
  # GPT-2 small's timed run: a metric line every 2 steps and no checkpoint before the last, so
  # the steady state shows inside the stage. (Each checkpoint of its 124M parameters and AdamW
  # moments reads 1.5 GB back; at the default, one per 10% of the steps, they and the first
  # interval's compile filled the 2026-12-04 run's whole stage.)
  local gpt2_timed=examples/scale/gpt2_timed.weft
  sed -e 's/^  clip = 1.0$/&\n  log_every = 2\n  checkpoint_every = 1000/' "$gpt2" >"$gpt2_timed"
  trap 'rm -f examples/scale/gpt2_tiny.weft examples/scale/gpt_tiny.weft examples/scale/gpt2_timed.weft' RETURN
  # The tests find examples/ through the manifest dir baked in at build time.
  local i
  for i in "${!GPU_TESTS[@]}"; do
    local t=${GPU_TESTS[$i]}
    if [ -x "$bin/$t" ]; then stage "test-$t" "${TEST_LIMITS[$i]}" "$bin/$t"; else echo "| test-$t | no binary | - |" >>"$OUT/summary.md"; fi
  done
  if [ "$tiny" = 1 ]; then
    stage tune-gpt 60 "$bin/weft" tune "$gpt" --batch 1 --seq 16 --repeats 1
    stage tune-gpt2-small 60 "$bin/weft" tune "$gpt2" --batch 1 --seq 16 --repeats 1
    stage bench 120 "$bin/weft" bench --backend all --quick --tune --out "$OUT/bench.md"
    stage train-gpt 90 "$bin/weft" train "$gpt" --backend wgpu --steps 3 --out "$OUT/runs/gpt"
    stage train-gpt2-small 90 "$bin/weft" train "$gpt2_timed" --backend wgpu --steps 4 --out "$OUT/runs/gpt2_small"
  else
    stage tune-gpt 20 "$bin/weft" tune "$gpt" --batch 16 --seq 128
    stage tune-gpt2-small 75 "$bin/weft" tune "$gpt2" --batch 8 --seq 1024
    # --tune: the matmul workloads' own shapes (4096) are tuned too; GPU kernel times beside.
    stage bench 150 "$bin/weft" bench --backend all --full --tune --runs 3 --out "$OUT/bench.md"
    stage train-gpt 30 "$bin/weft" train "$gpt" --backend wgpu --steps 60 --out "$OUT/runs/gpt"
    stage train-cog 30 "$bin/weft" train "$cog" --backend wgpu --steps 60 --out "$OUT/runs/cog"
    stage train-gpt2-small 90 "$bin/weft" train "$gpt2_timed" --backend wgpu --steps 16 --out "$OUT/runs/gpt2_small"
    # The peer on the same GPU: kernels (CUDA events) and the two training runs' tokens/s.
    stage peer 70 bash -c "python3 benchmarks/peer/torch_gpu_kernels.py --runs 10 >>'$OUT/peer.jsonl' &&
      for r in softmax cog; do python3 benchmarks/peer/torch_gpt.py --device cuda --threads 16 \
        --rule \$r --warmup 5 --steps 50 --data examples/data/shakespeare.txt >>'$OUT/peer.jsonl'; done"
  fi
  {
    echo
    echo "gpt.weft (B16 T128, wgpu): $(tokens_per_s "$OUT/runs/gpt"); $(host_bytes "$OUT/runs/gpt")"
    echo "cog (B16 T128, wgpu): $(tokens_per_s "$OUT/runs/cog"); $(host_bytes "$OUT/runs/cog")"
    echo "gpt2_small.weft (B8 T1024, wgpu): $(tokens_per_s "$OUT/runs/gpt2_small"); $(host_bytes "$OUT/runs/gpt2_small")"
  } >>"$OUT/summary.md"
  # Only a few files come back: keep the metrics, drop checkpoints and traces.
  for r in gpt cog gpt2_small; do cp "$OUT/runs/$r/metrics.jsonl" "$OUT/metrics-$r.jsonl" 2>/dev/null; done
  cp "$OUT"/cache/autotune-*.json "$OUT/" 2>/dev/null
  rm -rf "$OUT/runs" "$OUT/cache" "$OUT/stage.log"
  cat "$OUT/summary.md"
}

kernels() { # a short second run: the kernels alone, and where a training step's time goes
  setup
  stage bench-kernels 150 "$bin/weft" bench --backend wgpu --full --sizes 512 --tune --runs 3 --out "$OUT/bench.md"
  stage profile 150 "$bin/weft" bench --profile benchmarks/peer/gpt_b16_t128.weft --full
  cp "$OUT"/cache/autotune-*.json "$OUT/" 2>/dev/null
  rm -rf "$OUT/cache" "$OUT/stage.log"
  cat "$OUT/summary.md"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  kernels) kernels ;;
  # Any command against the packed binaries (.dev/bin/weft ...), its output in all.log.
  cmd) shift && setup && stage cmd 400 "$@" && rm -f "$OUT/stage.log" ;;
  *) echo "usage: bash benchmarks/gpu.sh prepare|run|kernels|cmd COMMAND..." >&2; exit 2 ;;
esac
