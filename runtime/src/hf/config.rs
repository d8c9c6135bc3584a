//! `config.json` of a HF GPT-2 or Llama-family checkpoint.

use super::{HfError, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Which HF layout a checkpoint uses (and so which rows of the mapping table apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `GPT2LMHeadModel`: learned positions, LayerNorm, fused `c_attn`, Conv1D `[in, out]`.
    Gpt2,
    /// `LlamaForCausalLM` (and Mistral, Qwen2): RoPE (half layout), RMSNorm, SwiGLU, GQA,
    /// `nn.Linear` `[out, in]`.
    Llama,
}

/// Which attention projections carry biases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnBias {
    /// None (Llama, Mistral).
    None,
    /// q, k and v but not o (Qwen2): weft's `qkv_bias: true`.
    Qkv,
    /// All four (GPT-2; Llama with `attention_bias: true`): weft's `bias: true`.
    All,
}

/// The settings weft needs from `config.json`, one struct for both families.
#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    pub arch: Arch,
    pub vocab: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub layers: usize,
    pub ctx: usize,
    /// FFN width (`n_inner` or 4·dim for GPT-2, `intermediate_size` for Llama).
    pub hidden: usize,
    /// `layer_norm_epsilon` or `rms_norm_eps`.
    pub eps: f64,
    /// `rope_theta` (Llama).
    pub rope_theta: f64,
    pub tie_embeddings: bool,
    pub attn_bias: AttnBias,
}

impl HfConfig {
    /// Reads and validates `path`; errors name the file and the key.
    pub fn read(path: &Path) -> Result<HfConfig> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| HfError::new(format!("cannot read {p}: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| HfError::new(format!("{p}: not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| HfError::new(format!("{p}: expected a JSON object")))?;
        HfConfig::from_json(obj).map_err(|e| HfError::new(format!("{p}: {}", e.0)))
    }

    /// Parses an already-read `config.json` object.
    pub fn from_json(o: &Map<String, Value>) -> Result<HfConfig> {
        let model_type = o.get("model_type").and_then(Value::as_str).unwrap_or("");
        let archs = o
            .get("architectures")
            .map(Value::to_string)
            .unwrap_or_default();
        let arch = if model_type == "gpt2" || archs.contains("GPT2") {
            Arch::Gpt2
        } else if matches!(model_type, "llama" | "mistral" | "qwen2")
            || archs.contains("Llama")
            || archs.contains("Qwen2")
        {
            Arch::Llama
        } else {
            return Err(HfError::new(format!(
                "model_type `{model_type}` is not supported (weft imports `gpt2`, `llama`, `mistral` and `qwen2`)"
            )));
        };
        match arch {
            Arch::Gpt2 => gpt2(o),
            Arch::Llama => llama(o),
        }
    }
}

fn int(o: &Map<String, Value>, key: &str) -> Result<usize> {
    match o.get(key) {
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .map(|n| n as usize)
            .ok_or_else(|| HfError::new(format!("`{key}` must be a positive integer, found {v}"))),
        None => Err(HfError::new(format!("missing key `{key}`"))),
    }
}

fn int_or(o: &Map<String, Value>, key: &str, default: usize) -> Result<usize> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(_) => int(o, key),
    }
}

fn num_or(o: &Map<String, Value>, key: &str, default: f64) -> Result<f64> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| HfError::new(format!("`{key}` must be a positive number, found {v}"))),
    }
}

fn divisible(dim: usize, heads: usize, what: &str) -> Result<usize> {
    if !dim.is_multiple_of(heads) {
        return Err(HfError::new(format!(
            "{what} = {dim} is not divisible by the number of heads {heads}"
        )));
    }
    Ok(dim / heads)
}

fn gpt2(o: &Map<String, Value>) -> Result<HfConfig> {
    let dim = int(o, "n_embd")?;
    let heads = int(o, "n_head")?;
    let act = o
        .get("activation_function")
        .and_then(Value::as_str)
        .unwrap_or("gelu_new");
    // weft's `gelu` is the tanh approximation; exact erf gelu would differ by ~1e-3.
    if !matches!(act, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
        return Err(HfError::new(format!(
            "activation_function `{act}` is not supported (weft's gelu is gelu_new, the tanh approximation)"
        )));
    }
    Ok(HfConfig {
        arch: Arch::Gpt2,
        vocab: int(o, "vocab_size")?,
        dim,
        heads,
        kv_heads: heads,
        head_dim: divisible(dim, heads, "n_embd")?,
        layers: int(o, "n_layer")?,
        ctx: int(o, "n_positions")?,
        hidden: int_or(o, "n_inner", 4 * dim)?,
        eps: num_or(o, "layer_norm_epsilon", 1e-5)?,
        rope_theta: 10000.0,
        tie_embeddings: true,
        attn_bias: AttnBias::All,
    })
}

fn llama(o: &Map<String, Value>) -> Result<HfConfig> {
    let dim = int(o, "hidden_size")?;
    let heads = int(o, "num_attention_heads")?;
    let kv_heads = int_or(o, "num_key_value_heads", heads)?;
    if !heads.is_multiple_of(kv_heads) {
        return Err(HfError::new(format!(
            "num_key_value_heads = {kv_heads} does not divide num_attention_heads = {heads}"
        )));
    }
    let act = o
        .get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu");
    if act != "silu" {
        return Err(HfError::new(format!(
            "hidden_act `{act}` is not supported (Llama's SwiGLU uses silu)"
        )));
    }
    // Qwen2 configs always carry a `sliding_window` size; `use_sliding_window` says whether
    // it applies.
    let qwen2 = o.get("model_type").and_then(Value::as_str) == Some("qwen2")
        || o.get("architectures")
            .is_some_and(|a| a.to_string().contains("Qwen2"));
    let window = if qwen2 {
        o.get("use_sliding_window").and_then(Value::as_bool) == Some(true)
    } else {
        o.get("sliding_window").is_some_and(|v| !v.is_null())
    };
    if window {
        return Err(HfError::new(
            "`sliding_window` is set; weft imports full causal attention without it",
        ));
    }
    if o.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err(HfError::new(
            "`rope_scaling` is set; weft imports plain RoPE without it",
        ));
    }
    if o.get("mlp_bias").and_then(Value::as_bool) == Some(true) {
        return Err(HfError::new(
            "`mlp_bias` = true is not supported for Llama imports",
        ));
    }
    let attn_bias = if o.get("attention_bias").and_then(Value::as_bool) == Some(true) {
        AttnBias::All
    } else if qwen2 {
        AttnBias::Qkv
    } else {
        AttnBias::None
    };
    let head_dim = match o.get("head_dim") {
        None | Some(Value::Null) => divisible(dim, heads, "hidden_size")?,
        Some(_) => int(o, "head_dim")?,
    };
    Ok(HfConfig {
        arch: Arch::Llama,
        vocab: int(o, "vocab_size")?,
        dim,
        heads,
        kv_heads,
        head_dim,
        layers: int(o, "num_hidden_layers")?,
        ctx: int_or(o, "max_position_embeddings", 2048)?,
        hidden: int(o, "intermediate_size")?,
        eps: num_or(o, "rms_norm_eps", 1e-6)?,
        rope_theta: num_or(o, "rope_theta", 10000.0)?,
        tie_embeddings: o
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        attn_bias,
    })
}

/// `config.json` for a weft model exported in `arch`'s layout (transformers reads it).
pub fn to_json(c: &HfConfig) -> Value {
    match c.arch {
        Arch::Gpt2 => serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": c.vocab,
            "n_embd": c.dim,
            "n_head": c.heads,
            "n_layer": c.layers,
            "n_positions": c.ctx,
            "n_ctx": c.ctx,
            "n_inner": c.hidden,
            "layer_norm_epsilon": c.eps,
            "activation_function": "gelu_new",
            "tie_word_embeddings": true,
            "torch_dtype": "float32",
        }),
        Arch::Llama if c.attn_bias == AttnBias::Qkv => serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": c.vocab,
            "hidden_size": c.dim,
            "num_attention_heads": c.heads,
            "num_key_value_heads": c.kv_heads,
            "num_hidden_layers": c.layers,
            "intermediate_size": c.hidden,
            "max_position_embeddings": c.ctx,
            "rms_norm_eps": c.eps,
            "rope_theta": c.rope_theta,
            "hidden_act": "silu",
            "use_sliding_window": false,
            "tie_word_embeddings": c.tie_embeddings,
            "torch_dtype": "float32",
        }),
        Arch::Llama => serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "attention_bias": c.attn_bias == AttnBias::All,
            "vocab_size": c.vocab,
            "hidden_size": c.dim,
            "num_attention_heads": c.heads,
            "num_key_value_heads": c.kv_heads,
            "head_dim": c.head_dim,
            "num_hidden_layers": c.layers,
            "intermediate_size": c.hidden,
            "max_position_embeddings": c.ctx,
            "rms_norm_eps": c.eps,
            "rope_theta": c.rope_theta,
            "hidden_act": "silu",
            "tie_word_embeddings": c.tie_embeddings,
            "torch_dtype": "float32",
        }),
    }
}
