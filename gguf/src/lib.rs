//! weft-gguf: reads GGUF, the single-file model format of llama.cpp, and dequantises its
//! tensors to f32.
//!
//! A GGUF file is a little-endian header (magic `GGUF`, version, tensor and metadata
//! counts), typed metadata (`general.architecture`, hyperparameters, the tokenizer's
//! vocabulary), tensor infos (name, dims fastest first, ggml type, offset) and, after
//! padding to `general.alignment` (default 32), the tensor data.
//!
//! - [`GgufFile::open`] / [`GgufFile::from_bytes`] parse versions 2 and 3. Every count,
//!   length and offset is checked against the file size before anything is allocated from
//!   it, arithmetic is checked, and each tensor's data range must lie inside the file: a
//!   truncated or hostile file is a [`GgufError`] naming the field and byte offset, never a
//!   panic or a huge allocation (`tests/hostile.rs`).
//! - Metadata is a list of `(key, MetaValue)`; [`GgufFile::get_u32`] and friends convert
//!   with errors that name the key.
//! - [`GgufFile::tensor_f32`] reads one tensor's bytes (seeking, for a file on disk) and
//!   [`dequantize`]s them: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K, bit-exact
//!   with ggml's reference (fixtures made by the `gguf` Python package,
//!   `tests/fixtures/make_fixtures.py`). Other ggml types open fine and are refused by name
//!   when dequantised.
//! - [`write::GgufWriter`] builds small GGUF files, for tests.
//!
//! Tests: `tests/read.rs` (every value type round-trips through the writer, getters,
//! alignment, each invalid header field), `tests/python_file.rs` (a file written by the
//! `gguf` package's own writer), `tests/dequant.rs` (bit-exact against the package's
//! dequantiser on random blocks), `tests/types.rs` (the type table against the package's),
//! `tests/hostile.rs` (every truncation; thousands of mutated files). The `gguf_dump`
//! example prints a file's contents, and `scripts/compare_with_gguf_py.py` compares every
//! tensor of a real model with the package (SmolLM2-135M Q4_1: all 272 bit-identical).
//!
//! The crate knows nothing about models: mapping tensors to a weft spec lives in
//! `weft-runtime` (`hf/gguf.rs`).

mod dequant;
mod error;
mod meta;
mod read;
mod types;
pub mod write;

pub use dequant::dequantize;
pub use error::{GgufError, Result};
pub use meta::MetaValue;
pub use read::{
    GgufFile, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS,
    MAX_META_VALUES,
};
pub use types::GgmlType;
