//! Matmul autotuning: which [`TileConfig`] each matmul shape of a program runs fastest with
//! on this adapter, measured, cached on disk per adapter, and compiled with from then on.
//!
//! [`WgpuBackend::autotune`] compiles a graph, collects the distinct [`MatmulShape`]s of its
//! kernels, and for each candidate configuration compiles the graph again with every matmul
//! given that configuration, then times the first kernel of each shape alone with
//! [`WgpuBackend::time_dispatch`] (the per-kernel timer of [`super::profile`]: one warm-up,
//! then `repeats` dispatches, each submitted and waited for; GPU timestamps where the device
//! has them, else wall clock) on zero-filled buffers. The fastest median wins. A candidate
//! the adapter cannot hold (codegen fell back to another tiling) is listed but not timed.
//!
//! Choices live in `autotune-<adapter slug>.json` under [`cache_dir`]: `$WEFT_CACHE_DIR`,
//! else `$XDG_CACHE_HOME/weft`, else `~/.cache/weft`. The slug comes from the adapter's
//! name, vendor and device ids, driver and backend, so a driver update or another GPU starts
//! a fresh file. A backend loads its adapter's file when it is created (not with
//! `WEFT_AUTOTUNE=0`) and compiles every matmul of a cached shape with its choice; shapes
//! named explicitly in the options' [`TuningTable`] keep their configuration. Writes go to a
//! temporary file renamed over the old one (readers never see half a file); a file that
//! does not parse, was written for another adapter or holds an invalid configuration is
//! reported as a warning and ignored, never a panic.

use super::compiled::Compiled;
use super::profile::Clock;
use super::WgpuBackend;
use crate::error::RunError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use weft_compiler::codegen::{
    compile, BufferPlan, BufferRef, CodegenOptions, Kernel, MatmulShape, Program, TileConfig,
    TuningTable,
};
use weft_compiler::ir::Graph;

/// Format version of the cache file; another version is ignored with a warning.
const VERSION: u32 = 1;

/// Where a backend's autotune choices are read from and written to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TuneCache {
    /// [`cache_dir`]; loading is skipped when `WEFT_AUTOTUNE=0` (tuning still writes).
    #[default]
    FromEnv,
    /// This directory, whatever the environment says.
    Dir(PathBuf),
    /// No file: nothing is loaded and choices stay in memory.
    Off,
}

/// The autotune cache directory: `$WEFT_CACHE_DIR`, else `$XDG_CACHE_HOME/weft`, else
/// `$HOME/.cache/weft` (`None` when none of them is set).
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("WEFT_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("weft")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("weft")))
}

/// A file-name-safe identifier of an adapter and its driver: name, vendor and device ids,
/// driver, driver version and backend, lowercased, runs of other characters as one `-`
/// (e.g. `llvmpipe-llvm-15-0-7-256-bits-10005-0-llvmpipe-mesa-23-2-1-vulkan`).
pub fn adapter_slug(info: &wgpu::AdapterInfo) -> String {
    let raw = format!(
        "{} {:x} {:x} {} {} {:?}",
        info.name, info.vendor, info.device, info.driver, info.driver_info, info.backend
    );
    let mut slug = String::new();
    for ch in raw.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    // Long driver strings are cut; the ids and backend stay distinct through the hash.
    if slug.len() <= 100 {
        return slug.to_string();
    }
    let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}-{hash:016x}", slug[..100].trim_end_matches('-'))
}

/// One candidate's measurement for a shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The configuration timed.
    pub config: TileConfig,
    /// Median time of one dispatch in milliseconds; `None` when not timed (see `note`).
    pub ms: Option<f64>,
    /// Why it was not timed (the adapter's limits ruled it out, or the device failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The tuned configuration of one shape and what every candidate measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The shape tuned.
    pub shape: MatmulShape,
    /// The fastest candidate: what kernels of this shape compile with.
    pub config: TileConfig,
    /// Every candidate tried, in the order tried.
    pub candidates: Vec<Candidate>,
    /// Which clock the times are from.
    pub clock: Clock,
}

/// The cache file's contents.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// [`adapter_slug`] of the adapter the times were measured on.
    adapter: String,
    choices: Vec<Choice>,
}

/// A backend's tuning state: the options' table, the cached and tuned choices, the cache
/// file, and how many candidates it has timed.
pub(super) struct Tuning {
    base: TuningTable,
    choices: Mutex<BTreeMap<MatmulShape, Choice>>,
    file: Option<PathBuf>,
    adapter: String,
    timings: AtomicUsize,
    warnings: Mutex<Vec<String>>,
}

impl Tuning {
    /// Loads the cache for adapter `info` (see [`TuneCache`]); problems become warnings
    /// (printed to stderr and kept for [`WgpuBackend::autotune_warnings`]).
    pub(super) fn load(info: &wgpu::AdapterInfo, cache: TuneCache, base: &TuningTable) -> Self {
        let adapter = adapter_slug(info);
        let name = format!("autotune-{adapter}.json");
        let (file, read) = match cache {
            TuneCache::FromEnv => (
                cache_dir().map(|d| d.join(&name)),
                std::env::var("WEFT_AUTOTUNE").as_deref() != Ok("0"),
            ),
            TuneCache::Dir(d) => (Some(d.join(&name)), true),
            TuneCache::Off => (None, false),
        };
        let mut warnings = Vec::new();
        let choices = match (&file, read) {
            (Some(path), true) => read_cache(path, &adapter).unwrap_or_else(|w| {
                eprintln!("weft: warning: {w}");
                warnings.push(w);
                BTreeMap::new()
            }),
            _ => BTreeMap::new(),
        };
        Tuning {
            base: base.clone(),
            choices: Mutex::new(choices),
            file,
            adapter,
            timings: AtomicUsize::new(0),
            warnings: Mutex::new(warnings),
        }
    }

    fn choices(&self) -> std::sync::MutexGuard<'_, BTreeMap<MatmulShape, Choice>> {
        self.choices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table codegen uses: the options' default and shapes, tuned choices elsewhere.
    fn table(&self) -> TuningTable {
        let mut t = TuningTable {
            default: self.base.default,
            shapes: self.choices().iter().map(|(s, c)| (*s, c.config)).collect(),
        };
        t.shapes
            .extend(self.base.shapes.iter().map(|(s, c)| (*s, *c)));
        t
    }

    fn warn(&self, w: String) {
        eprintln!("weft: warning: {w}");
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w);
    }
}

/// The choices in the cache file at `path`: none when it does not exist; an error (the
/// warning to print) when it cannot be read, does not parse or does not fit this adapter.
fn read_cache(path: &Path, adapter: &str) -> Result<BTreeMap<MatmulShape, Choice>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(format!(
                "cannot read the autotune cache {}: {e}; ignoring it",
                path.display()
            ))
        }
    };
    let ignoring = |why: String| {
        format!(
            "ignoring the autotune cache {}: {why} (`weft tune` rewrites it)",
            path.display()
        )
    };
    let file: CacheFile =
        serde_json::from_str(&text).map_err(|e| ignoring(format!("it is corrupt ({e})")))?;
    if file.version != VERSION {
        return Err(ignoring(format!(
            "format version {}, expected {VERSION}",
            file.version
        )));
    }
    if file.adapter != adapter {
        return Err(ignoring(format!(
            "it was written for adapter `{}`, not `{adapter}`",
            file.adapter
        )));
    }
    let mut out = BTreeMap::new();
    for c in file.choices {
        c.config
            .check()
            .map_err(|e| ignoring(format!("shape {}: {e}", c.shape)))?;
        out.insert(c.shape, c);
    }
    Ok(out)
}

/// Writes `choices` to `path` atomically (a temporary file in the same directory renamed
/// over it), merged over the choices another process may have written there meanwhile.
fn write_cache(
    path: &Path,
    adapter: &str,
    choices: &BTreeMap<MatmulShape, Choice>,
) -> Result<(), String> {
    let mut all = read_cache(path, adapter).unwrap_or_default();
    all.extend(choices.iter().map(|(s, c)| (*s, c.clone())));
    let file = CacheFile {
        version: VERSION,
        adapter: adapter.to_string(),
        choices: all.into_values().collect(),
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    std::fs::write(&tmp, json + "\n").map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

/// Knobs of [`WgpuBackend::autotune`].
#[derive(Clone, Debug, PartialEq)]
pub struct AutotuneOptions {
    /// Timed dispatches per candidate after one warm-up; their median is compared.
    pub repeats: usize,
    /// Time shapes again even when the cache already has a choice for them.
    pub retune: bool,
    /// The configurations tried ([`TileConfig::candidates`] by default).
    pub candidates: Vec<TileConfig>,
}

impl Default for AutotuneOptions {
    fn default() -> Self {
        AutotuneOptions {
            repeats: 3,
            retune: false,
            candidates: TileConfig::candidates(),
        }
    }
}

/// What [`WgpuBackend::autotune`] did for one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeReport {
    /// The first kernel of the program with this shape (the one timed).
    pub kernel: String,
    /// The shape's choice and measurements (from the cache when `cached`).
    pub choice: Choice,
    /// The choice came from the cache; nothing was timed for it.
    pub cached: bool,
}

/// The result of [`WgpuBackend::autotune`].
#[derive(Clone, Debug, PartialEq)]
pub struct AutotuneReport {
    /// Every distinct matmul shape of the program, in launch order.
    pub shapes: Vec<ShapeReport>,
    /// Candidates this call timed.
    pub timed: usize,
    /// Where the choices were written (`None`: [`TuneCache::Off`], or no cache directory).
    pub cache_file: Option<PathBuf>,
}

impl AutotuneReport {
    /// A markdown table: per shape, every candidate with its median time, the choice
    /// marked; then where the cache is.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| shape (batch×M×N×K) | kernel | candidate | median ms | |\n|---|---|---|---:|---|\n",
        );
        for r in &self.shapes {
            let clock = match r.choice.clock {
                Clock::Timestamp => "GPU timestamps",
                Clock::Wall => "wall clock",
            };
            let from = if r.cached { "cached, " } else { "" };
            for (i, c) in r.choice.candidates.iter().enumerate() {
                let (shape, kernel) = if i == 0 {
                    (
                        format!("{} ({from}{clock})", r.choice.shape),
                        r.kernel.as_str(),
                    )
                } else {
                    (String::new(), "")
                };
                let ms = match (c.ms, &c.note) {
                    (Some(ms), _) => format!("{ms:.3}"),
                    (None, Some(n)) => format!("- ({n})"),
                    (None, None) => "-".into(),
                };
                let chosen = if c.config == r.choice.config {
                    "**chosen**"
                } else {
                    ""
                };
                let _ = writeln!(s, "| {shape} | {kernel} | {} | {ms} | {chosen} |", c.config);
            }
        }
        let _ = writeln!(
            s,
            "\n{} candidates timed; cache: {}",
            self.timed,
            self.cache_file
                .as_ref()
                .map_or("none (in memory only)".into(), |p| p.display().to_string())
        );
        s
    }
}

impl WgpuBackend {
    /// The codegen options programs are compiled with: the backend's options with the tile
    /// table of [`WgpuBackend::tuning`].
    pub(super) fn codegen_options(&self) -> CodegenOptions {
        CodegenOptions {
            tiles: self.tuning.table(),
            ..self.options.clone()
        }
    }

    /// The matmul tile table this backend compiles with (options, cache and tuning merged).
    pub fn tuning(&self) -> TuningTable {
        self.tuning.table()
    }

    /// The choices loaded from the cache or tuned since, by shape, with their measurements.
    pub fn tuned_choices(&self) -> Vec<Choice> {
        self.tuning.choices().values().cloned().collect()
    }

    /// The autotune cache file of this backend's adapter (which may not exist yet).
    pub fn autotune_cache_file(&self) -> Option<&Path> {
        self.tuning.file.as_deref()
    }

    /// Warnings about the cache file (unreadable, corrupt, another adapter's, unwritable).
    pub fn autotune_warnings(&self) -> Vec<String> {
        self.tuning
            .warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Candidate kernels this backend has timed (a backend whose choices all came from the
    /// cache times none).
    pub fn autotune_timings(&self) -> usize {
        self.tuning.timings.load(Ordering::Relaxed)
    }

    /// Tunes every distinct matmul shape of `graph` (compiled without hooks) that has no
    /// cached choice (every one with `opts.retune`): see the [module docs](self). Choices are
    /// written to the cache file and used by every later compile of this backend (compiled
    /// programs are dropped so runs pick them up). A candidate that fails on the device is
    /// listed with the error and skipped; a shape none of whose candidates ran is an error.
    pub fn autotune(
        &self,
        graph: &Graph,
        opts: &AutotuneOptions,
    ) -> Result<AutotuneReport, RunError> {
        weft_compiler::ir::verify(graph)?;
        let base = self.codegen_options();
        let program = compile(graph, &[], &base)?;
        let mut shapes: Vec<(MatmulShape, String)> = Vec::new();
        for k in &program.kernels {
            if let Some(s) = k.matmul {
                if !shapes.iter().any(|(x, _)| *x == s) {
                    shapes.push((s, k.name.clone()));
                }
            }
        }
        let known = self.tuning.choices().clone();
        let pending: Vec<MatmulShape> = shapes
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| opts.retune || !known.contains_key(s))
            .collect();
        if !pending.is_empty() && opts.candidates.is_empty() {
            return Err(RunError::Unsupported(
                "autotune: no candidate tile configurations to time".into(),
            ));
        }
        let mut measured: BTreeMap<MatmulShape, Vec<Candidate>> = BTreeMap::new();
        let mut clock = Clock::Wall;
        let mut timed = 0;
        if !pending.is_empty() {
            for &config in &opts.candidates {
                let candidate = CodegenOptions {
                    tiles: TuningTable::uniform(config),
                    ..base.clone()
                };
                let compiled = config
                    .check()
                    .and_then(|()| compile(graph, &[], &candidate).map_err(|e| e.to_string()));
                for s in &pending {
                    let (ms, note) = match &compiled {
                        Err(e) => (None, Some(e.clone())),
                        Ok(p) => match self.time_shape(graph, p, s, config, opts.repeats) {
                            Ok(Some((ms, c))) => {
                                timed += 1;
                                clock = c;
                                (Some(ms), None)
                            }
                            Ok(None) => (None, Some("over the adapter's limits".into())),
                            Err(e) => (None, Some(e.to_string())),
                        },
                    };
                    measured
                        .entry(*s)
                        .or_default()
                        .push(Candidate { config, ms, note });
                }
            }
        }
        let mut new = BTreeMap::new();
        for (s, candidates) in measured {
            let best = candidates
                .iter()
                .filter_map(|c| c.ms.map(|ms| (ms, c.config)))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .ok_or_else(|| {
                    RunError::Device(format!(
                        "autotune: no candidate ran for matmul shape {s}: {}",
                        candidates
                            .iter()
                            .map(|c| format!("{}: {}", c.config, c.note.as_deref().unwrap_or("-")))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })?;
            new.insert(
                s,
                Choice {
                    shape: s,
                    config: best.1,
                    candidates,
                    clock,
                },
            );
        }
        if !new.is_empty() {
            self.tuning.choices().extend(new.clone());
            if let Some(path) = &self.tuning.file {
                if let Err(e) = write_cache(path, &self.tuning.adapter, &new) {
                    self.tuning
                        .warn(format!("cannot write the autotune cache: {e}"));
                }
            }
            // Programs compiled before this call used the old choices.
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        let all = self.tuning.choices().clone();
        Ok(AutotuneReport {
            shapes: shapes
                .into_iter()
                .filter_map(|(s, kernel)| {
                    all.get(&s).map(|c| ShapeReport {
                        kernel,
                        choice: c.clone(),
                        cached: !new.contains_key(&s),
                    })
                })
                .collect(),
            timed,
            cache_file: self.tuning.file.clone(),
        })
    }

    /// Times the first kernel of `program` with matmul shape `s` alone: its pipeline and
    /// zero-filled buffers for what it binds (constants uploaded), one warm-up, `repeats`
    /// timed dispatches. `None` when codegen did not use `config` for it (over the limits).
    fn time_shape(
        &self,
        graph: &Graph,
        program: &Program,
        s: &MatmulShape,
        config: TileConfig,
        repeats: usize,
    ) -> Result<Option<(f64, Clock)>, RunError> {
        let Some(kernel) = program.kernels.iter().find(|k| k.matmul == Some(*s)) else {
            return Err(RunError::Device(format!("no kernel of shape {s}")));
        };
        if kernel.tile != Some(config) {
            return Ok(None);
        }
        // Only the planned buffers this kernel binds (a training step plans many more).
        let mut kernel = Kernel::clone(kernel);
        let mut buffers = BufferPlan::default();
        let mut renumbered: Vec<(usize, usize)> = Vec::new();
        for b in kernel.inputs.iter_mut().chain(kernel.outputs.iter_mut()) {
            if let BufferRef::Planned(i) = b.buffer {
                let j = match renumbered.iter().find(|(old, _)| *old == i) {
                    Some(&(_, j)) => j,
                    None => {
                        buffers.buffer_bytes.push(program.buffers.buffer_bytes[i]);
                        renumbered.push((i, buffers.buffer_bytes.len() - 1));
                        buffers.buffer_bytes.len() - 1
                    }
                };
                b.buffer = BufferRef::Planned(j);
            }
        }
        let dispatch = kernel.dispatch;
        let single = Program {
            kernels: vec![kernel],
            buffers,
            outputs: Vec::new(),
            hooks: Vec::new(),
        };
        let c = Compiled::new(&self.device, graph, single)?;
        c.upload_consts(&self.queue, graph);
        let errors = self.take_errors();
        if !errors.is_empty() {
            return Err(RunError::Device(errors.join("; ")));
        }
        let repeats = repeats.clamp(1, super::profile::MAX_REPEATS);
        let timer = self.timer(repeats);
        let (median, _, _, clock) = self.time_dispatch(
            &c.pipelines[0],
            &c.bind_groups[0],
            dispatch,
            repeats,
            timer.as_ref(),
        )?;
        self.tuning.timings.fetch_add(1, Ordering::Relaxed);
        Ok(Some((median, clock)))
    }
}

/// The graphs `weft tune` tunes for a spec and the `[batch, seq]` they were built for.
pub struct SpecGraphs {
    /// Batch rows the graphs were built for.
    pub batch: usize,
    /// Sequence length the graphs were built for.
    pub seq: usize,
    /// `forward` and `training step`, with their graphs.
    pub graphs: Vec<(&'static str, Graph)>,
}

/// The graphs `weft tune` tunes for a spec, with the `[batch, seq]` they were built for:
/// the forward pass (as `weft eval` builds it) and the training step (as `weft train`
/// builds it: micro-batch rows, the trainable selection). `batch` and `seq` default to the
/// spec's training plan (its micro-batch and `seq`), or 1 and the model's `ctx` without one.
pub fn spec_graphs(
    spec: &weft_dsl::Checked,
    batch: Option<usize>,
    seq: Option<usize>,
) -> Result<SpecGraphs, String> {
    let plan = crate::train::plan(spec, None, None).ok();
    let batch = batch
        .or(plan.as_ref().map(|p| p.batch / p.accumulate))
        .unwrap_or(1)
        .max(1);
    let seq = seq
        .or(plan.as_ref().map(|p| p.seq))
        .unwrap_or(spec.model.config.ctx.max(1));
    let forward =
        weft_compiler::lower::lower(spec, &weft_compiler::lower::LowerOptions::new(batch, seq))
            .map_err(|e| format!("forward: {e}"))?;
    let train = crate::train::training_graph(spec, batch, seq)
        .map_err(|e| format!("training step: {e}"))?;
    Ok(SpecGraphs {
        batch,
        seq,
        graphs: vec![("forward", forward), ("training step", train)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, driver_info: &str) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: name.into(),
            vendor: 0x10005,
            device: 0,
            device_type: wgpu::DeviceType::Cpu,
            device_pci_bus_id: String::new(),
            driver: "llvmpipe".into(),
            driver_info: driver_info.into(),
            backend: wgpu::Backend::Vulkan,
            subgroup_min_size: 4,
            subgroup_max_size: 4,
            transient_saves_memory: None,
            limit_bucket: None,
        }
    }

    #[test]
    fn slugs_are_file_safe_and_tell_drivers_apart() {
        let a = adapter_slug(&info("llvmpipe (LLVM 15.0.7, 256 bits)", "Mesa 23.2.1"));
        assert_eq!(
            a,
            "llvmpipe-llvm-15-0-7-256-bits-10005-0-llvmpipe-mesa-23-2-1-vulkan"
        );
        let b = adapter_slug(&info("llvmpipe (LLVM 15.0.7, 256 bits)", "Mesa 24.0.0"));
        assert_ne!(a, b);
        let long = adapter_slug(&info(&"x".repeat(300), "1"));
        assert!(long.len() < 130, "{long}");
        assert_ne!(long, adapter_slug(&info(&"x".repeat(300), "2")));
    }

    #[test]
    fn cache_files_round_trip_and_bad_ones_are_refused_with_a_reason() {
        let dir = std::env::temp_dir().join(format!("weft-autotune-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("autotune-x.json");
        assert_eq!(
            read_cache(&path, "x"),
            Ok(BTreeMap::new()),
            "missing is empty"
        );
        let shape = MatmulShape {
            batch: 1,
            m: 8,
            n: 8,
            k: 8,
            transpose_a: false,
            transpose_b: false,
            products: 1,
        };
        let config = TileConfig::candidates()[1];
        let choice = Choice {
            shape,
            config,
            candidates: vec![Candidate {
                config,
                ms: Some(0.5),
                note: None,
            }],
            clock: Clock::Wall,
        };
        let choices = BTreeMap::from([(shape, choice)]);
        write_cache(&path, "x", &choices).unwrap();
        assert_eq!(read_cache(&path, "x").unwrap(), choices);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        let e = read_cache(&path, "y").unwrap_err();
        assert!(e.contains("written for adapter `x`"), "{e}");
        std::fs::write(&path, "{\"version\": 1, \"adap").unwrap();
        let e = read_cache(&path, "x").unwrap_err();
        assert!(
            e.contains("corrupt") && e.contains("autotune-x.json"),
            "{e}"
        );
        let bad = serde_json::to_string(&CacheFile {
            version: VERSION,
            adapter: "x".into(),
            choices: vec![Choice {
                config: TileConfig::Register {
                    workgroup: 64,
                    rows: 3,
                    cols: 4,
                },
                ..choices[&shape].clone()
            }],
        })
        .unwrap();
        std::fs::write(&path, bad).unwrap();
        let e = read_cache(&path, "x").unwrap_err();
        assert!(e.contains("rows must be 4 or 8"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
