//! What a `train { }` section asks for, resolved into runtime objects: batch shape, optimizer,
//! schedule, data source and transforms.

use super::TrainError;
use crate::data::{
    Arithmetic, ArithmeticLevel, CopyTask, DataSource, Facts, KvRecall, LabelMapping, Markov,
    MaskedThought, Replacement, TextData, Tokenizer,
};
use crate::optim::{AdamW, OptimizerConfig, Schedule, Sgd};
use std::path::Path;
use weft_dsl::check::value::{CallValue, Value};
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
    pub data: CallValue,
    /// Probes run at every evaluation (`eval = [...]`).
    pub eval: Vec<CallValue>,
}

fn int(call: &CallValue, k: &str, default: i64) -> i64 {
    call.int(k).unwrap_or(default)
}

fn float(call: &CallValue, k: &str, default: f64) -> f64 {
    call.float(k).unwrap_or(default)
}

/// Resolves the spec's `train` section (`steps`/`seed` may be overridden by the CLI).
pub fn plan(spec: &Checked, steps: Option<u64>, seed: Option<u64>) -> Result<Plan, TrainError> {
    let t = spec
        .train
        .as_ref()
        .ok_or_else(|| TrainError::Config("the spec has no `train { }` section".into()))?;
    let get_int = |k: &str, d: i64| t.int(k).unwrap_or(d);
    let optimizer = match t.call("optimizer") {
        Some(c) if c.name == "sgd" => OptimizerConfig::Sgd(Sgd {
            lr: float(c, "lr", 1e-2),
            momentum: float(c, "momentum", 0.0),
            weight_decay: float(c, "weight_decay", 0.0),
        }),
        Some(c) => {
            let betas: Vec<f64> = c
                .get("betas")
                .and_then(Value::as_list)
                .map(|b| b.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            OptimizerConfig::Adamw(AdamW {
                lr: float(c, "lr", 1e-3),
                beta1: betas.first().copied().unwrap_or(0.9),
                beta2: betas.get(1).copied().unwrap_or(0.999),
                eps: float(c, "eps", 1e-8),
                weight_decay: float(c, "weight_decay", 0.0),
            })
        }
        None => OptimizerConfig::Adamw(AdamW::default()),
    };
    let schedule = match t.call("schedule") {
        Some(c) => {
            let warmup = int(c, "warmup", 0).max(0) as u64;
            match c.name.as_str() {
                "linear" => Schedule::Linear {
                    warmup,
                    final_frac: float(c, "final", 0.0),
                },
                "cosine" => Schedule::Cosine {
                    warmup,
                    floor: float(c, "floor", 0.0),
                },
                "cosine_tail" => Schedule::CosineTail {
                    warmup,
                    floor: float(c, "floor", 0.05),
                    at: float(c, "at", 0.6),
                },
                _ => Schedule::Constant { warmup },
            }
        }
        None => Schedule::default(),
    };
    let transforms: Vec<&CallValue> = match t.get("transforms") {
        Some(Value::List(ts)) => ts.iter().filter_map(Value::as_call).collect(),
        _ => Vec::new(),
    };
    // Added tokens first, wherever `extend_vocab` sits in the list: `masked_thought(replace:
    // mask)` needs the `<mask>` id.
    let extra_tokens: Vec<String> = transforms
        .iter()
        .filter(|tr| tr.name == "extend_vocab")
        .flat_map(|tr| match tr.get("tokens") {
            Some(Value::List(v)) => v
                .iter()
                .filter_map(|x| x.as_name().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let vocab = spec.model.int("vocab") as i32;
    let mask_id = extra_tokens
        .iter()
        .position(|t| t == "<mask>")
        .map_or(crate::data::PAD, |i| vocab + i as i32);
    let mut masked_thought = None;
    {
        for tr in transforms {
            match tr.name.as_str() {
                "extend_vocab" => {}
                "masked_thought" => {
                    masked_thought = Some(MaskedThought {
                        p: float(tr, "p", 0.4),
                        warmup: float(tr, "warmup", 0.66),
                        // `mask` is the `<mask>` token `extend_vocab` added, else the pad
                        // id (the Masked Thought README: "a new [mask] token or the pad
                        // token").
                        replace: match tr.name_arg("replace") {
                            Some("mask") => Replacement::Mask(mask_id),
                            _ => Replacement::Random {
                                low: 2,
                                high: spec.model.int("vocab") as i32,
                            },
                        },
                    })
                }
                other => {
                    return Err(TrainError::Config(format!(
                        "transform `{other}` is not supported by the training loop yet"
                    )))
                }
            }
        }
    }
    let accumulate = get_int("accumulate", 1).max(1) as usize;
    let batch = get_int("batch", 16).max(1) as usize;
    if !batch.is_multiple_of(accumulate) {
        return Err(TrainError::Config(format!(
            "batch = {batch} is not divisible by accumulate = {accumulate}"
        )));
    }
    let total_steps = steps.unwrap_or(get_int("steps", 1).max(1) as u64);
    let trainable = match t.get("trainable") {
        Some(Value::List(v)) => v
            .iter()
            .filter_map(|g| g.as_name().map(str::to_string))
            .collect(),
        _ => vec!["*".into()],
    };
    Ok(Plan {
        batch,
        seq: get_int("seq", spec.model.int("ctx")).max(1) as usize,
        steps: total_steps,
        seed: seed.unwrap_or(get_int("seed", 0).max(0) as u64),
        optimizer,
        schedule,
        clip: t.float("clip").unwrap_or(1.0),
        accumulate,
        log_every: get_int("log_every", 10).max(1) as u64,
        eval_every: get_int("eval_every", 100).max(1) as u64,
        checkpoint_every: match get_int("checkpoint_every", 0).max(0) as u64 {
            0 => total_steps.div_ceil(10).max(1),
            n => n,
        },
        checkpoint_secs: t.float("checkpoint_minutes").unwrap_or(10.0).max(0.0) * 60.0,
        keep_checkpoints: get_int("keep_checkpoints", 3).max(0) as usize,
        trainable,
        masked_thought,
        extra_tokens,
        data: t
            .call("data")
            .cloned()
            .ok_or_else(|| TrainError::Config("`data` is missing".into()))?,
        eval: match t.get("eval") {
            Some(Value::List(v)) => v.iter().filter_map(Value::as_call).cloned().collect(),
            _ => Vec::new(),
        },
    })
}

/// Builds the data source a `data = ...` call names. Paths are relative to the spec's folder.
pub fn data_source(
    call: &CallValue,
    spec_dir: &Path,
    vocab: usize,
    seed: u64,
) -> Result<Box<dyn DataSource>, TrainError> {
    let u = |k: &str, d: i64| int(call, k, d).max(0) as usize;
    let src: Box<dyn DataSource> = match call.name.as_str() {
        "text" => {
            let path = spec_dir.join(call.name_arg("path").unwrap_or_default());
            let tok =
                Tokenizer::from_name(call.name_arg("tokenizer").unwrap_or("bytes"), spec_dir)?;
            Box::new(TextData::load(
                &path,
                tok,
                call.name_arg("field"),
                float(call, "valid", 0.05),
                vocab,
                seed,
            )?)
        }
        "copy_task" => Box::new(CopyTask::new(
            u("len", 32),
            u("vocab", vocab as i64).min(vocab),
            seed,
        )?),
        "markov" => Box::new(Markov::new(
            vocab,
            u("branching", 4),
            float(call, "repeat_p", 0.5),
            u("span", 16),
            seed,
        )?),
        "kv_recall" => Box::new(KvRecall::new(u("pairs", 8), u("len", 128), vocab, seed)?),
        "label_mapping" => Box::new(LabelMapping::new(
            u("tasks", 16),
            u("inputs", 8),
            u("labels", 4),
            u("shots", 64),
            float(call, "noise", 0.0),
            vocab,
            seed,
        )?),
        "arithmetic" => {
            let modulus = u("modulus", 100) as u32;
            // One token per number when the vocabulary has room, else characters.
            let level = if vocab >= 7 + modulus as usize {
                ArithmeticLevel::Tokens
            } else {
                ArithmeticLevel::Chars
            };
            Box::new(Arithmetic::new(
                u("terms", 4),
                modulus,
                u("problems", 2000),
                level,
                vocab,
                seed,
            )?)
        }
        "facts" => Box::new(Facts::new(u("pairs", 50), u("templates", 10), vocab, seed)?),
        other => {
            return Err(TrainError::Config(format!(
                "data source `{other}` is not supported"
            )))
        }
    };
    Ok(src)
}
