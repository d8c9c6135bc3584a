//! The weft spec equivalent to a HF config, and the way back (a spec's HF config, for
//! export).

use super::{Arch, AttnBias, HfConfig, HfError, Result};
use weft_dsl::typed::{NormKind, PositionRule};
use weft_dsl::Checked;

/// A weft float literal (always with a fraction or an exponent: `1e-5`, `10000.0`).
fn float(x: f64) -> String {
    format!("{x:?}")
}

/// The spec text for `c`, in canonical (`weft fmt`) form. `source` goes into the header
/// comment (where it was imported from).
pub fn spec_text(c: &HfConfig, name: &str, source: &str) -> String {
    let eps = float(c.eps);
    let (header, settings, block) = match c.arch {
        Arch::Gpt2 => (
            "GPT-2 (pre-norm LayerNorm, learned positions, tied embeddings)",
            format!(
                "position = learned\n  final_norm = layer_norm\n  final_norm_eps = {eps}\n  \
                 tie_embeddings = true"
            ),
            format!(
                "    x = x + attention(layer_norm(x, eps: {eps}), bias: true, position: nope)\n    \
                 x = x + mlp(layer_norm(x, eps: {eps}), hidden: {}, activation: gelu)",
                c.hidden
            ),
        ),
        Arch::Llama => {
            let mut s = format!("kv_heads = {}", c.kv_heads);
            if c.head_dim * c.heads != c.dim {
                s.push_str(&format!("\n  head_dim = {}", c.head_dim));
            }
            s.push_str(&format!("\n  final_norm_eps = {eps}"));
            s.push_str(&format!("\n  tie_embeddings = {}", c.tie_embeddings));
            (
                "Llama family (RMSNorm, RoPE half layout, SwiGLU, grouped-query attention)",
                s,
                format!(
                    "    x = x + attention(rms_norm(x, eps: {eps}), position: rope(base: {}, layout: half){})\n    \
                     x = x + swiglu(rms_norm(x, eps: {eps}), hidden: {})",
                    float(c.rope_theta),
                    match c.attn_bias {
                        AttnBias::None => "",
                        AttnBias::Qkv => ", qkv_bias: true",
                        AttnBias::All => ", bias: true",
                    },
                    c.hidden
                ),
            )
        }
    };
    let text = format!(
        "# Imported by `weft import` from {source}: {header}.\n\n\
         model {name} {{\n  vocab = {}\n  dim = {}\n  heads = {}\n  layers = {}\n  ctx = {}\n  {settings}\n\n  \
         block decoder {{\n{block}\n  }}\n\n  layers {{\n    0 .. layers => decoder\n  }}\n}}\n",
        c.vocab, c.dim, c.heads, c.layers, c.ctx
    );
    // Canonicalise through the formatter so the file is already `weft fmt`-clean.
    match weft_dsl::parse(&text) {
        Ok(f) => weft_dsl::format(&f, Some(&text)),
        Err(_) => text,
    }
}

/// A usable model name from a file stem (`tiny-llama.v2` → `tiny_llama_v2`).
pub fn model_name(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'm');
    }
    if matches!(
        s.as_str(),
        "model" | "block" | "pool" | "repeat" | "train" | "program" | "true" | "false"
    ) {
        s.push('_');
    }
    s
}

/// The HF config of a checked spec in the layout of `arch`, for export. `hidden` and the
/// attention biases come from the weights (`hidden` may be an expression in the spec).
pub fn config_of(
    spec: &Checked,
    arch: Arch,
    hidden: usize,
    attn_bias: AttnBias,
) -> Result<HfConfig> {
    let m = &spec.model;
    let c = &m.config;
    if m.layers.is_empty() {
        return Err(HfError::new("the spec has no layers"));
    }
    let sites = weft_compiler::lower::manifest(spec)
        .map_err(|e| HfError::new(format!("lowering the spec: {e}")))?;
    let norm = if arch == Arch::Gpt2 {
        NormKind::LayerNorm
    } else {
        NormKind::RmsNorm
    };
    // Layer 0's own values; the HF defaults when it has no such norm or rotation.
    let default_eps = if arch == Arch::Gpt2 { 1e-5 } else { 1e-6 };
    let eps = sites
        .norms
        .iter()
        .find(|n| n.layer == 0 && n.kind == norm)
        .map_or(default_eps, |n| n.eps);
    let rope_theta = sites
        .attention
        .iter()
        .filter(|a| a.layer == 0)
        .find_map(|a| match a.position {
            PositionRule::Rope { base, .. } => Some(base),
            PositionRule::Hope { .. } | PositionRule::Freqs { .. } | PositionRule::Nope => None,
        })
        .unwrap_or(10000.0);
    Ok(HfConfig {
        arch,
        vocab: c.vocab,
        dim: c.dim,
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        layers: c.layers,
        ctx: c.ctx,
        hidden,
        eps,
        rope_theta,
        tie_embeddings: c.tie_embeddings,
        attn_bias,
    })
}
