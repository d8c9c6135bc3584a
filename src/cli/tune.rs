//! `weft tune`: autotunes the matmul tilings of a spec's forward and training-step graphs
//! on the wgpu adapter (`WgpuBackend::autotune`) and prints, per graph, a table of every
//! matmul shape with each candidate's time and the choice. Choices are cached per adapter
//! (`weft_runtime::wgpu::autotune`), so every later wgpu run on this adapter uses them.

use super::spec::load_checked;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_runtime::wgpu::autotune::{spec_graphs, AutotuneOptions, SpecGraphs};
use weft_runtime::WgpuBackend;

/// Arguments of `weft tune`.
pub struct TuneArgs {
    /// The spec whose graphs are tuned.
    pub spec: PathBuf,
    /// Batch rows (default: the training plan's micro-batch).
    pub batch: Option<usize>,
    /// Sequence length (default: the training plan's `seq`, else `ctx`).
    pub seq: Option<usize>,
    /// Timed runs per candidate.
    pub repeats: usize,
    /// Time shapes again even when the cache has them.
    pub retune: bool,
}

/// Runs `weft tune`; errors are printed, exit 1.
pub fn tune(a: &TuneArgs) -> ExitCode {
    match run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &TuneArgs) -> Result<(), String> {
    let Some((spec, _)) = load_checked(&a.spec) else {
        return Err(format!("{} has errors", a.spec.display()));
    };
    let SpecGraphs { batch, seq, graphs } = spec_graphs(&spec, a.batch, a.seq)?;
    let be = WgpuBackend::new().map_err(|e| format!("wgpu backend: {e}"))?;
    let info = be.adapter_info();
    println!(
        "adapter: {} ({:?}, {:?}, driver {} {})",
        info.name, info.device_type, info.backend, info.driver, info.driver_info
    );
    let opts = AutotuneOptions {
        repeats: a.repeats,
        retune: a.retune,
        ..AutotuneOptions::default()
    };
    for (name, g) in &graphs {
        let report = be
            .autotune(g, &opts)
            .map_err(|e| format!("tuning the {name}: {e}"))?;
        println!(
            "\n## {} {name} (batch {batch}, seq {seq})\n\n{}",
            a.spec.display(),
            report.table()
        );
    }
    Ok(())
}
