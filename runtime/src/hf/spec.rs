//! The weft spec equivalent to a HF config, and the way back (a spec's HF config, for
//! export).

use super::{Arch, AttnBias, HfConfig, HfError, Result};
use weft_dsl::ast::{Expr, ExprKind, Stmt};
use weft_dsl::check::value::Value;
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
    let int = |k: &str| m.int(k).max(0) as usize;
    let first = m
        .layers
        .first()
        .and_then(|l| m.blocks.get(&l.block))
        .ok_or_else(|| HfError::new("the spec has no layers"))?;
    let norm = if arch == Arch::Gpt2 {
        "layer_norm"
    } else {
        "rms_norm"
    };
    let default_eps = if arch == Arch::Gpt2 { 1e-5 } else { 1e-6 };
    let eps = literal_arg(&first.body, norm, "eps").unwrap_or(default_eps);
    let rope_theta = literal_arg(&first.body, "rope", "base").unwrap_or(10000.0);
    Ok(HfConfig {
        arch,
        vocab: int("vocab"),
        dim: int("dim"),
        heads: int("heads"),
        kv_heads: int("kv_heads"),
        head_dim: int("head_dim"),
        layers: int("layers"),
        ctx: int("ctx"),
        hidden,
        eps,
        rope_theta,
        tie_embeddings: m.setting("tie_embeddings").and_then(Value::as_bool) == Some(true),
        attn_bias,
    })
}

/// The numeric literal of argument `arg` of the first call to `func` in a block body.
fn literal_arg(body: &[Stmt], func: &str, arg: &str) -> Option<f64> {
    fn in_expr(e: &Expr, func: &str, arg: &str) -> Option<f64> {
        match &e.kind {
            ExprKind::Call { func: f, args } => {
                if f.name == func {
                    if let Some(a) = args
                        .iter()
                        .find(|a| a.name.as_ref().is_some_and(|n| n.name == arg))
                    {
                        return match a.value.kind {
                            ExprKind::Float(x) => Some(x),
                            ExprKind::Int(i) => Some(i as f64),
                            _ => None,
                        };
                    }
                }
                args.iter().find_map(|a| in_expr(&a.value, func, arg))
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                in_expr(lhs, func, arg).or_else(|| in_expr(rhs, func, arg))
            }
            ExprKind::Neg(inner) => in_expr(inner, func, arg),
            ExprKind::List(items) => items.iter().find_map(|i| in_expr(i, func, arg)),
            _ => None,
        }
    }
    body.iter().find_map(|s| match s {
        Stmt::Assign(a) => in_expr(&a.value, func, arg),
        Stmt::Repeat(r) => literal_arg(&r.body, func, arg),
    })
}
