//! The copy recipe: one way to train tiny models until they form the lookup/copy (induction)
//! circuit, shared by the experiments whose effect needs that circuit (Grok-to-copy, HoPE).
//!
//! Why this recipe: a copy at a fixed offset is solved by a positional head (attend T/2 back)
//! that fails at any other period, and copies inside a Markov chain are mostly predicted by the
//! chain; neither forms induction. Here every window is made of copies `s ⊕ s` of uniform random
//! strings whose lengths (the copy distance) vary from window to window and which start at a
//! random offset, so the only rule that predicts every second copy is "find the earlier
//! occurrence of the current token and copy the token after it". About half of all targets are
//! copied tokens (dense supervision); the rest are uniform and unpredictable, which adds a
//! constant to the loss and no bias. The models are attention-only (each block
//! `x = x + attention(rms_norm(x))`), as in the circuits literature, and the learning rate is
//! 1e-3: in pilots at 3e-3 and 1e-2 the same models stayed on the pre-induction plateau.
//!
//! Whether a model has the circuit is measured, never assumed: copy accuracy on fresh uniform
//! `s ⊕ s` sequences with `n =` [`PROBE_N`] (a period inside the training range, at the start of
//! a window) must reach [`BAR`]; an experiment whose models miss it reports "inconclusive".

use crate::{Lab, ReproError, Spec, Trained};
use std::path::{Path, PathBuf};
use weft_runtime::probes::copy::{copy_accuracy, CopyConfig};
use weft_runtime::Rng;

/// Copy accuracy at the training length that counts as "has formed the copy circuit".
pub(crate) const BAR: f64 = 0.9;
/// Longest random prefix before a window's first copy (so copies start at varied offsets).
const MAX_PREFIX: u64 = 8;
/// Shortest copied string.
const MIN_SPAN: usize = 4;
/// Longest copied string (the longest copy distance in training).
pub(crate) const MAX_SPAN: usize = 20;
/// Length n of the copy probe's strings (`s ⊕ s`, 2n tokens): a period inside the training
/// range, so the probe asks for the skill trained, on fresh strings.
pub(crate) const PROBE_N: usize = 16;

/// A corpus of `windows` windows of `seq` ids in `[2, vocab)` (0 and 1 stay reserved, as in
/// the built-in generators): a uniform prefix of 0..=8 ids, then copies `s ⊕ s` while at least
/// [`MIN_SPAN`]-long ones fit, each `|s|` uniform in `[MIN_SPAN, min(MAX_SPAN, room / 2)]`,
/// then uniform ids
/// to the end. The text source cuts training windows at multiples of `seq`, so every training
/// row is one of these windows. Written as raw bytes (the byte tokenizer), so `vocab` ≤ 256.
pub(crate) fn write_corpus(
    path: &Path,
    windows: usize,
    seq: usize,
    vocab: usize,
    seed: u64,
) -> Result<(), ReproError> {
    if !(3..=256).contains(&vocab) || seq < 2 * MIN_SPAN {
        return Err(ReproError::Spec(format!(
            "copy recipe: vocab {vocab} must be in 3..=256 (byte ids) and seq {seq} at least {}",
            2 * MIN_SPAN
        )));
    }
    let mut rng = Rng::for_name(seed, "repro.copy_recipe.corpus");
    let span = vocab as u64 - 2;
    let draw = |rng: &mut Rng| (2 + rng.below(span)) as u8;
    let mut out: Vec<u8> = Vec::with_capacity(windows * seq);
    for _ in 0..windows {
        let start = out.len();
        for _ in 0..rng.below(MAX_PREFIX + 1) {
            out.push(draw(&mut rng));
        }
        loop {
            let room = (seq - (out.len() - start)) / 2;
            if room < MIN_SPAN {
                break;
            }
            let n = MIN_SPAN + rng.below((room.min(MAX_SPAN) - MIN_SPAN + 1) as u64) as usize;
            let s: Vec<u8> = (0..n).map(|_| draw(&mut rng)).collect();
            out.extend_from_slice(&s);
            out.extend_from_slice(&s);
        }
        while out.len() - start < seq {
            out.push(draw(&mut rng));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ReproError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    weft_runtime::tensor_file::write_atomic(path, &out).map_err(|source| ReproError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One model trained by the recipe.
pub(crate) struct CopyRun {
    pub trained: Trained,
    pub seed: u64,
    /// `(step, copy accuracy at n = PROBE_N)` of every evaluation the training loop logged.
    pub curve: Vec<(u64, f64)>,
    /// Copy accuracy of the final weights at n = PROBE_N on `samples` fresh sequences.
    pub final_acc: f64,
}

impl CopyRun {
    /// The first logged step whose copy accuracy is at least `level`.
    pub fn first_step(&self, level: f64) -> Option<u64> {
        self.curve.iter().find(|p| p.1 >= level).map(|p| p.0)
    }

    /// Whether the final model passes [`BAR`].
    pub fn formed(&self) -> bool {
        self.final_acc >= BAR
    }
}

/// Trains `spec` (an attention-only model whose `data = text(...)` and whose `eval` list
/// includes `copy_accuracy(len: 16)`) by the recipe with `seed`: writes the seed's corpus under
/// the experiment's folder (shared by every run of that seed), trains into `runs/RUN`, and
/// measures the final copy accuracy at n = [`PROBE_N`] on `samples` fresh sequences.
pub(crate) fn train(
    lab: &mut Lab,
    spec: &mut Spec,
    run: &str,
    seed: u64,
    samples: usize,
) -> Result<CopyRun, ReproError> {
    let seq = spec.train_int("seq").unwrap_or(64).max(1) as usize;
    let steps = spec.train_int("steps").unwrap_or(1000).max(1) as usize;
    let batch = spec.train_int("batch").unwrap_or(16).max(1) as usize;
    let vocab = spec.checked.model.config.vocab;
    let corpus = corpus_path(lab, seed, vocab, seq);
    if !corpus.is_file() {
        // Every training window is read once (the spec's `valid` holds out a small tail).
        write_corpus(&corpus, (steps * batch).max(4096) + 256, seq, vocab, seed)?;
    }
    spec.set_data_path(&corpus)?;
    let trained = lab.train_seeded(spec, run, None, seed)?;
    let curve: Vec<(u64, f64)> = trained
        .evals()
        .iter()
        .filter(|l| l["probe"] == "copy_accuracy" && l["len"] == PROBE_N)
        .filter_map(|l| Some((l["step"].as_u64()?, l["accuracy"].as_f64()?)))
        .collect();
    let model = lab.model(spec, &trained.params);
    let acc = lab.probe("copy accuracy at the training length", || {
        copy_accuracy(
            &model,
            &CopyConfig {
                len: PROBE_N,
                samples,
                seed: seed + 1000,
            },
        )
    })?;
    Ok(CopyRun {
        final_acc: acc.accuracy,
        trained,
        seed,
        curve,
    })
}

/// `data/copy-seed{seed}-v{vocab}-t{seq}.bin` in the experiment's folder.
fn corpus_path(lab: &Lab, seed: u64, vocab: usize, seq: usize) -> PathBuf {
    lab.dir()
        .join("data")
        .join(format!("copy-seed{seed}-v{vocab}-t{seq}.bin"))
}

/// Mean, sample standard deviation and standard error of the mean of `x` (NaN when empty;
/// sd and se are 0 for one value).
pub(crate) fn spread(x: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    let m = crate::experiments::mean(x);
    if x.len() < 2 {
        return (m, 0.0, 0.0);
    }
    let var = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt(), (var / n).sqrt())
}

/// Standard error of the difference of two independent means (Welch).
pub(crate) fn se_diff(a: &[f64], b: &[f64]) -> f64 {
    let (_, _, sa) = spread(a);
    let (_, _, sb) = spread(b);
    (sa * sa + sb * sb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_windows_hold_copies_at_varied_periods() {
        let dir = std::env::temp_dir().join(format!("weft-copy-recipe-{}", std::process::id()));
        let path = dir.join("c.bin");
        write_corpus(&path, 200, 64, 64, 7).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 200 * 64);
        assert!(bytes.iter().all(|&b| (2..64).contains(&b)));
        // Each window: find its copies by looking for the longest period p with
        // w[i] == w[i - p] over a run of p tokens; collect the periods seen.
        let mut periods = std::collections::BTreeSet::new();
        for w in bytes.chunks(64) {
            for p in MIN_SPAN..=32 {
                for i in p..=64 - p {
                    if (0..p).all(|j| w[i + j] == w[i + j - p]) {
                        periods.insert(p);
                    }
                }
            }
        }
        assert!(
            periods.contains(&MIN_SPAN) && periods.contains(&MAX_SPAN) && periods.len() >= 15,
            "periods seen: {periods:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corpus_refuses_ids_beyond_a_byte() {
        let path = std::env::temp_dir().join("weft-copy-recipe-never-written.bin");
        assert!(write_corpus(&path, 1, 64, 300, 0).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn spread_and_welch_se() {
        let (m, sd, se) = spread(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (sd - 1.0).abs() < 1e-12);
        assert!((se - 1.0 / 3f64.sqrt()).abs() < 1e-12);
        let d = se_diff(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert!((d - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
