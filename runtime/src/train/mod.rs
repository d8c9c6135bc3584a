//! The training loop behind `weft train`: lower the spec with its objective, differentiate,
//! then step the optimizer over batches from the spec's data source, logging metrics,
//! evaluating, tracing attention and routing, and checkpointing into a run directory.
//!
//! Determinism: parameters come from `init_params(graph, seed)`, the batch of step `s` from
//! `step_rng(seed, s)`, and the optimizer state is checkpointed, so a resumed run repeats an
//! uninterrupted one bit for bit on the same backend.

// A `TrainError` ends a run; it is built once, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod budget;
mod nan;
mod plan;
mod trace;
pub use trace::base_routing_trace;

pub use plan::{data_source, plan, Plan};

use crate::checkpoint::{spec_hash, CheckpointMeta, DataPosition, Expect};
use crate::data::{step_rng, Batch};
use crate::optim::{clip_factor, GradAccumulator, Gradients, Optimizer};
use crate::resident::ResidentSetup;
use crate::rundir::{existing_run, RunDir, RunLock, StepMetrics};
use crate::{init_params, Backend, HookSelection, ParamStore, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::Checked;

/// What can stop a run; each names the file, setting or step at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("lowering the spec: {0}")]
    Compile(#[from] weft_compiler::IrError),
    #[error("{backend} backend at step {step}: {source}")]
    Run {
        backend: String,
        step: u64,
        source: crate::RunError,
    },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Optim(#[from] crate::optim::OptimError),
    #[error("run directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    NonFinite(String),
    #[error("{0}")]
    Resume(String),
    #[error(transparent)]
    Lock(#[from] crate::rundir::LockError),
    #[error(
        "run directory {} already holds {what}; continue it with `--resume`, or start over with `--overwrite` (moves it aside to {}.old-<time>, deleting nothing)",
        dir.display(),
        dir.display()
    )]
    Exists { dir: PathBuf, what: String },
    #[error(transparent)]
    Memory(Box<crate::memory::MemoryError>),
}

impl From<crate::memory::MemoryError> for TrainError {
    fn from(e: crate::memory::MemoryError) -> Self {
        TrainError::Memory(Box::new(e))
    }
}

/// How to run.
pub struct TrainOptions<'a> {
    /// The run directory.
    pub out: PathBuf,
    /// The spec's folder (data paths are relative to it).
    pub spec_dir: PathBuf,
    pub steps: Option<u64>,
    pub seed: Option<u64>,
    /// Continue the run in `out` from its latest checkpoint up to `steps` total.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to save a checkpoint and stop after the current step.
    pub stop: Option<&'a AtomicBool>,
    /// Start from these weights instead of the seeded initialisation (fine-tuning a pretrained
    /// or imported model). Every tensor whose name the training graph has must match its
    /// shape; parameters the weights lack (a router added to a base model) keep their seeded
    /// initialisation, and names the graph lacks are ignored.
    pub init: Option<&'a ParamStore>,
    /// Called after every logged step.
    pub on_log: &'a mut dyn FnMut(&StepMetrics, u64),
}

/// How a run ended.
#[derive(Debug)]
pub struct TrainReport {
    pub steps_done: u64,
    pub final_loss: f64,
    pub last_checkpoint: Option<PathBuf>,
    pub interrupted: bool,
    pub params: ParamStore,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A resume that cannot load `latest`: the error, plus the newest older checkpoint that does
/// load, if any, and how to resume from it (nothing is deleted or repointed automatically).
fn fallback_hint(
    dir: &crate::checkpoint::CheckpointDir,
    e: crate::checkpoint::CheckpointError,
    expect: &Expect,
) -> TrainError {
    let bad = e.path.clone();
    let older = dir
        .list()
        .ok()
        .into_iter()
        .flatten()
        .rev()
        .find(|(_, p)| *p != bad && crate::checkpoint::load(p, expect).is_ok());
    match older {
        Some((_, p)) => {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            TrainError::Resume(format!(
                "{e}; an older checkpoint loads: {}. To resume from it, write `{name}` into {}",
                p.display(),
                dir.path().join(crate::checkpoint::LATEST).display()
            ))
        }
        None => TrainError::Checkpoint(e),
    }
}

/// `--overwrite`: when `dir` holds anything, moves it aside to `DIR.old-<UTC time>` (under its
/// lock, so a live run is never moved) and returns the new name; `None` when there was
/// nothing to move. Nothing is deleted.
pub fn start_over(dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    if existing_run(dir).map_err(io_err(dir))?.is_none() {
        return Ok(None);
    }
    Ok(Some(RunLock::acquire(dir)?.move_aside()?))
}

/// The differentiated training graph for a batch shape: the spec's training step as
/// [`weft_compiler::pipeline::training_step`] builds it (dropout on, the spec's `trainable`).
pub fn training_graph(spec: &Checked, batch: usize, seq: usize) -> Result<Graph, TrainError> {
    Ok(weft_compiler::pipeline::training_step(spec, batch, seq)?)
}

/// Rows `lo..hi` of every `[B, T]` tensor of a batch.
fn rows(b: &Batch, lo: usize, hi: usize) -> Batch {
    let cut = |t: &Tensor| -> Tensor {
        let w: usize = t.shape[1..].iter().product();
        let mut shape = t.shape.clone();
        shape[0] = hi - lo;
        match t.as_i32() {
            Some(v) => Tensor::i32(&shape, v[lo * w..hi * w].to_vec()),
            None => Tensor::f32(&shape, t.to_f32_vec()[lo * w..hi * w].to_vec()),
        }
    };
    Batch {
        tokens: cut(&b.tokens),
        targets: cut(&b.targets),
        answer_mask: cut(&b.answer_mask),
        answer_segments: cut(&b.answer_segments),
        segments: cut(&b.segments),
        turns: cut(&b.turns),
    }
}

/// The inputs a graph declares, taken from a batch.
pub fn inputs_for(g: &Graph, b: &Batch) -> HashMap<String, Tensor> {
    let all = b.to_inputs();
    g.inputs
        .iter()
        .filter_map(|i| all.get(&i.name).map(|t| (i.name.clone(), t.clone())))
        .collect()
}

/// Fills every dropout mask input: 0 with probability p, else 1/(1−p), from a stream keyed
/// by seed, step, micro-batch and site (so resumed runs draw the same masks).
fn add_dropout_masks(
    g: &Graph,
    ins: &mut HashMap<String, Tensor>,
    seed: u64,
    step: u64,
    micro: usize,
) {
    for (name, p) in weft_compiler::lower::dropout_inputs(g) {
        let Some(info) = g.inputs.iter().find(|i| i.name == name) else {
            continue;
        };
        let mut rng = crate::Rng::for_name(seed, &format!("dropout.{step}.{micro}.{name}"));
        let keep = 1.0 / (1.0 - p);
        let n: usize = info.shape.iter().product();
        let mask = (0..n)
            .map(|_| if rng.uniform() < p as f64 { 0.0 } else { keep })
            .collect();
        ins.insert(name, Tensor::f32(&info.shape, mask));
    }
}

/// The parameters whose shape grows with the vocabulary, and the axis that grows: those whose
/// shape differs between the graph at the spec's vocabulary and the extended one.
fn vocab_axes(old: &Graph, new: &Graph, vocab: usize) -> Vec<(String, usize)> {
    old.params
        .iter()
        .filter_map(|p| {
            let q = new.params.iter().find(|q| q.name == p.name)?;
            let axis = (0..p.shape.len().min(q.shape.len()))
                .find(|&a| p.shape[a] == vocab && q.shape[a] > vocab)?;
            Some((p.name.clone(), axis))
        })
        .collect()
}

/// `w` with `n` rows appended along each grown axis, each the mean of the existing rows
/// (METHODS §9.3: a new token's embedding starts at the mean embedding).
fn with_mean_rows(w: &ParamStore, grown: &[(String, usize)], vocab: usize, n: usize) -> ParamStore {
    let mut out = w.clone();
    for (name, axis) in grown {
        // Weights that already have the added rows (an extended checkpoint) stay as they are.
        let short = |t: &&Tensor| t.shape.get(*axis) == Some(&vocab) && t.as_f32().is_some();
        if let Some(t) = w.get(name).filter(short) {
            out.insert(name.clone(), crate::data::append_mean_rows(t, *axis, n));
        }
    }
    out
}

/// Overwrites the seeded parameters with those `init` has (see [`TrainOptions::init`]).
fn start_from(params: &mut ParamStore, init: &ParamStore) -> Result<(), TrainError> {
    for (name, t) in params.iter_mut() {
        if let Some(w) = init.get(name) {
            if w.shape != t.shape {
                return Err(TrainError::Config(format!(
                    "initial weights: `{name}` has shape {:?}, the model expects {:?}",
                    w.shape, t.shape
                )));
            }
            *t = w.clone();
        }
    }
    Ok(())
}

/// The outputs of a training graph the loop reads each step: the objective and its parts.
fn objective(name: &str) -> bool {
    name == "loss" || name.starts_with("term.") || name.starts_with("aux.")
}

/// The error of a step whose gradient norm is not finite, naming the parameters at fault.
fn non_finite_norm(norm: f64, step: u64, grads: &Gradients, kept: &Option<PathBuf>) -> TrainError {
    let kept = kept
        .as_ref()
        .map(|c| c.display().to_string())
        .unwrap_or_else(|| "none yet".into());
    TrainError::NonFinite(format!(
        "gradient norm is {norm} at step {}: {}; last good checkpoint: {kept}",
        step + 1,
        nan::locate_grad(grads)
    ))
}

/// Trains `spec` (its source text `src`) on `backend`.
pub fn train(
    spec: &Checked,
    src: &str,
    backend: &dyn Backend,
    o: TrainOptions,
) -> Result<TrainReport, TrainError> {
    let p = plan(spec, o.steps, o.seed)?;
    let vocab = spec.model.config.vocab;
    let data = data_source(&p.data, &o.spec_dir, vocab, p.seed)?;
    // `extend_vocab`: the model trains with the added ids; the data keeps the spec's vocab.
    let extended;
    let original = spec;
    let spec = if p.extra_tokens.is_empty() {
        spec
    } else {
        let mut s = spec.clone();
        // Both views of the setting: the typed one lowering reads, and the constant block
        // bodies see.
        s.model.config.vocab = vocab + p.extra_tokens.len();
        s.model.settings.insert(
            "vocab".into(),
            weft_dsl::check::value::Value::Int(s.model.config.vocab as i64),
        );
        extended = s;
        &extended
    };
    let micro = p.batch / p.accumulate;
    // Before building anything the size of the model: refuse what cannot fit.
    budget::check_training(spec, &p)?;
    let graph = training_graph(spec, micro, p.seq)?;
    budget::check_graph(&graph, &p)?;
    let hash = spec_hash(src);
    // One trainer per directory, held until this function returns (a killed trainer's OS
    // lock dies with it; its stale lock file is taken over).
    let _lock = RunLock::acquire(&o.out)?;
    let latest = o
        .out
        .join(crate::rundir::CHECKPOINTS_DIR)
        .join(crate::checkpoint::LATEST);
    if o.resume && !latest.exists() {
        // Checked before anything is created, so a mistaken `--resume` leaves no debris that
        // would make the fresh run refuse the directory.
        return Err(crate::checkpoint::CheckpointError {
            path: latest,
            problem: crate::checkpoint::Problem::NoLatest,
        }
        .into());
    }
    if !o.resume {
        if let Some(what) = existing_run(&o.out).map_err(io_err(&o.out))? {
            return Err(TrainError::Exists {
                dir: o.out.clone(),
                what,
            });
        }
    }
    let mut run = if o.resume {
        RunDir::open(&o.out)
    } else {
        RunDir::create(&o.out, src)
    }
    .map_err(io_err(&o.out))?;

    let mut params = init_params(&graph, p.seed);
    if !p.extra_tokens.is_empty() {
        let old = lower(original, &LowerOptions::new(1, 1))?;
        let grown = vocab_axes(&old, &graph, vocab);
        let init = o
            .init
            .map(|w| with_mean_rows(w, &grown, vocab, p.extra_tokens.len()));
        let seeded = init_params(&old, p.seed);
        start_from(
            &mut params,
            &with_mean_rows(&seeded, &grown, vocab, p.extra_tokens.len()),
        )?;
        if let Some(init) = &init {
            start_from(&mut params, init)?;
        }
    } else if let Some(init) = o.init {
        start_from(&mut params, init)?;
    }
    let mut optimizer = Optimizer::new(p.optimizer.clone());
    let mut start = 0u64;
    let mut tokens_seen = 0u64;
    let mut last_checkpoint = None;
    // The lowest held-out loss of a checkpoint so far (`checkpoints/best`).
    let mut best_val: Option<f64> = None;
    if o.resume {
        let expect = Expect::graph(Some(hash.clone()), &graph);
        let ck = match run.checkpoints().load_latest(&expect) {
            Ok(ck) => ck,
            Err(e) => return Err(fallback_hint(run.checkpoints(), e, &expect)),
        };
        start = ck.meta.step;
        tokens_seen = ck.meta.tokens_seen;
        params = ck.params;
        optimizer = Optimizer::with_state(p.optimizer.clone(), ck.optimizer);
        run.metrics()
            .truncate_after(start)
            .map_err(io_err(&o.out))?;
        last_checkpoint = run.checkpoints().latest()?;
        best_val = run
            .checkpoints()
            .best()
            .ok()
            .flatten()
            .and_then(|b| crate::checkpoint::read_meta(&b).ok())
            .and_then(|m| m.extra.get("val_loss")?.as_f64());
    }
    let trainable: Vec<String> = graph
        .params
        .iter()
        .filter(|q| q.trainable)
        .map(|q| q.name.clone())
        .collect();
    let tracer = trace::Tracer::new(spec, &p, data.as_ref())?;

    let save = |run: &RunDir,
                step: u64,
                tokens: u64,
                params: &ParamStore,
                opt: &Optimizer,
                val: Option<f64>,
                kept: &Option<PathBuf>|
     -> Result<PathBuf, TrainError> {
        // An update can overflow with finite gradients; such weights are not a checkpoint.
        if let Some(bad) = nan::non_finite_param(params) {
            return Err(TrainError::NonFinite(format!(
                "{bad} after step {step}: the update overflowed; not saved; last good checkpoint: {}",
                kept.as_ref()
                    .map(|c| c.display().to_string())
                    .unwrap_or_else(|| "none yet".into())
            )));
        }
        let mut meta = CheckpointMeta::new(hash.clone(), step);
        if let Some(v) = val {
            meta.extra.insert("val_loss".into(), v.into());
        }
        meta.tokens_seen = tokens;
        meta.optimizer = Some(opt.config().clone());
        meta.optimizer_step = opt.steps_taken();
        meta.schedule = Some(p.schedule.clone());
        meta.seed = p.seed;
        meta.data = DataPosition {
            step,
            samples: step * p.batch as u64,
        };
        let path = run.checkpoints().save(&meta, params, Some(opt.state()))?;
        Ok(path)
    };

    let run_err = |step: u64| {
        move |source| TrainError::Run {
            backend: backend.name().into(),
            step,
            source,
        }
    };
    // Device-resident training where the backend offers it (wgpu): from here on the device
    // holds the parameters and optimizer state, and `params`/`optimizer` are refreshed from
    // it only when something on the host reads them (`*_fresh`).
    let mut resident = match backend.resident_trainer(
        &graph,
        &ResidentSetup {
            params: &params,
            optimizer: &optimizer,
            trainable: &trainable,
            clip: p.clip,
            accumulate: p.accumulate,
        },
    ) {
        None => None,
        Some(r) => Some(r.map_err(run_err(start))?),
    };
    let (mut params_fresh, mut optimizer_fresh) = (true, true);
    // Step traffic at the start of the logging window, and other traffic likewise.
    let (mut window_bytes, mut window_other, mut window_steps) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let mut last_save = Instant::now();
    let (mut window_tokens, mut window_start) = (0u64, Instant::now());
    let mut final_loss = f64::NAN;
    let mut interrupted = false;
    let mut step = start;
    if start == 0 {
        tracer.record(&mut run, backend, &params, 0)?;
    }
    // Where a step's wall time goes (`WEFT_STEP_PROFILE=1`): batch, backend, the rest.
    let step_profile = std::env::var_os("WEFT_STEP_PROFILE").is_some();
    while step < p.steps {
        let t_step = Instant::now();
        let mut rng = step_rng(p.seed, step);
        let mut full = data.next_batch(p.batch, p.seq, step, &mut rng)?;
        if let Some(mt) = &p.masked_thought {
            mt.apply(&mut full, step, p.steps, &mut rng);
        }
        let lr = p.schedule.lr(p.optimizer.lr(), step, p.steps);
        let micro_batches: Vec<Batch> = (0..p.accumulate)
            .map(|m| {
                if p.accumulate == 1 {
                    full.clone()
                } else {
                    rows(&full, m * micro, (m + 1) * micro)
                }
            })
            .collect();
        let feeds: Vec<HashMap<String, Tensor>> = micro_batches
            .iter()
            .enumerate()
            .map(|(m, b)| {
                let mut ins = inputs_for(&graph, b);
                add_dropout_masks(&graph, &mut ins, p.seed, step, m);
                ins
            })
            .collect();
        let t_batch = t_step.elapsed();
        let mut acc = GradAccumulator::new();
        let mut loss_sum = 0.0;
        let mut parts: BTreeMap<String, f64> = BTreeMap::new();
        // Per micro-batch: its scalar outputs (the host path also gathers its gradients).
        let mut outs: Vec<BTreeMap<String, f64>> = Vec::new();
        let resident_norm = match resident.as_mut() {
            Some(r) => {
                let st = r.step(&feeds, lr).map_err(run_err(step))?;
                params_fresh = false;
                optimizer_fresh = false;
                outs = st.outputs;
                Some(st.grad_norm)
            }
            None => None,
        };
        for (m, b) in micro_batches.iter().enumerate() {
            let out = if resident.is_some() {
                std::mem::take(&mut outs[m])
            } else {
                let out = backend
                    .run(&graph, &feeds[m], &params, &HookSelection::None)
                    .map_err(run_err(step))?;
                acc.add(Gradients::from_outputs(&out));
                out.outputs
                    .iter()
                    .filter(|(n, _)| objective(n))
                    .map(|(n, t)| (n.clone(), t.to_f64_vec()[0]))
                    .collect()
            };
            let loss = out.get("loss").copied().unwrap_or(f64::NAN);
            if !loss.is_finite() {
                if let (Some(r), false) = (resident.as_mut(), params_fresh) {
                    if let Ok(now) = r.params() {
                        params = now;
                    }
                }
                let at = nan::locate(spec, backend, &params, b, micro, p.seq);
                let kept = last_checkpoint
                    .as_ref()
                    .map(|c: &PathBuf| c.display().to_string())
                    .unwrap_or_else(|| "none yet".into());
                return Err(TrainError::NonFinite(format!(
                    "loss is {loss} at step {}: {at}; last good checkpoint: {kept}",
                    step + 1
                )));
            }
            loss_sum += loss;
            for (name, x) in &out {
                if name != "loss" {
                    *parts.entry(name.clone()).or_default() += x / p.accumulate as f64;
                }
            }
            let counted = b
                .targets
                .as_i32()
                .map(|v| v.iter().filter(|&&x| x >= 0).count() as u64)
                .unwrap_or(0);
            tokens_seen += counted;
            window_tokens += counted;
        }
        let norm = match (resident.as_mut(), resident_norm) {
            (Some(r), Some(norm)) => {
                if !norm.is_finite() {
                    // The update kernels skipped the step: parameters and state are intact.
                    let grads = r.gradients().map_err(run_err(step))?;
                    return Err(non_finite_norm(norm, step, &grads, &last_checkpoint));
                }
                norm
            }
            _ => {
                let mut grads = acc.finish().unwrap_or_default();
                grads.retain(|n| trainable.iter().any(|t| t == n));
                let norm = crate::optim::global_norm(&grads);
                if !norm.is_finite() {
                    return Err(non_finite_norm(norm, step, &grads, &last_checkpoint));
                }
                let factor = clip_factor(norm, p.clip);
                optimizer.step_scaled(&mut params, &grads, lr, factor)?;
                norm
            }
        };
        if step_profile {
            let total = t_step.elapsed();
            eprintln!(
                "step {}: {:.2} ms (batch {:.2} ms, backend and update {:.2} ms)",
                step + 1,
                total.as_secs_f64() * 1e3,
                t_batch.as_secs_f64() * 1e3,
                (total - t_batch).as_secs_f64() * 1e3
            );
        }
        step += 1;
        window_steps += 1;
        final_loss = loss_sum / p.accumulate as f64;
        if step.is_multiple_of(p.log_every) || step == p.steps {
            let secs = window_start.elapsed().as_secs_f64().max(1e-9);
            let m = StepMetrics {
                step,
                tokens: tokens_seen,
                loss: final_loss,
                aux: parts,
                lr,
                grad_norm: norm,
                tokens_per_s: window_tokens as f64 / secs,
                wall_s: t0.elapsed().as_secs_f64(),
            };
            let mut line = serde_json::to_value(&m).map_err(|e| TrainError::Io {
                path: o.out.clone(),
                source: std::io::Error::other(e),
            })?;
            if let (Some(r), Some(obj)) = (resident.as_ref(), line.as_object_mut()) {
                // Bytes between host and device per step over this window, and (separately)
                // what evaluation, traces and checkpoints moved in it.
                let t = r.traffic();
                let moved = t.step_up + t.step_down;
                let other = t.other_up + t.other_down;
                obj.insert(
                    "host_device_bytes".into(),
                    ((moved - window_bytes) as f64 / window_steps.max(1) as f64).into(),
                );
                obj.insert(
                    "host_device_bytes_other".into(),
                    (other - window_other).into(),
                );
                (window_bytes, window_other) = (moved, other);
            }
            if let Some(obj) = line.as_object_mut() {
                obj.insert("kind".into(), "train".into());
            }
            run.metrics().log_value(&line).map_err(io_err(&o.out))?;
            (o.on_log)(&m, p.steps);
            window_tokens = 0;
            window_steps = 0;
            window_start = Instant::now();
        }
        let mut val = None;
        let stop = o.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        let timed =
            p.checkpoint_secs > 0.0 && last_save.elapsed().as_secs_f64() >= p.checkpoint_secs;
        let evaluate = step.is_multiple_of(p.eval_every) || step == p.steps;
        if let (Some(r), false) = (resident.as_mut(), params_fresh) {
            // Evaluation, checkpoints and the end of the run read the parameters on the host.
            if evaluate
                || step.is_multiple_of(p.checkpoint_every)
                || step == p.steps
                || stop
                || timed
            {
                params = r.params().map_err(run_err(step))?;
                params_fresh = true;
            }
        }
        if evaluate {
            val = Some(tracer.evaluate(&mut run, backend, &params, step)?);
        }
        // A new best held-out loss is saved now, so `best` names exactly the weights it scored.
        let improved = val.is_some_and(|v| v.is_finite() && best_val.is_none_or(|b| v < b));
        if step.is_multiple_of(p.checkpoint_every) || step == p.steps || stop || timed || improved {
            if let (Some(r), false) = (resident.as_mut(), optimizer_fresh) {
                optimizer = r.optimizer().map_err(run_err(step))?;
                optimizer_fresh = true;
            }
            let path = save(
                &run,
                step,
                tokens_seen,
                &params,
                &optimizer,
                val,
                &last_checkpoint,
            )?;
            if improved {
                run.checkpoints().mark_best(&path)?;
                best_val = val;
            }
            run.checkpoints().prune(p.keep_checkpoints)?;
            last_checkpoint = Some(path);
            last_save = Instant::now();
        }
        if stop {
            interrupted = true;
            break;
        }
    }
    if let (Some(r), false) = (resident.as_mut(), params_fresh) {
        params = r.params().map_err(run_err(step))?;
    }
    Ok(TrainReport {
        steps_done: step,
        final_loss,
        last_checkpoint,
        interrupted,
        params,
    })
}
