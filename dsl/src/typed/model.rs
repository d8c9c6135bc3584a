//! The settings of a `model { }` section, typed.

use super::tensor::NormKind;
use super::{choice, Args, ResolveError};
use crate::check::value::{CallValue, Value};
use crate::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

choice! {
    /// The absolute position embedding added to the token embedding (`position = ...`).
    AbsPosition {
        None = "none",
        /// A learned `[ctx, dim]` table.
        Learned = "learned",
    }
}

/// Every `MODEL_SETTINGS` entry of a checked model, typed (user constants stay in the
/// model's settings map, where block bodies read them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab: usize,
    pub dim: usize,
    pub heads: usize,
    pub layers: usize,
    pub ctx: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub position: AbsPosition,
    pub tie_embeddings: bool,
    pub final_norm: NormKind,
    /// `None`: the norm's own default.
    pub final_norm_eps: Option<f64>,
    pub init_std: f64,
}

impl ModelConfig {
    /// The typed settings from a checked model's settings map.
    pub fn from_settings(
        settings: &BTreeMap<String, Value>,
        span: Span,
    ) -> Result<Self, ResolveError> {
        let call = CallValue {
            name: "model".into(),
            args: settings.clone(),
            span,
        };
        let a = Args::section(&call, "a model section");
        Ok(ModelConfig {
            vocab: a.count("vocab")?,
            dim: a.count("dim")?,
            heads: a.count("heads")?,
            layers: a.count("layers")?,
            ctx: a.count("ctx")?,
            kv_heads: a.count("kv_heads")?,
            head_dim: a.count("head_dim")?,
            position: a.choice("position")?,
            tie_embeddings: a.bool("tie_embeddings")?,
            final_norm: a.choice("final_norm")?,
            final_norm_eps: a.opt("final_norm_eps", Args::float)?,
            init_std: a.float("init_std")?,
        })
    }
}
