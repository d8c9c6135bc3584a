#!/usr/bin/env bash
# Screenshots of the viewer for docs/: docs/viewer-attention.png and docs/viewer-mom.png.
#
#   viewer/screenshot.sh            synthetic Cog and MoM runs (viewer/examples/synthetic_run.rs)
#   viewer/screenshot.sh RUN_DIR    a real run directory for both pictures
#
# Runs `weft view` under Xvfb (software Vulkan: lavapipe) and grabs the screen with
# ImageMagick's `import -window root`. Needs: xvfb imagemagick mesa-vulkan-drivers.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in Xvfb import; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install xvfb imagemagick" >&2; exit 1; }
done
W=1400; H=900
work=$(mktemp -d)
trap 'kill ${view_pid:-} ${xvfb_pid:-} 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build -q --bin weft
if [[ $# -ge 1 ]]; then
  attention_run=$1; mom_run=$1
else
  cargo run -q -p weft-viewer --example synthetic_run -- "$work/cog" cog
  cargo run -q -p weft-viewer --example synthetic_run -- "$work/mom" mom
  attention_run=$work/cog; mom_run=$work/mom
fi
weft=target/debug/weft

display=:$((90 + RANDOM % 100))
Xvfb "$display" -screen 0 "${W}x${H}x24" -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
sleep 1

shot() { # RUN TAB OUT
  DISPLAY=$display WINIT_UNIX_BACKEND=x11 "$weft" view "$1" --tab "$2" --size "${W}x${H}" \
    >"$work/view.log" 2>&1 &
  view_pid=$!
  # Wait for the first frames (lavapipe start-up, trace loading).
  sleep "${SHOT_DELAY:-6}"
  kill -0 "$view_pid" 2>/dev/null || { cat "$work/view.log" >&2; exit 1; }
  DISPLAY=$display import -window root "$3"
  kill "$view_pid"; wait "$view_pid" 2>/dev/null || true
  echo "wrote $3"
}
shot "$attention_run" attention docs/viewer-attention.png
shot "$mom_run" routing docs/viewer-mom.png
