//! GGUF files (llama.cpp's format) in as weft specs: the `llama` architecture (and `qwen2`,
//! which shares its layout) becomes the same spec the HF Llama importer writes, the tensors
//! are dequantised to f32 (`weft-gguf`) and renamed to weft's parameters, and the tokenizer
//! in the metadata becomes a `tokenizer.json` ([`super::gguf_tokenizer`]).
//!
//! Two layout facts the mapping has to undo:
//! - GGUF lists dims fastest first, so a `[in, out]` GGUF projection is the row-major
//!   `[out, in]` matrix of `nn.Linear`; weft stores `[in, out]`, so it is transposed.
//! - llama.cpp's converter permutes the rows of `attn_q`/`attn_k` of `llama` models so that
//!   its pairwise RoPE (pairs 2i, 2i+1) gives the original model. The importer un-permutes
//!   them, so the spec uses the HF half layout (pairs i, i+d/2) and the weights equal the
//!   original checkpoint's: the spec exports to a correct HF Llama (checked against an
//!   independent numpy forward with pairwise RoPE on the stored weights, tests/gguf_import.rs).

use super::gguf_tokenizer;
use super::llama_cpu::transpose;
use super::{spec, verify, Arch, AttnBias, HfConfig, HfError, Imported, Result};
use crate::Tensor;
use std::collections::BTreeMap;
use std::path::Path;
use weft_gguf::{GgufFile, MetaValue};

/// An imported GGUF model: spec, weights, and what the metadata says about text.
pub struct ImportedGguf {
    /// Config, spec text and weights, as for a HF import.
    pub model: Imported,
    /// `tokenizer.json` text built from `tokenizer.ggml.*`, or why there is none.
    pub tokenizer: std::result::Result<String, HfError>,
    /// `tokenizer_config.json` text (HF's layout: bos/eos tokens, chat template), written
    /// beside `tokenizer.json` so `weft generate` finds the stop token and the template.
    pub tokenizer_config: Option<String>,
    /// `general.architecture`.
    pub architecture: String,
}

/// Architectures whose tensors and metadata follow llama.cpp's `llama` layout.
const ARCHS: &[&str] = &["llama", "qwen2"];

/// True when `path` starts with the GGUF magic (so `weft import` dispatches on content,
/// not only on the `.gguf` extension).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"GGUF"
}

/// Reads `path` into a weft spec named `name`, its f32 weights (checked against the spec's
/// parameters) and its tokenizer.
pub fn import_gguf(path: &Path, name: &str) -> Result<ImportedGguf> {
    let p = path.display().to_string();
    let file = GgufFile::open(path).map_err(|e| HfError::new(format!("{p}: {e}")))?;
    let arch = meta_str(&file, "general.architecture")?
        .ok_or_else(|| HfError::new(format!("{p}: no `general.architecture` in the metadata")))?;
    if !ARCHS.contains(&arch.as_str()) {
        return Err(HfError::new(format!(
            "{p}: general.architecture `{arch}` is not supported (weft imports {})",
            ARCHS.join(", ")
        )));
    }
    let config = config(&file, &arch).map_err(|e| HfError::new(format!("{p}: {}", e.0)))?;
    let spec_src = spec::spec_text(&config, name, &p);
    let checked = weft_dsl::check_source(&spec_src).map_err(|d| {
        HfError::new(format!(
            "{p}: the generated spec does not check: {}",
            d.first().map(|d| d.message.clone()).unwrap_or_default()
        ))
    })?;
    let shapes = verify::param_shapes(&checked)?;
    // Sized before any tensor is read: a header may promise far more than this machine holds.
    let elements: u128 = file
        .tensors
        .iter()
        .map(|t| t.n_elements().unwrap_or(u64::MAX) as u128)
        .sum();
    crate::memory::check_import(elements).map_err(|e| HfError::new(format!("{p}: {e}")))?;
    let weights = map_tensors(&file, &config, &arch, &shapes)
        .map_err(|e| HfError::new(format!("{p}: {}", e.0)))?;
    let tokenizer = gguf_tokenizer::tokenizer_json(&file);
    let tokenizer_config = gguf_tokenizer::tokenizer_config(&file);
    Ok(ImportedGguf {
        model: Imported {
            config,
            spec: spec_src,
            weights,
        },
        tokenizer,
        tokenizer_config,
        architecture: arch,
    })
}

/// The spec settings from `{arch}.*` metadata. Features the spec cannot express (partial
/// rotary, RoPE scaling, experts, sliding windows) are refused by key.
fn config(f: &GgufFile, arch: &str) -> Result<HfConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let need = |k: &str| -> Result<usize> {
        meta_usize(f, &key(k))?.ok_or_else(|| HfError::new(format!("missing `{}`", key(k))))
    };
    let dim = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let kv_heads = meta_usize(f, &key("attention.head_count_kv"))?.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(HfError::new(format!(
            "`{}` = {kv_heads} does not divide `{}` = {heads}",
            key("attention.head_count_kv"),
            key("attention.head_count")
        )));
    }
    let head_dim = match meta_usize(f, &key("attention.key_length"))? {
        Some(d) => d,
        None if dim.is_multiple_of(heads) => dim / heads,
        None => {
            return Err(HfError::new(format!(
                "`{}` = {dim} is not divisible by {heads} heads",
                key("embedding_length")
            )))
        }
    };
    if let Some(v) = meta_usize(f, &key("attention.value_length"))? {
        if v != head_dim {
            return Err(HfError::new(format!(
                "`{}` = {v} differs from the key length {head_dim}; weft's attention uses one head size",
                key("attention.value_length")
            )));
        }
    }
    if let Some(r) = meta_usize(f, &key("rope.dimension_count"))? {
        if r != head_dim {
            return Err(HfError::new(format!(
                "`{}` = {r} rotates part of each {head_dim}-wide head; weft imports full rotary only",
                key("rope.dimension_count")
            )));
        }
    }
    if let Some(s) = meta_str(f, &key("rope.scaling.type"))? {
        if s != "none" {
            return Err(HfError::new(format!(
                "`{}` = `{s}`; weft imports plain RoPE without scaling",
                key("rope.scaling.type")
            )));
        }
    }
    if meta_usize(f, &key("expert_count"))?.unwrap_or(0) > 0 {
        return Err(HfError::new(format!(
            "`{}` is set: mixture-of-experts GGUF models are not supported",
            key("expert_count")
        )));
    }
    if meta_usize(f, &key("attention.sliding_window"))?.unwrap_or(0) > 0 {
        return Err(HfError::new(format!(
            "`{}` is set; weft imports full causal attention without it",
            key("attention.sliding_window")
        )));
    }
    let vocab = match meta_usize(f, &key("vocab_size"))? {
        Some(v) => v,
        None => match f.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => return Err(HfError::new("no `token_embd.weight` 2-D tensor")),
        },
    };
    let positive = |v: Option<f64>, k: &str, default: f64| -> Result<f64> {
        match v {
            None => Ok(default),
            Some(x) if x.is_finite() && x > 0.0 => Ok(x),
            Some(x) => Err(HfError::new(format!(
                "`{}` must be a positive number, found {x}",
                key(k)
            ))),
        }
    };
    Ok(HfConfig {
        arch: Arch::Llama,
        vocab,
        dim,
        heads,
        kv_heads,
        head_dim,
        layers: need("block_count")?,
        ctx: meta_usize(f, &key("context_length"))?.unwrap_or(2048),
        hidden: need("feed_forward_length")?,
        eps: positive(
            meta_f64(f, &key("attention.layer_norm_rms_epsilon"))?,
            "attention.layer_norm_rms_epsilon",
            1e-5,
        )?,
        rope_theta: positive(meta_f64(f, &key("rope.freq_base"))?, "rope.freq_base", 1e4)?,
        tie_embeddings: f.tensor("output.weight").is_none(),
        attn_bias: if arch == "qwen2" {
            AttnBias::Qkv
        } else {
            AttnBias::None
        },
    })
}

/// How a GGUF tensor becomes a weft parameter.
#[derive(Clone, Copy, PartialEq)]
enum Map {
    /// Same row-major layout (embeddings, norms, biases).
    Same,
    /// Row-major `[out, in]` → `[in, out]`.
    Transpose,
    /// Un-permute llama.cpp's q/k rows (`heads` heads), then transpose.
    Unpermute { heads: usize },
}

/// GGUF tensor name → (weft parameter, mapping) for layer `i` (the table in docs/import.md).
fn table(c: &HfConfig, arch: &str) -> Vec<(String, String, Map)> {
    // Only the `llama` converter permutes q/k; qwen2 is stored in HF's (half) layout.
    let (q, k) = if arch == "llama" {
        (
            Map::Unpermute { heads: c.heads },
            Map::Unpermute { heads: c.kv_heads },
        )
    } else {
        (Map::Transpose, Map::Transpose)
    };
    let mut t = vec![
        ("token_embd.weight".into(), "embed.weight".into(), Map::Same),
        (
            "output_norm.weight".into(),
            "final_norm.weight".into(),
            Map::Same,
        ),
        (
            "output.weight".into(),
            "unembed.weight".into(),
            Map::Transpose,
        ),
    ];
    for i in 0..c.layers {
        let b = |s: &str| format!("blk.{i}.{s}");
        let w = |s: &str| format!("layers.{i}.{s}");
        t.extend([
            (b("attn_norm.weight"), w("norm1.weight"), Map::Same),
            (b("attn_q.weight"), w("attn.wq"), q),
            (b("attn_k.weight"), w("attn.wk"), k),
            (b("attn_v.weight"), w("attn.wv"), Map::Transpose),
            (b("attn_output.weight"), w("attn.wo"), Map::Transpose),
            (b("attn_q.bias"), w("attn.bq"), Map::Same),
            (b("attn_k.bias"), w("attn.bk"), Map::Same),
            (b("attn_v.bias"), w("attn.bv"), Map::Same),
            (b("ffn_norm.weight"), w("norm2.weight"), Map::Same),
            (b("ffn_gate.weight"), w("mlp.w_gate"), Map::Transpose),
            (b("ffn_up.weight"), w("mlp.w_up"), Map::Transpose),
            (b("ffn_down.weight"), w("mlp.w_down"), Map::Transpose),
        ]);
    }
    t
}

/// Every parameter of the spec from its GGUF tensor; unknown tensors are an error (except
/// llama.cpp's precomputed `rope_freqs`, which plain RoPE does not need).
fn map_tensors(
    f: &GgufFile,
    c: &HfConfig,
    arch: &str,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<BTreeMap<String, Tensor>> {
    let table = table(c, arch);
    let mut weights = BTreeMap::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for info in &f.tensors {
        let Some((_, weft, map)) = table.iter().find(|(g, _, _)| *g == info.name) else {
            if info.name == "rope_freqs.weight" {
                continue;
            }
            return Err(HfError::new(format!(
                "tensor `{}` is not in the GGUF {arch} mapping table",
                info.name
            )));
        };
        let Some(want) = shapes.get(weft) else {
            return Err(HfError::new(format!(
                "tensor `{}` has no parameter in the spec (`{weft}`)",
                info.name
            )));
        };
        // Row-major shape: GGUF dims are fastest first.
        let rows: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        let expect: Vec<usize> = match map {
            Map::Same => want.clone(),
            _ => want.iter().rev().copied().collect(),
        };
        if rows != expect {
            return Err(HfError::new(format!(
                "tensor `{}` ({:?}) has dims {:?} (row-major {rows:?}); weft `{weft}` {want:?} needs row-major {expect:?}",
                info.name, info.ggml_type, info.dims
            )));
        }
        let data = f
            .tensor_f32(&info.name)
            .map_err(|e| HfError::new(format!("tensor `{}`: {e}", info.name)))?;
        let t = match *map {
            Map::Same => Tensor::f32(want, data),
            Map::Transpose => Tensor::f32(want, transpose(&data, rows[0], rows[1])),
            Map::Unpermute { heads } => {
                let hf = unpermute(&data, rows[0], rows[1], heads).ok_or_else(|| {
                    HfError::new(format!(
                        "tensor `{}`: {} rows do not split into {heads} heads of an even size",
                        info.name, rows[0]
                    ))
                })?;
                Tensor::f32(want, transpose(&hf, rows[0], rows[1]))
            }
        };
        origin.insert(
            weft.clone(),
            format!(" (from GGUF `{}` {:?})", info.name, info.ggml_type),
        );
        weights.insert(weft.clone(), t);
    }
    verify::check_weights(shapes, &weights, &|n| {
        origin.get(n).cloned().unwrap_or_else(|| {
            let src = table.iter().find(|(_, w, _)| w == n).map(|(g, _, _)| g);
            src.map(|g| format!(" (GGUF tensor `{g}` is absent)"))
                .unwrap_or_default()
        })
    })?;
    Ok(weights)
}

/// Undoes llama.cpp's `permute(w, n_head)` on a row-major `[rows, cols]` q/k matrix: within
/// each head of `d = rows / heads` rows, stored row `2r + j` is the original row
/// `j·d/2 + r` (j ∈ {0, 1}). `None` when the rows do not split into even-sized heads.
pub fn unpermute(x: &[f32], rows: usize, cols: usize, heads: usize) -> Option<Vec<f32>> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return None;
    }
    let d = rows / heads;
    let mut out = vec![0.0; x.len()];
    for h in 0..heads {
        for r in 0..d / 2 {
            for j in 0..2 {
                let src = (h * d + 2 * r + j) * cols;
                let dst = (h * d + j * d / 2 + r) * cols;
                out[dst..dst + cols].copy_from_slice(&x[src..src + cols]);
            }
        }
    }
    Some(out)
}

/// The inverse of [`unpermute`] (llama.cpp's converter permutation), for tests that write
/// GGUF files the way the converter does.
pub fn permute(x: &[f32], rows: usize, cols: usize, heads: usize) -> Option<Vec<f32>> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return None;
    }
    let d = rows / heads;
    let mut out = vec![0.0; x.len()];
    for h in 0..heads {
        for r in 0..d / 2 {
            for j in 0..2 {
                let dst = (h * d + 2 * r + j) * cols;
                let src = (h * d + j * d / 2 + r) * cols;
                out[dst..dst + cols].copy_from_slice(&x[src..src + cols]);
            }
        }
    }
    Some(out)
}

/// An integer metadata value of any width (`None` when absent; an error when not an
/// integer or negative).
pub(crate) fn meta_usize(f: &GgufFile, key: &str) -> Result<Option<usize>> {
    let Some(v) = f.get(key) else {
        return Ok(None);
    };
    let n: Option<i128> = match v {
        MetaValue::U8(x) => Some(*x as i128),
        MetaValue::I8(x) => Some(*x as i128),
        MetaValue::U16(x) => Some(*x as i128),
        MetaValue::I16(x) => Some(*x as i128),
        MetaValue::U32(x) => Some(*x as i128),
        MetaValue::I32(x) => Some(*x as i128),
        MetaValue::U64(x) => Some(*x as i128),
        MetaValue::I64(x) => Some(*x as i128),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 && n <= usize::MAX as i128 => Ok(Some(n as usize)),
        _ => Err(HfError::new(format!(
            "metadata `{key}` must be a non-negative integer, found {}",
            describe(v)
        ))),
    }
}

/// A float metadata value (integers accepted).
pub(crate) fn meta_f64(f: &GgufFile, key: &str) -> Result<Option<f64>> {
    match f.get(key) {
        None => Ok(None),
        // Through the shortest decimal of the f32, so `1e-5` stays `1e-5` in the spec.
        Some(MetaValue::F32(x)) => Ok(Some(x.to_string().parse().unwrap_or(*x as f64))),
        Some(MetaValue::F64(x)) => Ok(Some(*x)),
        Some(_) => meta_usize(f, key).map(|n| n.map(|n| n as f64)),
    }
}

/// A string metadata value.
pub(crate) fn meta_str(f: &GgufFile, key: &str) -> Result<Option<String>> {
    match f.get(key) {
        None => Ok(None),
        Some(MetaValue::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(HfError::new(format!(
            "metadata `{key}` must be a string, found {}",
            describe(v)
        ))),
    }
}

/// A short description of a metadata value for error messages.
pub(crate) fn describe(v: &MetaValue) -> String {
    match v {
        MetaValue::String(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        MetaValue::Array(a) => format!("an array of {}", a.len()),
        other => format!("{other:?}"),
    }
}
