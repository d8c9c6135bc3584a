//! Per-kernel profile of one training step of a spec on wgpu, fused and unfused — what
//! `weft bench --profile SPEC` prints, without building the CLI (and its viewer):
//!
//! ```text
//! cargo run --release -p weft-runtime --example profile_train_step -- examples/gpt.weft [B T REPEATS]
//! ```
//!
//! `WEFT_PROFILE_MODES=fused` (or `unfused`) profiles one mode only; `WEFT_PROFILE_JSON=DIR`
//! also writes each mode's kernel times to `DIR/MODE.json`.

use weft_compiler::codegen::CodegenOptions;
use weft_runtime::bench;
use weft_runtime::wgpu::profile;
use weft_runtime::{HookSelection, WgpuBackend};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("examples/gpt.weft", |s| s.as_str());
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (b, t, repeats) = (num(1, 4), num(2, 64), num(3, 5));
    let src = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let spec = weft_dsl::check_source(&src).map_err(|_| format!("{path} has errors"))?;
    let w = bench::train_step("spec", &spec, b, t)?;
    let modes = std::env::var("WEFT_PROFILE_MODES").unwrap_or("fused,unfused".into());
    let mut profiles = Vec::new();
    for (mode, fuse) in [("fused", true), ("unfused", false)] {
        if !modes.split(',').any(|m| m == mode) {
            continue;
        }
        let be = WgpuBackend::with_options(CodegenOptions {
            fuse,
            ..CodegenOptions::default()
        })
        .map_err(|e| e.to_string())?;
        // Whole steps (one submission each, with upload and readback), after a warm-up.
        bench::run_once(&be, &w).map_err(|e| e.to_string())?;
        let mut steps: Vec<f64> = Vec::new();
        for _ in 0..repeats.max(1) {
            let t0 = std::time::Instant::now();
            bench::run_once(&be, &w).map_err(|e| e.to_string())?;
            steps.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        steps.sort_by(f64::total_cmp);
        let times = be
            .profile(
                &w.graph,
                &w.inputs,
                &w.params,
                &HookSelection::None,
                repeats,
            )
            .map_err(|e| e.to_string())?;
        println!(
            "## {mode} ({}; {} B{b} T{t})\n\nwhole step: median {:.3} ms, min {:.3} ms\n\n{}",
            be.adapter_name(),
            path,
            steps[steps.len() / 2],
            steps[0],
            profile::table(&times, 10)
        );
        if let Ok(dir) = std::env::var("WEFT_PROFILE_JSON") {
            let json = serde_json::to_string_pretty(&times).map_err(|e| e.to_string())?;
            let path = std::path::Path::new(&dir).join(format!("{mode}.json"));
            std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        profiles.push(times);
    }
    if let [fused, unfused] = &profiles[..] {
        println!(
            "## fused vs unfused kernels of the same nodes\n\nsums: fused {:.3} ms, unfused \
             {:.3} ms\n\n{}",
            profile::total_ms(fused),
            profile::total_ms(unfused),
            profile::compare_table(&profile::compare(fused, unfused), 25)
        );
    }
    Ok(())
}
