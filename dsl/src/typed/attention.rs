//! The rules of an attention: how scores become weights, which keys a query sees, how
//! positions rotate queries and keys, and per-head output gains.
//!
//! `weights:` and `mask:` name built-in rules; `rule:` names a [`RuleDef`], an attention rule
//! written in the language (`rule NAME { score = ...; mask = ...; weights = ... }`), whose
//! expressions ([`RuleExpr`]) lowering turns into the IR's rule data. The built-in weight
//! rules `softmax` and `signed` are themselves definitions of the standard prelude
//! (`prelude.weft`).

use super::{choice, Args, ResolveError, Resolved};
use crate::builtins::Kind;
use crate::check::value::CallValue;
use serde::{Deserialize, Serialize};

choice! {
    /// How an attention turns scores into weights (`attention(weights: ...)`).
    WeightRule {
        /// `softmax(s)`.
        Softmax = "softmax",
        /// `sign(s) · softmax(|s|)` (Cog attention).
        Signed = "signed",
    }
}

choice! {
    /// Which keys each query sees (`attention(mask: ...)`).
    MaskRule {
        /// Keys at or before the query.
        Causal = "causal",
        /// Causal, within the query's document (`segments` ids).
        Document = "document",
        /// Every key.
        Bidirectional = "bidirectional",
        /// Causal, within the query's turn (`turns` ids).
        Turns = "turns",
        /// Causal within the turn, plus the first turn.
        TurnsKeepFirst = "turns_keep_first",
        /// Only the query's own position.
        SelfOnly = "self_only",
    }
}

choice! {
    /// Which dimensions a rotary pair joins.
    Layout {
        /// Pairs `(i, i + d/2)` (HF Llama).
        Half = "half",
        /// Pairs `(2i, 2i + 1)`.
        Interleaved = "interleaved",
    }
}

choice! {
    /// Per-head output gains (PEAR).
    Gain {
        None = "none",
        /// Gains present, frozen at 1.
        Fixed = "fixed",
        /// Gains present and trained.
        Trainable = "trainable",
    }
}

choice! {
    /// The router of a MoICE mixture of rotary bases.
    MoiceRouter {
        /// A SwiGLU over the query rotated by the first base.
        Swiglu = "swiglu",
    }
}

/// A position rule (`attention(position: ...)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PositionRule {
    /// RoPE with `base`; with `bases`, a routed mixture of rotary bases (MoICE).
    Rope {
        base: f64,
        layout: Layout,
        bases: Option<Vec<f64>>,
        router: Option<MoiceRouter>,
        /// Bases mixed per token and head (`None`: all).
        top_k: Option<usize>,
        balance: f64,
    },
    /// RoPE keeping only the high-frequency pairs.
    Hope {
        base: f64,
        layout: Layout,
        keep: Option<usize>,
        train_len: usize,
    },
    /// An explicit per-pair frequency table.
    Freqs { table: Vec<f64>, layout: Layout },
    /// No position encoding.
    Nope,
}

impl PositionRule {
    /// The MoICE bases, when this rule routes over several.
    pub fn moice_bases(&self) -> Option<&[f64]> {
        match self {
            PositionRule::Rope {
                bases: Some(b),
                router,
                ..
            } if b.len() > 1 || router.is_some() => Some(b),
            PositionRule::Rope { .. }
            | PositionRule::Hope { .. }
            | PositionRule::Freqs { .. }
            | PositionRule::Nope => None,
        }
    }

    /// The pair layout of the rotation (`Half` for `nope`, which rotates nothing).
    pub fn layout(&self) -> Layout {
        match self {
            PositionRule::Rope { layout, .. }
            | PositionRule::Hope { layout, .. }
            | PositionRule::Freqs { layout, .. } => *layout,
            PositionRule::Nope => Layout::Half,
        }
    }
}

impl Resolved for PositionRule {
    const KIND: Kind = Kind::Position;
    const NAMES: &'static [&'static str] = &["rope", "hope", "freqs", "nope"];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "rope" => PositionRule::Rope {
                base: a.float("base")?,
                layout: a.choice("layout")?,
                bases: a.opt("bases", Args::floats)?,
                router: a.opt("router", Args::choice)?,
                top_k: a.opt("top_k", Args::count)?,
                balance: a.float("balance")?,
            },
            "hope" => PositionRule::Hope {
                base: a.float("base")?,
                layout: a.choice("layout")?,
                keep: a.opt("keep", Args::count)?,
                train_len: a.count("train_len")?,
            },
            "freqs" => PositionRule::Freqs {
                table: a.floats("table")?,
                layout: a.choice("layout")?,
            },
            "nope" => PositionRule::Nope,
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            PositionRule::Rope { .. } => "rope",
            PositionRule::Hope { .. } => "hope",
            PositionRule::Freqs { .. } => "freqs",
            PositionRule::Nope => "nope",
        }
    }
}

/// A variable an attention rule's expressions read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleVar {
    /// `s`: the score (`q·k/√d` in `score`; the score after `score` in `weights`).
    Score,
    /// `i`: the query position.
    QueryPos,
    /// `j`: the key position.
    KeyPos,
    /// `head`: the query head index.
    Head,
    /// `kv_head`: the key/value head the query head reads (grouped-query attention).
    KvHead,
    /// `layer`: the layer index (a constant per attention site).
    Layer,
    /// `n`: the number of keys (the sequence length).
    Keys,
    /// `seg_i`: the query's segment (document) id.
    QuerySeg,
    /// `seg_j`: the key's segment (document) id.
    KeySeg,
}

impl RuleVar {
    /// Every variable, with its spelling in the language.
    pub const ALL: [(RuleVar, &'static str); 9] = [
        (RuleVar::Score, "s"),
        (RuleVar::QueryPos, "i"),
        (RuleVar::KeyPos, "j"),
        (RuleVar::Head, "head"),
        (RuleVar::KvHead, "kv_head"),
        (RuleVar::Layer, "layer"),
        (RuleVar::Keys, "n"),
        (RuleVar::QuerySeg, "seg_i"),
        (RuleVar::KeySeg, "seg_j"),
    ];

    /// The variable spelled `name`.
    pub fn named(name: &str) -> Option<RuleVar> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// Its spelling in the language.
    pub fn spelling(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("?", |(_, n)| n)
    }
}

/// A function a rule expression may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleFn {
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Abs,
    Sign,
    Sqrt,
    /// `min(a, b)`.
    Min,
    /// `max(a, b)`.
    Max,
    /// `where(c, a, b)`: `a` where the condition holds, else `b`.
    Where,
}

impl RuleFn {
    /// Every function: spelling and argument count.
    pub const ALL: [(RuleFn, &'static str, usize); 10] = [
        (RuleFn::Exp, "exp", 1),
        (RuleFn::Log, "log", 1),
        (RuleFn::Tanh, "tanh", 1),
        (RuleFn::Sigmoid, "sigmoid", 1),
        (RuleFn::Abs, "abs", 1),
        (RuleFn::Sign, "sign", 1),
        (RuleFn::Sqrt, "sqrt", 1),
        (RuleFn::Min, "min", 2),
        (RuleFn::Max, "max", 2),
        (RuleFn::Where, "where", 3),
    ];

    /// The function spelled `name`, with its argument count.
    pub fn named(name: &str) -> Option<(RuleFn, usize)> {
        Self::ALL
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(f, _, a)| (*f, *a))
    }
}

/// An operator of a rule expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// A checked rule expression: numbers (spec constants already substituted), variables,
/// per-head parameters, operators and function calls. Comparisons and logic give booleans
/// (the checker keeps booleans and numbers apart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RuleExpr {
    Num(f64),
    Var(RuleVar),
    /// The rule's per-head parameter with this index (`RuleDef::params`).
    Param(usize),
    Neg(Box<RuleExpr>),
    Not(Box<RuleExpr>),
    Bin(RuleOp, Box<RuleExpr>, Box<RuleExpr>),
    Call(RuleFn, Vec<RuleExpr>),
}

impl RuleExpr {
    /// Whether the expression reads `v`.
    pub fn reads(&self, v: RuleVar) -> bool {
        match self {
            RuleExpr::Var(x) => *x == v,
            RuleExpr::Num(_) | RuleExpr::Param(_) => false,
            RuleExpr::Neg(a) | RuleExpr::Not(a) => a.reads(v),
            RuleExpr::Bin(_, a, b) => a.reads(v) || b.reads(v),
            RuleExpr::Call(_, args) => args.iter().any(|a| a.reads(v)),
        }
    }

    /// Whether the expression reads a per-head parameter.
    pub fn reads_params(&self) -> bool {
        match self {
            RuleExpr::Param(_) => true,
            RuleExpr::Num(_) | RuleExpr::Var(_) => false,
            RuleExpr::Neg(a) | RuleExpr::Not(a) => a.reads_params(),
            RuleExpr::Bin(_, a, b) => a.reads_params() || b.reads_params(),
            RuleExpr::Call(_, args) => args.iter().any(RuleExpr::reads_params),
        }
    }
}

/// How a rule turns (modified) scores into weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RuleWeights {
    /// `w_j = h(s_j)·exp(f(s_j)) / (sink + Σ_k exp(f(s_k)))` over visible keys: the form the
    /// blocked kernels evaluate online with a running maximum of `f`.
    Normalised {
        /// `h`; `None` for 1.
        factor: Option<RuleExpr>,
        /// `f`.
        exponent: RuleExpr,
        /// The constant `c ≥ 0` in the denominator (1 for an attention sink).
        sink: f64,
    },
    /// `w_j = φ(s_j)` with no normaliser (e.g. sigmoid attention).
    Direct(RuleExpr),
}

/// How a per-head rule parameter starts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ParamInit {
    /// ALiBi's geometric slopes `2^(−8(h+1)/H)`.
    Alibi,
    /// Every head starts at this value.
    Value(f64),
}

/// A per-head parameter of a rule (`slope = head_param(init: alibi, trainable: true)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadParam {
    pub name: String,
    pub init: ParamInit,
    pub trainable: bool,
}

/// A checked `rule NAME { ... }`: each part absent means "as the attention call says".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleDef {
    pub name: String,
    /// The score modification `s ↦ score(s, i, j, head, ...)`.
    pub score: Option<RuleExpr>,
    /// Which keys a query sees (a boolean expression).
    pub mask: Option<RuleExpr>,
    pub weights: Option<RuleWeights>,
    pub params: Vec<HeadParam>,
}
