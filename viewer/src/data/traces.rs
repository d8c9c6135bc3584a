//! The trace index (what exists, without opening files) and lazily loaded trace files.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_rundir::{read_trace, Trace, TRACE_META_KEY};

/// One line of `traces/index.jsonl` (or a file found by scanning `traces/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    pub step: u64,
    pub name: String,
    pub kind: String,
    /// Relative to `traces/`.
    pub file: String,
    pub shapes: BTreeMap<String, Vec<usize>>,
}

impl TraceEntry {
    /// Parses an index line; `None` when a required field is missing.
    pub fn from_json(v: &Value) -> Option<TraceEntry> {
        let shapes = v
            .get("shapes")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, s)| {
                        let dims = s
                            .as_array()?
                            .iter()
                            .map(|d| d.as_u64().map(|d| d as usize))
                            .collect::<Option<Vec<_>>>()?;
                        Some((k.clone(), dims))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(TraceEntry {
            step: v.get("step")?.as_u64()?,
            name: v.get("name")?.as_str()?.to_string(),
            kind: v.get("kind")?.as_str()?.to_string(),
            file: v.get("file")?.as_str()?.to_string(),
            shapes,
        })
    }

    /// The layer a trace belongs to: from a `layers.{i}.` name prefix.
    pub fn layer(&self) -> Option<usize> {
        let rest = self.name.strip_prefix("layers.")?;
        rest.split('.').next()?.parse().ok()
    }

    pub fn shape(&self, tensor: &str) -> Option<&[usize]> {
        self.shapes.get(tensor).map(Vec::as_slice)
    }
}

/// Every trace known so far, in the order they were written.
#[derive(Clone, Debug, Default)]
pub struct TraceIndex {
    entries: Vec<TraceEntry>,
    files: HashSet<String>,
}

impl TraceIndex {
    /// Adds an entry unless its file is already known; returns whether it was new.
    pub fn push(&mut self, e: TraceEntry) -> bool {
        if !self.files.insert(e.file.clone()) {
            return false;
        }
        self.entries.push(e);
        true
    }

    pub fn contains_file(&self, file: &str) -> bool {
        self.files.contains(file)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[TraceEntry] {
        &self.entries
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a TraceEntry> + 'a {
        self.entries.iter().filter(move |e| e.kind == kind)
    }

    /// Steps at which traces of `kind` exist, ascending.
    pub fn steps(&self, kind: &str) -> Vec<u64> {
        let mut s: Vec<u64> = self
            .entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.step)
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// Traces of `kind` at `step`, sorted by (layer, name).
    pub fn at(&self, kind: &str, step: u64) -> Vec<&TraceEntry> {
        let mut v: Vec<&TraceEntry> = self
            .entries
            .iter()
            .filter(|e| e.kind == kind && e.step == step)
            .collect();
        v.sort_by(|a, b| (a.layer(), &a.name).cmp(&(b.layer(), &b.name)));
        v
    }

    /// Distinct trace names of `kind`, sorted.
    pub fn names(&self, kind: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The traces named `name`, by ascending step.
    pub fn history(&self, name: &str) -> Vec<&TraceEntry> {
        let mut v: Vec<&TraceEntry> = self.entries.iter().filter(|e| e.name == name).collect();
        v.sort_by_key(|e| e.step);
        v
    }
}

/// Reads only the header of a trace file (the safetensors JSON header and its
/// `weft_trace` metadata), so scanning a directory does not read tensor data.
pub fn read_header(traces_dir: &Path, file: &str) -> io::Result<TraceEntry> {
    let path = traces_dir.join(file);
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let mut f = File::open(&path)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 || n > f.metadata()?.len() {
        return Err(bad("header length exceeds the file"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let header: Value = serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    let meta = header
        .get("__metadata__")
        .and_then(|m| m.get(TRACE_META_KEY))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no weft_trace metadata"))?;
    let meta: Value = serde_json::from_str(meta).map_err(|_| bad("weft_trace is not JSON"))?;
    let mut shapes = BTreeMap::new();
    if let Some(o) = header.as_object() {
        for (k, t) in o.iter().filter(|(k, _)| *k != "__metadata__") {
            if let Some(s) = t.get("shape").and_then(Value::as_array) {
                shapes.insert(
                    k.clone(),
                    s.iter()
                        .filter_map(Value::as_u64)
                        .map(|d| d as usize)
                        .collect(),
                );
            }
        }
    }
    Ok(TraceEntry {
        step: meta
            .get("step")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no step"))?,
        name: meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(file)
            .to_string(),
        kind: meta
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        file: file.to_string(),
        shapes,
    })
}

/// Loaded trace files, read on first use and kept (up to a memory budget) so panels can ask
/// for them every frame. A file that fails to load is remembered with its error.
#[derive(Debug)]
pub struct TraceStore {
    traces_dir: PathBuf,
    loaded: HashMap<String, (Result<Arc<Trace>, String>, u64)>,
    bytes: usize,
    clock: u64,
    /// Bytes of tensor data kept before the least recently used traces are dropped.
    pub budget: usize,
}

impl TraceStore {
    pub fn new(traces_dir: impl Into<PathBuf>) -> Self {
        TraceStore {
            traces_dir: traces_dir.into(),
            loaded: HashMap::new(),
            bytes: 0,
            clock: 0,
            budget: 1 << 30,
        }
    }

    /// The trace of `entry`, loading it if needed.
    pub fn get(&mut self, entry: &TraceEntry) -> Result<Arc<Trace>, String> {
        self.clock += 1;
        if let Some((r, used)) = self.loaded.get_mut(&entry.file) {
            *used = self.clock;
            return r.clone();
        }
        let r = read_trace(&self.traces_dir.join(&entry.file))
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Ok(t) = &r {
            self.bytes += trace_bytes(t);
            self.evict();
        }
        self.loaded
            .insert(entry.file.clone(), (r.clone(), self.clock));
        r
    }

    /// Files that failed to load, with their errors, sorted by file.
    pub fn failures(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .loaded
            .iter()
            .filter_map(|(f, (r, _))| r.as_ref().err().map(|e| (f.clone(), e.clone())))
            .collect();
        v.sort();
        v
    }

    /// Forgets failures so they are tried again (a file may have been repaired or finished).
    pub fn retry_failures(&mut self) {
        self.loaded.retain(|_, (r, _)| r.is_ok());
    }

    fn evict(&mut self) {
        while self.bytes > self.budget && self.loaded.len() > 1 {
            let Some(oldest) = self
                .loaded
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(f, _)| f.clone())
            else {
                return;
            };
            if let Some((Ok(t), _)) = self.loaded.remove(&oldest) {
                self.bytes -= trace_bytes(&t);
            }
        }
    }
}

fn trace_bytes(t: &Trace) -> usize {
    t.tensors.values().map(|x| x.numel() * 4).sum()
}
