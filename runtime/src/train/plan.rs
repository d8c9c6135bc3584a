//! What a `train { }` section asks for, resolved into runtime objects: batch shape, optimizer,
//! schedule, data source and transforms.

use super::TrainError;
use crate::data::{DataSource as Source, MaskedThought, Replacement};
use crate::optim::{AdamW, OptimizerConfig, Schedule, Sgd};
use std::path::Path;
use weft_dsl::typed::{self, DataSource, Optimizer, Probe, Replace, Transform};
use weft_dsl::Checked;

/// The resolved training settings.
#[derive(Clone, Debug)]
pub struct Plan {
    pub batch: usize,
    pub seq: usize,
    pub steps: u64,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// 0 = no clipping.
    pub clip: f64,
    pub accumulate: usize,
    pub log_every: u64,
    pub eval_every: u64,
    /// Steps between checkpoints; the spec's 0 becomes every 10% of `steps` (at least 1).
    pub checkpoint_every: u64,
    /// Wall-clock seconds after which a checkpoint is due regardless of steps (0 = off).
    pub checkpoint_secs: f64,
    /// Newest checkpoints kept besides `best` (0 = all).
    pub keep_checkpoints: usize,
    pub trainable: Vec<String>,
    pub masked_thought: Option<MaskedThought>,
    /// Tokens `extend_vocab` appends to the model's vocabulary (ids `vocab`, `vocab + 1`...).
    pub extra_tokens: Vec<String>,
    pub data: DataSource,
    /// Probes run at every evaluation (`eval = [...]`).
    pub eval: Vec<Probe>,
}

/// Resolves the spec's `train` section (`steps`/`seed` may be overridden by the CLI). Every
/// value comes from the checked spec, whose defaults the builtins table filled.
pub fn plan(spec: &Checked, steps: Option<u64>, seed: Option<u64>) -> Result<Plan, TrainError> {
    let t = spec
        .train
        .as_ref()
        .ok_or_else(|| TrainError::Config("the spec has no `train { }` section".into()))?;
    let optimizer = match t.optimizer {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay,
        } => OptimizerConfig::Sgd(Sgd {
            lr,
            momentum,
            weight_decay,
        }),
        Optimizer::AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => OptimizerConfig::Adamw(AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        }),
    };
    let schedule = match t.schedule {
        typed::Schedule::Constant { warmup } => Schedule::Constant { warmup },
        typed::Schedule::Linear { warmup, final_frac } => Schedule::Linear { warmup, final_frac },
        typed::Schedule::Cosine { warmup, floor } => Schedule::Cosine { warmup, floor },
        typed::Schedule::CosineTail { warmup, floor, at } => {
            Schedule::CosineTail { warmup, floor, at }
        }
    };
    // Added tokens first, wherever `extend_vocab` sits in the list: `masked_thought(replace:
    // mask)` needs the `<mask>` id.
    let extra_tokens: Vec<String> = t
        .transforms
        .iter()
        .flat_map(|tr| match tr {
            Transform::ExtendVocab { tokens } => tokens.clone(),
            Transform::MaskedThought { .. } => Vec::new(),
        })
        .collect();
    let vocab = spec.model.config.vocab as i32;
    let mask_id = extra_tokens
        .iter()
        .position(|t| t == "<mask>")
        .map_or(crate::data::PAD, |i| vocab + i as i32);
    let mut masked_thought = None;
    for tr in &t.transforms {
        match *tr {
            Transform::ExtendVocab { .. } => {}
            Transform::MaskedThought { p, warmup, replace } => {
                masked_thought = Some(MaskedThought {
                    p,
                    warmup,
                    // `mask` is the `<mask>` token `extend_vocab` added, else the pad id (the
                    // Masked Thought README: "a new [mask] token or the pad token").
                    replace: match replace {
                        Replace::Mask => Replacement::Mask(mask_id),
                        Replace::Random => Replacement::Random {
                            low: 2,
                            high: vocab,
                        },
                    },
                })
            }
        }
    }
    let accumulate = t.accumulate.max(1);
    let batch = t.batch.max(1);
    if !batch.is_multiple_of(accumulate) {
        return Err(TrainError::Config(format!(
            "batch = {batch} is not divisible by accumulate = {accumulate}"
        )));
    }
    let total_steps = steps.unwrap_or(t.steps.max(1));
    Ok(Plan {
        batch,
        seq: t.seq.max(1),
        steps: total_steps,
        seed: seed.unwrap_or(t.seed),
        optimizer,
        schedule,
        clip: t.clip,
        accumulate,
        log_every: t.log_every.max(1),
        eval_every: t.eval_every.max(1),
        checkpoint_every: match t.checkpoint_every {
            0 => total_steps.div_ceil(10).max(1),
            n => n,
        },
        checkpoint_secs: t.checkpoint_minutes.max(0.0) * 60.0,
        keep_checkpoints: t.keep_checkpoints,
        trainable: spec.trainable(),
        masked_thought,
        extra_tokens,
        data: t.data.clone(),
        eval: t.eval.clone(),
    })
}

/// Builds the data source a `data = ...` call names ([`crate::data::from_spec`]). Paths are
/// relative to the spec's folder.
pub fn data_source(
    data: &DataSource,
    spec_dir: &Path,
    vocab: usize,
    seed: u64,
) -> Result<Box<dyn Source>, TrainError> {
    Ok(crate::data::from_spec(data, spec_dir, vocab, seed)?)
}
