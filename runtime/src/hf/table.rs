//! **The mapping table** between HF tensor names and weft parameter names: one row per
//! tensor pattern, `{i}` standing for the layer index. Import applies each row's transform;
//! export applies its inverse (and concatenates split rows back into one HF tensor), so
//! import → export → import is the identity. `docs/import.md` shows the same table.

use super::{Arch, HfError, Result};
use crate::Tensor;
use std::collections::BTreeMap;

/// How a HF tensor becomes a weft parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Same layout (GPT-2's Conv1D weights are already `[in, out]`).
    Same,
    /// `[out, in]` → `[in, out]` (`nn.Linear`).
    Transpose,
    /// Part `index` of `parts` equal slices of the last axis (GPT-2's fused `c_attn` holds
    /// q, k and v side by side).
    Split { parts: usize, index: usize },
}

/// One row: HF name template, weft name template, transform.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub hf: &'static str,
    pub weft: &'static str,
    pub transform: Transform,
}

const fn row(hf: &'static str, weft: &'static str, transform: Transform) -> Row {
    Row {
        hf,
        weft,
        transform,
    }
}

use Transform::{Same, Split, Transpose};

/// GPT-2 (`GPT2LMHeadModel`; names without the `transformer.` prefix).
pub const GPT2: &[Row] = &[
    row("wte.weight", "embed.weight", Same),
    row("wpe.weight", "pos_embed.weight", Same),
    row("h.{i}.ln_1.weight", "layers.{i}.norm1.weight", Same),
    row("h.{i}.ln_1.bias", "layers.{i}.norm1.bias", Same),
    row(
        "h.{i}.attn.c_attn.weight",
        "layers.{i}.attn.wq",
        Split { parts: 3, index: 0 },
    ),
    row(
        "h.{i}.attn.c_attn.weight",
        "layers.{i}.attn.wk",
        Split { parts: 3, index: 1 },
    ),
    row(
        "h.{i}.attn.c_attn.weight",
        "layers.{i}.attn.wv",
        Split { parts: 3, index: 2 },
    ),
    row(
        "h.{i}.attn.c_attn.bias",
        "layers.{i}.attn.bq",
        Split { parts: 3, index: 0 },
    ),
    row(
        "h.{i}.attn.c_attn.bias",
        "layers.{i}.attn.bk",
        Split { parts: 3, index: 1 },
    ),
    row(
        "h.{i}.attn.c_attn.bias",
        "layers.{i}.attn.bv",
        Split { parts: 3, index: 2 },
    ),
    row("h.{i}.attn.c_proj.weight", "layers.{i}.attn.wo", Same),
    row("h.{i}.attn.c_proj.bias", "layers.{i}.attn.bo", Same),
    row("h.{i}.ln_2.weight", "layers.{i}.norm2.weight", Same),
    row("h.{i}.ln_2.bias", "layers.{i}.norm2.bias", Same),
    row("h.{i}.mlp.c_fc.weight", "layers.{i}.mlp.w1", Same),
    row("h.{i}.mlp.c_fc.bias", "layers.{i}.mlp.b1", Same),
    row("h.{i}.mlp.c_proj.weight", "layers.{i}.mlp.w2", Same),
    row("h.{i}.mlp.c_proj.bias", "layers.{i}.mlp.b2", Same),
    row("ln_f.weight", "final_norm.weight", Same),
    row("ln_f.bias", "final_norm.bias", Same),
];

/// Llama family (`LlamaForCausalLM`).
pub const LLAMA: &[Row] = &[
    row("model.embed_tokens.weight", "embed.weight", Same),
    row(
        "model.layers.{i}.input_layernorm.weight",
        "layers.{i}.norm1.weight",
        Same,
    ),
    row(
        "model.layers.{i}.self_attn.q_proj.weight",
        "layers.{i}.attn.wq",
        Transpose,
    ),
    row(
        "model.layers.{i}.self_attn.k_proj.weight",
        "layers.{i}.attn.wk",
        Transpose,
    ),
    row(
        "model.layers.{i}.self_attn.v_proj.weight",
        "layers.{i}.attn.wv",
        Transpose,
    ),
    row(
        "model.layers.{i}.self_attn.o_proj.weight",
        "layers.{i}.attn.wo",
        Transpose,
    ),
    // Present only with `attention_bias` (all four) or in Qwen2 (q, k, v): rows whose weft
    // parameter the spec lacks are skipped, and an unmatched HF tensor is an error.
    row(
        "model.layers.{i}.self_attn.q_proj.bias",
        "layers.{i}.attn.bq",
        Same,
    ),
    row(
        "model.layers.{i}.self_attn.k_proj.bias",
        "layers.{i}.attn.bk",
        Same,
    ),
    row(
        "model.layers.{i}.self_attn.v_proj.bias",
        "layers.{i}.attn.bv",
        Same,
    ),
    row(
        "model.layers.{i}.self_attn.o_proj.bias",
        "layers.{i}.attn.bo",
        Same,
    ),
    row(
        "model.layers.{i}.post_attention_layernorm.weight",
        "layers.{i}.norm2.weight",
        Same,
    ),
    row(
        "model.layers.{i}.mlp.gate_proj.weight",
        "layers.{i}.mlp.w_gate",
        Transpose,
    ),
    row(
        "model.layers.{i}.mlp.up_proj.weight",
        "layers.{i}.mlp.w_up",
        Transpose,
    ),
    row(
        "model.layers.{i}.mlp.down_proj.weight",
        "layers.{i}.mlp.w_down",
        Transpose,
    ),
    row("model.norm.weight", "final_norm.weight", Same),
    row("lm_head.weight", "unembed.weight", Transpose),
];

/// The table of a layout.
pub fn rows(arch: Arch) -> &'static [Row] {
    match arch {
        Arch::Gpt2 => GPT2,
        Arch::Llama => LLAMA,
    }
}

/// HF tensors that carry no weights (causal-mask and rotary buffers of older checkpoints)
/// and are skipped on import.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") && !name.contains("c_attn")
        || name.ends_with(".attn.masked_bias")
        || name.ends_with("rotary_emb.inv_freq")
}

/// The canonical HF name: GPT-2 without `transformer.`, Llama with `model.`.
pub fn canonical_name(arch: Arch, name: &str) -> String {
    match arch {
        Arch::Gpt2 => name
            .strip_prefix("transformer.")
            .unwrap_or(name)
            .to_string(),
        Arch::Llama if !name.starts_with("model.") && name != "lm_head.weight" => {
            format!("model.{name}")
        }
        Arch::Llama => name.to_string(),
    }
}

/// A row expanded for one layer: (HF name, weft name, transform).
pub fn expand(arch: Arch, layers: usize) -> Vec<(String, String, Transform)> {
    let mut out = Vec::new();
    for r in rows(arch) {
        if r.hf.contains("{i}") {
            for i in 0..layers {
                let s = i.to_string();
                out.push((
                    r.hf.replace("{i}", &s),
                    r.weft.replace("{i}", &s),
                    r.transform,
                ));
            }
        } else {
            out.push((r.hf.to_string(), r.weft.to_string(), r.transform));
        }
    }
    out
}

/// Applies a row's transform to a HF tensor (`hf` names it in errors).
pub fn forward(hf: &str, t: &Tensor, tr: Transform) -> Result<Tensor> {
    let v = t.to_f32_vec();
    match tr {
        Same => Ok(Tensor::f32(&t.shape, v)),
        Transpose => {
            let [r, c] = two_d(hf, &t.shape)?;
            Ok(Tensor::f32(&[c, r], transpose(&v, r, c)))
        }
        Split { parts, index } => {
            let last = *t.shape.last().unwrap_or(&0);
            if !last.is_multiple_of(parts) {
                return Err(HfError::new(format!(
                    "tensor `{hf}` has shape {:?}: its last axis is not {parts} equal parts",
                    t.shape
                )));
            }
            let w = last / parts;
            let rows = v.len() / last.max(1);
            let mut out = Vec::with_capacity(rows * w);
            for r in 0..rows {
                out.extend_from_slice(&v[r * last + index * w..r * last + (index + 1) * w]);
            }
            let mut shape = t.shape.clone();
            *shape.last_mut().expect("non-empty shape") = w;
            Ok(Tensor::f32(&shape, out))
        }
    }
}

/// The inverse of [`forward`] for every row of one HF tensor: `pieces` are the weft tensors
/// with their transforms (split parts in any order).
pub fn backward(hf: &str, pieces: &[(Transform, &Tensor)]) -> Result<Tensor> {
    match pieces {
        [(Same, t)] => Ok(Tensor::f32(&t.shape, t.to_f32_vec())),
        [(Transpose, t)] => {
            let [r, c] = two_d(hf, &t.shape)?;
            Ok(Tensor::f32(&[c, r], transpose(&t.to_f32_vec(), r, c)))
        }
        _ => {
            let mut parts: Vec<(usize, &Tensor)> = Vec::new();
            for (tr, t) in pieces {
                match tr {
                    Split { index, .. } => parts.push((*index, t)),
                    _ => return Err(HfError::new(format!("`{hf}`: mixed transforms"))),
                }
            }
            parts.sort_by_key(|p| p.0);
            let shape0 = parts[0].1.shape.clone();
            if parts.iter().any(|p| p.1.shape != shape0) {
                return Err(HfError::new(format!(
                    "`{hf}`: its parts have different shapes"
                )));
            }
            let w = *shape0.last().unwrap_or(&0);
            let rows = parts[0].1.numel() / w.max(1);
            let data: Vec<Vec<f32>> = parts.iter().map(|p| p.1.to_f32_vec()).collect();
            let mut out = Vec::with_capacity(rows * w * parts.len());
            for r in 0..rows {
                for d in &data {
                    out.extend_from_slice(&d[r * w..(r + 1) * w]);
                }
            }
            let mut shape = shape0;
            *shape.last_mut().expect("non-empty shape") = w * parts.len();
            Ok(Tensor::f32(&shape, out))
        }
    }
}

/// Export: the HF tensors of weft `weights` (all of which must have a row).
pub fn to_hf(
    arch: Arch,
    layers: usize,
    weights: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    let mut grouped: BTreeMap<String, Vec<(Transform, &Tensor)>> = BTreeMap::new();
    let mut used = std::collections::BTreeSet::new();
    for (hf, weft, tr) in expand(arch, layers) {
        if let Some(t) = weights.get(&weft) {
            grouped.entry(hf).or_default().push((tr, t));
            used.insert(weft);
        }
    }
    if let Some(extra) = weights.keys().find(|k| !used.contains(*k)) {
        return Err(HfError::new(format!(
            "parameter `{extra}` has no counterpart in the HF {arch:?} layout (only plain GPT-2 and Llama models export)"
        )));
    }
    grouped
        .into_iter()
        .map(|(hf, pieces)| backward(&hf, &pieces).map(|t| (hf, t)))
        .collect()
}

fn two_d(hf: &str, shape: &[usize]) -> Result<[usize; 2]> {
    match shape {
        [r, c] => Ok([*r, *c]),
        _ => Err(HfError::new(format!(
            "tensor `{hf}` has shape {shape:?}, expected a matrix"
        ))),
    }
}

fn transpose(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    out
}
