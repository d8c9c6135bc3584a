//! A text corpus (plain text or JSONL), byte-tokenized and packed into fixed windows.

use super::{content_rng, Batch, DataError, DataSource, Sample};
use crate::init::Rng;
use std::path::{Path, PathBuf};

/// How text becomes ids: the built-in byte tokenizer (ids = bytes, 0..=255) or a Hugging Face
/// `tokenizer.json` (through the `tokenizers` crate, offline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tokenizer {
    Bytes,
    Json(PathBuf),
}

impl Tokenizer {
    /// The tokenizer a spec's `tokenizer:` string names: `"bytes"` or a `tokenizer.json` path
    /// (relative to `dir`, the spec's folder).
    pub fn from_name(name: &str, dir: &Path) -> Result<Self, DataError> {
        match name {
            "bytes" => Ok(Tokenizer::Bytes),
            path if path.ends_with(".json") => Ok(Tokenizer::Json(dir.join(path))),
            other => Err(DataError::config(
                "tokenizer",
                format!("= {other:?}: expected \"bytes\" or a path to a HF tokenizer.json"),
            )),
        }
    }
}

/// `text(path, tokenizer, field, valid)`: documents (the whole file for plain text; one per
/// line for JSONL, taking the string `field`) concatenated into one id stream, whose last
/// `valid` fraction is held out.
///
/// Training windows are the stream cut into consecutive `seq`-token windows (inputs), each
/// with its next `seq` tokens as targets; the windows of one epoch are visited in a random
/// order fixed by the source's seed and the epoch number, and sample `i` of the run is
/// `step · batch + row`, so an epoch covers every window exactly once and a resumed run
/// continues where it left off. `segments` are document ids numbered from 0 in each window,
/// and a target never crosses a document boundary.
#[derive(Clone, Debug)]
pub struct TextData {
    path: PathBuf,
    pub vocab: usize,
    seed: u64,
    ids: Vec<i32>,
    /// Start offset of every document in `ids`, ascending, starting with 0.
    doc_starts: Vec<usize>,
    /// Training part: `ids[..split]`; held-out: `ids[split..]`.
    split: usize,
    /// Each id's text under a `tokenizer.json` (bytes are rendered directly).
    token_text: Option<Vec<String>>,
}

impl TextData {
    /// Loads `path`: JSONL when `field` is given, else plain text.
    pub fn load(
        path: &Path,
        tokenizer: Tokenizer,
        field: Option<&str>,
        valid: f64,
        vocab: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let docs: Vec<Vec<u8>> = match field {
            None => vec![bytes],
            Some(field) => {
                let text = String::from_utf8(bytes).map_err(|e| DataError::Parse {
                    path: path.to_path_buf(),
                    line: 0,
                    what: format!("JSONL must be UTF-8: {e}"),
                })?;
                let mut docs = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let parse = |what: String| DataError::Parse {
                        path: path.to_path_buf(),
                        line: i + 1,
                        what,
                    };
                    let v: serde_json::Value =
                        serde_json::from_str(line).map_err(|e| parse(format!("not JSON: {e}")))?;
                    let s = v
                        .get(field)
                        .and_then(|f| f.as_str())
                        .ok_or_else(|| parse(format!("no string field `{field}`")))?;
                    docs.push(s.as_bytes().to_vec());
                }
                docs
            }
        };
        Self::from_documents(path, tokenizer, docs, valid, vocab, seed)
    }

    /// A corpus from documents in memory (`origin` names it in errors).
    pub fn from_documents(
        origin: &Path,
        tokenizer: Tokenizer,
        docs: Vec<Vec<u8>>,
        valid: f64,
        vocab: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if let Tokenizer::Json(json) = &tokenizer {
            return Self::from_json_tokenizer(origin, json, docs, valid, vocab, seed);
        }
        if !(0.0..1.0).contains(&valid) {
            return Err(DataError::config(
                "valid",
                format!("= {valid}; the held-out fraction must be in [0, 1)"),
            ));
        }
        let mut ids = Vec::new();
        let mut doc_starts = Vec::new();
        for d in docs.iter().filter(|d| !d.is_empty()) {
            doc_starts.push(ids.len());
            for &b in d {
                if b as usize >= vocab {
                    return Err(DataError::TokenOutOfRange {
                        path: origin.to_path_buf(),
                        byte: b,
                        offset: ids.len(),
                        vocab,
                    });
                }
                ids.push(b as i32);
            }
        }
        let split = ids.len() - (ids.len() as f64 * valid).round() as usize;
        Ok(TextData {
            path: origin.to_path_buf(),
            vocab,
            seed,
            ids,
            doc_starts,
            split,
            token_text: None,
        })
    }

    /// Documents tokenized by a HF `tokenizer.json`; every id must be below `vocab`.
    fn from_json_tokenizer(
        origin: &Path,
        json: &Path,
        docs: Vec<Vec<u8>>,
        valid: f64,
        vocab: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        let tok = crate::hf::tokenizer::Tokenizer::from_file(json)
            .map_err(|e| DataError::config("tokenizer", e.to_string()))?;
        if !(0.0..1.0).contains(&valid) {
            return Err(DataError::config(
                "valid",
                format!("= {valid}; the held-out fraction must be in [0, 1)"),
            ));
        }
        let (mut ids, mut doc_starts) = (Vec::new(), Vec::new());
        for d in docs.iter().filter(|d| !d.is_empty()) {
            let enc = tok
                .encode(&String::from_utf8_lossy(d))
                .map_err(|e| DataError::config("tokenizer", e.to_string()))?;
            if let Some(&bad) = enc.iter().find(|&&i| i as usize >= vocab) {
                return Err(DataError::config(
                    "tokenizer",
                    format!(
                        "{} gives id {bad} for {}, but the model's vocab is {vocab}",
                        json.display(),
                        origin.display()
                    ),
                ));
            }
            doc_starts.push(ids.len());
            ids.extend(enc.iter().map(|&i| i as i32));
        }
        let split = ids.len() - (ids.len() as f64 * valid).round() as usize;
        let text = (0..vocab as u32)
            .map(|i| tok.decode(&[i]).unwrap_or_default())
            .collect();
        Ok(TextData {
            path: origin.to_path_buf(),
            vocab,
            seed,
            ids,
            doc_starts,
            split,
            token_text: Some(text),
        })
    }

    /// Total tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens in the training part (the held-out tail starts here).
    pub fn train_len(&self) -> usize {
        self.split
    }

    /// Number of documents.
    pub fn documents(&self) -> usize {
        self.doc_starts.len()
    }

    /// Training windows of `seq` tokens per epoch.
    pub fn train_windows(&self, seq: usize) -> usize {
        self.split.saturating_sub(1) / seq.max(1)
    }

    /// The training window that sample `i` of the run reads (epoch-wise permutation).
    pub fn window_of_sample(&self, i: u64, seq: usize) -> usize {
        let n = self.train_windows(seq) as u64;
        let (epoch, k) = (i / n, i % n);
        // A Fisher–Yates permutation of the epoch's windows, regenerated on demand: O(n) per
        // call, trivial next to a training step, and no state to checkpoint.
        let mut rng = content_rng(self.seed, &format!("text.epoch.{epoch}"));
        let mut perm: Vec<u32> = (0..n as u32).collect();
        for j in (1..perm.len()).rev() {
            perm.swap(j, rng.below(j as u64 + 1) as usize);
        }
        perm[k as usize] as usize
    }

    /// The sample of `seq + 1` tokens starting at `start` (clipped to `end`).
    fn window(&self, start: usize, end: usize, seq: usize) -> Sample {
        let stop = (start + seq + 1).min(end);
        let doc = |p: usize| self.doc_starts.partition_point(|&s| s <= p) - 1;
        let first = doc(start);
        let mut s = Sample::new();
        for p in start..stop {
            s.push(self.ids[p], -1, (doc(p) - first) as i32, 0);
        }
        s
    }

    fn check(&self, seq: usize) -> Result<(), DataError> {
        if seq == 0 || self.train_windows(seq) == 0 {
            return Err(DataError::TooLong {
                what: format!(
                    "{} has {} training tokens; one",
                    self.path.display(),
                    self.split
                ),
                need: seq + 1,
                seq,
            });
        }
        Ok(())
    }
}

impl DataSource for TextData {
    fn describe(&self) -> String {
        format!(
            "text({:?}, tokenizer: \"bytes\")",
            self.path.display().to_string()
        )
    }

    fn vocab(&self) -> usize {
        self.vocab
    }

    /// Windows `step · batch ..` of the epoch order (`rng` is not used: the order is a function
    /// of the seed and the sample index).
    fn next_batch(
        &self,
        batch: usize,
        seq: usize,
        step: u64,
        _rng: &mut Rng,
    ) -> Result<Batch, DataError> {
        self.check(seq)?;
        let samples: Vec<Sample> = (0..batch as u64)
            .map(|b| {
                let w = self.window_of_sample(step * batch as u64 + b, seq);
                self.window(w * seq, self.split, seq)
            })
            .collect();
        Batch::from_samples(&samples, batch, seq)
    }

    /// Consecutive windows over the held-out tail, in order; the last may be shorter.
    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError> {
        if batch == 0 || seq == 0 {
            return Err(DataError::config("batch", "and `seq` must be at least 1"));
        }
        let end = self.ids.len();
        let starts: Vec<usize> = (self.split..end.saturating_sub(1)).step_by(seq).collect();
        starts
            .chunks(batch)
            .map(|c| {
                let samples: Vec<Sample> = c.iter().map(|&s| self.window(s, end, seq)).collect();
                Batch::from_samples(&samples, batch, seq)
            })
            .collect()
    }

    fn token_text(&self, id: i32) -> String {
        if let Some(t) = self
            .token_text
            .as_ref()
            .and_then(|t| t.get(id.max(0) as usize))
        {
            return t.clone();
        }
        match u8::try_from(id) {
            Ok(b'\n') => "\\n".into(),
            Ok(b) if (32..127).contains(&b) => char::from(b).to_string(),
            _ => format!("<{id:02x}>"),
        }
    }
}
