//! Lowering: a checked spec ([`weft_dsl::Checked`]) becomes an IR [`Graph`].
//!
//! The model is unrolled layer by layer from the schedule; each block body is evaluated
//! statement by statement with `x` bound to the residual stream. Every node records the span
//! of the spec text that produced it, so a shape error points back at the spec.
//!
//! Parameter names (documented in docs/parameters.md): `embed.weight`, `pos_embed.weight`,
//! `layers.{i}.{attn|mlp|normK|POOL.m|routeR}.…`, `final_norm.{weight,bias}`,
//! `unembed.weight`. Linear weights are stored `[in, out]` (`y = x @ W`).

mod attention;
mod block;
mod call;
mod decode;
mod ffn;
mod frame;
pub mod glob;
pub mod hooks;
mod loss;
pub mod manifest;
pub mod rotary;
mod route;
mod route_sparse;

use crate::ir::{DType, Graph, GraphBuilder, Init, ValueId};
use crate::IrError;
pub use manifest::Manifest;
use std::collections::BTreeSet;
use weft_dsl::builtins::Kind;
use weft_dsl::typed::{AbsPosition, LossView, MaskRule, ModelConfig, Norm, Resolved, TensorCall};
use weft_dsl::{Checked, Span};

/// What to lower and how.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    pub batch: usize,
    pub seq: usize,
    /// Build the training objective (`loss` output and the `targets` input).
    pub with_loss: bool,
    /// Expensive hook points to materialise (`layers.*.attn.pattern`, `...attn.scores`,
    /// `...attn.result`); globs allowed. Cheap hook points are always present.
    pub capture: Vec<String>,
    /// Globs over parameter names that train; the rest are frozen.
    pub trainable: Vec<String>,
    /// Training mode: `dropout(...)` and `attention(dropout: p)` become multiplications by
    /// mask inputs (see [`dropout_inputs`]); otherwise dropout is the identity.
    pub dropout: bool,
    /// Incremental decoding against a key/value cache: `seq` is then the number of *new*
    /// tokens, which follow the cached ones (see [`Decode`]).
    pub decode: Option<Decode>,
}

impl LowerOptions {
    pub fn new(batch: usize, seq: usize) -> Self {
        LowerOptions {
            batch,
            seq,
            with_loss: false,
            capture: Vec::new(),
            trainable: vec!["*".into()],
            dropout: false,
            decode: None,
        }
    }

    /// A decode step: `seq` new tokens after up to `capacity` cached positions.
    pub fn decode(batch: usize, seq: usize, capacity: usize) -> Self {
        LowerOptions {
            decode: Some(Decode { capacity }),
            ..LowerOptions::new(batch, seq)
        }
    }
}

/// A decode-step graph (`LowerOptions::decode`) runs only the new tokens. Its extra inputs:
///
/// - [`DECODE_PAST`] (i32 `[1]`): how many positions are cached (`P`); the new tokens sit at
///   absolute positions `P .. P+seq` (for RoPE/HoPE/MoICE rotations and learned positions).
/// - for every attention, `{hook}.past_k` and `{hook}.past_v` (f32 `[B, kv_heads, capacity, d]`,
///   where `{hook}` is the attention's hook prefix, e.g. `layers.0.attn`): the keys and values
///   of positions `0 .. P` in slots `0 .. P`, as the hooks `{hook}.k` / `{hook}.v` report them
///   (before rotation); slots from `P` on are ignored.
///
/// Its hooks `{hook}.k` / `{hook}.v` are the new tokens' keys and values `[B, kv_heads, seq, d]`,
/// which the caller writes into slots `P .. P+seq`. The capacity is fixed so one compiled graph
/// serves every step. Rules that need later or sequence-wide context (bidirectional, document
/// and turn masks) are refused with an error saying "kv cache not supported".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decode {
    /// Cache slots per attention: the largest number of past positions a step may see.
    pub capacity: usize,
}

/// Input of a decode-step graph holding the number of cached positions.
pub const DECODE_PAST: &str = "decode.past";

/// Suffixes of a decode-step graph's cache inputs (`{hook}.past_k`, `{hook}.past_v`); the
/// hooks `{hook}.k` and `{hook}.v` give the values to cache.
pub const PAST_KV: [(&str, &str); 2] = [(".past_k", ".k"), (".past_v", ".v")];

/// The dropout mask inputs of a graph lowered with `dropout: true`, with their drop
/// probability. Each is named `dropout[p].SITE`; the trainer fills it with `0` (dropped) or
/// `1/(1−p)` (kept), drawn from the run's seeded stream, so runs stay deterministic and every
/// backend runs dropout without an RNG op.
pub fn dropout_inputs(g: &Graph) -> Vec<(String, f32)> {
    g.inputs
        .iter()
        .filter_map(|i| {
            let rest = i.name.strip_prefix("dropout[")?;
            let p = rest.split(']').next()?.parse().ok()?;
            Some((i.name.clone(), p))
        })
        .collect()
}

/// Errors of lowering: IR errors carry the spec span of the node that failed.
pub type Result<T> = std::result::Result<T, IrError>;

/// Lowers the model (and, with `with_loss`, its objective) to one graph with outputs
/// `logits` `[B,T,V]`, and `loss` plus one `aux.NAME` per auxiliary loss. With
/// `opts.decode`, a decode step over the new tokens only (see [`Decode`]).
pub fn lower(spec: &Checked, opts: &LowerOptions) -> Result<Graph> {
    lower_with_manifest(spec, opts).map(|l| l.graph)
}

/// A lowered graph and the [`Manifest`] of the sites lowering built in it.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub graph: Graph,
    pub manifest: Manifest,
}

/// [`lower`], keeping the manifest: every attention, gain and route site with its layer,
/// hook prefix, parameter names and rules (`manifest.gains[_].apply` are values of `graph`).
pub fn lower_with_manifest(spec: &Checked, opts: &LowerOptions) -> Result<Lowered> {
    let mut l = Lowerer::new(spec, opts)?;
    let logits = l.forward(None)?;
    l.g.output("logits", logits);
    if opts.with_loss {
        let terms = loss::terms(spec);
        let total = loss::build(&mut l, logits, &terms)?;
        l.g.output("loss", total);
    }
    let manifest = std::mem::take(&mut l.manifest);
    Ok(Lowered {
        graph: l.g.finish()?,
        manifest,
    })
}

/// The manifest of `spec`'s model (lowered at one token: the sites do not depend on shape).
pub fn manifest(spec: &Checked) -> Result<Manifest> {
    lower_with_manifest(spec, &LowerOptions::new(1, 1)).map(|l| l.manifest)
}

/// Shared state while lowering one graph.
pub(crate) struct Lowerer<'a> {
    pub spec: &'a Checked,
    pub opts: &'a LowerOptions,
    /// The model's settings, typed.
    pub cfg: ModelConfig,
    pub g: GraphBuilder,
    /// Auxiliary losses: (name, weight, scalar value).
    pub aux: Vec<(String, f32, ValueId)>,
    /// The sites built so far.
    pub manifest: Manifest,
    /// Which attention-mask override the current forward pass uses (a loss "view").
    pub mask_override: Option<MaskRule>,
    /// Hook-name prefix of the current forward pass ("" for the main view).
    pub view_prefix: String,
    hooks_seen: BTreeSet<String>,
    /// Positions shared by a decode step's attentions, built on first use.
    pub(crate) decode_state: Option<decode::State>,
    /// Hook prefixes that already have cache inputs (two attentions may not share one).
    pub(crate) cache_sites: BTreeSet<String>,
}

impl<'a> Lowerer<'a> {
    fn new(spec: &'a Checked, opts: &'a LowerOptions) -> Result<Self> {
        let cfg = spec.model.config.clone();
        Ok(Lowerer {
            spec,
            opts,
            cfg,
            g: GraphBuilder::new(),
            aux: Vec::new(),
            manifest: Manifest::default(),
            mask_override: None,
            view_prefix: String::new(),
            hooks_seen: BTreeSet::new(),
            decode_state: None,
            cache_sites: BTreeSet::new(),
        })
    }

    /// A parameter, trainable if a `trainable` glob matches and `allowed`.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init, allowed: bool) -> ValueId {
        let trainable = allowed && glob::any_match(&self.opts.trainable, name);
        self.g.param(name, shape, init, trainable)
    }

    /// A weight matrix with the model's init std.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> ValueId {
        let std = self.cfg.init_std as f32;
        self.param(name, shape, Init::Normal { std }, true)
    }

    /// Records a hook point (names are prefixed by the current view).
    pub fn hook(&mut self, name: &str, v: ValueId) {
        let full = format!("{}{name}", self.view_prefix);
        if self.hooks_seen.insert(full.clone()) {
            self.g.hook(&full, v);
        }
    }

    /// Whether an expensive hook point was asked for.
    pub fn wants(&self, name: &str) -> bool {
        let full = format!("{}{name}", self.view_prefix);
        self.opts.capture.iter().any(|p| glob::glob_match(p, &full))
    }

    /// `x · mask` for a dropout site in training mode; `x` otherwise.
    pub fn dropout(&mut self, site: &str, p: f64, x: ValueId) -> Result<ValueId> {
        if !self.opts.dropout || p <= 0.0 {
            return Ok(x);
        }
        let shape = self.g.shape(x).to_vec();
        let mask = self
            .g
            .input(&format!("dropout[{p}].{site}"), &shape, DType::F32);
        self.g.mul(x, mask)
    }

    pub fn at(&mut self, span: Span) {
        self.g.set_span(Some(span));
    }

    /// Token ids `[B,T]`.
    pub fn tokens(&mut self) -> ValueId {
        let (b, t) = (self.opts.batch, self.opts.seq);
        self.g.input("tokens", &[b, t], DType::I32)
    }

    /// The whole forward pass: embeddings, every scheduled layer, final norm, unembedding.
    pub fn forward(&mut self, view: Option<LossView>) -> Result<ValueId> {
        self.mask_override = view.and_then(LossView::mask);
        self.view_prefix = view
            .map(|v| hooks::view_prefix(v.name()))
            .unwrap_or_default();
        let model = &self.spec.model;
        self.at(model.span);
        let (b, t, d, v) = (self.opts.batch, self.opts.seq, self.cfg.dim, self.cfg.vocab);
        let ctx = self.cfg.ctx;
        // A decode step's positions run up to capacity + seq − 1.
        let past = self.opts.decode.map_or(0, |dec| dec.capacity);
        if past + t > ctx {
            return Err(IrError::Builder(format!(
                "sequence length {} exceeds the model's ctx = {ctx}",
                past + t
            )));
        }
        if self.opts.decode.is_some() && self.opts.with_loss {
            return Err(IrError::Builder(
                "a decode step has no training objective (with_loss)".into(),
            ));
        }
        let tokens = self.tokens();
        let table = self.weight("embed.weight", &[v, d]);
        let mut x = self.g.gather(table, tokens)?;
        if self.cfg.position == AbsPosition::Learned {
            let pos = self.weight("pos_embed.weight", &[ctx, d]);
            let pos = if self.opts.decode.is_some() {
                let at = decode::state(self)?.q_pos;
                self.g.gather(pos, at)?
            } else {
                self.g.slice(pos, 0, 0, t)?
            };
            x = self.g.add(x, pos)?;
        }
        self.hook("embed", x);
        for i in 0..model.layers.len() {
            x = block::layer(self, i, x)?;
        }
        self.at(model.span);
        let final_norm = self.final_norm()?;
        x = ffn::norm(self, &final_norm, "final_norm", x)?;
        self.hook("final_norm", x);
        let logits = if self.cfg.tie_embeddings {
            let table = self.weight("embed.weight", &[v, d]);
            self.g.matmul_t(x, table, false, true)?
        } else {
            let w = self.weight("unembed.weight", &[d, v]);
            self.g.matmul(x, w)?
        };
        debug_assert_eq!(self.g.shape(logits), [b, t, v]);
        self.hook("logits", logits);
        Ok(logits)
    }

    /// The model's final norm: the norm builtin's own eps (from the builtins table) unless
    /// `final_norm_eps` sets one.
    fn final_norm(&self) -> Result<Norm> {
        let src = format!("{}(x)", self.cfg.final_norm.name());
        let call = self
            .spec
            .model
            .call_source(&src, Kind::Tensor)
            .map_err(|d| IrError::Builder(format!("resolving `{src}`: {d:?}")))?;
        match TensorCall::from_call(&call).map_err(unresolved)? {
            TensorCall::Norm(mut n) => {
                if let Some(eps) = self.cfg.final_norm_eps {
                    n.eps = eps;
                }
                Ok(n)
            }
            other => Err(IrError::Builder(format!(
                "the final norm resolved to `{}`",
                other.name()
            ))),
        }
    }
}

/// A checked value that does not fit its type (a checker bug, or a spec edited after
/// checking) as a lowering error.
pub(crate) fn unresolved(e: weft_dsl::typed::ResolveError) -> IrError {
    IrError::Builder(format!("lowering a checked spec: {e}"))
}
