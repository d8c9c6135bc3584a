//! Retrieval accuracy against the needle's place in the context: the "lost in the middle"
//! curve MoICE flattens (METHODS §7.4, §11.12 #7). Prompts are `kv_recall` sequences
//! ([`KvRecall`]: key–value pairs among filler, the query marker, a key) of `len` tokens whose
//! queried pair is put at a set depth of the context; the model must predict that pair's value
//! at the last position.

use super::tally::Tally;
use super::{logits, Model, ProbeError};
use crate::data::{Batch, KvRecall, Sample};
use crate::init::Rng;
use serde::Serialize;

/// What to sweep.
#[derive(Clone, Debug)]
pub struct NeedleSweepConfig {
    /// Key–value pairs per prompt (the needle and `pairs − 1` distractors).
    pub pairs: usize,
    /// Prompt length in tokens (the answer is predicted at position `len − 1`); at most ctx.
    pub len: usize,
    /// Depths of the queried pair, each in [0, 1]: 0 = the start of the context, 1 = just
    /// before the query. [`NeedleSweepConfig::evenly_spaced`] gives the usual grid.
    pub depths: Vec<f64>,
    /// Prompts per depth.
    pub samples: usize,
    /// Rows per forward pass.
    pub batch: usize,
    /// Seeds the prompts (keys, values, filler, the distractors' places).
    pub seed: u64,
}

impl NeedleSweepConfig {
    /// `n` depths evenly spaced over [0, 1] (both ends included; one depth is 0.5).
    pub fn evenly_spaced(n: usize) -> Vec<f64> {
        match n {
            0 => Vec::new(),
            1 => vec![0.5],
            _ => (0..n).map(|i| i as f64 / (n - 1) as f64).collect(),
        }
    }
}

/// Accuracy and loss per needle depth.
#[derive(Clone, Debug, Serialize)]
pub struct NeedleSweep {
    /// The requested depths.
    pub positions: Vec<f64>,
    /// Greedy accuracy (argmax over the vocabulary) of the queried value, per depth.
    pub accuracy: Vec<f64>,
    /// Mean NLL of the queried value, per depth.
    pub loss: Vec<f64>,
    /// The measured depth: mean of the queried key's position over the positions a pair can
    /// start at (`0 ..= len − 4`).
    pub measured: Vec<f64>,
    pub samples: usize,
    pub len: usize,
    pub pairs: usize,
}

/// Runs the needle sweep.
pub fn needle_sweep(model: &Model, cfg: &NeedleSweepConfig) -> Result<NeedleSweep, ProbeError> {
    if cfg.len > model.ctx() {
        return Err(ProbeError::Config(format!(
            "needle_sweep: prompts of {} tokens do not fit the model's ctx = {}",
            cfg.len,
            model.ctx()
        )));
    }
    if cfg.samples == 0 || cfg.depths.is_empty() {
        return Err(ProbeError::Config(
            "needle_sweep: needs at least one depth and one sample".into(),
        ));
    }
    if let Some(d) = cfg.depths.iter().find(|d| !(0.0..=1.0).contains(*d)) {
        return Err(ProbeError::Config(format!(
            "needle_sweep: depth {d} is outside [0, 1]"
        )));
    }
    let kv = KvRecall::new(cfg.pairs, cfg.len, model.vocab(), cfg.seed)
        .map_err(|e| ProbeError::Config(format!("needle_sweep prompts: {e}")))?;
    let chunk = cfg.batch.clamp(1, cfg.samples);
    let g = model.lower(chunk, cfg.len, &[])?;
    // A pair starts somewhere in 0 ..= content − 2 (content = len − 2 before the query).
    let span = (cfg.len - 4).max(1) as f64;
    let mut out = NeedleSweep {
        positions: cfg.depths.clone(),
        accuracy: Vec::new(),
        loss: Vec::new(),
        measured: Vec::new(),
        samples: cfg.samples,
        len: cfg.len,
        pairs: cfg.pairs,
    };
    for (i, &depth) in cfg.depths.iter().enumerate() {
        let mut rng = Rng::for_name(cfg.seed, &format!("probe.needle_sweep.{i}"));
        let samples: Vec<Sample> = (0..cfg.samples)
            .map(|_| kv.sample(&mut rng, Some(depth)))
            .collect();
        let at: f64 = samples
            .iter()
            .filter_map(KvRecall::needle_position)
            .map(|p| p as f64 / span)
            .sum();
        let mut tally = Tally::default();
        for rows in samples.chunks(chunk) {
            let b = Batch::from_samples(rows, chunk, cfg.len)
                .map_err(|e| ProbeError::Config(format!("needle_sweep prompts: {e}")))?;
            let lg = logits(&model.run_batch(&g, &b, &[])?)?.to_f64_vec();
            let v = lg.len() / (chunk * cfg.len);
            let targets = b.targets.as_i32().unwrap_or(&[]);
            for r in 0..rows.len() {
                // The value is the target of the last input position.
                let i = r * cfg.len + cfg.len - 1;
                tally.add(&lg[i * v..(i + 1) * v], targets[i] as usize);
            }
        }
        out.accuracy.push(tally.accuracy());
        out.loss.push(tally.loss());
        out.measured.push(at / cfg.samples as f64);
    }
    Ok(out)
}
