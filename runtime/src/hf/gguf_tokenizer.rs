//! A HF `tokenizer.json` from a GGUF file's `tokenizer.ggml.*` metadata (byte-level BPE,
//! `tokenizer.ggml.model = gpt2`), and the `tokenizer_config.json` that carries the bos/eos
//! tokens and the chat template.
//!
//! The pre-tokenizer is chosen by `tokenizer.ggml.pre` with the same regexes llama.cpp uses
//! for that name; an unknown name is refused rather than guessed, since a wrong split gives
//! other token ids without any error.

use super::gguf::{describe, meta_str, meta_usize};
use super::{HfError, Result};
use serde_json::{json, Value};
use weft_gguf::{GgufFile, MetaValue};

/// Llama 3's split (llama.cpp's `llama-bpe`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split (llama.cpp's `qwen2`): Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp token type of control tokens (`<|im_start|>`, ...): matched whole, never split.
const CONTROL: i64 = 3;
/// User-defined tokens are matched whole too, but are not special.
const USER_DEFINED: i64 = 4;

/// The pre-tokenizer for `tokenizer.ggml.pre`.
fn pre_tokenizer(pre: &str) -> Result<Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
        // SmolLM/StarCoder: every digit on its own, then GPT-2's split.
        "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
        ]}),
        "gpt-2" | "gpt2" | "default" => byte_level(true),
        "llama-bpe" | "llama3" | "smaug-bpe" => json!({"type": "Sequence", "pretokenizers": [
            split(LLAMA3_REGEX),
            byte_level(false),
        ]}),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            split(QWEN2_REGEX),
            byte_level(false),
        ]}),
        other => {
            return Err(HfError::new(format!(
                "tokenizer.ggml.pre `{other}` is not supported (weft knows smollm, starcoder, refact, gpt-2, llama-bpe, qwen2)"
            )))
        }
    })
}

fn strings(f: &GgufFile, key: &str) -> Result<Option<Vec<String>>> {
    match f.get(key) {
        None => Ok(None),
        Some(MetaValue::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                MetaValue::String(s) => Ok(s.clone()),
                other => Err(HfError::new(format!(
                    "`{key}[{i}]` must be a string, found {}",
                    describe(other)
                ))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(v) => Err(HfError::new(format!(
            "`{key}` must be an array of strings, found {}",
            describe(v)
        ))),
    }
}

fn ints(f: &GgufFile, key: &str) -> Result<Option<Vec<i64>>> {
    match f.get(key) {
        None => Ok(None),
        Some(MetaValue::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                MetaValue::I32(x) => Ok(*x as i64),
                MetaValue::U32(x) => Ok(*x as i64),
                MetaValue::I8(x) => Ok(*x as i64),
                MetaValue::U8(x) => Ok(*x as i64),
                MetaValue::I16(x) => Ok(*x as i64),
                MetaValue::U16(x) => Ok(*x as i64),
                MetaValue::I64(x) => Ok(*x),
                other => Err(HfError::new(format!(
                    "`{key}[{i}]` must be an integer, found {}",
                    describe(other)
                ))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(v) => Err(HfError::new(format!(
            "`{key}` must be an array of integers, found {}",
            describe(v)
        ))),
    }
}

/// The `tokenizer.json` text for the file's tokenizer, checked by loading it with the
/// `tokenizers` crate.
pub fn tokenizer_json(f: &GgufFile) -> Result<String> {
    let model = meta_str(f, "tokenizer.ggml.model")?
        .ok_or_else(|| HfError::new("no `tokenizer.ggml.model` in the metadata"))?;
    if model != "gpt2" {
        return Err(HfError::new(format!(
            "tokenizer.ggml.model `{model}` is not supported (weft builds byte-level BPE, `gpt2`)"
        )));
    }
    let tokens = strings(f, "tokenizer.ggml.tokens")?
        .ok_or_else(|| HfError::new("no `tokenizer.ggml.tokens`"))?;
    let merges = strings(f, "tokenizer.ggml.merges")?
        .ok_or_else(|| HfError::new("no `tokenizer.ggml.merges`"))?;
    let types = ints(f, "tokenizer.ggml.token_type")?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(HfError::new(format!(
            "`tokenizer.ggml.token_type` has {} entries for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let pre = meta_str(f, "tokenizer.ggml.pre")?.unwrap_or_else(|| "default".into());
    let mut vocab = serde_json::Map::new();
    for (i, t) in tokens.iter().enumerate() {
        // A duplicate token string keeps its first id (as llama.cpp's lookup does).
        vocab.entry(t.clone()).or_insert(json!(i));
    }
    let merges: Vec<Value> = merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(HfError::new(format!(
                "`tokenizer.ggml.merges[{i}]` = {m:?} is not two tokens separated by a space"
            ))),
        })
        .collect::<Result<_>>()?;
    let added: Vec<Value> = types
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == CONTROL || t == USER_DEFINED)
        .map(|(i, &t)| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": t == CONTROL})
        })
        .collect();
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(&pre)?,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let text = serde_json::to_string(&doc).map_err(|e| HfError::new(e.to_string()))?;
    text.parse::<tokenizers::Tokenizer>().map_err(|e| {
        HfError::new(format!(
            "the tokenizer built from `tokenizer.ggml.*` does not load: {e}"
        ))
    })?;
    Ok(text)
}

/// HF's `tokenizer_config.json` subset weft reads: `bos_token`, `eos_token` (as strings),
/// `add_bos_token` and `chat_template`. `None` when the metadata names no tokens.
pub fn tokenizer_config(f: &GgufFile) -> Option<String> {
    let tokens = strings(f, "tokenizer.ggml.tokens").ok().flatten()?;
    let token = |key: &str| {
        meta_usize(f, key)
            .ok()
            .flatten()
            .and_then(|i| tokens.get(i).cloned())
    };
    let mut doc = serde_json::Map::new();
    if let Some(b) = token("tokenizer.ggml.bos_token_id") {
        doc.insert("bos_token".into(), json!(b));
    }
    if let Some(e) = token("tokenizer.ggml.eos_token_id") {
        doc.insert("eos_token".into(), json!(e));
    }
    if let Some(MetaValue::Bool(b)) = f.get("tokenizer.ggml.add_bos_token") {
        doc.insert("add_bos_token".into(), json!(b));
    }
    if let Ok(Some(t)) = meta_str(f, "tokenizer.chat_template") {
        doc.insert("chat_template".into(), json!(t));
    }
    serde_json::to_string_pretty(&Value::Object(doc)).ok()
}
