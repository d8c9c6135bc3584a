//! Attention: projections, the position rule (RoPE/HoPE/tables, or a routed mixture of
//! bases for MoICE), the weight and mask rules, per-head gains (PEAR) and W_O.
//!
//! Hook points under `{layer}.attn`: `q`, `k`, `v` `[B,H,T,d]` (before rotation; k/v with
//! kv_heads), and, when captured, `scores` and `pattern` `[B,H,T,T]` and `result`
//! `[B,T,H,D]` (each head's output after its slice of W_O). In a decode step (`decode.rs`)
//! `T` is the new tokens and scores/pattern are `[B,H,T,capacity+T]`.

use super::frame::Frame;
use super::manifest::{AttentionSite, GainSite};
use super::{decode, hooks, rotary};
use super::{Lowerer, Result};
use crate::ir::{
    AttentionMask, AttentionRule, AttentionWeights, BinaryOp, CmpOp, ConstValue, DType, Init,
    Normaliser, Op, RopeLayout, RuleExpr, RuleVar, UnaryOp, ValueId,
};
use weft_dsl::typed::{
    Attention, Gain, Layout, MaskRule, ParamInit, PositionRule, RuleFn, RuleOp, RuleWeights,
    WeightRule,
};

/// Projections and rule of one attention call, shared by plain and routed (MoM) use.
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    pub fn of(l: &Lowerer, call: &Attention) -> Heads {
        let (heads, kv_heads) = (call.heads, call.kv_heads);
        let head_dim = if heads == l.cfg.heads {
            l.cfg.head_dim
        } else {
            l.cfg.dim / heads
        };
        Heads {
            heads,
            kv_heads,
            head_dim,
        }
    }
}

pub(crate) fn attention(
    l: &mut Lowerer,
    f: &mut Frame,
    site: &str,
    call: &Attention,
    x: ValueId,
) -> Result<ValueId> {
    let h = Heads::of(l, call);
    let (q, k, v) = project_qkv(l, site, &h, call.qkv_biased(), x)?;
    let y = core(l, f, site, call, &h, q, k, v)?;
    output(l, f, site, call, &h, call.bias, y)
}

/// The hook prefix of an attention call site: the frame's (iteration) prefix and the
/// site's last part (`attn`, `attn2`).
fn hook_prefix(f: &Frame, site: &str) -> String {
    hooks::join(&f.hook_prefix(), site.rsplit('.').next().unwrap_or("attn"))
}

/// `x @ W` reshaped to heads: `[B,T,D] → [B,n,T,d]`.
fn heads_of(
    l: &mut Lowerer,
    x: ValueId,
    w: ValueId,
    b: Option<ValueId>,
    n: usize,
    d: usize,
) -> Result<ValueId> {
    let (bs, t) = (l.opts.batch, l.opts.seq);
    let mut y = l.g.matmul(x, w)?;
    if let Some(b) = b {
        y = l.g.add(y, b)?;
    }
    let y = l.g.reshape(y, &[bs, t, n, d])?;
    l.g.permute(y, &[0, 2, 1, 3])
}

/// q `[B,H,T,d]`, k and v `[B,KV,T,d]`.
pub(crate) fn project_qkv(
    l: &mut Lowerer,
    site: &str,
    h: &Heads,
    bias: bool,
    x: ValueId,
) -> Result<(ValueId, ValueId, ValueId)> {
    let dm = l.cfg.dim;
    let proj = |l: &mut Lowerer, name: &str, n: usize| -> Result<ValueId> {
        let w = l.weight(&format!("{site}.w{name}"), &[dm, n * h.head_dim]);
        let b = bias.then(|| {
            l.param(
                &format!("{site}.b{name}"),
                &[n * h.head_dim],
                Init::Zeros,
                true,
            )
        });
        heads_of(l, x, w, b, n, h.head_dim)
    };
    let q = proj(l, "q", h.heads)?;
    let k = proj(l, "k", h.kv_heads)?;
    let v = proj(l, "v", h.kv_heads)?;
    Ok((q, k, v))
}

/// Repeats kv heads to match query heads (grouped-query attention).
fn repeat_kv(l: &mut Lowerer, x: ValueId, heads: usize) -> Result<ValueId> {
    let s = l.g.shape(x).to_vec();
    let (b, kv, t, d) = (s[0], s[1], s[2], s[3]);
    if kv == heads {
        return Ok(x);
    }
    let y = l.g.reshape(x, &[b, kv, 1, t, d])?;
    let y = l.g.broadcast_to(y, &[b, kv, heads / kv, t, d])?;
    l.g.reshape(y, &[b, heads, t, d])
}

/// The IR rule of an attention call: the `rule:` definition's parts where it has them, the
/// call's `weights:` (the prelude's definition of `softmax` or `signed`) and `mask:`
/// otherwise; a loss view's mask override wins over both.
fn rule(
    l: &mut Lowerer,
    site: &str,
    call: &Attention,
    h: &Heads,
    layer: usize,
) -> Result<(AttentionRule, Vec<ValueId>)> {
    let spec = l.spec;
    let def =
        match &call.rule {
            Some(name) => Some(spec.model.rule(name).ok_or_else(|| {
                crate::IrError::Builder(format!("unknown attention rule `{name}`"))
            })?),
            None => None,
        };
    // Per-head parameters: `{site}.rule.NAME` `[H]`, frozen unless the rule trains them.
    let params: Vec<ValueId> = def
        .map_or(&[][..], |d| &d.params[..])
        .iter()
        .map(|p| {
            let init = Init::Values {
                values: head_values(p.init, h.heads),
            };
            l.param(
                &format!("{site}.rule.{}", p.name),
                &[h.heads],
                init,
                p.trainable,
            )
        })
        .collect();
    let conv = RuleConv { layer };
    let weights = match def.and_then(|d| d.weights.as_ref()) {
        Some(w) => AttentionWeights::of(conv.weights(w)),
        None => weight_rule(call.weights),
    };
    let mask = match (l.mask_override, def.and_then(|d| d.mask.as_ref())) {
        (Some(m), _) => mask_rule(m),
        (None, Some(e)) => AttentionMask::Rule(conv.expr(e)),
        (None, None) => mask_rule(call.mask),
    };
    let rule = AttentionRule {
        weights,
        mask,
        scale: 1.0 / (h.head_dim as f32).sqrt(),
        score: def.and_then(|d| d.score.as_ref()).map(|e| conv.expr(e)),
        group: (h.heads / h.kv_heads.max(1)).max(1),
        params: params.len(),
    };
    Ok((rule, params))
}

/// Turns a checked rule's expressions into the IR's: the layer index becomes a constant,
/// per-head parameters the op's parameter inputs.
struct RuleConv {
    layer: usize,
}

impl RuleConv {
    fn weights(&self, w: &RuleWeights) -> Normaliser {
        match w {
            RuleWeights::Normalised {
                factor,
                exponent,
                sink,
            } => Normaliser::Normalised {
                factor: factor
                    .as_ref()
                    .map_or(RuleExpr::Const(1.0), |f| self.expr(f)),
                exponent: self.expr(exponent),
                sink: *sink as f32,
            },
            RuleWeights::Direct(e) => Normaliser::Direct(self.expr(e)),
        }
    }

    fn expr(&self, e: &weft_dsl::typed::RuleExpr) -> RuleExpr {
        use weft_dsl::typed::{RuleExpr as E, RuleVar as V};
        let bx = |x: &E| Box::new(self.expr(x));
        match e {
            E::Num(v) => RuleExpr::Const(*v as f32),
            E::Var(v) => RuleExpr::Var(match v {
                V::Score => RuleVar::Score,
                V::QueryPos => RuleVar::QueryPos,
                V::KeyPos => RuleVar::KeyPos,
                V::Head => RuleVar::Head,
                V::KvHead => RuleVar::KvHead,
                V::Keys => RuleVar::Keys,
                V::QuerySeg => RuleVar::QuerySeg,
                V::KeySeg => RuleVar::KeySeg,
                V::Layer => return RuleExpr::Const(self.layer as f32),
            }),
            E::Param(i) => RuleExpr::Param(*i),
            E::Neg(a) => RuleExpr::Unary(UnaryOp::Neg, bx(a)),
            // Conditions are 0/1: `!c = 1 − c`, `a && b = a·b`, `a || b = max(a, b)`.
            E::Not(a) => RuleExpr::Binary(BinaryOp::Sub, Box::new(RuleExpr::Const(1.0)), bx(a)),
            E::Bin(op, a, c) => {
                let (a, c) = (bx(a), bx(c));
                match op {
                    RuleOp::Add => RuleExpr::Binary(BinaryOp::Add, a, c),
                    RuleOp::Sub => RuleExpr::Binary(BinaryOp::Sub, a, c),
                    RuleOp::Mul => RuleExpr::Binary(BinaryOp::Mul, a, c),
                    RuleOp::Div => RuleExpr::Binary(BinaryOp::Div, a, c),
                    RuleOp::And => RuleExpr::Binary(BinaryOp::Mul, a, c),
                    RuleOp::Or => RuleExpr::Binary(BinaryOp::Max, a, c),
                    RuleOp::Lt => RuleExpr::Compare(CmpOp::Lt, a, c),
                    RuleOp::Le => RuleExpr::Compare(CmpOp::Le, a, c),
                    RuleOp::Gt => RuleExpr::Compare(CmpOp::Gt, a, c),
                    RuleOp::Ge => RuleExpr::Compare(CmpOp::Ge, a, c),
                    RuleOp::Eq => RuleExpr::Compare(CmpOp::Eq, a, c),
                    RuleOp::Ne => RuleExpr::Compare(CmpOp::Ne, a, c),
                }
            }
            E::Call(f, args) => {
                let arg =
                    |k: usize| Box::new(args.get(k).map_or(RuleExpr::Const(0.0), |x| self.expr(x)));
                let un = |op| RuleExpr::Unary(op, arg(0));
                match f {
                    RuleFn::Exp => un(UnaryOp::Exp),
                    RuleFn::Log => un(UnaryOp::Log),
                    RuleFn::Tanh => un(UnaryOp::Tanh),
                    RuleFn::Sigmoid => un(UnaryOp::Sigmoid),
                    RuleFn::Abs => un(UnaryOp::Abs),
                    RuleFn::Sign => un(UnaryOp::Sign),
                    RuleFn::Sqrt => un(UnaryOp::Sqrt),
                    RuleFn::Min => RuleExpr::Binary(BinaryOp::Min, arg(0), arg(1)),
                    RuleFn::Max => RuleExpr::Binary(BinaryOp::Max, arg(0), arg(1)),
                    RuleFn::Where => RuleExpr::Where(arg(0), arg(1), arg(2)),
                }
            }
        }
    }
}

/// A per-head parameter's values: ALiBi's slopes `2^(−8(h+1)/H)` or a constant.
pub(crate) fn head_values(init: ParamInit, heads: usize) -> Vec<f32> {
    (0..heads)
        .map(|h| match init {
            ParamInit::Alibi => (2f64).powf(-8.0 * (h + 1) as f64 / heads as f64) as f32,
            ParamInit::Value(v) => v as f32,
        })
        .collect()
}

/// The IR's weight rule for the spec's.
pub(crate) fn weight_rule(w: WeightRule) -> AttentionWeights {
    match w {
        WeightRule::Softmax => AttentionWeights::Softmax,
        WeightRule::Signed => AttentionWeights::Signed,
    }
}

/// The IR's mask rule for the spec's.
pub(crate) fn mask_rule(m: MaskRule) -> AttentionMask {
    match m {
        MaskRule::Causal => AttentionMask::Causal,
        MaskRule::Document => AttentionMask::Document,
        MaskRule::Bidirectional => AttentionMask::Bidirectional,
        MaskRule::Turns => AttentionMask::Turns,
        MaskRule::TurnsKeepFirst => AttentionMask::TurnsKeepFirst,
        MaskRule::SelfOnly => AttentionMask::SelfOnly,
    }
}

/// The id stream a rule needs: `segments` (documents, and a spec's rule reading `seg_i` or
/// `seg_j`) or `turns`.
fn segment_input(l: &mut Lowerer, rule: &AttentionRule) -> Option<ValueId> {
    let (b, t) = (l.opts.batch, l.opts.seq);
    match rule.mask {
        AttentionMask::Turns | AttentionMask::TurnsKeepFirst => {
            Some(l.g.input("turns", &[b, t], DType::I32))
        }
        AttentionMask::Document
        | AttentionMask::Causal
        | AttentionMask::Bidirectional
        | AttentionMask::SelfOnly
        | AttentionMask::Rule(_) => rule
            .needs_segments()
            .then(|| l.g.input("segments", &[b, t], DType::I32)),
    }
}

/// What an attention's queries attend over, built once per call: the keys and values, the
/// positions of queries and keys (for rotations), and the op's extra inputs (segment ids,
/// rule parameters). The one place lowering tells training and prefill — the step's own
/// tokens, kv heads repeated to the query heads — from a decode step, whose keys are the
/// cache joined with the new tokens' (`decode.rs`).
struct Keys {
    k: ValueId,
    v: ValueId,
    q_pos: ValueId,
    k_pos: ValueId,
    extra: Vec<ValueId>,
    cached: bool,
}

impl Keys {
    fn of(
        l: &mut Lowerer,
        hp: &str,
        h: &Heads,
        r: &AttentionRule,
        rule_params: Vec<ValueId>,
        k: ValueId,
        v: ValueId,
    ) -> Result<Keys> {
        if l.opts.decode.is_some() {
            decode::check_rule(l, r, h.heads)?;
            // Kv heads stay unrepeated: the step's attention groups the query heads instead.
            let (k, v) = decode::extend_kv(l, hp, k, v)?;
            let s = decode::state(l)?;
            return Ok(Keys {
                k,
                v,
                q_pos: s.q_pos,
                k_pos: s.k_pos,
                extra: rule_params,
                cached: true,
            });
        }
        let (k, v) = (repeat_kv(l, k, h.heads)?, repeat_kv(l, v, h.heads)?);
        let pos = l.g.iota(&[l.opts.seq], 0, DType::I32)?;
        let extra = segment_input(l, r).into_iter().chain(rule_params).collect();
        Ok(Keys {
            k,
            v,
            q_pos: pos,
            k_pos: pos,
            extra,
            cached: false,
        })
    }
}

/// Rotation, weights and mixing: `[B,H,T,d]` head outputs (before W_O). One function for
/// training, prefill and decode steps alike; what differs lives in [`Keys`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn core(
    l: &mut Lowerer,
    f: &Frame,
    site: &str,
    call: &Attention,
    h: &Heads,
    q: ValueId,
    k: ValueId,
    v: ValueId,
) -> Result<ValueId> {
    let hp = hook_prefix(f, site);
    l.hook(&hooks::join(&hp, hooks::attention::Q), q);
    l.hook(&hooks::join(&hp, hooks::attention::K), k);
    l.hook(&hooks::join(&hp, hooks::attention::V), v);
    let (r, rule_params) = rule(l, site, call, h, f.layer)?;
    l.manifest.attention.push(AttentionSite {
        layer: f.layer,
        hook: format!("{}{hp}", l.view_prefix),
        params: site.to_string(),
        weights: call.weights,
        mask: l.mask_override.unwrap_or(call.mask),
        rule: call.rule.clone(),
        position: call.position.clone(),
        bases: None,
        heads: h.heads,
        kv_heads: h.kv_heads,
        head_dim: h.head_dim,
        pool: None,
    });
    let keys = Keys::of(l, &hp, h, &r, rule_params, k, v)?;
    let pos = &call.position;
    let layout = match pos.layout() {
        Layout::Interleaved => RopeLayout::Interleaved,
        Layout::Half => RopeLayout::Half,
    };
    let drop = if l.opts.dropout { call.dropout } else { 0.0 };
    let Some(tables) = rotary::tables(pos, h.head_dim) else {
        return weights(l, &hp, &r, q, keys.k, &keys, drop);
    };
    let mut rotated = Vec::new();
    for table in &tables {
        let freqs =
            l.g.constant(ConstValue::F32(table.clone()), &[h.head_dim / 2])?;
        let qr = l.g.rope(q, freqs, keys.q_pos, layout)?;
        let kr = l.g.rope(keys.k, freqs, keys.k_pos, layout)?;
        rotated.push((qr, kr));
    }
    let (top_k, balance) = match pos {
        PositionRule::Rope {
            router: Some(_),
            top_k,
            balance,
            ..
        } => (*top_k, *balance),
        PositionRule::Rope {
            router: None,
            top_k,
            balance,
            ..
        } if tables.len() > 1 => (*top_k, *balance),
        PositionRule::Rope { .. }
        | PositionRule::Hope { .. }
        | PositionRule::Freqs { .. }
        | PositionRule::Nope => {
            let (qr, kr) = rotated[0];
            return weights(l, &hp, &r, qr, kr, &keys, drop);
        }
    };
    if let (Some(a), PositionRule::Rope { bases, .. }) = (l.manifest.attention.last_mut(), pos) {
        a.bases = bases.clone();
    }
    let mix = Mixture { top_k, balance };
    mixture(l, site, &hp, mix, h, &r, &rotated, &keys, drop)
}

/// Attention weights and their application to the values of `keys`, with queries `q` and
/// (rotated) keys `k`: the fused op, or in a decode step the op composed from primitives
/// (`decode::attention`). The pattern is materialised only if captured or when attention
/// dropout (`drop` > 0, training only) must act on the weights.
fn weights(
    l: &mut Lowerer,
    hp: &str,
    r: &AttentionRule,
    q: ValueId,
    k: ValueId,
    keys: &Keys,
    drop: f64,
) -> Result<ValueId> {
    let (v, extra) = (keys.v, &keys.extra[..]);
    if keys.cached {
        return decode::attention(l, hp, r, q, k, v, extra, drop);
    }
    if l.wants(&hooks::join(hp, hooks::attention::SCORES)) {
        let s = l.g.matmul_t(q, k, false, true)?;
        let scale = l.g.scalar(r.scale);
        let s = l.g.mul(s, scale)?;
        l.hook(&hooks::join(hp, hooks::attention::SCORES), s);
    }
    let ins: Vec<ValueId> = [q, k, v].into_iter().chain(extra.iter().copied()).collect();
    if l.wants(&hooks::join(hp, hooks::attention::PATTERN)) || drop > 0.0 {
        let w = l.g.apply(Op::AttentionPattern(r.clone()), &ins)?;
        l.hook(&hooks::join(hp, hooks::attention::PATTERN), w);
        let w = l.dropout(&format!("{hp}.weights"), drop, w)?;
        return l.g.matmul(w, v);
    }
    l.g.apply(Op::Attention(r.clone()), &ins)
}

/// The routing settings of a MoICE mixture.
#[derive(Clone, Copy)]
struct Mixture {
    /// Bases kept per token and head (`None`: all).
    top_k: Option<usize>,
    /// Weight of the router's balance loss.
    balance: f64,
}

/// MoICE: one attention per rotary base, mixed per (token, head) by a SwiGLU router on the
/// query rotated with the first base; top-k renormalised; Switch balance loss.
#[allow(clippy::too_many_arguments)]
fn mixture(
    l: &mut Lowerer,
    site: &str,
    hp: &str,
    pos: Mixture,
    h: &Heads,
    r: &AttentionRule,
    rotated: &[(ValueId, ValueId)],
    keys: &Keys,
    drop: f64,
) -> Result<ValueId> {
    let n = rotated.len();
    let d = h.head_dim;
    let w1 = l.weight(&format!("{site}.router.w1"), &[d, n]);
    let w3 = l.weight(&format!("{site}.router.w3"), &[d, n]);
    let w2 = l.weight(&format!("{site}.router.w2"), &[n, n]);
    let u = rotated[0].0; // [B,H,T,d]
    let a = l.g.matmul(u, w1)?;
    let a = l.g.silu(a)?;
    let b = l.g.matmul(u, w3)?;
    let ab = l.g.mul(a, b)?;
    let logits = l.g.matmul(ab, w2)?; // [B,H,T,N]
    l.hook(&format!("{hp}.router.logits"), logits);
    let probs = l.g.softmax(logits, 3)?;
    let k = pos.top_k.unwrap_or(n).clamp(1, n);
    let chosen = l.g.topk_mask(logits, k, 3)?;
    l.hook(&format!("{hp}.router.choice"), chosen);
    let kept = l.g.mul(probs, chosen)?;
    let norm = l.g.sum(kept, 3, true)?;
    let mix = l.g.div(kept, norm)?; // [B,H,T,N]
    let mut y: Option<ValueId> = None;
    for (e, &(qr, kr)) in rotated.iter().enumerate() {
        let ye = weights(l, &hooks::moice_base(hp, e), r, qr, kr, keys, drop)?;
        let we = l.g.slice(mix, 3, e, e + 1)?; // [B,H,T,1]
        let term = l.g.mul(ye, we)?;
        y = Some(match y {
            Some(acc) => l.g.add(acc, term)?,
            None => term,
        });
    }
    let balance = pos.balance;
    if balance > 0.0 {
        let rows = l.g.shape(probs).iter().take(3).product::<usize>();
        let p = l.g.reshape(probs, &[rows, n])?;
        let f = l.g.reshape(chosen, &[rows, n])?;
        let aux = switch_balance(l, p, f, n)?;
        l.aux
            .push((format!("{site}.router.balance"), balance as f32, aux));
    }
    Ok(y.expect("at least one base"))
}

/// Switch load balance `N · Σ_e mean(f_e) · mean(P_e)` over rows `[R, N]`.
pub(crate) fn switch_balance(l: &mut Lowerer, p: ValueId, f: ValueId, n: usize) -> Result<ValueId> {
    let pm = l.g.mean(p, 0, false)?;
    let fm = l.g.mean(f, 0, false)?;
    let fm = l.g.stop_gradient(fm)?;
    let prod = l.g.mul(pm, fm)?;
    let s = l.g.sum(prod, 0, false)?;
    let k = l.g.scalar(n as f32);
    l.g.mul(s, k)
}

/// Per-head gains, W_O and the per-head `result` hook.
pub(crate) fn output(
    l: &mut Lowerer,
    f: &Frame,
    site: &str,
    call: &Attention,
    h: &Heads,
    bias: bool,
    y: ValueId,
) -> Result<ValueId> {
    let (b, t, dm) = (l.opts.batch, l.opts.seq, l.cfg.dim);
    let hp = hook_prefix(f, site);
    let mut y = y;
    let trainable_gain = match call.gain {
        Gain::None => None,
        Gain::Fixed => Some(false),
        Gain::Trainable => Some(true),
    };
    if let Some(trainable) = trainable_gain {
        let gain = l.param(&format!("{site}.gain"), &[h.heads], Init::Ones, trainable);
        let g4 = l.g.reshape(gain, &[1, h.heads, 1, 1])?;
        // The label names the node in IR dumps; `fold_gains` finds it through the manifest.
        l.g.set_label(Some(format!("{site}.gain_apply")));
        y = l.g.mul(y, g4)?;
        l.g.set_label(None);
        l.manifest.gains.push(GainSite {
            layer: f.layer,
            gain: format!("{site}.gain"),
            wo: format!("{site}.wo"),
            heads: h.heads,
            trainable,
            apply: y,
        });
    }
    let wo = l.weight(&format!("{site}.wo"), &[h.heads * h.head_dim, dm]);
    let mut out = if l.wants(&hooks::join(&hp, hooks::attention::RESULT)) {
        let wo_h = l.g.reshape(wo, &[h.heads, h.head_dim, dm])?;
        let per_head = l.g.matmul(y, wo_h)?; // [B,H,T,D]
        let per_head = l.g.permute(per_head, &[0, 2, 1, 3])?; // [B,T,H,D]
        l.hook(&hooks::join(&hp, hooks::attention::RESULT), per_head);
        l.g.sum(per_head, 2, false)?
    } else {
        let z = l.g.permute(y, &[0, 2, 1, 3])?;
        let z = l.g.reshape(z, &[b, t, h.heads * h.head_dim])?;
        l.g.matmul(z, wo)?
    };
    if bias {
        let bo = l.param(&format!("{site}.bo"), &[dm], Init::Zeros, true);
        out = l.g.add(out, bo)?;
    }
    l.hook(&hooks::join(&hp, hooks::attention::OUT), out);
    Ok(out)
}
