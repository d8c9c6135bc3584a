//! A direct CPU forward pass for the plain Llama-family spec the importers write (RMSNorm,
//! RoPE half layout, grouped-query attention, SwiGLU, optional q/k/v(/o) biases), with a
//! key/value cache: the fast path `weft generate` takes on the CPU backend.
//!
//! The graph interpreter is the reference and stays the path for every other spec (a
//! MoICE router, PEAR gains, hooks, interventions). This engine exists for speed: it keeps
//! the weights resident in the `[out, in]` row layout (the interpreter copies every
//! parameter into each run, 0.5 GB per token for a 135M model), runs one-token steps as
//! row-parallel dot products (AVX2/FMA when the CPU has it) and multi-token prefills as
//! GEMMs. [`LlamaCpu::for_spec`] only accepts a spec whose lowered graph equals the one the
//! importer generates for the same settings, so it never runs a model it does not compute
//! exactly; tests/gguf_import.rs checks its logits against the interpreter's.

use super::spec::{config_of, spec_text};
use super::{Arch, AttnBias, HfConfig, HfError, Result};
use crate::{ParamStore, Tensor};
use rayon::prelude::*;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::Checked;

struct Layer {
    norm1: Vec<f32>,
    /// q, k and v projections stacked: `[(heads + 2·kv)·head_dim, dim]`.
    qkv: Vec<f32>,
    bqkv: Option<Vec<f32>>,
    /// `[dim, heads·head_dim]`.
    wo: Vec<f32>,
    bo: Option<Vec<f32>>,
    norm2: Vec<f32>,
    /// Gate and up projections stacked: `[2·hidden, dim]`.
    gate_up: Vec<f32>,
    /// `[dim, hidden]`.
    down: Vec<f32>,
}

/// The model's weights in row (`[out, in]`) layout.
pub struct LlamaCpu {
    c: HfConfig,
    /// `[vocab, dim]`: the embedding, and the unembedding when tied.
    embed: Vec<f32>,
    /// `[vocab, dim]` when untied.
    unembed: Option<Vec<f32>>,
    final_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// RoPE frequency of pair i, as weft's lowering computes it (f64, then f32).
    freqs: Vec<f32>,
}

/// Keys and values of the positions seen so far, per layer `[kv_heads, capacity, head_dim]`.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    cap: usize,
}

impl KvCache {
    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Which logits rows a forward returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rows {
    /// Only the last new token's (generation).
    Last,
    /// Every new token's.
    All,
}

fn param<'a>(w: &'a ParamStore, name: &str, shape: &[usize]) -> Result<&'a [f32]> {
    let t: &Tensor = w
        .get(name)
        .ok_or_else(|| HfError::new(format!("missing parameter `{name}`")))?;
    if t.shape != shape {
        return Err(HfError::new(format!(
            "parameter `{name}`: expected shape {shape:?}, found {:?}",
            t.shape
        )));
    }
    match &t.data {
        crate::tensor::TensorData::F32(v) => Ok(v),
        _ => Err(HfError::new(format!("parameter `{name}` is not f32"))),
    }
}

/// The importer's settings for `spec` when the spec is exactly what the importer writes for
/// them (compared as lowered graphs, so formatting and names do not matter); `None` for any
/// other spec.
pub fn plain_llama(spec: &Checked, params: &ParamStore) -> Option<HfConfig> {
    let hidden = params.get("layers.0.mlp.w_gate")?.shape.get(1).copied()?;
    let bias = match (
        params.contains_key("layers.0.attn.bq"),
        params.contains_key("layers.0.attn.bo"),
    ) {
        (true, true) => AttnBias::All,
        (true, false) => AttnBias::Qkv,
        _ => AttnBias::None,
    };
    let c = config_of(spec, Arch::Llama, hidden, bias).ok()?;
    let text = spec_text(&c, &spec.model.name, "");
    let regenerated = weft_dsl::check_source(&text).ok()?;
    let opts = LowerOptions::new(1, 2);
    let (a, b) = (lower(spec, &opts).ok()?, lower(&regenerated, &opts).ok()?);
    let same = a.nodes == b.nodes
        && a.params == b.params
        && a.inputs == b.inputs
        && a.outputs == b.outputs
        && a.hooks == b.hooks;
    same.then_some(c)
}

impl LlamaCpu {
    /// The engine for `spec` with `params`, or `None` when the spec is not the plain Llama
    /// the importers write (the caller then uses the graph).
    pub fn for_spec(spec: &Checked, params: &ParamStore) -> Option<Result<LlamaCpu>> {
        plain_llama(spec, params).map(|c| LlamaCpu::new(c, params))
    }

    /// Copies `params` (weft names and `[in, out]` layouts) into row layout.
    pub fn new(c: HfConfig, w: &ParamStore) -> Result<LlamaCpu> {
        let (d, hd, h, kv, f) = (c.dim, c.head_dim, c.heads, c.kv_heads, c.hidden);
        let rows = |name: &str, i: usize, o: usize| -> Result<Vec<f32>> {
            Ok(transpose(param(w, name, &[i, o])?, i, o))
        };
        let mut layers = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            let p = |s: &str| format!("layers.{l}.{s}");
            let mut qkv = rows(&p("attn.wq"), d, h * hd)?;
            qkv.extend(rows(&p("attn.wk"), d, kv * hd)?);
            qkv.extend(rows(&p("attn.wv"), d, kv * hd)?);
            let bqkv = match c.attn_bias {
                AttnBias::None => None,
                _ => {
                    let mut b = param(w, &p("attn.bq"), &[h * hd])?.to_vec();
                    b.extend_from_slice(param(w, &p("attn.bk"), &[kv * hd])?);
                    b.extend_from_slice(param(w, &p("attn.bv"), &[kv * hd])?);
                    Some(b)
                }
            };
            let bo = match c.attn_bias {
                AttnBias::All => Some(param(w, &p("attn.bo"), &[d])?.to_vec()),
                _ => None,
            };
            let mut gate_up = rows(&p("mlp.w_gate"), d, f)?;
            gate_up.extend(rows(&p("mlp.w_up"), d, f)?);
            layers.push(Layer {
                norm1: param(w, &p("norm1.weight"), &[d])?.to_vec(),
                qkv,
                bqkv,
                wo: rows(&p("attn.wo"), h * hd, d)?,
                bo,
                norm2: param(w, &p("norm2.weight"), &[d])?.to_vec(),
                gate_up,
                down: rows(&p("mlp.w_down"), f, d)?,
            });
        }
        let unembed = if c.tie_embeddings {
            None
        } else {
            Some(rows("unembed.weight", d, c.vocab)?)
        };
        let freqs = (0..hd / 2)
            .map(|i| c.rope_theta.powf(-2.0 * i as f64 / hd as f64) as f32)
            .collect();
        Ok(LlamaCpu {
            embed: param(w, "embed.weight", &[c.vocab, d])?.to_vec(),
            unembed,
            final_norm: param(w, "final_norm.weight", &[d])?.to_vec(),
            layers,
            freqs,
            c,
        })
    }

    /// The settings the engine runs.
    pub fn config(&self) -> &HfConfig {
        &self.c
    }

    /// An empty cache for up to `capacity` positions.
    pub fn cache(&self, capacity: usize) -> KvCache {
        let n = self.c.kv_heads * capacity * self.c.head_dim;
        KvCache {
            k: (0..self.c.layers).map(|_| vec![0.0; n]).collect(),
            v: (0..self.c.layers).map(|_| vec![0.0; n]).collect(),
            len: 0,
            cap: capacity,
        }
    }

    /// Runs `tokens` at positions `cache.len() ..`, appends their keys/values, and returns
    /// the logits of the last token (`[vocab]`) or of every token (`[T, vocab]`).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, rows: Rows) -> Result<Vec<f32>> {
        let c = &self.c;
        let (t, d, hd) = (tokens.len(), c.dim, c.head_dim);
        if t == 0 {
            return Err(HfError::new("forward of no tokens"));
        }
        if cache.len + t > cache.cap {
            return Err(HfError::new(format!(
                "{} cached + {t} new positions exceed the cache capacity {}",
                cache.len, cache.cap
            )));
        }
        let mut x = Vec::with_capacity(t * d);
        for &tok in tokens {
            let i = tok as usize;
            if i >= c.vocab {
                return Err(HfError::new(format!(
                    "token {tok} is outside the vocabulary 0 .. {}",
                    c.vocab
                )));
            }
            x.extend_from_slice(&self.embed[i * d..(i + 1) * d]);
        }
        let (qd, kvd) = (c.heads * hd, c.kv_heads * hd);
        let nqkv = qd + 2 * kvd;
        let mut h = vec![0.0; t * d];
        let mut qkv = vec![0.0; t * nqkv];
        let mut att = vec![0.0; t * qd];
        let mut proj = vec![0.0; t * d];
        let mut gu = vec![0.0; t * 2 * c.hidden];
        let mut act = vec![0.0; t * c.hidden];
        // (cos, sin) of each new position's pair angles, shared by every head and layer.
        let rotations: Vec<(f32, f32)> = (0..t)
            .flat_map(|i| {
                let pos = (cache.len + i) as f32;
                self.freqs.iter().map(move |&f| {
                    let (s, c) = (pos * f).sin_cos();
                    (c, s)
                })
            })
            .collect();
        for (l, ly) in self.layers.iter().enumerate() {
            rms_norm(&x, &ly.norm1, c.eps as f32, &mut h);
            linear(&h, t, &ly.qkv, nqkv, d, &mut qkv);
            if let Some(b) = &ly.bqkv {
                add_rows(&mut qkv, b);
            }
            for (i, row) in qkv.chunks_mut(nqkv).enumerate() {
                let (q, rest) = row.split_at_mut(qd);
                let rot = &rotations[i * hd / 2..(i + 1) * hd / 2];
                for head in q.chunks_mut(hd).chain(rest[..kvd].chunks_mut(hd)) {
                    rope_half(head, rot);
                }
                for g in 0..c.kv_heads {
                    let at = (g * cache.cap + cache.len + i) * hd;
                    cache.k[l][at..at + hd].copy_from_slice(&rest[g * hd..(g + 1) * hd]);
                    cache.v[l][at..at + hd]
                        .copy_from_slice(&rest[kvd + g * hd..kvd + (g + 1) * hd]);
                }
            }
            self.attention(&qkv, t, cache, l, &mut att);
            linear(&att, t, &ly.wo, d, qd, &mut proj);
            if let Some(b) = &ly.bo {
                add_rows(&mut proj, b);
            }
            x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
            rms_norm(&x, &ly.norm2, c.eps as f32, &mut h);
            linear(&h, t, &ly.gate_up, 2 * c.hidden, d, &mut gu);
            for (a, g) in act.chunks_mut(c.hidden).zip(gu.chunks(2 * c.hidden)) {
                let (gate, up) = g.split_at(c.hidden);
                for ((o, &gv), &uv) in a.iter_mut().zip(gate).zip(up) {
                    *o = gv / (1.0 + (-gv).exp()) * uv;
                }
            }
            linear(&act, t, &ly.down, d, c.hidden, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
        }
        cache.len += t;
        let keep = match rows {
            Rows::Last => t - 1..t,
            Rows::All => 0..t,
        };
        let xs = &x[keep.start * d..keep.end * d];
        let mut normed = vec![0.0; xs.len()];
        rms_norm(xs, &self.final_norm, c.eps as f32, &mut normed);
        let unembed = self.unembed.as_deref().unwrap_or(&self.embed);
        let mut logits = vec![0.0; keep.len() * c.vocab];
        linear(&normed, keep.len(), unembed, c.vocab, d, &mut logits);
        Ok(logits)
    }

    /// Causal grouped-query attention of the `t` new queries (in `qkv`) over the cache,
    /// which already holds their own keys/values; writes `[t, heads·head_dim]`.
    fn attention(&self, qkv: &[f32], t: usize, cache: &KvCache, l: usize, out: &mut [f32]) {
        let c = &self.c;
        let (hd, qd) = (c.head_dim, c.heads * c.head_dim);
        let nqkv = qd + 2 * c.kv_heads * hd;
        let group = c.heads / c.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let past = cache.len;
        if t > SMALL_BATCH {
            return self.attention_gemm(qkv, t, cache, l, out);
        }
        let per_head: Vec<Vec<f32>> = (0..c.heads)
            .into_par_iter()
            .map(|head| {
                let g = head / group;
                let ks = &cache.k[l][g * cache.cap * hd..];
                let vs = &cache.v[l][g * cache.cap * hd..];
                let mut o = vec![0.0f32; t * hd];
                let mut s = vec![0.0f32; past + t];
                for i in 0..t {
                    let q = &qkv[i * nqkv + head * hd..i * nqkv + (head + 1) * hd];
                    let n = past + i + 1;
                    let mut max = f32::NEG_INFINITY;
                    for (j, sj) in s[..n].iter_mut().enumerate() {
                        *sj = dot(q, &ks[j * hd..(j + 1) * hd]) * scale;
                        max = max.max(*sj);
                    }
                    let mut sum = 0.0;
                    for sj in &mut s[..n] {
                        *sj = (*sj - max).exp();
                        sum += *sj;
                    }
                    let oi = &mut o[i * hd..(i + 1) * hd];
                    for (j, &p) in s[..n].iter().enumerate() {
                        let w = p / sum;
                        for (a, &v) in oi.iter_mut().zip(&vs[j * hd..(j + 1) * hd]) {
                            *a += w * v;
                        }
                    }
                }
                o
            })
            .collect();
        for (head, o) in per_head.iter().enumerate() {
            for i in 0..t {
                out[i * qd + head * hd..i * qd + (head + 1) * hd]
                    .copy_from_slice(&o[i * hd..(i + 1) * hd]);
            }
        }
    }
}

impl LlamaCpu {
    /// [`LlamaCpu::attention`] for a long prefill: per head, scores and the weighted sum of
    /// values as two GEMMs (threaded inside), the causal mask and softmax in between. It
    /// computes the masked half of the scores too, but at GEMM speed that beats a loop.
    fn attention_gemm(&self, qkv: &[f32], t: usize, cache: &KvCache, l: usize, out: &mut [f32]) {
        let c = &self.c;
        let (hd, qd) = (c.head_dim, c.heads * c.head_dim);
        let nqkv = qd + 2 * c.kv_heads * hd;
        let group = c.heads / c.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let past = cache.len;
        let n = past + t;
        let mut s = vec![0.0f32; t * n];
        for head in 0..c.heads {
            let g = head / group;
            let ks = &cache.k[l][g * cache.cap * hd..(g * cache.cap + n) * hd];
            let vs = &cache.v[l][g * cache.cap * hd..(g * cache.cap + n) * hd];
            let q = &qkv[head * hd..];
            // SAFETY (both calls): q is t×hd with row stride nqkv inside qkv (the last row
            // ends at (t−1)·nqkv + (head+1)·hd ≤ t·nqkv); kᵀ is hd×n read from the n×hd
            // rows of ks; s is t×n; v is n×hd; out's head block is t×hd with row stride qd.
            unsafe {
                matrixmultiply::sgemm(
                    t,
                    hd,
                    n,
                    scale,
                    q.as_ptr(),
                    nqkv as isize,
                    1,
                    ks.as_ptr(),
                    1,
                    hd as isize,
                    0.0,
                    s.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
            s.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
                let visible = past + i + 1;
                let max = row[..visible]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let mut sum = 0.0;
                for x in &mut row[..visible] {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                let inv = 1.0 / sum;
                row[..visible].iter_mut().for_each(|x| *x *= inv);
                row[visible..].iter_mut().for_each(|x| *x = 0.0);
            });
            unsafe {
                matrixmultiply::sgemm(
                    t,
                    n,
                    hd,
                    1.0,
                    s.as_ptr(),
                    n as isize,
                    1,
                    vs.as_ptr(),
                    hd as isize,
                    1,
                    0.0,
                    out[head * hd..].as_mut_ptr(),
                    qd as isize,
                    1,
                );
            }
        }
    }
}

/// `[r, c]` row-major → `[c, r]` row-major.
pub(crate) fn transpose(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    // Blocked so both sides stay in cache for the 49152×576 embedding-sized matrices.
    const B: usize = 64;
    for i0 in (0..r).step_by(B) {
        for j0 in (0..c).step_by(B) {
            for i in i0..(i0 + B).min(r) {
                for j in j0..(j0 + B).min(c) {
                    out[j * r + i] = x[i * c + j];
                }
            }
        }
    }
    out
}

/// `out[i] = x[i] / rms(x[i]) · g` per row of `g.len()`.
fn rms_norm(x: &[f32], g: &[f32], eps: f32, out: &mut [f32]) {
    let d = g.len();
    for (xr, or) in x.chunks(d).zip(out.chunks_mut(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(g) {
            *o = v * r * w;
        }
    }
}

fn add_rows(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(a, v)| *a += v);
    }
}

/// Rotates pairs (i, i + d/2) by the angles whose (cos, sin) are `rot[i]` (weft's
/// `layout: half`).
fn rope_half(x: &mut [f32], rot: &[(f32, f32)]) {
    let half = x.len() / 2;
    for (i, &(c, s)) in rot.iter().enumerate() {
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * c - b * s;
        x[i + half] = a * s + b * c;
    }
}

/// Up to this many tokens, [`linear`] runs dot products rather than a GEMM.
const SMALL_BATCH: usize = 16;

/// `out[t, n] = x[t, k] · w[n, k]ᵀ`: row-parallel dot products for one token (the weights
/// are read once, which is what bounds a decode step), a GEMM for more.
fn linear(x: &[f32], t: usize, w: &[f32], n: usize, k: usize, out: &mut [f32]) {
    debug_assert_eq!((x.len(), w.len(), out.len()), (t * k, n * k, t * n));
    let dot = dot_fn();
    if t == 1 {
        out.par_iter_mut()
            .enumerate()
            .with_min_len(64)
            .for_each(|(r, o)| *o = dot(&w[r * k..(r + 1) * k], x));
        return;
    }
    if t <= SMALL_BATCH {
        // A GEMM would pack (copy) all of w for a handful of rows; instead each weight row is
        // read once, from cache, for every token.
        let mut tr = vec![0.0; n * t];
        tr.par_chunks_mut(t)
            .enumerate()
            .with_min_len(64)
            .for_each(|(r, o)| {
                let wr = &w[r * k..(r + 1) * k];
                for (i, y) in o.iter_mut().enumerate() {
                    *y = dot(wr, &x[i * k..(i + 1) * k]);
                }
            });
        for (r, row) in tr.chunks(t).enumerate() {
            for (i, &y) in row.iter().enumerate() {
                out[i * n + r] = y;
            }
        }
        return;
    }
    // SAFETY: x is t×k with strides (k, 1); wᵀ is k×n read with strides (1, k) from the
    // n×k row-major w; out is t×n with strides (n, 1); the lengths were asserted above and
    // `out` is a distinct mutable borrow.
    unsafe {
        matrixmultiply::sgemm(
            t,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_fn()(a, b)
}

/// A dot product of two equal-length slices.
type DotFn = fn(&[f32], &[f32]) -> f32;

/// The fastest dot product this CPU runs (chosen once).
fn dot_fn() -> DotFn {
    static CHOICE: std::sync::OnceLock<DotFn> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return |a, b| {
                // SAFETY: the CPU was just checked for AVX2 and FMA.
                unsafe { x86::dot_avx2(a, b) }
            };
        }
        dot_portable
    })
}

/// Eight independent partial sums so the compiler can vectorise without reassociating.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, a), b) in acc.iter_mut().zip(x).zip(y) {
            *s += a * b;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 32 floats per iteration in four FMA chains.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                *s = _mm256_fmadd_ps(x, y, *s);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let lo = _mm256_castps256_ps128(s);
        let hi = _mm256_extractf128_ps(s, 1);
        let q = _mm_add_ps(lo, hi);
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
        let mut sum = _mm_cvtss_f32(q);
        while i < n {
            sum += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_products_agree_with_a_plain_sum() {
        for n in [0usize, 1, 7, 8, 31, 32, 33, 100, 577] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.91).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            for got in [dot(&a, &b), dot_portable(&a, &b)] {
                assert!((got as f64 - want).abs() < 1e-4, "n={n}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn linear_gemv_and_gemm_agree_with_a_plain_product() {
        let (t, n, k) = (SMALL_BATCH + 3, 70, 45);
        let x: Vec<f32> = (0..t * k).map(|i| (i as f32 * 0.13).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.29).cos()).collect();
        let mut all = vec![0.0; t * n];
        linear(&x, t, &w, n, k, &mut all);
        let mut few = vec![0.0; 3 * n];
        linear(&x[..3 * k], 3, &w, n, k, &mut few);
        for r in 0..t {
            let mut one = vec![0.0; n];
            linear(&x[r * k..(r + 1) * k], 1, &w, n, k, &mut one);
            for j in 0..n {
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[j * k + i]).sum();
                assert!((one[j] - want).abs() < 1e-4 && (all[r * n + j] - want).abs() < 1e-4);
                if r < 3 {
                    assert!((few[r * n + j] - want).abs() < 1e-4);
                }
            }
        }
    }
}
