//! Decode steps against a key/value cache (`LowerOptions::decode`, described on
//! [`super::Decode`]): the new tokens' absolute positions, cached keys/values joined to the
//! new ones, and attention composed from primitives — the fused `Attention` op wants queries
//! and keys of one length, and a step has `seq` queries against `capacity + seq` keys.

use super::{hooks, Lowerer, Result, DECODE_PAST, PAST_KV};
use crate::ir::{AttentionMask, AttentionRule, AttentionWeights, CmpOp, DType, ValueId};
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
/// on more than the cache holds, and rules written in the spec (decode composes attention
/// from primitives for the built-in rules only).
pub(crate) fn check_rule(rule: &AttentionRule) -> Result<()> {
    if !rule.is_builtin() {
        return Err(refuse("attention rules written in the spec"));
    }
    match rule.mask {
        AttentionMask::Causal | AttentionMask::SelfOnly => Ok(()),
        AttentionMask::Bidirectional => Err(refuse("bidirectional attention")),
        AttentionMask::Document => Err(refuse("the document mask")),
        AttentionMask::Turns | AttentionMask::TurnsKeepFirst => Err(refuse("turn masks")),
        AttentionMask::Rule(_) => Err(refuse("attention rules written in the spec")),
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
/// `sign(p)·softmax(|p|)`) over visible keys. Query heads are grouped by their kv head
/// instead of repeating k and v, so no `[B,H,S,d]` copy is made.
pub(crate) fn attention(
    l: &mut Lowerer,
    hp: &str,
    r: &AttentionRule,
    q: ValueId,
    k: ValueId,
    v: ValueId,
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
    let signed = matches!(r.weights, AttentionWeights::Signed);
    let mag = if signed { l.g.abs(p)? } else { p };
    let vis = visible(l, &r.mask)?;
    // Hidden keys get exp(-1e30 - max) = 0, as in the fused op; a finite stand-in for −∞
    // keeps every backend's arithmetic NaN-free.
    let hidden = l.g.scalar(-1e30);
    let masked = l.g.where_(vis, mag, hidden)?;
    let mut w = l.g.softmax(masked, 4)?;
    if signed {
        let sign = l.g.sign(p)?;
        w = l.g.mul(w, sign)?;
    }
    let mut w = l.g.reshape(w, &full)?;
    if l.wants(&hooks::join(hp, hooks::attention::PATTERN)) {
        l.hook(&hooks::join(hp, hooks::attention::PATTERN), w);
    }
    w = l.dropout(&format!("{hp}.weights"), drop, w)?;
    let w = l.g.reshape(w, &[b, kv, group * t, s_len])?;
    let y = l.g.matmul(w, v)?;
    l.g.reshape(y, &[b, h, t, d])
}
