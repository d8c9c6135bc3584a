//! Run directories: what a training run leaves behind for the viewer and for resuming.
//!
//! ```text
//! DIR/
//!   spec.weft            copy of the spec that was run
//!   metrics.jsonl        one JSON object per logged step, flushed per line (tail-able)
//!   checkpoints/         step-{step:08}.safetensors + `latest` (see crate::checkpoint)
//!   traces/index.jsonl   one line per trace written
//!   traces/{name}/step-{step:08}.safetensors
//!   lock                 {"pid": ...} while a trainer owns the directory (see [`lock`])
//! ```
//!
//! The formats are documented for readers outside Rust in `docs/run-directory.md`.

pub mod lock;

pub use lock::{LockError, RunLock, LOCK_FILE};

use crate::checkpoint::{write_atomic, CheckpointDir, CheckpointError};
use crate::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File and folder names inside a run directory.
pub const SPEC_FILE: &str = "spec.weft";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const TRACES_DIR: &str = "traces";
pub const TRACE_INDEX: &str = "index.jsonl";
/// `__metadata__` key of a trace file.
pub const TRACE_META_KEY: &str = "weft_trace";
/// Format tag of trace metadata.
pub const TRACE_FORMAT: &str = "weft-trace/1";

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

/// What a trace holds; the viewer picks a panel by it.
pub mod trace_kind {
    /// `pattern` f32 `[B, H, Tq, Tk]` attention weights of one layer (signed for Cog);
    /// optional `tokens` i32 `[B, T]`. attrs: `layer`.
    pub const ATTENTION: &str = "attention";
    /// `choice` i32 `[B, T, K]` module index chosen per token (−1 = SKIP) and optional
    /// `weight` f32 `[B, T, K]`; a leading `[iterations, ...]` axis for MoM's repeats.
    /// attrs: `layer` or `pool`, `modules`.
    pub const ROUTING: &str = "routing";
    /// `scores` f32 `[L, H]` one number per head (induction, copy, patching effect, gain).
    /// attrs: `score` (its name).
    pub const HEAD_SCORES: &str = "head_scores";
    /// MoICE: the rotary bases each head mixes per token. `choice` i32 `[B, H, T, K]` base
    /// index per top-k slot, by decreasing weight; `weight` f32 `[B, H, T, K]` its mixing
    /// weight (router probabilities renormalised over the chosen bases); `probs` f32
    /// `[B, H, T, N]` the router's softmax over all N bases; optional `tokens` i32 `[B, T]`.
    /// attrs: `layer`, `bases` (the N base values, when known).
    pub const BASE_ROUTING: &str = "base_routing";
    /// Per-demonstration loss of a `segment_nll` objective (DR-ICL) on the held-out batches.
    /// `loss` f32 `[N, K]` mean answer loss ℓ_k of demonstration k in sequence n, `weight`
    /// f32 `[N, K]` its detached weight, `tokens` f32 `[N, K]` its answer tokens (0: the
    /// sequence has no demonstration k; its `loss` and `weight` are 0 and mean nothing).
    pub const SEGMENTS: &str = "segments";
}

/// A snapshot of named tensors at one step, with axis names and free-form attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Path-safe name, e.g. `layers.1.attn.pattern`, `induction_score`.
    pub name: String,
    /// One of [`trace_kind`], or anything a later reader understands.
    pub kind: String,
    pub step: u64,
    pub tensors: BTreeMap<String, Tensor>,
    /// Axis names per tensor, e.g. `pattern: ["batch", "head", "query", "key"]`.
    pub axes: BTreeMap<String, Vec<String>>,
    pub attrs: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct TraceHeader {
    format: String,
    name: String,
    kind: String,
    step: u64,
    #[serde(default)]
    axes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    attrs: serde_json::Map<String, serde_json::Value>,
}

/// The bytes of a trace file: safetensors with `__metadata__.weft_trace` = JSON header.
pub fn serialize_trace(t: &Trace) -> io::Result<Vec<u8>> {
    let header = TraceHeader {
        format: TRACE_FORMAT.into(),
        name: t.name.clone(),
        kind: t.kind.clone(),
        step: t.step,
        axes: t.axes.clone(),
        attrs: t.attrs.clone(),
    };
    let meta = HashMap::from([(
        TRACE_META_KEY.to_string(),
        serde_json::to_string(&header).map_err(io::Error::other)?,
    )]);
    let raw: Vec<(&str, Dtype, &[usize], Vec<u8>)> = t
        .tensors
        .iter()
        .map(|(n, x)| {
            let (dt, bytes) = le_bytes(x);
            (n.as_str(), dt, x.shape.as_slice(), bytes)
        })
        .collect();
    let views = raw
        .iter()
        .map(|(n, dt, shape, b)| {
            safetensors::tensor::TensorView::new(*dt, shape.to_vec(), b).map(|v| (*n, v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    safetensors::serialize(views, Some(meta)).map_err(io::Error::other)
}

fn le_bytes(t: &Tensor) -> (Dtype, Vec<u8>) {
    match &t.data {
        TensorData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::I32(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::F64(v) => (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

/// Reads a trace file written by [`RunDir::write_trace`].
pub fn read_trace(path: &Path) -> io::Result<Trace> {
    let bad = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let bytes = fs::read(path)?;
    let (_, md) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let header = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get(TRACE_META_KEY))
        .ok_or_else(|| bad(format!("no `{TRACE_META_KEY}` metadata")))?;
    let h: TraceHeader = serde_json::from_str(header).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, v) in st.iter() {
        let b = v.data();
        let t = match v.dtype() {
            Dtype::F32 => Tensor::f32(
                v.shape(),
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::I32 => Tensor::i32(
                v.shape(),
                b.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::F64 => Tensor::f64(
                v.shape(),
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has unsupported dtype {other:?}"
                )))
            }
        };
        tensors.insert(name.to_string(), t);
    }
    Ok(Trace {
        name: h.name,
        kind: h.kind,
        step: h.step,
        tensors,
        axes: h.axes,
        attrs: h.attrs,
    })
}

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
    let steps = latest.as_ref().and_then(|p| {
        p.file_name()?
            .to_str()?
            .strip_prefix("step-")?
            .strip_suffix(".safetensors")?
            .parse::<u64>()
            .ok()
    });
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

/// An open run directory.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    metrics: MetricsWriter,
    checkpoints: CheckpointDir,
}

impl RunDir {
    /// Creates (or reopens) `root` for a run of `spec_source`: writes `spec.weft`, creates
    /// `checkpoints/` and `traces/`, opens `metrics.jsonl` for appending.
    pub fn create(root: impl Into<PathBuf>, spec_source: &str) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(TRACES_DIR))?;
        write_atomic(&root.join(SPEC_FILE), spec_source.as_bytes())?;
        Self::open(root)
    }

    /// Opens an existing run directory (to resume), keeping its spec and metrics.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(TRACES_DIR))?;
        let checkpoints = CheckpointDir::open(root.join(CHECKPOINTS_DIR))
            .map_err(|e: CheckpointError| io::Error::other(e.to_string()))?;
        let metrics = MetricsWriter::open(root.join(METRICS_FILE))?;
        Ok(RunDir {
            root,
            metrics,
            checkpoints,
        })
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

    pub fn checkpoints(&self) -> &CheckpointDir {
        &self.checkpoints
    }

    /// Writes `traces/{name}/step-{step:08}.safetensors` atomically, then appends its line to
    /// `traces/index.jsonl` (`{"step", "name", "kind", "file", "shapes"}`; `file` relative to
    /// `traces/`). Returns the file's path.
    pub fn write_trace(&self, t: &Trace) -> io::Result<PathBuf> {
        if t.name.is_empty() || t.name.contains(['/', '\\']) || t.name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("trace name {:?} is not path-safe", t.name),
            ));
        }
        let traces = self.root.join(TRACES_DIR);
        let rel = format!("{}/step-{:08}.safetensors", t.name, t.step);
        fs::create_dir_all(traces.join(&t.name))?;
        let path = traces.join(&rel);
        write_atomic(&path, &serialize_trace(t)?)?;
        let shapes: BTreeMap<&str, &[usize]> = t
            .tensors
            .iter()
            .map(|(n, x)| (n.as_str(), x.shape.as_slice()))
            .collect();
        let line = serde_json::json!({"step": t.step, "name": t.name, "kind": t.kind, "file": rel, "shapes": shapes});
        let mut index = OpenOptions::new()
            .create(true)
            .append(true)
            .open(traces.join(TRACE_INDEX))?;
        index.write_all(format!("{line}\n").as_bytes())?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-rundir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_the_layout_and_appends_flushed_metrics() {
        let root = tmp("layout");
        let mut run = RunDir::create(&root, "model m {}\n").unwrap();
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
        let mut run = RunDir::open(&root).unwrap();
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
        let run = RunDir::create(&root, "").unwrap();
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
