//! Pretrained Hugging Face checkpoints (GPT-2 and the Llama family) in and out of weft.
//!
//! - [`config`]: reads `config.json` into an [`HfConfig`].
//! - [`spec`]: writes the equivalent weft spec.
//! - [`table`]: **the mapping table**, one row per tensor pattern (HF name, weft name,
//!   transform), applied forwards on import and backwards on export (`docs/import.md`).
//! - [`files`]: single-file and sharded `model.safetensors` in, and the HF directory out.
//! - [`verify`]: mapped weights against the lowered spec's parameters.
//! - [`tokenizer`]: HF `tokenizer.json` or weft's byte tokenizer.
//! - [`generate`]: decoding (greedy or [`sample`]d), with and without a cache, and through
//!   [`llama_cpu`] (the direct CPU Llama forward) where it applies.
//! - [`gguf`]: GGUF files (llama.cpp) in, with [`gguf_tokenizer`] for their tokenizer.
//! - [`chat`]: chat templates (`tokenizer_config.json`'s `chat_template`).

pub mod chat;
pub mod config;
pub mod files;
pub mod generate;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod llama_cpu;
pub mod sample;
pub mod spec;
pub mod table;
pub mod tokenizer;
pub mod verify;

pub use config::{Arch, AttnBias, HfConfig};
pub use files::{export_dir, import_dir, Imported};
pub use tokenizer::Tokenizer;

/// Any failure of import, export or tokenisation: one message naming the file, tensor and
/// shapes involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct HfError(pub String);

impl HfError {
    pub fn new(msg: impl Into<String>) -> Self {
        HfError(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, HfError>;
