//! weft-repro: one experiment per method of METHODS.md, each running the method and its
//! baseline on the same task, budget and seeds and writing a report (`report.md` for people,
//! `report.json` for `REPRODUCTIONS.md`) beside the run directories the viewer opens.
//!
//! An experiment is a plain function over a [`Lab`]: it loads specs from `examples/repro/`,
//! trains them through `weft_runtime::train`, runs probes and fills a [`Report`]. Quick mode
//! ([`Options::quick`]) shrinks steps and samples so all of them finish in minutes; its numbers
//! show the pipeline works, not the effect.

mod experiments;
mod lab;
mod report;
mod summary;

pub use experiments::{Experiment, EXPERIMENTS};
pub use lab::{smollm2_path, Lab, Pretrained, Spec, Trained};
pub use report::{Comparison, Report, Table};
pub use summary::{read_reports, read_results, save_results, summary_markdown};

use std::path::PathBuf;

/// Why an experiment could not finish; the message names the experiment's step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error("{0}")]
    Spec(String),
    #[error("training {run}: {source}")]
    Train {
        run: String,
        // Boxed (here and below): every experiment returns this type; keep it small.
        source: Box<weft_runtime::train::TrainError>,
    },
    #[error("{what}: {source}")]
    Probe {
        what: String,
        source: Box<weft_runtime::probes::ProbeError>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// How to run experiments.
#[derive(Clone, Debug)]
pub struct Options {
    /// Reports go to `out/NAME/`, run directories below them.
    pub out: PathBuf,
    /// Reduced steps and samples (the test suite's `repro all --quick`).
    pub quick: bool,
    /// `cpu`, `wgpu` or `auto` (see `weft_runtime::select_backend`).
    pub backend: String,
    /// Seed of every training run and probe (each run derives its own streams from it).
    pub seed: u64,
    /// The folder holding `examples/repro/` (the repository root).
    pub root: PathBuf,
}

/// The experiment called `name`, if there is one.
pub fn experiment(name: &str) -> Option<&'static Experiment> {
    EXPERIMENTS.iter().find(|e| e.name == name)
}

/// Runs one experiment and writes `out/NAME/report.{md,json}`; returns the report.
pub fn run_experiment(e: &Experiment, o: &Options) -> Result<Report, ReproError> {
    let mut lab = Lab::new(e, o)?;
    let mut report = Report::new(e, o, lab.backend_line());
    let t0 = std::time::Instant::now();
    (e.run)(&mut lab, &mut report)?;
    report.finish(t0.elapsed().as_secs_f64(), lab.runs());
    report.write(&lab.dir())?;
    Ok(report)
}
