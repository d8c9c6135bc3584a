//! Why a data source could not be built or could not fill a batch.

use std::path::PathBuf;

/// A data error; each variant says which parameter, file or line is at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("`{param}` {what}")]
    Config { param: &'static str, what: String },
    #[error("a {what} sample needs {need} tokens but `seq` = {seq} holds {cap} (seq + 1, the last one only as a target)", cap = seq + 1)]
    TooLong {
        what: String,
        need: usize,
        seq: usize,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Parse {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{path}: byte {byte} at offset {offset} is not below vocab = {vocab} (the byte tokenizer needs vocab ≥ 256 for non-ASCII text)")]
    TokenOutOfRange {
        path: PathBuf,
        byte: u8,
        offset: usize,
        vocab: usize,
    },
}

impl DataError {
    pub(crate) fn config(param: &'static str, what: impl Into<String>) -> Self {
        DataError::Config {
            param,
            what: what.into(),
        }
    }
}
