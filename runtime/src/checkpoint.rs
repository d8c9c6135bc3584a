//! Checkpoints: parameters and optimizer state in one safetensors file (readable by PyTorch's
//! `safetensors.torch.load_file`), with the run's metadata in the header, written atomically.
//!
//! File layout (see `docs/run-directory.md`):
//! - tensors: every parameter under its own name; AdamW moments as `opt.m.{param}` and
//!   `opt.v.{param}` (SGD momentum as `opt.m.{param}`). f32 is `F32`, i32 `I32`, f64 `F64`,
//!   little-endian, row-major, as safetensors prescribes.
//! - `__metadata__`: `{"format": "pt", "weft": "<CheckpointMeta as JSON>"}`. safetensors
//!   metadata values must be strings, hence JSON inside a string.
//!
//! Durability: [`write_atomic`] writes a temporary file in the same directory, `fsync`s it,
//! renames it over the target and `fsync`s the directory, so a reader sees the old file or
//! the complete new one, never a prefix. [`CheckpointDir::save`] moves the `latest` pointer
//! (the same way) only after the checkpoint itself is durable; a crash at any instant leaves
//! `latest` naming a complete checkpoint.

use crate::backend::ParamStore;
use crate::optim::{OptimizerConfig, OptimizerState, Schedule};
use crate::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The value of [`CheckpointMeta::format`] this code writes and reads.
pub const FORMAT: &str = "weft-checkpoint/1";
/// The `__metadata__` key holding [`CheckpointMeta`] as JSON.
pub const META_KEY: &str = "weft";
/// Name of the pointer file in a checkpoint directory.
pub const LATEST: &str = "latest";
/// Name of the pointer to the checkpoint with the lowest held-out loss.
pub const BEST: &str = "best";

/// Where the data stream stands: with per-step batch rngs ([`crate::data::step_rng`]) the
/// next batch is a function of the seed and `step` alone; `samples` is kept for sources that
/// count sequences (text windows: `step · batch`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    /// The step whose batch comes next.
    pub step: u64,
    /// Training sequences consumed so far.
    pub samples: u64,
}

/// Everything besides tensors needed to resume a run exactly and to know what was saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT`].
    pub format: String,
    /// `weft-runtime` version that wrote the file.
    pub weft_version: String,
    /// Hash of the spec the parameters belong to (see [`spec_hash`]).
    pub spec_hash: String,
    /// Optimizer steps completed.
    pub step: u64,
    /// Training tokens (positions with a target) seen.
    pub tokens_seen: u64,
    /// Optimizer hyperparameters, when an optimizer was running.
    pub optimizer: Option<OptimizerConfig>,
    /// The optimizer's own step count (AdamW bias correction).
    pub optimizer_step: u64,
    pub schedule: Option<Schedule>,
    /// The run seed: parameter initialisation, data and dropout streams derive from it.
    pub seed: u64,
    pub data: DataPosition,
    /// Anything else the training loop wants back on resume.
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CheckpointMeta {
    /// Metadata for `step` of the spec with hash `spec_hash`; the other fields start empty.
    pub fn new(spec_hash: impl Into<String>, step: u64) -> Self {
        CheckpointMeta {
            format: FORMAT.into(),
            weft_version: env!("CARGO_PKG_VERSION").into(),
            spec_hash: spec_hash.into(),
            step,
            tokens_seen: 0,
            optimizer: None,
            optimizer_step: 0,
            schedule: None,
            seed: 0,
            data: DataPosition::default(),
            extra: Default::default(),
        }
    }
}

/// A stable identity for a spec's text: FNV-1a 64 of its bytes as 16 hex digits. (An identity
/// check against mixing up runs, not a cryptographic digest.)
pub fn spec_hash(source: &str) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in source.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}

/// A loaded checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub params: ParamStore,
    /// Moments from `opt.*` tensors, step from `meta.optimizer_step`.
    pub optimizer: OptimizerState,
}

/// What a loader insists on. Empty: accept any well-formed checkpoint.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The current spec's hash; a different one is refused, showing both.
    pub spec_hash: Option<String>,
    /// Every parameter the model needs, with its shape; each must be present and f32 of that
    /// shape. Extra tensors are ignored.
    pub params: Option<BTreeMap<String, Vec<usize>>>,
}

impl Expect {
    /// The parameters of a graph.
    pub fn graph(spec_hash: Option<String>, g: &weft_compiler::ir::Graph) -> Self {
        Expect {
            spec_hash,
            params: Some(
                g.params
                    .iter()
                    .map(|p| (p.name.clone(), p.shape.clone()))
                    .collect(),
            ),
        }
    }
}

/// What is wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a safetensors file: {0}")]
    NotSafetensors(String),
    #[error("truncated: the header describes {expected} bytes, the file has {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("the header does not match the data: {0}")]
    BadHeader(String),
    #[error("no weft metadata (`__metadata__.{META_KEY}`): not written by weft")]
    NoMetadata,
    #[error("bad weft metadata: {0}")]
    BadMetadata(String),
    #[error(
        "written for another spec: checkpoint spec hash {found}, current spec hash {expected}"
    )]
    SpecHash { expected: String, found: String },
    #[error("missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor { name: String, expected: Vec<usize> },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` has dtype {found}, expected {expected}")]
    Dtype {
        name: String,
        expected: &'static str,
        found: String,
    },
    #[error("a parameter is named `{0}`, which collides with optimizer state names")]
    NameClash(String),
    #[error("no `{LATEST}` pointer: no checkpoint has been completed")]
    NoLatest,
    #[error("pointer file is not a checkpoint file name: {0:?}")]
    BadLatest(String),
}

/// A checkpoint error: the file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {}: {problem}", path.display())]
pub struct CheckpointError {
    pub path: PathBuf,
    pub problem: Problem,
}

fn err(path: &Path, problem: impl Into<Problem>) -> CheckpointError {
    CheckpointError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Atomic file writes: shared with the rest of the run directory (`weft-rundir`).
pub use weft_rundir::write_atomic;

struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_bytes(t: &Tensor) -> Bytes {
    let (dtype, data) = match &t.data {
        TensorData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::I32(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::F64(v) => (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    Bytes {
        dtype,
        shape: t.shape.clone(),
        data,
    }
}

fn from_view(name: &str, v: &TensorView<'_>) -> Result<Tensor, Problem> {
    let b = v.data();
    let shape = v.shape();
    Ok(match v.dtype() {
        Dtype::F32 => Tensor::f32(
            shape,
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        Dtype::I32 => Tensor::i32(
            shape,
            b.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        Dtype::F64 => Tensor::f64(
            shape,
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        other => {
            return Err(Problem::Dtype {
                name: name.into(),
                expected: "F32, I32 or F64",
                found: format!("{other:?}"),
            })
        }
    })
}

/// The checkpoint file's bytes.
pub fn serialize(
    meta: &CheckpointMeta,
    params: &ParamStore,
    optimizer: Option<&OptimizerState>,
) -> Result<Vec<u8>, Problem> {
    let mut tensors: Vec<(String, Bytes)> = Vec::new();
    for (name, t) in params {
        if name.starts_with("opt.") {
            return Err(Problem::NameClash(name.clone()));
        }
        tensors.push((name.clone(), to_bytes(t)));
    }
    if let Some(opt) = optimizer {
        tensors.extend(opt.tensors().map(|(n, t)| (n, to_bytes(t))));
    }
    let json = serde_json::to_string(meta).map_err(|e| Problem::BadMetadata(e.to_string()))?;
    let info = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (META_KEY.to_string(), json),
    ]);
    safetensors::serialize(tensors.iter().map(|(n, b)| (n.as_str(), b)), Some(info))
        .map_err(|e| Problem::BadHeader(e.to_string()))
}

/// Writes a checkpoint file atomically (see [`write_atomic`]).
pub fn save(
    path: &Path,
    meta: &CheckpointMeta,
    params: &ParamStore,
    optimizer: Option<&OptimizerState>,
) -> Result<(), CheckpointError> {
    let bytes = serialize(meta, params, optimizer).map_err(|p| err(path, p))?;
    write_atomic(path, &bytes).map_err(|e| err(path, e))
}

/// Parses and validates a whole file's bytes.
fn parse(bytes: &[u8]) -> Result<(SafeTensors<'_>, CheckpointMeta), Problem> {
    let found = bytes.len() as u64;
    if bytes.len() < 8 {
        return Err(Problem::NotSafetensors(format!(
            "{found} bytes, shorter than the 8-byte header length"
        )));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if n > 100_000_000 {
        return Err(Problem::NotSafetensors(format!(
            "header length {n} is implausible"
        )));
    }
    if 8 + n > found {
        return Err(Problem::Truncated {
            expected: 8 + n,
            found,
        });
    }
    let header = &bytes[8..8 + n as usize];
    let json: serde_json::Value = std::str::from_utf8(header)
        .ok()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| Problem::NotSafetensors("the header is not a JSON object".into()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| match e {
        SafeTensorError::MetadataIncompleteBuffer => {
            // Which way it is off: compare with the end of the last tensor.
            let data_end = json
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
                .max()
                .unwrap_or(0);
            let expected = 8 + n + data_end;
            if found < expected {
                Problem::Truncated { expected, found }
            } else {
                Problem::BadHeader(format!("{} bytes after the last tensor", found - expected))
            }
        }
        other => Problem::BadHeader(other.to_string()),
    })?;
    let meta = json
        .get("__metadata__")
        .and_then(|m| m.get(META_KEY))
        .and_then(|m| m.as_str())
        .ok_or(Problem::NoMetadata)?;
    let meta: CheckpointMeta =
        serde_json::from_str(meta).map_err(|e| Problem::BadMetadata(e.to_string()))?;
    if meta.format != FORMAT {
        return Err(Problem::BadMetadata(format!(
            "format {:?}, this weft reads {FORMAT:?}",
            meta.format
        )));
    }
    Ok((st, meta))
}

/// Reads and checks a checkpoint. Errors name the file and the problem.
pub fn load(path: &Path, expect: &Expect) -> Result<Checkpoint, CheckpointError> {
    let bytes = fs::read(path).map_err(|e| err(path, e))?;
    load_bytes(&bytes, expect).map_err(|p| err(path, p))
}

fn load_bytes(bytes: &[u8], expect: &Expect) -> Result<Checkpoint, Problem> {
    let (st, meta) = parse(bytes)?;
    if let Some(h) = &expect.spec_hash {
        if *h != meta.spec_hash {
            return Err(Problem::SpecHash {
                expected: h.clone(),
                found: meta.spec_hash.clone(),
            });
        }
    }
    let mut params = ParamStore::new();
    let mut opt = Vec::new();
    for (name, view) in st.iter() {
        let t = from_view(name, &view)?;
        if name.starts_with("opt.") {
            opt.push((name, t));
        } else {
            params.insert(name.to_string(), t);
        }
    }
    if let Some(want) = &expect.params {
        for (name, shape) in want {
            let t = params.get(name).ok_or_else(|| Problem::MissingTensor {
                name: name.clone(),
                expected: shape.clone(),
            })?;
            if t.shape != *shape {
                return Err(Problem::Shape {
                    name: name.clone(),
                    expected: shape.clone(),
                    found: t.shape.clone(),
                });
            }
            if t.as_f32().is_none() {
                return Err(Problem::Dtype {
                    name: name.clone(),
                    expected: "F32",
                    found: t.dtype_name().to_uppercase(),
                });
            }
        }
    }
    let optimizer = OptimizerState::from_tensors(meta.optimizer_step, opt);
    optimizer
        .validate(&params)
        .map_err(|e| Problem::BadMetadata(e.to_string()))?;
    Ok(Checkpoint {
        meta,
        params,
        optimizer,
    })
}

/// Reads only the metadata of a checkpoint (still validating the whole file).
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let bytes = fs::read(path).map_err(|e| err(path, e))?;
    parse(&bytes).map(|(_, m)| m).map_err(|p| err(path, p))
}

/// A run's `checkpoints/` directory: `step-{step:08}.safetensors` files and a `latest` pointer
/// holding the file name of the newest complete one.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    /// Opens (creating if needed) a checkpoint directory, removing temporary files that a
    /// killed writer left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(".tmp.") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(CheckpointDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The file a checkpoint of `step` is written to.
    pub fn file_for(&self, step: u64) -> PathBuf {
        self.dir.join(weft_rundir::step_file(step))
    }

    /// Writes the checkpoint of `meta.step`, then points `latest` at it. Returns its path.
    pub fn save(
        &self,
        meta: &CheckpointMeta,
        params: &ParamStore,
        optimizer: Option<&OptimizerState>,
    ) -> Result<PathBuf, CheckpointError> {
        let path = self.file_for(meta.step);
        save(&path, meta, params, optimizer)?;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let latest = self.dir.join(LATEST);
        write_atomic(&latest, format!("{name}\n").as_bytes()).map_err(|e| err(&latest, e))?;
        Ok(path)
    }

    /// The newest complete checkpoint, or `None` when there is none yet.
    pub fn latest(&self) -> Result<Option<PathBuf>, CheckpointError> {
        self.pointer(LATEST)
    }

    /// The checkpoint with the lowest held-out loss so far (see [`CheckpointDir::mark_best`]),
    /// or `None` when no evaluated checkpoint has been marked.
    pub fn best(&self) -> Result<Option<PathBuf>, CheckpointError> {
        self.pointer(BEST)
    }

    /// Points `best` at `path` (a checkpoint of this directory), atomically; pruning never
    /// deletes the file it names.
    pub fn mark_best(&self, path: &Path) -> Result<(), CheckpointError> {
        let best = self.dir.join(BEST);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| err(path, Problem::BadLatest(path.display().to_string())))?;
        write_atomic(&best, format!("{name}\n").as_bytes()).map_err(|e| err(&best, e))
    }

    /// Reads a pointer file (`latest`, `best`): the name of a checkpoint file in this folder.
    fn pointer(&self, which: &str) -> Result<Option<PathBuf>, CheckpointError> {
        let file = self.dir.join(which);
        let name = match fs::read(&file) {
            Ok(b) if b.len() > 4096 => {
                return Err(err(
                    &file,
                    Problem::BadLatest(format!("{} bytes, not a file name", b.len())),
                ))
            }
            Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&file, e)),
        };
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(err(&file, Problem::BadLatest(name)));
        }
        Ok(Some(self.dir.join(name)))
    }

    /// Every `step-N.safetensors` file, by step.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)
            .map_err(|e| err(&self.dir, e))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                Some((weft_rundir::parse_step_file(&name)?, e.path()))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Loads the newest complete checkpoint.
    pub fn load_latest(&self, expect: &Expect) -> Result<Checkpoint, CheckpointError> {
        match self.latest()? {
            Some(p) => load(&p, expect),
            None => Err(err(&self.dir.join(LATEST), Problem::NoLatest)),
        }
    }

    /// Deletes all but the newest `keep` step files (by step number), never the ones `latest`
    /// and `best` name. Each deletion is one `unlink`, after the pointers are durable, so a
    /// crash mid-prune leaves extra files, never a dangling pointer. `keep = 0` keeps all.
    pub fn prune(&self, keep: usize) -> Result<(), CheckpointError> {
        if keep == 0 {
            return Ok(());
        }
        let latest = self.latest()?;
        // A corrupt `best` pointer must not stop training: it only protects one more file.
        let best = self.best().ok().flatten();
        let files = self.list()?;
        let excess = files.len().saturating_sub(keep);
        for (_, p) in files.into_iter().take(excess) {
            if Some(&p) != latest.as_ref() && Some(&p) != best.as_ref() {
                fs::remove_file(&p).map_err(|e| err(&p, e))?;
            }
        }
        Ok(())
    }
}
