//! Per-rotary-pair score decomposition for one head (METHODS §3.4, HoPE's main diagnostic):
//! the score `⟨R(m)q, R(n)k⟩ = Σ_i Re[q̃_i conj(k̃_i) e^{j(m−n)θ_i}]` split into its pairs,
//! each averaged over data against the relative distance Δ = m − n. A pair whose curve
//! oscillates with Δ carries position; a flat one (θ_i = 0, HoPE) carries only content.
//!
//! The frequency table and layout are read from the lowered graph (the rotary op applied to
//! the head's query), so RoPE, HoPE and explicit tables are handled alike.

use super::data::random_tokens;
use super::{hook, Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use weft_compiler::ir::{ConstValue, Graph, Op, RopeLayout};
use weft_compiler::lower::hooks;

/// What to measure.
#[derive(Clone, Debug)]
pub struct RopeComponentsConfig {
    pub layer: usize,
    pub head: usize,
    pub len: usize,
    pub samples: usize,
    pub seed: u64,
}

/// One head's per-pair score curves.
#[derive(Clone, Debug, Serialize)]
pub struct RopeComponents {
    pub layer: usize,
    pub head: usize,
    /// θ_i per pair (pair 0 is the highest frequency).
    pub freqs: Vec<f64>,
    /// `interleaved` or `half`.
    pub layout: String,
    /// The score scale (1/√d) applied to every component, so they sum to `attn.scores`.
    pub scale: f64,
    /// `components[i][Δ]`: mean scaled contribution of pair i at distance Δ = 0..len−1.
    pub components: Vec<Vec<f64>>,
    /// `total[Δ]` = Σ_i components[i][Δ]: the mean score at distance Δ.
    pub total: Vec<f64>,
}

/// The contribution `Re[q̃_i conj(k̃_i) e^{jΔθ_i}]` of every pair i for one query/key pair
/// (unrotated head vectors) at distance Δ = m − n; unscaled.
pub fn pair_contributions(
    q: &[f64],
    k: &[f64],
    freqs: &[f64],
    layout: RopeLayout,
    delta: f64,
) -> Vec<f64> {
    let d = q.len();
    freqs
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let (a, b) = layout.pair(i, d);
            let re = q[a] * k[a] + q[b] * k[b];
            let im = q[b] * k[a] - q[a] * k[b];
            let ang = delta * f;
            re * ang.cos() - im * ang.sin()
        })
        .collect()
}

/// The rotary table and layout applied to the value `name` (a query hook), from the graph.
pub fn rotary_of(g: &Graph, name: &str) -> Result<(Vec<f64>, RopeLayout), ProbeError> {
    let q = g
        .hook(name)
        .ok_or_else(|| ProbeError::Model(format!("the model has no hook point `{name}`")))?;
    for node in &g.nodes {
        if let Op::Rope {
            layout,
            inverse: false,
        } = node.op
        {
            if node.inputs[0] == q {
                if let Op::Const {
                    value: ConstValue::F32(f),
                } = &g.node(node.inputs[1]).op
                {
                    return Ok((f.iter().map(|&x| x as f64).collect(), layout));
                }
            }
        }
    }
    Err(ProbeError::Model(format!(
        "`{name}` is not rotated by a fixed table (no rotary position encoding on this attention)"
    )))
}

/// Decomposes one head's scores by rotary pair.
pub fn rope_components(
    model: &Model,
    cfg: &RopeComponentsConfig,
) -> Result<RopeComponents, ProbeError> {
    let (l, h, t) = (cfg.layer, cfg.head, cfg.len);
    if l >= model.layers() || t < 1 || cfg.samples == 0 {
        return Err(ProbeError::Config(format!(
            "rope_components: layer {l} of {}, len {t}, samples {}",
            model.layers(),
            cfg.samples
        )));
    }
    let (qn, kn) = (
        hooks::join(&hooks::attn(l), hooks::attention::Q),
        hooks::join(&hooks::attn(l), hooks::attention::K),
    );
    let g = model.lower(cfg.samples, t, &[])?;
    let (freqs, layout) = rotary_of(&g.graph, &qn)?;
    let tokens = random_tokens(
        &mut Rng::for_name(cfg.seed, "probe.rope_components"),
        cfg.samples,
        t,
        model.vocab(),
    );
    let out = model.run(&g, &tokens, &[qn.as_str(), kn.as_str()], &[])?;
    let (q, k) = (hook(&out, &qn)?, hook(&out, &kn)?);
    let (heads, kv, d) = (q.shape[1], k.shape[1], q.shape[3]);
    if h >= heads {
        return Err(ProbeError::Config(format!(
            "rope_components: head {h}, but layer {l} has {heads} heads"
        )));
    }
    let kh = h / (heads / kv).max(1);
    let (qv, kvv) = (q.to_f64_vec(), k.to_f64_vec());
    let scale = 1.0 / (d as f64).sqrt();
    let mut comp = vec![vec![0.0; t]; freqs.len()];
    for b in 0..cfg.samples {
        for m in 0..t {
            let qa = ((b * heads + h) * t + m) * d;
            for n in 0..=m {
                let ka = ((b * kv + kh) * t + n) * d;
                let c = pair_contributions(
                    &qv[qa..qa + d],
                    &kvv[ka..ka + d],
                    &freqs,
                    layout,
                    (m - n) as f64,
                );
                for (i, ci) in c.into_iter().enumerate() {
                    comp[i][m - n] += ci * scale;
                }
            }
        }
    }
    for row in comp.iter_mut() {
        for (delta, x) in row.iter_mut().enumerate() {
            *x /= ((t - delta) * cfg.samples) as f64;
        }
    }
    let total = (0..t)
        .map(|delta| comp.iter().map(|r| r[delta]).sum())
        .collect();
    let layout = match layout {
        RopeLayout::Interleaved => "interleaved",
        RopeLayout::Half => "half",
    };
    Ok(RopeComponents {
        layer: l,
        head: h,
        freqs,
        layout: layout.into(),
        scale,
        components: comp,
        total,
    })
}
