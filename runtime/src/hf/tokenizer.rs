//! Text ↔ token ids: a HF `tokenizer.json` (through the `tokenizers` crate, offline) or
//! weft's byte tokenizer (one token per UTF-8 byte, vocab 256).

use super::{HfError, Result};
use std::path::Path;

/// A loaded tokenizer.
pub enum Tokenizer {
    /// Token id = byte value.
    Bytes,
    Hf(Box<tokenizers::Tokenizer>),
}

impl Tokenizer {
    /// `"bytes"`, or a path to a `tokenizer.json`.
    pub fn load(spec: &str) -> Result<Tokenizer> {
        if spec == "bytes" {
            return Ok(Tokenizer::Bytes);
        }
        Tokenizer::from_file(Path::new(spec))
    }

    /// `--tokenizer` as the CLI takes it: `auto` looks for a `tokenizer.json` beside the
    /// weights, then beside the spec (where `weft import` writes it), and falls back to
    /// bytes; anything else goes to [`Tokenizer::load`]. Returns the tokenizer and where it
    /// came from.
    pub fn resolve(spec: &str, near: &[&Path]) -> Result<(Tokenizer, String)> {
        if spec != "auto" {
            return Ok((Tokenizer::load(spec)?, spec.to_string()));
        }
        match Tokenizer::beside(near) {
            Some(path) => Ok((Tokenizer::from_file(&path)?, path.display().to_string())),
            None => Ok((Tokenizer::Bytes, "bytes".into())),
        }
    }

    /// The first `tokenizer.json` in the directories of `files`.
    pub fn beside(files: &[&Path]) -> Option<std::path::PathBuf> {
        files.iter().find_map(|f| {
            let dir = f.parent().filter(|d| !d.as_os_str().is_empty());
            let p = dir.unwrap_or(Path::new(".")).join("tokenizer.json");
            p.is_file().then_some(p)
        })
    }

    /// Reads a HF `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        tokenizers::Tokenizer::from_file(path)
            .map(|t| Tokenizer::Hf(Box::new(t)))
            .map_err(|e| {
                HfError::new(format!(
                    "{}: not a usable tokenizer.json: {e}",
                    path.display()
                ))
            })
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Tokenizer::Hf(t) => t
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| HfError::new(format!("tokenizing: {e}"))),
        }
    }

    /// Text of `ids` (bytes that are not valid UTF-8 are shown as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i.min(255) as u8).collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Tokenizer::Hf(t) => t
                .decode(ids, false)
                .map_err(|e| HfError::new(format!("detokenizing: {e}"))),
        }
    }

    /// The id of `token` (a special token's text such as `<|im_end|>`), if the vocabulary
    /// has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match self {
            Tokenizer::Bytes => None,
            Tokenizer::Hf(t) => t.token_to_id(token),
        }
    }

    /// Vocabulary size (with added tokens).
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Hf(t) => t.get_vocab_size(true),
        }
    }
}
