//! weft-rundir: the run-directory format — what a training run leaves behind for the
//! viewer, for `weft run` and for resuming — with no dependency on the DSL, the compiler or
//! the runtime, so a reader (the viewer) depends only on what it reads.
//!
//! ```text
//! DIR/
//!   spec.weft            copy of the spec that was run
//!   metrics.jsonl        one JSON object per logged step, flushed per line (tail-able)
//!   checkpoints/         step-{step:08}.safetensors + `latest` (weft_runtime::checkpoint)
//!   traces/index.jsonl   one line per trace written
//!   traces/{name}/step-{step:08}.safetensors
//!   programs/{name}.json results of `weft run` (docs/programs.md)
//!   lock                 {"pid": ...} while a trainer owns the directory (see [`lock`])
//! ```
//!
//! [`Tensor`] is the host tensor traces hold; `weft_runtime` re-exports it as its own.
//! The checkpoint format (parameters and optimizer state) stays in `weft_runtime::checkpoint`:
//! it needs the optimizer's types. The formats are documented for readers outside Rust in
//! `docs/run-directory.md`.

pub mod lock;
pub mod metrics;
pub mod tensor;
pub mod trace;

pub use lock::{LockError, RunLock, LOCK_FILE};
pub use metrics::{read_metrics, MetricsWriter, StepMetrics};
pub use tensor::{Tensor, TensorData};
pub use trace::{read_trace, serialize_trace, trace_kind, write_trace, Trace};

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File and folder names inside a run directory.
pub const SPEC_FILE: &str = "spec.weft";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const TRACES_DIR: &str = "traces";
pub const TRACE_INDEX: &str = "index.jsonl";
pub const PROGRAMS_DIR: &str = "programs";
/// `__metadata__` key of a trace file.
pub const TRACE_META_KEY: &str = "weft_trace";
/// Format tag of trace metadata.
pub const TRACE_FORMAT: &str = "weft-trace/1";

/// The file name of a checkpoint or trace of `step`: `step-{step:08}.safetensors`.
pub fn step_file(step: u64) -> String {
    format!("step-{step:08}.safetensors")
}

/// The step of a `step-N.safetensors` file name, the inverse of [`step_file`]; `None` for
/// any other name (pointers, a writer's temporary files).
pub fn parse_step_file(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Writes `bytes` to `path` so that `path` is always either absent/old or complete: temp file
/// in the same directory (same filesystem, so the rename is atomic), `sync_all`, rename,
/// `fsync` of the directory (so the rename itself survives a power loss).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The files of an open run directory other than checkpoints: the spec copy, the metrics
/// writer and traces. The trainer's `weft_runtime::rundir::RunDir` adds the checkpoints.
#[derive(Debug)]
pub struct RunFiles {
    root: PathBuf,
    metrics: MetricsWriter,
}

impl RunFiles {
    /// Creates (or reopens) `root` for a run of `spec_source`: writes `spec.weft`, creates
    /// `checkpoints/` and `traces/`, opens `metrics.jsonl` for appending.
    pub fn create(root: impl Into<PathBuf>, spec_source: &str) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(TRACES_DIR))?;
        write_atomic(&root.join(SPEC_FILE), spec_source.as_bytes())?;
        Self::open(root)
    }

    /// Opens an existing run directory (to resume), keeping its spec and metrics; creates
    /// `checkpoints/` and `traces/` when missing.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(TRACES_DIR))?;
        fs::create_dir_all(root.join(CHECKPOINTS_DIR))?;
        let metrics = MetricsWriter::open(root.join(METRICS_FILE))?;
        Ok(RunFiles { root, metrics })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The spec text saved with the run.
    pub fn spec(&self) -> io::Result<String> {
        fs::read_to_string(self.root.join(SPEC_FILE))
    }

    pub fn metrics(&mut self) -> &mut MetricsWriter {
        &mut self.metrics
    }

    /// Writes one trace file and its index line (see [`write_trace`]).
    pub fn write_trace(&self, t: &Trace) -> io::Result<PathBuf> {
        write_trace(&self.root, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs::OpenOptions;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-rundir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_the_layout_and_appends_flushed_metrics() {
        let root = tmp("layout");
        let mut run = RunFiles::create(&root, "model m {}\n").unwrap();
        assert_eq!(run.spec().unwrap(), "model m {}\n");
        assert!(root.join(CHECKPOINTS_DIR).is_dir() && root.join(TRACES_DIR).is_dir());
        for step in 1..=3 {
            let m = StepMetrics {
                step,
                tokens: step * 100,
                loss: 2.0 / step as f64,
                aux: BTreeMap::from([("term.0.nll".to_string(), 1.5)]),
                lr: 1e-3,
                grad_norm: 0.5,
                tokens_per_s: 1000.0,
                wall_s: step as f64,
            };
            run.metrics().log(&m).unwrap();
            // Readable line by line while the writer is still open (a viewer tails it).
            let lines = read_metrics(&root.join(METRICS_FILE)).unwrap();
            assert_eq!(lines.len(), step as usize);
            let back: StepMetrics = serde_json::from_value(lines.last().unwrap().clone()).unwrap();
            assert_eq!(back, m);
            assert_eq!(lines.last().unwrap()["kind"], "train");
        }
        run.metrics()
            .log_value(&serde_json::json!({"kind": "eval", "step": 3, "copy_accuracy": 0.5}))
            .unwrap();
        // Resuming from a checkpoint at step 2 drops later lines, including a torn one.
        let mut f = OpenOptions::new()
            .append(true)
            .open(root.join(METRICS_FILE))
            .unwrap();
        f.write_all(b"{\"step\": 4, \"lo").unwrap();
        let mut run = RunFiles::open(&root).unwrap();
        run.metrics().truncate_after(2).unwrap();
        run.metrics()
            .log(&StepMetrics {
                step: 3,
                ..Default::default()
            })
            .unwrap();
        let steps: Vec<u64> = read_metrics(&root.join(METRICS_FILE))
            .unwrap()
            .iter()
            .map(|v| v["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [1, 2, 3]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn traces_round_trip_and_are_indexed() {
        let root = tmp("traces");
        let run = RunFiles::create(&root, "").unwrap();
        let pattern = Tensor::f32(
            &[1, 2, 2, 2],
            vec![1.0, 0.0, 0.5, 0.5, 1.0, 0.0, -0.25, 1.25],
        );
        let t = Trace {
            name: "layers.1.attn.pattern".into(),
            kind: trace_kind::ATTENTION.into(),
            step: 100,
            tensors: BTreeMap::from([
                ("pattern".to_string(), pattern),
                ("tokens".to_string(), Tensor::i32(&[1, 2], vec![7, 9])),
            ]),
            axes: BTreeMap::from([(
                "pattern".to_string(),
                ["batch", "head", "query", "key"].map(String::from).to_vec(),
            )]),
            attrs: serde_json::json!({"layer": 1}).as_object().unwrap().clone(),
        };
        let path = run.write_trace(&t).unwrap();
        assert_eq!(
            path,
            root.join("traces/layers.1.attn.pattern/step-00000100.safetensors")
        );
        assert_eq!(read_trace(&path).unwrap(), t);
        let index = read_metrics(&root.join(TRACES_DIR).join(TRACE_INDEX)).unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(
            index[0]["file"],
            "layers.1.attn.pattern/step-00000100.safetensors"
        );
        assert_eq!(
            index[0]["shapes"]["pattern"],
            serde_json::json!([1, 2, 2, 2])
        );
        let bad = Trace {
            name: "../x".into(),
            ..t
        };
        assert!(run.write_trace(&bad).is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
