//! Accuracy against the number of in-context demonstrations: DR-ICL's accuracy-vs-k curve
//! (METHODS §1.6, §11.12 #1). A k-shot prompt of the `label_mapping` task is the task id (or
//! the shared start token, `task_id: false`), k demonstrations `(x, y)` of that task and a
//! query input — `2k + 2` tokens — and the model
//! must predict the query's true label at the last position. Demonstration labels carry the
//! task's label noise (as in training; set `noise = 0` on the task for clean demonstrations);
//! the query's label is always the true one. Zero-shot is turn 0 and the query alone.
//!
//! `accuracy` is label-token scoring: the argmax over the task's label tokens only, so chance
//! is `1 / labels` whatever the rest of the vocabulary does; `vocab_accuracy` takes the argmax
//! over the whole vocabulary.

use super::tally::Tally;
use super::{logits, Model, ProbeError};
use crate::data::{Batch, LabelMapping, Sample};
use crate::init::Rng;
use serde::Serialize;

/// What to sweep.
#[derive(Clone, Debug)]
pub struct ShotsSweepConfig {
    /// The task: its mappings (from the seed it was built with), label count and noise.
    pub task: LabelMapping,
    /// Demonstration counts k; those whose prompts (`2k + 2` tokens) do not fit the model's
    /// ctx are dropped (listed in the result).
    pub shots: Vec<usize>,
    /// Prompts per k.
    pub samples: usize,
    /// Rows per forward pass.
    pub batch: usize,
    /// Seeds the prompts (task, inputs, label flips).
    pub seed: u64,
}

/// Accuracy per number of demonstrations.
#[derive(Clone, Debug, Serialize)]
pub struct ShotsSweep {
    /// The demonstration counts evaluated.
    pub shots: Vec<usize>,
    /// Label-token accuracy of the query, per k.
    pub accuracy: Vec<f64>,
    /// Task id and query only.
    pub zero_shot_accuracy: f64,
    /// Mean NLL of the true label (whole vocabulary), per k.
    pub loss: Vec<f64>,
    pub zero_shot_loss: f64,
    /// Argmax over the whole vocabulary, per k.
    pub vocab_accuracy: Vec<f64>,
    pub zero_shot_vocab_accuracy: f64,
    /// `1 / labels`.
    pub chance: f64,
    pub labels: usize,
    /// Demonstration label noise of the prompts.
    pub noise: f64,
    pub samples: usize,
    /// Counts dropped because their prompts do not fit ctx.
    pub dropped: Vec<usize>,
}

/// Label-token and whole-vocabulary tallies of `samples` prompts with `k` demonstrations.
fn evaluate(model: &Model, cfg: &ShotsSweepConfig, k: usize) -> Result<(Tally, Tally), ProbeError> {
    let lm = &cfg.task;
    let seq = 2 * k + 2;
    let chunk = cfg.batch.clamp(1, cfg.samples.max(1));
    let labels: Vec<usize> = lm.label_tokens().iter().map(|&t| t as usize).collect();
    let mut rng = Rng::for_name(cfg.seed, &format!("probe.shots_sweep.{k}"));
    // k demonstrations then the query pair, whose (clean) label is the answer.
    let samples: Vec<Sample> = (0..cfg.samples)
        .map(|_| {
            let task = rng.below(lm.tasks as u64) as usize;
            lm.sample(&mut rng, task, k + 1, true)
        })
        .collect();
    let g = model.lower(chunk, seq, &[])?;
    let (mut among, mut vocab) = (Tally::default(), Tally::default());
    for rows in samples.chunks(chunk) {
        let b = Batch::from_samples(rows, chunk, seq)
            .map_err(|e| ProbeError::Config(format!("shots_sweep prompts: {e}")))?;
        let lg = logits(&model.run_batch(&g, &b, &[])?)?.to_f64_vec();
        let v = lg.len() / (chunk * seq);
        let targets = b.targets.as_i32().unwrap_or(&[]);
        for r in 0..rows.len() {
            let i = r * seq + seq - 1;
            let row = &lg[i * v..(i + 1) * v];
            among.add_among(row, targets[i] as usize, Some(&labels));
            vocab.add(row, targets[i] as usize);
        }
    }
    Ok((among, vocab))
}

/// Runs the shots sweep.
pub fn shots_sweep(model: &Model, cfg: &ShotsSweepConfig) -> Result<ShotsSweep, ProbeError> {
    if cfg.samples == 0 {
        return Err(ProbeError::Config(
            "shots_sweep: needs at least one sample".into(),
        ));
    }
    let ctx = model.ctx();
    let (fit, dropped): (Vec<usize>, Vec<usize>) =
        cfg.shots.iter().partition(|&&k| 2 * k + 2 <= ctx);
    if fit.is_empty() {
        return Err(ProbeError::Config(format!(
            "shots_sweep: no count in {:?} fits ctx = {ctx} (k shots take 2k + 2 tokens)",
            cfg.shots
        )));
    }
    let (zero, zero_vocab) = evaluate(model, cfg, 0)?;
    let mut out = ShotsSweep {
        shots: fit.clone(),
        accuracy: Vec::new(),
        zero_shot_accuracy: zero.accuracy(),
        loss: Vec::new(),
        zero_shot_loss: zero.loss(),
        vocab_accuracy: Vec::new(),
        zero_shot_vocab_accuracy: zero_vocab.accuracy(),
        chance: 1.0 / cfg.task.labels as f64,
        labels: cfg.task.labels,
        noise: cfg.task.noise,
        samples: cfg.samples,
        dropped,
    };
    for &k in &fit {
        let (among, vocab) = evaluate(model, cfg, k)?;
        out.accuracy.push(among.accuracy());
        out.loss.push(among.loss());
        out.vocab_accuracy.push(vocab.accuracy());
    }
    Ok(out)
}
