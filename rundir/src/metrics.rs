//! `metrics.jsonl`: one JSON object per line, appended and flushed line by line.

use crate::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One line of `metrics.jsonl` for a training step. Non-finite numbers are written as `null`
/// (JSON has no NaN); a reader should treat `null` loss as "diverged".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer steps completed (1 after the first update).
    pub step: u64,
    /// Training tokens (positions with a target) seen so far.
    pub tokens: u64,
    /// Total objective.
    pub loss: f64,
    /// Named parts of the objective (`term.0.nll`, router balance, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, f64>,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    /// Seconds since the run (or this resumption of it) started.
    pub wall_s: f64,
}

/// Appends lines to `metrics.jsonl`, each flushed as soon as it is written.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(MetricsWriter { path, file })
    }

    /// Appends one training-step line: `{"kind":"train", ...StepMetrics}`.
    pub fn log(&mut self, m: &StepMetrics) -> io::Result<()> {
        let mut v = serde_json::to_value(m).map_err(io::Error::other)?;
        v.as_object_mut()
            .expect("struct")
            .insert("kind".into(), "train".into());
        self.log_value(&v)
    }

    /// Appends any JSON object as one line (evaluation results use `"kind": "eval"`, `step`
    /// and their own fields). One `write` per line, so a concurrent reader sees whole lines.
    pub fn log_value(&mut self, v: &serde_json::Value) -> io::Result<()> {
        let mut line = serde_json::to_string(v).map_err(io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()
    }

    /// On resume from a checkpoint at `step`: drops lines of later steps (logged after that
    /// checkpoint by the run that died), atomically, so the curve has no duplicates.
    pub fn truncate_after(&mut self, step: u64) -> io::Result<()> {
        let bytes = fs::read(&self.path)?;
        let mut kept = String::new();
        for line in text_lines(&bytes) {
            let s = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
            // A torn last line (killed mid-write) or a damaged one has no parsable step: drop
            // it too.
            if matches!(s, Some(s) if s <= step) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        write_atomic(&self.path, kept.as_bytes())?;
        *self = MetricsWriter::open(&self.path)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every parsable line of a `metrics.jsonl` (a torn last line, or a line damaged into
/// invalid UTF-8 or JSON, is skipped rather than failing the whole file).
pub fn read_metrics(path: &Path) -> io::Result<Vec<serde_json::Value>> {
    let bytes = fs::read(path)?;
    Ok(text_lines(&bytes)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The lines of `bytes` that are valid UTF-8.
fn text_lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .map(|l| l.trim_end_matches('\r'))
}
