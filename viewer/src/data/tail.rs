//! Incremental reading of a JSONL file that another process appends to.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Reads a JSONL file incrementally: each [`JsonlTail::poll`] returns only the lines completed
/// since the previous poll, so a live run costs one `read` of the new bytes per poll.
#[derive(Debug)]
pub struct JsonlTail {
    path: PathBuf,
    offset: u64,
    /// Bytes after the last newline: a line still being written, or torn by a killed writer.
    partial: Vec<u8>,
    /// Identity of the file read so far; a different one means it was replaced (a resumed
    /// run rewrites `metrics.jsonl` atomically) and must be read again from the start.
    identity: Option<(u64, u64)>,
    /// Lines that were complete but did not parse, since the last reset.
    pub bad_lines: usize,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct TailPoll {
    /// The file was replaced or shrank: drop everything read before and keep `values`.
    pub reset: bool,
    /// Each new complete line that parsed.
    pub values: Vec<serde_json::Value>,
}

impl JsonlTail {
    /// A tail of `path` that has read nothing yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonlTail {
            path: path.into(),
            offset: 0,
            partial: Vec::new(),
            identity: None,
            bad_lines: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of an unfinished last line (0 when the file ends with a newline).
    pub fn torn_bytes(&self) -> usize {
        self.partial.len()
    }

    /// Reads what was appended since the last poll. A missing file is an error of kind
    /// `NotFound`; the caller reports it and polls again later.
    pub fn poll(&mut self) -> io::Result<TailPoll> {
        let mut out = TailPoll::default();
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                if self.identity.take().is_some() || self.offset > 0 {
                    self.restart();
                    out.reset = true;
                }
                return Err(e);
            }
        };
        let meta = file.metadata()?;
        let identity = file_identity(&meta);
        if meta.len() < self.offset || (self.identity.is_some() && self.identity != identity) {
            self.restart();
            out.reset = true;
        }
        self.identity = identity;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(out);
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in complete.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(v) => out.values.push(v),
                Err(_) => self.bad_lines += 1,
            }
        }
        Ok(out)
    }

    fn restart(&mut self) {
        self.offset = 0;
        self.partial.clear();
        self.bad_lines = 0;
    }
}

#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}
