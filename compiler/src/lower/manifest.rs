//! What lowering built, besides the graph: every attention, gain, route and pool site with
//! its layer, hook prefix, parameter prefix, rules and sizes. Consumers that need to know
//! "which attention has which bases" or "which route goes into which pool" read this, never
//! the spec's syntax tree or the graph's labels.

use crate::ir::ValueId;
use serde::Serialize;
use weft_dsl::typed::{MaskRule, NormKind, PositionRule, Router, WeightRule};

/// The sites of one lowered graph, in lowering order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Manifest {
    /// One entry per layer index: the block it runs and its `repeat` iterations.
    pub layers: Vec<LayerSite>,
    pub attention: Vec<AttentionSite>,
    pub gains: Vec<GainSite>,
    /// One entry per route call site (not per iteration).
    pub routes: Vec<RouteSite>,
    /// Norms inside layers (not the final norm), one per call site.
    pub norms: Vec<NormSite>,
}

/// A norm call site of a layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NormSite {
    pub layer: usize,
    /// Parameter prefix `layers.{i}.norm{n}` (`.weight`, and `.bias` for layer_norm).
    pub params: String,
    pub kind: NormKind,
    pub eps: f64,
}

/// One layer of the schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerSite {
    pub block: String,
    /// Iterations of the block's `repeat` (1 without one).
    pub iterations: usize,
}

/// One attention: its rules, sizes and names. Inside `repeat`, one entry per iteration
/// (hook prefixes differ; parameters are shared).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttentionSite {
    pub layer: usize,
    /// Hook prefix: `layers.{i}[.iter{j}].attn[K]`, under `view.NAME.` in a loss view.
    pub hook: String,
    /// Parameter prefix: `layers.{i}.attn[K]`, or the first module's `layers.{i}.POOL.0.attn`
    /// for an attention pool.
    pub params: String,
    pub weights: WeightRule,
    /// The mask this attention applied (a loss view's override, if any).
    pub mask: MaskRule,
    /// The spec's attention rule (`attention(rule: NAME)`), whose parts replace `weights`
    /// and `mask` where it defines them.
    pub rule: Option<String>,
    pub position: PositionRule,
    /// MoICE: the rotary bases mixed per token and head (hooks `{hook}.router.*`).
    pub bases: Option<Vec<f64>>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The pool of a routed attention.
    pub pool: Option<String>,
}

/// Per-head output gains (PEAR) of one attention: `out = Σ_h gain[h] · head_h @ W_O[h]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GainSite {
    pub layer: usize,
    /// The gain parameter `[heads]`.
    pub gain: String,
    /// The output projection `[heads · head_dim, dim]` it multiplies into.
    pub wo: String,
    pub heads: usize,
    pub trainable: bool,
    /// The graph value `heads_out · gain` (the multiplication folding removes).
    #[serde(skip)]
    pub apply: ValueId,
}

/// A `route` call site of a layer (MoM), shared by every iteration of its `repeat`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteSite {
    pub layer: usize,
    /// `r` in `layers.{i}.route{r}`: the call's index in its layer.
    pub index: usize,
    /// Hook prefix of each iteration, in order (`layers.{i}[.iter{j}].route{r}`).
    pub hooks: Vec<String>,
    /// Parameter prefix `layers.{i}.route{r}` (the router's weights).
    pub params: String,
    pub pool: String,
    /// Modules in the pool.
    pub modules: usize,
    /// Whether the last choice is SKIP.
    pub skip: bool,
    pub top_k: usize,
    pub router: Router,
    /// The builtin each module of the pool runs (`attention`, `mlp`, ...).
    pub module: String,
}

impl Manifest {
    /// The attention whose hooks start with `hook` (e.g. `layers.0.attn`).
    pub fn attention_at(&self, hook: &str) -> Option<&AttentionSite> {
        self.attention.iter().find(|a| a.hook == hook)
    }

    /// The route call sites of layer `layer`, by index.
    pub fn routes_of(&self, layer: usize) -> impl Iterator<Item = &RouteSite> {
        self.routes.iter().filter(move |r| r.layer == layer)
    }
}
