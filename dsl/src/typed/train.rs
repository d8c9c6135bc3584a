//! The `train { }` section as typed values: data source, transforms, optimizer, schedule,
//! objective and cadences, every default filled from the builtins table.

use super::attention::MaskRule;
use super::probe::Probe;
use super::{choice, Args, ResolveError, Resolved};
use crate::builtins::Kind;
use crate::check::value::{CallValue, Value};
use crate::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A training data source (`data = ...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    /// A text corpus; `path` relative to the spec.
    Text {
        path: String,
        tokenizer: String,
        field: Option<String>,
        valid: f64,
    },
    CopyTask {
        len: usize,
        vocab: usize,
    },
    Markov {
        branching: usize,
        repeat_p: f64,
        span: usize,
    },
    KvRecall {
        pairs: usize,
        len: usize,
    },
    LabelMapping {
        tasks: usize,
        inputs: usize,
        labels: usize,
        shots: usize,
        noise: f64,
        /// Whether turn 0 is the task's id (else a start token shared by all tasks).
        task_id: bool,
    },
    Arithmetic {
        terms: usize,
        modulus: usize,
        problems: usize,
    },
    Facts {
        pairs: usize,
        templates: usize,
    },
}

impl Resolved for DataSource {
    const KIND: Kind = Kind::Data;
    const NAMES: &'static [&'static str] = &[
        "text",
        "copy_task",
        "markov",
        "kv_recall",
        "label_mapping",
        "arithmetic",
        "facts",
    ];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "text" => DataSource::Text {
                path: a.text("path")?,
                tokenizer: a.text("tokenizer")?,
                field: a.opt("field", Args::text)?,
                valid: a.float("valid")?,
            },
            "copy_task" => DataSource::CopyTask {
                len: a.count("len")?,
                vocab: a.count("vocab")?,
            },
            "markov" => DataSource::Markov {
                branching: a.count("branching")?,
                repeat_p: a.float("repeat_p")?,
                span: a.count("span")?,
            },
            "kv_recall" => DataSource::KvRecall {
                pairs: a.count("pairs")?,
                len: a.count("len")?,
            },
            "label_mapping" => DataSource::LabelMapping {
                tasks: a.count("tasks")?,
                inputs: a.count("inputs")?,
                labels: a.count("labels")?,
                shots: a.count("shots")?,
                noise: a.float("noise")?,
                task_id: a.bool("task_id")?,
            },
            "arithmetic" => DataSource::Arithmetic {
                terms: a.count("terms")?,
                modulus: a.count("modulus")?,
                problems: a.count("problems")?,
            },
            "facts" => DataSource::Facts {
                pairs: a.count("pairs")?,
                templates: a.count("templates")?,
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            DataSource::Text { .. } => "text",
            DataSource::CopyTask { .. } => "copy_task",
            DataSource::Markov { .. } => "markov",
            DataSource::KvRecall { .. } => "kv_recall",
            DataSource::LabelMapping { .. } => "label_mapping",
            DataSource::Arithmetic { .. } => "arithmetic",
            DataSource::Facts { .. } => "facts",
        }
    }
}

choice! {
    /// What `masked_thought` puts in place of a masked token.
    Replace {
        /// The `<mask>` token of `extend_vocab` (the pad id without it).
        Mask = "mask",
        /// A uniform random token.
        Random = "random",
    }
}

/// A data transform (`transforms = [...]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Transform {
    MaskedThought {
        p: f64,
        warmup: f64,
        replace: Replace,
    },
    ExtendVocab {
        tokens: Vec<String>,
    },
}

impl Resolved for Transform {
    const KIND: Kind = Kind::Transform;
    const NAMES: &'static [&'static str] = &["masked_thought", "extend_vocab"];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "masked_thought" => Transform::MaskedThought {
                p: a.float("p")?,
                warmup: a.float("warmup")?,
                replace: a.choice("replace")?,
            },
            "extend_vocab" => Transform::ExtendVocab {
                tokens: a.texts("tokens")?,
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Transform::MaskedThought { .. } => "masked_thought",
            Transform::ExtendVocab { .. } => "extend_vocab",
        }
    }
}

/// An optimizer (`optimizer = ...`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    Sgd {
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    },
}

impl Optimizer {
    /// The (peak) learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::AdamW { lr, .. } | Optimizer::Sgd { lr, .. } => *lr,
        }
    }

    /// The weight decay, mutable (experiments sweep it).
    pub fn weight_decay_mut(&mut self) -> &mut f64 {
        match self {
            Optimizer::AdamW { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } => {
                weight_decay
            }
        }
    }
}

impl Resolved for Optimizer {
    const KIND: Kind = Kind::Optimizer;
    const NAMES: &'static [&'static str] = &["adamw", "sgd"];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "adamw" => {
                let betas = a.floats("betas")?;
                let [beta1, beta2] = betas[..] else {
                    return Err(a.bad("betas"));
                };
                Optimizer::AdamW {
                    lr: a.float("lr")?,
                    beta1,
                    beta2,
                    eps: a.float("eps")?,
                    weight_decay: a.float("weight_decay")?,
                }
            }
            "sgd" => Optimizer::Sgd {
                lr: a.float("lr")?,
                momentum: a.float("momentum")?,
                weight_decay: a.float("weight_decay")?,
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Optimizer::AdamW { .. } => "adamw",
            Optimizer::Sgd { .. } => "sgd",
        }
    }
}

/// A learning-rate schedule (`schedule = ...`); every one starts with a linear warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant {
        warmup: u64,
    },
    /// Linear decay to `final_frac`·lr.
    Linear {
        warmup: u64,
        final_frac: f64,
    },
    /// Cosine decay to `floor`·lr.
    Cosine {
        warmup: u64,
        floor: f64,
    },
    /// Cosine to `floor`·lr at fraction `at`, then linear to 0.
    CosineTail {
        warmup: u64,
        floor: f64,
        at: f64,
    },
}

impl Resolved for Schedule {
    const KIND: Kind = Kind::Schedule;
    const NAMES: &'static [&'static str] = &["constant", "linear", "cosine", "cosine_tail"];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        let warmup = || a.count("warmup").map(|w| w as u64);
        Ok(match c.name.as_str() {
            "constant" => Schedule::Constant { warmup: warmup()? },
            "linear" => Schedule::Linear {
                warmup: warmup()?,
                final_frac: a.float("final")?,
            },
            "cosine" => Schedule::Cosine {
                warmup: warmup()?,
                floor: a.float("floor")?,
            },
            "cosine_tail" => Schedule::CosineTail {
                warmup: warmup()?,
                floor: a.float("floor")?,
                at: a.float("at")?,
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Schedule::Constant { .. } => "constant",
            Schedule::Linear { .. } => "linear",
            Schedule::Cosine { .. } => "cosine",
            Schedule::CosineTail { .. } => "cosine_tail",
        }
    }
}

choice! {
    /// Which label positions `nll` counts.
    LossMask {
        All = "all",
        Answers = "answers",
        SecondHalf = "second_half",
    }
}

choice! {
    /// The attention view a loss term sees: the model's own masks, or every attention's
    /// mask overridden (DR-ICL's zero-shot view).
    LossView {
        Same = "same",
        Turns = "turns",
        TurnsKeepFirst = "turns_keep_first",
    }
}

impl LossView {
    /// The mask every attention uses in this view; `None` for the model's own.
    pub fn mask(self) -> Option<MaskRule> {
        match self {
            LossView::Same => None,
            LossView::Turns => Some(MaskRule::Turns),
            LossView::TurnsKeepFirst => Some(MaskRule::TurnsKeepFirst),
        }
    }
}

/// A per-segment reweighting rule (`segment_nll(reweight: ...)`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reweight {
    /// DR-ICL advantage: `w_k = exp((ℓ_k − β_k)/γ)` over a baseline window.
    Advantage { gamma: f64, window: usize },
}

impl Resolved for Reweight {
    const KIND: Kind = Kind::Reweight;
    const NAMES: &'static [&'static str] = &["advantage"];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "advantage" => Reweight::Advantage {
                gamma: a.float("gamma")?,
                window: a.count("window")?,
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Reweight::Advantage { .. } => "advantage",
        }
    }
}

/// One loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Loss {
    Nll {
        mask: LossMask,
        view: LossView,
    },
    SegmentNll {
        reweight: Option<Reweight>,
        view: LossView,
    },
}

impl Loss {
    pub fn view(&self) -> LossView {
        match self {
            Loss::Nll { view, .. } | Loss::SegmentNll { view, .. } => *view,
        }
    }
}

impl Resolved for Loss {
    const KIND: Kind = Kind::Loss;
    const NAMES: &'static [&'static str] = &["nll", "segment_nll"];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "nll" => Loss::Nll {
                mask: a.choice("mask")?,
                view: a.choice("attention")?,
            },
            "segment_nll" => Loss::SegmentNll {
                reweight: a.opt("reweight", Args::nested)?,
                view: a.choice("attention")?,
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Loss::Nll { .. } => "nll",
            Loss::SegmentNll { .. } => "segment_nll",
        }
    }
}

/// One weighted term of the objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossTerm {
    pub weight: f64,
    pub loss: Loss,
    /// Where the term is written, for the nodes it lowers to.
    pub span: Span,
}

/// The objective: a weighted sum of losses (`loss = 0.6 * segment_nll(...) + 0.4 * nll()`).
pub type Objective = Vec<LossTerm>;

fn objective(v: &Value, a: &Args) -> Result<Objective, ResolveError> {
    let term = |w: f64, c: &CallValue| -> Result<LossTerm, ResolveError> {
        Ok(LossTerm {
            weight: w,
            loss: Loss::from_call(c)?,
            span: c.span,
        })
    };
    match v {
        Value::Call(c) => Ok(vec![term(1.0, c)?]),
        Value::Losses(ts) => ts.iter().map(|(w, c)| term(*w, c)).collect(),
        _ => Err(a.bad("loss")),
    }
}

/// A checked `train { }` section: every setting typed, defaults filled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    pub data: DataSource,
    pub steps: u64,
    pub batch: usize,
    pub seq: usize,
    pub seed: u64,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    /// Global gradient-norm clip; 0 = off.
    pub clip: f64,
    pub accumulate: usize,
    /// Globs over parameter names that train; the rest are frozen.
    pub trainable: Vec<String>,
    pub transforms: Vec<Transform>,
    pub loss: Objective,
    /// Probes run at every evaluation.
    pub eval: Vec<Probe>,
    pub eval_every: u64,
    pub log_every: u64,
    /// Steps between checkpoints; 0 = every 10% of `steps`.
    pub checkpoint_every: u64,
    /// Minutes of wall time between checkpoints; 0 = off.
    pub checkpoint_minutes: f64,
    /// Newest checkpoints kept besides `best`; 0 = all.
    pub keep_checkpoints: usize,
    pub span: Span,
}

impl TrainSpec {
    /// The typed section from the checker's settings (every `TRAIN_SETTINGS` entry present).
    pub(crate) fn from_settings(
        settings: &BTreeMap<String, Value>,
        span: Span,
    ) -> Result<Self, ResolveError> {
        let call = CallValue {
            name: "train".into(),
            args: settings.clone(),
            span,
        };
        let a = Args::section(&call, "a train section");
        let calls = |k: &str| -> Result<Vec<&CallValue>, ResolveError> {
            a.list(k)?
                .iter()
                .map(|v| v.as_call().ok_or_else(|| a.bad(k)))
                .collect()
        };
        let u64_of = |k: &str| a.count(k).map(|v| v as u64);
        Ok(TrainSpec {
            data: a.nested("data")?,
            steps: u64_of("steps")?,
            batch: a.count("batch")?,
            seq: a.count("seq")?,
            seed: u64_of("seed")?,
            optimizer: a.nested("optimizer")?,
            schedule: a.nested("schedule")?,
            clip: a.float("clip")?,
            accumulate: a.count("accumulate")?,
            trainable: a.texts("trainable")?,
            transforms: calls("transforms")?
                .into_iter()
                .map(Transform::from_call)
                .collect::<Result<_, _>>()?,
            loss: objective(settings.get("loss").ok_or_else(|| a.bad("loss"))?, &a)?,
            eval: calls("eval")?
                .into_iter()
                .map(Probe::from_call)
                .collect::<Result<_, _>>()?,
            eval_every: u64_of("eval_every")?,
            log_every: u64_of("log_every")?,
            checkpoint_every: u64_of("checkpoint_every")?,
            checkpoint_minutes: a.float("checkpoint_minutes")?,
            keep_checkpoints: a.count("keep_checkpoints")?,
            span,
        })
    }

    /// An integer setting by its spec name (`steps`, `batch`, `seq`, `seed`, `accumulate`,
    /// `eval_every`, `log_every`, `checkpoint_every`, `keep_checkpoints`); `None` for any
    /// other name.
    pub fn int(&self, key: &str) -> Option<i64> {
        Some(match key {
            "steps" => self.steps as i64,
            "batch" => self.batch as i64,
            "seq" => self.seq as i64,
            "seed" => self.seed as i64,
            "accumulate" => self.accumulate as i64,
            "eval_every" => self.eval_every as i64,
            "log_every" => self.log_every as i64,
            "checkpoint_every" => self.checkpoint_every as i64,
            "keep_checkpoints" => self.keep_checkpoints as i64,
            _ => return None,
        })
    }

    /// Overrides an integer setting by its spec name (the names of [`TrainSpec::int`]);
    /// `false` for any other name. Negative values become 0.
    pub fn set_int(&mut self, key: &str, v: i64) -> bool {
        let u = v.max(0) as u64;
        match key {
            "steps" => self.steps = u,
            "batch" => self.batch = u as usize,
            "seq" => self.seq = u as usize,
            "seed" => self.seed = u,
            "accumulate" => self.accumulate = u as usize,
            "eval_every" => self.eval_every = u,
            "log_every" => self.log_every = u,
            "checkpoint_every" => self.checkpoint_every = u,
            "keep_checkpoints" => self.keep_checkpoints = u as usize,
            _ => return false,
        }
        true
    }
}
