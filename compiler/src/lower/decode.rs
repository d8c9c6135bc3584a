//! Decode steps against a key/value cache (`LowerOptions::decode`, described on
//! [`super::Decode`]): the new tokens' absolute positions, cached keys/values joined to the
//! new ones, and attention composed from primitives — the fused `Attention` op wants queries
//! and keys of one length, and a step has `seq` queries against `capacity + seq` keys. A rule
//! written in the spec is composed from its expression trees ([`rule_value`]) the same way.

use super::{hooks, Lowerer, Result, DECODE_PAST, PAST_KV};
use crate::ir::{
    AttentionMask, AttentionRule, AttentionWeights, BinaryOp, CmpOp, DType, Normaliser, ReduceOp,
    RuleExpr, RuleVar, UnaryOp, ValueId,
};
use crate::IrError;

/// Values every attention of a decode step shares, built once per graph.
#[derive(Clone, Copy)]
pub(crate) struct State {
    /// Cached positions `P`, f32 `[1]`.
    past: ValueId,
    /// Positions of the new tokens, `P .. P+seq`, i32 `[seq]`.
    pub q_pos: ValueId,
    /// Positions of the key slots: `0 .. capacity` (cached), then `P .. P+seq`, i32.
    pub k_pos: ValueId,
}

/// The error for a construct a cache cannot serve.
pub(crate) fn refuse(what: &str) -> IrError {
    IrError::Builder(format!("kv cache not supported for {what}; use --no-cache"))
}

fn capacity(l: &Lowerer) -> usize {
    l.opts.decode.map_or(0, |d| d.capacity)
}

/// The shared positions, declaring the [`DECODE_PAST`] input on first use.
pub(crate) fn state(l: &mut Lowerer) -> Result<State> {
    if let Some(s) = l.decode_state {
        return Ok(s);
    }
    let (t, cap) = (l.opts.seq, capacity(l));
    let past_i = l.g.input(DECODE_PAST, &[1], DType::I32);
    // Positions stay below ctx, so f32 holds them exactly and the casts back are exact.
    let past = l.g.cast(past_i, DType::F32)?;
    let new = l.g.iota(&[t], 0, DType::F32)?;
    let q_pos = l.g.add(new, past)?;
    let q_pos = l.g.cast(q_pos, DType::I32)?;
    // Slot j < capacity is position j; new slot capacity + i is position P + i.
    let slots = l.g.iota(&[cap + t], 0, DType::F32)?;
    let cap_c = l.g.scalar(cap as f32);
    let is_new = l.g.compare(CmpOp::Ge, slots, cap_c)?;
    let shift = l.g.sub(past, cap_c)?;
    let shift = l.g.mul(is_new, shift)?;
    let k_pos = l.g.add(slots, shift)?;
    let k_pos = l.g.cast(k_pos, DType::I32)?;
    let s = State { past, q_pos, k_pos };
    l.decode_state = Some(s);
    Ok(s)
}

/// Cached keys and values joined with the new ones along the sequence axis:
/// `[B, kv, capacity + seq, d]`, declaring the `{hp}.past_k` / `{hp}.past_v` inputs.
pub(crate) fn extend_kv(
    l: &mut Lowerer,
    hp: &str,
    k: ValueId,
    v: ValueId,
) -> Result<(ValueId, ValueId)> {
    if !l.cache_sites.insert(hp.to_string()) {
        return Err(refuse(&format!(
            "two attention calls sharing the hook point `{hp}`"
        )));
    }
    let s = l.g.shape(k).to_vec();
    let shape = [s[0], s[1], capacity(l), s[3]];
    let mut out = [k, v];
    for ((suffix, _), x) in PAST_KV.iter().zip(out.iter_mut()) {
        let past = l.g.input(&format!("{hp}{suffix}"), &shape, DType::F32);
        *x = l.g.concat(&[past, *x], 2)?;
    }
    Ok((out[0], out[1]))
}

/// Refuses rules a decode step cannot serve: masks whose answer for the new tokens depends
/// on more than the cache holds, rules with a mask of their own (whether one lets a query
/// see later keys — which a cache never holds — is not known here), rules reading segment
/// ids or the key count. Other score modifications and weights written in the spec are
/// served.
pub(crate) fn check_rule(rule: &AttentionRule) -> Result<()> {
    match rule.mask {
        AttentionMask::Causal | AttentionMask::SelfOnly => {}
        AttentionMask::Bidirectional => return Err(refuse("bidirectional attention")),
        AttentionMask::Document => return Err(refuse("the document mask")),
        AttentionMask::Turns | AttentionMask::TurnsKeepFirst => return Err(refuse("turn masks")),
        AttentionMask::Rule(_) => return Err(refuse("attention rules with a mask of their own")),
    }
    if rule.needs_segments() || rule.reads(RuleVar::QuerySeg) || rule.reads(RuleVar::KeySeg) {
        return Err(refuse("attention rules that read segment ids"));
    }
    // The key count is the whole sequence's: keys and values cached under a shorter one
    // would differ from a recomputation.
    if rule.reads(RuleVar::Keys) {
        return Err(refuse("attention rules that read the key count `n`"));
    }
    Ok(())
}

/// What a rule expression reads in a decode step, each broadcastable against the scores
/// `[B, kv, group, seq, S]` (query head = kv head · group + index in the group).
struct RuleInputs {
    /// Absolute query positions, f32 `[1,1,1,seq,1]`.
    query: ValueId,
    /// Absolute key positions of the slots, f32 `[1,1,1,1,S]`.
    key: ValueId,
    /// f32 `[1,kv,group,1,1]`.
    head: ValueId,
    kv_head: ValueId,
    /// Keys a query of the full sequence has: cached positions + seq, f32 `[1]`.
    keys: ValueId,
    /// The rule's parameters, `[H]` each, as `[1,kv,group,1,1]`.
    params: Vec<ValueId>,
}

fn rule_inputs(l: &mut Lowerer, params: &[ValueId], kv: usize, group: usize) -> Result<RuleInputs> {
    let st = state(l)?;
    let (t, s_len) = (l.opts.seq, capacity(l) + l.opts.seq);
    let query = l.g.cast(st.q_pos, DType::F32)?;
    let query = l.g.reshape(query, &[1, 1, 1, t, 1])?;
    let key = l.g.cast(st.k_pos, DType::F32)?;
    let key = l.g.reshape(key, &[1, 1, 1, 1, s_len])?;
    let kv_head = l.g.iota(&[1, kv, group, 1, 1], 1, DType::F32)?;
    let within = l.g.iota(&[1, kv, group, 1, 1], 2, DType::F32)?;
    let g = l.g.scalar(group as f32);
    let head = l.g.mul(kv_head, g)?;
    let head = l.g.add(head, within)?;
    let seq = l.g.scalar(t as f32);
    let keys = l.g.add(st.past, seq)?;
    let params = params
        .iter()
        .map(|&p| l.g.reshape(p, &[1, kv, group, 1, 1]))
        .collect::<std::result::Result<_, _>>()?;
    Ok(RuleInputs {
        query,
        key,
        head,
        kv_head,
        keys,
        params,
    })
}

/// Rule expression `e` as graph ops over the scores `score` (see [`RuleInputs`]).
fn rule_value(l: &mut Lowerer, e: &RuleExpr, score: ValueId, x: &RuleInputs) -> Result<ValueId> {
    let go = |l: &mut Lowerer, a: &RuleExpr| rule_value(l, a, score, x);
    Ok(match e {
        RuleExpr::Const(c) => l.g.scalar(*c),
        RuleExpr::Var(v) => match v {
            RuleVar::Score => score,
            RuleVar::QueryPos => x.query,
            RuleVar::KeyPos => x.key,
            RuleVar::Head => x.head,
            RuleVar::KvHead => x.kv_head,
            RuleVar::Keys => x.keys,
            RuleVar::QuerySeg | RuleVar::KeySeg => {
                return Err(refuse("attention rules that read segment ids"))
            }
        },
        RuleExpr::Param(k) => *x
            .params
            .get(*k)
            .ok_or_else(|| IrError::Builder(format!("rule parameter {k} is missing")))?,
        RuleExpr::Unary(op, a) => {
            let a = go(l, a)?;
            l.g.unary(*op, a)?
        }
        RuleExpr::Deriv(..) => {
            return Err(IrError::Builder(
                "a rule holds a derivative node (rules from the spec never do)".into(),
            ))
        }
        RuleExpr::Binary(op, a, c) => {
            let (a, c) = (go(l, a)?, go(l, c)?);
            l.g.binary(*op, a, c)?
        }
        RuleExpr::Compare(op, a, c) => {
            let (a, c) = (go(l, a)?, go(l, c)?);
            l.g.compare(*op, a, c)?
        }
        RuleExpr::Where(c, a, b) => {
            let (c, a, b) = (go(l, c)?, go(l, a)?, go(l, b)?);
            l.g.where_(c, a, b)?
        }
    })
}

/// The weights of a rule written in the spec over the scaled scores `p`
/// `[B,kv,group,seq,S]` and the visible slots `vis` `[seq,S]`, as the fused op computes
/// them: `h(s)·exp(f(s) − m) / (c·exp(−m) + Σ exp(f(s) − m))` over visible keys (`m` the
/// largest `f(s)`, and `log c` with a sink `c`), or `φ(s)` on visible keys; 0 elsewhere.
fn spec_rule_weights(
    l: &mut Lowerer,
    r: &AttentionRule,
    p: ValueId,
    vis: ValueId,
    params: &[ValueId],
    kv: usize,
    group: usize,
) -> Result<ValueId> {
    let x = rule_inputs(l, params, kv, group)?;
    let s = match &r.score {
        Some(e) => rule_value(l, e, p, &x)?,
        None => p,
    };
    let zero = l.g.scalar(0.0);
    match r.weights.normaliser() {
        Normaliser::Direct(phi) => {
            let w = rule_value(l, &phi, s, &x)?;
            l.g.where_(vis, w, zero)
        }
        Normaliser::Normalised {
            factor,
            exponent,
            sink,
        } => {
            let f = rule_value(l, &exponent, s, &x)?;
            let hidden = l.g.scalar(-1e30);
            let masked = l.g.where_(vis, f, hidden)?;
            let mut m = l.g.reduce(ReduceOp::Max, masked, 4, true)?;
            if sink > 0.0 {
                let log_c = l.g.scalar(sink.ln());
                m = l.g.binary(BinaryOp::Max, m, log_c)?;
            }
            let e = l.g.sub(masked, m)?;
            let e = l.g.unary(UnaryOp::Exp, e)?;
            let e = l.g.mul(e, vis)?;
            let mut z = l.g.reduce(ReduceOp::Sum, e, 4, true)?;
            if sink > 0.0 {
                let neg = l.g.unary(UnaryOp::Neg, m)?;
                let c = l.g.unary(UnaryOp::Exp, neg)?;
                let sink = l.g.scalar(sink);
                let c = l.g.mul(c, sink)?;
                z = l.g.add(z, c)?;
            }
            // A row that sees nothing gets 0, not 0/0.
            let some = l.g.compare(CmpOp::Gt, z, zero)?;
            let one = l.g.scalar(1.0);
            let z = l.g.where_(some, z, one)?;
            let h = rule_value(l, &factor, s, &x)?;
            let w = l.g.binary(BinaryOp::Div, e, z)?;
            l.g.mul(h, w)
        }
    }
}

/// f32 `[seq, capacity + seq]`: 1 where new token i may see key slot j.
fn visible(l: &mut Lowerer, mask: &AttentionMask) -> Result<ValueId> {
    let st = state(l)?;
    let (t, cap) = (l.opts.seq, capacity(l));
    let shape = [t, cap + t];
    let j = l.g.iota(&shape, 1, DType::F32)?;
    let i = l.g.iota(&shape, 0, DType::F32)?;
    let cap_c = l.g.scalar(cap as f32);
    let own = l.g.add(i, cap_c)?; // the slot of new token i
    if *mask == AttentionMask::SelfOnly {
        return l.g.compare(CmpOp::Eq, j, own);
    }
    // Causal: every filled cache slot, then the new tokens up to and including i.
    let cached = l.g.compare(CmpOp::Lt, j, st.past)?;
    let is_new = l.g.compare(CmpOp::Ge, j, cap_c)?;
    let upto = l.g.compare(CmpOp::Le, j, own)?;
    let fresh = l.g.mul(is_new, upto)?;
    l.g.add(cached, fresh)
}

/// Attention of the new queries `q [B,H,seq,d]` over the joined keys and values
/// `[B,kv,S,d]` with `rule`, the same function as the fused op: softmax (or signed
/// `sign(p)·softmax(|p|)`, or a rule written in the spec, whose parameters are `params`)
/// over visible keys. Query heads are grouped by their kv head instead of repeating k and
/// v, so no `[B,H,S,d]` copy is made.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    l: &mut Lowerer,
    hp: &str,
    r: &AttentionRule,
    q: ValueId,
    k: ValueId,
    v: ValueId,
    params: &[ValueId],
    drop: f64,
) -> Result<ValueId> {
    check_rule(r)?;
    let qs = l.g.shape(q).to_vec();
    let (b, h, t, d) = (qs[0], qs[1], qs[2], qs[3]);
    let kv = l.g.shape(k)[1];
    let s_len = l.g.shape(k)[2];
    let group = h / kv;
    // Head h = kv_head · group + i (the order `repeat_kv` makes), so this is a plain view.
    let qg = l.g.reshape(q, &[b, kv, group * t, d])?;
    let p = l.g.matmul_t(qg, k, false, true)?;
    let p = l.g.reshape(p, &[b, kv, group, t, s_len])?;
    let scale = l.g.scalar(r.scale);
    let p = l.g.mul(p, scale)?;
    let full = [b, h, t, s_len];
    if l.wants(&hooks::join(hp, hooks::attention::SCORES)) {
        let s = l.g.reshape(p, &full)?;
        l.hook(&hooks::join(hp, hooks::attention::SCORES), s);
    }
    let vis = visible(l, &r.mask)?;
    let w = if r.is_builtin() {
        let signed = matches!(r.weights, AttentionWeights::Signed);
        let mag = if signed { l.g.abs(p)? } else { p };
        // Hidden keys get exp(-1e30 - max) = 0, as in the fused op; a finite stand-in for −∞
        // keeps every backend's arithmetic NaN-free.
        let hidden = l.g.scalar(-1e30);
        let masked = l.g.where_(vis, mag, hidden)?;
        let mut w = l.g.softmax(masked, 4)?;
        if signed {
            let sign = l.g.sign(p)?;
            w = l.g.mul(w, sign)?;
        }
        w
    } else {
        spec_rule_weights(l, r, p, vis, params, kv, group)?
    };
    let mut w = l.g.reshape(w, &full)?;
    if l.wants(&hooks::join(hp, hooks::attention::PATTERN)) {
        l.hook(&hooks::join(hp, hooks::attention::PATTERN), w);
    }
    w = l.dropout(&format!("{hp}.weights"), drop, w)?;
    let w = l.g.reshape(w, &[b, kv, group * t, s_len])?;
    let y = l.g.matmul(w, v)?;
    l.g.reshape(y, &[b, h, t, d])
}
