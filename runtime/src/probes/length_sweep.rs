//! Accuracy and loss against sequence length: the length-extrapolation test of HoPE
//! (METHODS §3.3, §11.12 #3: train at T, test at T..8T). At every length L the model is
//! lowered at `seq = L` and evaluated on the held-out set of the training task rebuilt for
//! that length, so only the length changes between points.
//!
//! Loss is the mean next-token NLL and accuracy the greedy (argmax) accuracy over the answer
//! positions the source marks (`answer_mask`), pooled over the evaluated rows: the same
//! positions and the same mean as `nll(mask: answers)`. Sources that mark no answers (text)
//! are scored on every position with a target, as `nll()` would.

use super::tally::Tally;
use super::{logits, Model, ProbeError};
use crate::data::{CopyTask, DataSource, KvRecall};
use serde::Serialize;
use std::path::Path;
use weft_dsl::typed::{DataSource as Data, Resolved};
use weft_dsl::Checked;

/// The task evaluated at each length.
pub enum LengthTask {
    /// `kv_recall(pairs, len: L)`: the same number of pairs and the query in L tokens, so the
    /// filler, and the distance from a pair to the query, grows with L.
    KvRecall { pairs: usize },
    /// `copy_task(len: L/2, vocab)`: `s ⊕ s` filling the L positions.
    Copy { vocab: usize },
    /// Any other source, evaluated at `seq = L` as it is: `label_mapping` (up to L/2 shots
    /// fit), `facts`, `arithmetic` (rows padded to L), `text` (windows of L tokens).
    Source(Box<dyn DataSource>),
}

impl std::fmt::Debug for LengthTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LengthTask::KvRecall { pairs } => write!(f, "KvRecall {{ pairs: {pairs} }}"),
            LengthTask::Copy { vocab } => write!(f, "Copy {{ vocab: {vocab} }}"),
            LengthTask::Source(s) => write!(f, "Source({})", s.describe()),
        }
    }
}

impl LengthTask {
    /// The spec's training task (`train { data = ... }`), built as the training loop builds
    /// it ([`crate::data::from_spec`]) from `seed` (pass the training seed to evaluate on
    /// the same mappings and held-out set). `kv_recall` and `copy_task` are rebuilt per
    /// length; relative paths of a `text` source resolve against `spec_dir`.
    pub fn from_spec(spec: &Checked, spec_dir: &Path, seed: u64) -> Result<Self, ProbeError> {
        let data = spec.train.as_ref().map(|t| &t.data).ok_or_else(|| {
            ProbeError::Config(
                "length_sweep evaluates the training task, and this spec has no `train { data = ... }`"
                    .into(),
            )
        })?;
        let vocab = spec.model.config.vocab;
        Ok(match data {
            Data::KvRecall { pairs, .. } => LengthTask::KvRecall { pairs: *pairs },
            Data::CopyTask { vocab: v, .. } => LengthTask::Copy {
                vocab: (*v).min(vocab),
            },
            Data::Text { .. }
            | Data::Markov { .. }
            | Data::LabelMapping { .. }
            | Data::Arithmetic { .. }
            | Data::Facts { .. } => LengthTask::Source(
                crate::data::from_spec(data, spec_dir, vocab, seed).map_err(|e| {
                    ProbeError::Config(format!(
                        "length_sweep: building `{}` (relative paths resolve against {}): {e}",
                        data.name(),
                        spec_dir.display()
                    ))
                })?,
            ),
        })
    }
}

/// What to sweep.
#[derive(Debug)]
pub struct LengthSweepConfig {
    /// Sequence lengths L tried, in order; those past the model's ctx, or too short for the
    /// task, are skipped (listed in the result).
    pub lengths: Vec<usize>,
    /// Held-out sequences per length (at most the source's evaluation set, 256 for the
    /// synthetic tasks).
    pub samples: usize,
    /// Rows per forward pass.
    pub batch: usize,
    /// Seed of the sources rebuilt per length (`KvRecall`, `Copy`); a `Source` carries its
    /// own.
    pub seed: u64,
    /// The training length, reported as is (the spec's `train { seq }`).
    pub train_len: Option<usize>,
    pub task: LengthTask,
}

/// A length that was not evaluated, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedLength {
    pub len: usize,
    pub reason: String,
}

/// Accuracy and loss per length.
#[derive(Clone, Debug, Serialize)]
pub struct LengthSweep {
    pub train_len: Option<usize>,
    /// The lengths evaluated.
    pub lengths: Vec<usize>,
    /// Greedy accuracy over the scored positions, per length.
    pub accuracy: Vec<f64>,
    /// Mean NLL over the scored positions, per length.
    pub loss: Vec<f64>,
    /// Sequences evaluated per length (the fewest over the lengths).
    pub samples: usize,
    /// Positions scored per length.
    pub positions: Vec<usize>,
    /// `answers` (the source's answer positions) or `targets` (every position with a target).
    pub scored: String,
    pub task: String,
    pub skipped: Vec<SkippedLength>,
}

/// The source evaluated at length `len`.
fn source_at<'a>(
    task: &'a LengthTask,
    len: usize,
    vocab: usize,
    seed: u64,
    owned: &'a mut Option<Box<dyn DataSource>>,
) -> Result<&'a dyn DataSource, String> {
    match task {
        LengthTask::KvRecall { pairs } => {
            let s = KvRecall::new(*pairs, len, vocab, seed).map_err(|e| e.to_string())?;
            *owned = Some(Box::new(s));
            Ok(owned.as_deref().expect("set above"))
        }
        LengthTask::Copy { vocab } => {
            let s = CopyTask::new(len / 2, *vocab, seed).map_err(|e| e.to_string())?;
            *owned = Some(Box::new(s));
            Ok(owned.as_deref().expect("set above"))
        }
        LengthTask::Source(s) => Ok(s.as_ref()),
    }
}

/// Evaluates `cfg.task` at every length of `cfg.lengths` that fits the model.
pub fn length_sweep(model: &Model, cfg: &LengthSweepConfig) -> Result<LengthSweep, ProbeError> {
    let ctx = model.ctx();
    let chunk = cfg.batch.clamp(1, cfg.samples.max(1));
    let mut out = LengthSweep {
        train_len: cfg.train_len,
        lengths: Vec::new(),
        accuracy: Vec::new(),
        loss: Vec::new(),
        samples: usize::MAX,
        positions: Vec::new(),
        scored: String::new(),
        task: String::new(),
        skipped: Vec::new(),
    };
    let skip = |len: usize, reason: String| SkippedLength { len, reason };
    for &len in &cfg.lengths {
        if len == 0 || len > ctx {
            out.skipped
                .push(skip(len, format!("does not fit the model's ctx = {ctx}")));
            continue;
        }
        let mut owned = None;
        let src = match source_at(&cfg.task, len, model.vocab(), cfg.seed, &mut owned) {
            Ok(s) => s,
            Err(e) => {
                out.skipped.push(skip(len, e));
                continue;
            }
        };
        let batches = match src.eval_batches(chunk, len) {
            Ok(b) => b,
            Err(e) => {
                out.skipped.push(skip(len, e.to_string()));
                continue;
            }
        };
        if out.task.is_empty() {
            out.task = src.describe();
        }
        // Answers when the source marks them (decided once, so every length scores alike).
        if out.scored.is_empty() {
            let marks = batches
                .iter()
                .any(|b| b.answer_mask.to_f64_vec().iter().any(|&m| m > 0.0));
            out.scored = if marks { "answers" } else { "targets" }.into();
        }
        let answers = out.scored == "answers";
        let g = model.lower(chunk, len, &[])?;
        let mut tally = Tally::default();
        let mut rows = 0;
        for b in &batches {
            if rows >= cfg.samples {
                break;
            }
            let lg = logits(&model.run_batch(&g, b, &[])?)?.to_f64_vec();
            let v = lg.len() / (chunk * len);
            let targets = b.targets.as_i32().unwrap_or(&[]);
            let mask = b.answer_mask.to_f64_vec();
            for r in 0..chunk {
                if rows >= cfg.samples {
                    break;
                }
                let before = tally.count();
                for t in 0..len {
                    let i = r * len + t;
                    let y = targets[i];
                    if y < 0 || (answers && mask[i] <= 0.0) {
                        continue;
                    }
                    tally.add(&lg[i * v..(i + 1) * v], y as usize);
                }
                // Empty rows pad the held-out set's last batch; they are not samples.
                rows += usize::from(tally.count() > before);
            }
        }
        out.lengths.push(len);
        out.accuracy.push(tally.accuracy());
        out.loss.push(tally.loss());
        out.positions.push(tally.count());
        out.samples = out.samples.min(rows);
    }
    if out.lengths.is_empty() {
        let why: Vec<String> = out
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.len, s.reason))
            .collect();
        return Err(ProbeError::Config(format!(
            "length_sweep: no length in {:?} could be evaluated ({})",
            cfg.lengths,
            why.join("; ")
        )));
    }
    Ok(out)
}
