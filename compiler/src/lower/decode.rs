//! Decode steps against a key/value cache (`LowerOptions::decode`, described on
//! [`super::Decode`]): the new tokens' absolute positions, cached keys/values joined to the
//! new ones, and attention composed from primitives — the fused `Attention` op wants queries
//! and keys of one length, and a step has `seq` queries against `capacity + seq` keys. A rule
//! written in the spec is composed from its expression trees the same way
//! ([`crate::ir::rule_graph`]).

use super::{hooks, Lowerer, Result, DECODE_PAST, PAST_KV};
use crate::ir::rule_graph::{self, Place};
use crate::ir::{
    AttentionMask, AttentionRule, AttentionWeights, CmpOp, DType, RuleEnv, RuleVar, ValueId,
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

/// Refuses rules a decode step with `heads` query heads cannot serve: masks whose answer
/// for the new tokens depends on more than the cache holds (bidirectional, document and turn
/// masks, and a mask of the spec's own that lets a query see a later key — see
/// [`check_causal`]), rules reading segment ids or the key count. Other score modifications
/// and weights written in the spec, and causal masks of the spec's own, are served.
pub(crate) fn check_rule(l: &Lowerer, rule: &AttentionRule, heads: usize) -> Result<()> {
    match rule.mask {
        AttentionMask::Causal | AttentionMask::SelfOnly | AttentionMask::Rule(_) => {}
        AttentionMask::Bidirectional => return Err(refuse("bidirectional attention")),
        AttentionMask::Document => return Err(refuse("the document mask")),
        AttentionMask::Turns | AttentionMask::TurnsKeepFirst => return Err(refuse("turn masks")),
    }
    if rule.needs_segments() || rule.reads(RuleVar::QuerySeg) || rule.reads(RuleVar::KeySeg) {
        return Err(refuse("attention rules that read segment ids"));
    }
    // The key count is the whole sequence's: keys and values cached under a shorter one
    // would differ from a recomputation.
    if rule.reads(RuleVar::Keys) {
        return Err(refuse("attention rules that read the key count `n`"));
    }
    check_causal(&rule.mask, capacity(l) + l.opts.seq, heads, rule.group)
}

/// Refuses a mask of the spec's own that lets some query see a later key at positions below
/// `positions` (all a graph of this capacity reaches), checked at every such pair and, if
/// the mask reads them, every head: a cache never holds later tokens' keys, and the keys it
/// holds were computed without them, so a step would differ from recomputing the sequence.
fn check_causal(mask: &AttentionMask, positions: usize, heads: usize, group: usize) -> Result<()> {
    let AttentionMask::Rule(e) = mask else {
        return Ok(());
    };
    let heads = if mask.reads_place() { heads } else { 1 };
    for head in 0..heads {
        for i in 0..positions {
            for j in i + 1..positions {
                let env = RuleEnv::<f32> {
                    score: 0.0,
                    i,
                    j,
                    head,
                    kv_head: head / group.max(1),
                    keys: positions,
                    seg_i: 0,
                    seg_j: 0,
                    params: &[],
                };
                if e.eval(&env) != 0.0 {
                    return Err(refuse(&format!(
                        "an attention rule whose mask lets a query see a later key (query {i} \
                         sees key {j} in head {head}; a cache holds no later keys)"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What a rule expression reads in a decode step, each broadcastable against the scores
/// `[B, kv, group, seq, S]` (query head = kv head · group + index in the group).
fn place(l: &mut Lowerer, params: &[ValueId], kv: usize, group: usize) -> Result<Place> {
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
    Ok(Place {
        query,
        key,
        head,
        kv_head,
        keys,
        segments: None,
        params,
    })
}

/// f32 `[1, kv | 1, group | 1, seq, capacity + seq]`: 1 where new token i may see key slot
/// j — a filled slot (cached `j < P`, or new) whose position the mask lets it see.
fn visible(l: &mut Lowerer, mask: &AttentionMask, at: &Place) -> Result<ValueId> {
    let st = state(l)?;
    let (t, cap) = (l.opts.seq, capacity(l));
    let slots = l.g.iota(&[1, 1, 1, 1, cap + t], 4, DType::F32)?;
    let cap_c = l.g.scalar(cap as f32);
    let cached = l.g.compare(CmpOp::Lt, slots, st.past)?;
    let is_new = l.g.compare(CmpOp::Ge, slots, cap_c)?;
    let filled = l.g.add(cached, is_new)?;
    let seen = rule_graph::visible(&mut l.g, mask, at)?;
    l.g.mul(filled, seen)
}

/// Attention of the new queries `q [B,H,seq,d]` over the joined keys and values
/// `[B,kv,S,d]` with `rule`, the same function as the fused op: softmax (or signed
/// `sign(p)·softmax(|p|)`, or a rule written in the spec, whose parameters are `params`)
/// over visible keys. Query heads are grouped by their kv head instead of repeating k and
/// v, so no `[B,H,S,d]` copy is made. The rule passed [`check_rule`].
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
    let at = place(l, params, kv, group)?;
    let vis = visible(l, &r.mask, &at)?;
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
        rule_graph::weights(&mut l.g, r, p, vis, &at, 4)?.w
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
