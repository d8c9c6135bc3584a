//! The rules of an attention: how scores become weights, which keys a query sees, how
//! positions rotate queries and keys, and per-head output gains.
//!
//! Weight and mask rules are closed sets today; user-defined rules (rules written in the
//! spec) are meant to join them as further variants carrying their definition, so every
//! consumer's exhaustive match has to say what it does with them.

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
