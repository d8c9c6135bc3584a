//! The one error type of the crate. Every variant says which field, key or tensor was wrong
//! and, where the file is being parsed, at which byte offset, so a broken file can be
//! inspected with a hex dump.

use crate::GgmlType;

/// Why a GGUF file could not be read, a value not converted, or a tensor not dequantised.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The operating system refused a read (or a write, for the writer).
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written, with the path.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: it starts with {found:02x?}, not the magic \"GGUF\"")]
    BadMagic {
        /// The first bytes of the file (fewer than four if the file is that short).
        found: Vec<u8>,
    },
    /// A version other than 2 or 3 (v1 used 32-bit counts and is long obsolete).
    #[error("GGUF version {0} is not supported (weft reads versions 2 and 3)")]
    Version(u32),
    /// The version reads byte-swapped: a big-endian GGUF file.
    #[error(
        "big-endian GGUF (version field {0:#010x}) is not supported; convert it to little-endian"
    )]
    BigEndian(u32),
    /// A field runs past the end of the file.
    #[error("truncated file: {field}: {need} bytes needed at offset {offset}, but the file is {len} bytes long")]
    Truncated {
        /// Which field.
        field: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs (for counts: the least its elements can occupy).
        need: u64,
        /// The file's size.
        len: u64,
    },
    /// A field is present but its value is impossible.
    #[error("{field} at offset {offset}: {msg}")]
    Invalid {
        /// Which field.
        field: String,
        /// Where it starts.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
    /// A metadata key is missing or has a value of the wrong type (the typed getters).
    #[error("metadata key `{key}`: {msg}")]
    Meta {
        /// The key.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor is missing, or its data cannot be read.
    #[error("tensor `{name}`: {msg}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor type this crate does not dequantise.
    #[error("cannot dequantise {ty} data (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)")]
    Unsupported {
        /// The type.
        ty: GgmlType,
    },
    /// `dequantize` was given a byte count or element count that does not fit the type.
    #[error("{ty} data: {msg}")]
    Size {
        /// The type.
        ty: GgmlType,
        /// What does not fit.
        msg: String,
    },
    /// The writer was asked to write something GGUF cannot hold.
    #[error("GGUF writer: {0}")]
    Write(String),
}

/// Short for results of this crate.
pub type Result<T> = std::result::Result<T, GgufError>;
