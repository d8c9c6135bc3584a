//! Run directories from the trainer's side: the format itself (layout, metrics and trace
//! files, the lock) is the `weft-rundir` crate, re-exported here; this module adds what
//! needs the runtime — [`RunDir`] with its checkpoints, and [`existing_run`], which reads the
//! `latest` checkpoint pointer.

pub use weft_rundir::*;

use crate::checkpoint::{CheckpointDir, CheckpointError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What `dir` already holds, in words, when it is a non-empty directory (a lock file alone
/// does not count: it is what a killed run leaves); `None` when it is absent or empty. A
/// fresh run refuses such a directory rather than mixing two runs in one.
pub fn existing_run(dir: &Path) -> io::Result<Option<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Ok(Some("a file, not a directory".into()))
        }
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK_FILE)
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    names.sort();
    // Only look inside an existing `checkpoints/`: opening creates it.
    let ck = dir.join(CHECKPOINTS_DIR);
    let latest = ck
        .is_dir()
        .then(|| CheckpointDir::open(&ck).ok()?.latest().ok().flatten())
        .flatten();
    let steps = latest
        .as_ref()
        .and_then(|p| parse_step_file(p.file_name()?.to_str()?));
    Ok(Some(match steps {
        Some(s) => format!("a run with checkpoints up to step {s}"),
        None if names.iter().any(|n| n == SPEC_FILE || n == METRICS_FILE) => {
            "a run with no completed checkpoint".into()
        }
        None => {
            let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
            format!(
                "{} entr{} ({}{})",
                names.len(),
                if names.len() == 1 { "y" } else { "ies" },
                shown.join(", "),
                if names.len() > 4 { ", ..." } else { "" }
            )
        }
    }))
}

/// An open run directory: its [`RunFiles`] (spec, metrics, traces) and its checkpoints.
#[derive(Debug)]
pub struct RunDir {
    files: RunFiles,
    checkpoints: CheckpointDir,
}

impl RunDir {
    /// Creates (or reopens) `root` for a run of `spec_source`: writes `spec.weft`, creates
    /// `checkpoints/` and `traces/`, opens `metrics.jsonl` for appending.
    pub fn create(root: impl Into<PathBuf>, spec_source: &str) -> io::Result<Self> {
        Self::with_files(RunFiles::create(root, spec_source)?)
    }

    /// Opens an existing run directory (to resume), keeping its spec and metrics.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        Self::with_files(RunFiles::open(root)?)
    }

    fn with_files(files: RunFiles) -> io::Result<Self> {
        // Opening the checkpoint folder also removes a killed writer's temporary files.
        let checkpoints = CheckpointDir::open(files.root().join(CHECKPOINTS_DIR))
            .map_err(|e: CheckpointError| io::Error::other(e.to_string()))?;
        Ok(RunDir { files, checkpoints })
    }

    pub fn root(&self) -> &Path {
        self.files.root()
    }

    /// The spec text saved with the run.
    pub fn spec(&self) -> io::Result<String> {
        self.files.spec()
    }

    pub fn metrics(&mut self) -> &mut MetricsWriter {
        self.files.metrics()
    }

    pub fn checkpoints(&self) -> &CheckpointDir {
        &self.checkpoints
    }

    /// Writes one trace file and its index line ([`write_trace`]).
    pub fn write_trace(&self, t: &Trace) -> io::Result<PathBuf> {
        self.files.write_trace(t)
    }
}
