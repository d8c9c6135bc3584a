//! Trace files: `traces/{name}/step-{step:08}.safetensors` and `traces/index.jsonl`.

use crate::tensor::{Tensor, TensorData};
use crate::{write_atomic, TRACES_DIR, TRACE_FORMAT, TRACE_INDEX, TRACE_META_KEY};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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

/// Reads a trace file written by [`write_trace`].
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

/// Writes `traces/{name}/step-{step:08}.safetensors` under the run directory `root`
/// atomically, then appends its line to `traces/index.jsonl` (`{"step", "name", "kind",
/// "file", "shapes"}`; `file` relative to `traces/`). Returns the file's path. A name that
/// is not path-safe (empty, a separator, a leading dot) is refused.
pub fn write_trace(root: &Path, t: &Trace) -> io::Result<PathBuf> {
    if t.name.is_empty() || t.name.contains(['/', '\\']) || t.name.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("trace name {:?} is not path-safe", t.name),
        ));
    }
    let traces = root.join(TRACES_DIR);
    let rel = format!("{}/{}", t.name, crate::step_file(t.step));
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
