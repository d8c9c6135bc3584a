//! Training data: batches, the synthetic task generators of the example specs, a byte-level
//! text corpus, and the step-aware transforms (Masked Thought, vocabulary extension).
//!
//! Everything is offline and deterministic. A source's fixed content (a label-mapping table,
//! the arithmetic problem set, the order of text windows, every evaluation set) comes from the
//! seed it was built with; a training batch comes from the `rng` passed to
//! [`DataSource::next_batch`]. The loop derives that rng from the run seed and the step with
//! [`step_rng`], so batch `s` is the same whether the run started at 0 or resumed at `s`, and a
//! checkpoint needs no RNG state beyond the seed and the step.
//!
//! Token-id conventions shared by the generators: `0` is padding ([`PAD`]), `1` is reserved
//! (BOS / query marker); every id is below the `vocab` the source was built with.

mod arithmetic;
mod batch;
mod copy;
mod error;
mod facts;
mod from_spec;
mod kv_recall;
mod label_mapping;
mod markov;
mod masked_thought;
mod sample;
mod text;
mod vocab;

pub use arithmetic::{Arithmetic, ArithmeticLevel};
pub use batch::Batch;
pub use copy::CopyTask;
pub use error::DataError;
pub use facts::{FactPrompt, Facts};
pub use from_spec::from_spec;
pub use kv_recall::KvRecall;
pub use label_mapping::LabelMapping;
pub use markov::Markov;
pub use masked_thought::{MaskedThought, Replacement};
pub use sample::Sample;
pub use text::{TextData, Tokenizer};
pub use vocab::{append_mean_rows, extend_vocab};

use crate::init::Rng;

/// Padding id: inputs past a sample's end; its positions have no target.
pub const PAD: i32 = 0;
/// Reserved id 1: beginning of sequence, or a generator's marker token.
pub const BOS: i32 = 1;

/// Sequences in a synthetic generator's evaluation set unless the source says otherwise.
pub const EVAL_SEQUENCES: usize = 256;

/// A source of training and evaluation batches.
pub trait DataSource {
    /// Short description for logs, e.g. `copy_task(len: 32, vocab: 256)`.
    fn describe(&self) -> String;

    /// Every token id is below this.
    fn vocab(&self) -> usize;

    /// The training batch for optimizer step `step`: `batch` rows of `seq` positions. Random
    /// choices come from `rng` (see [`step_rng`]); `step` matters only to sources that walk
    /// their data in order (text). Errors when a sample cannot fit `seq`.
    fn next_batch(
        &self,
        batch: usize,
        seq: usize,
        step: u64,
        rng: &mut Rng,
    ) -> Result<Batch, DataError>;

    /// The held-out evaluation set, always the same for the same source, in batches of `batch`
    /// rows (the last one padded with empty rows).
    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError>;

    /// A readable rendering of one token id (for traces and the viewer).
    fn token_text(&self, id: i32) -> String {
        format!("<{id}>")
    }
}

/// The rng for the training batch of step `step` of a run seeded with `seed`: independent of
/// every other step's and of parameter initialisation's streams.
pub fn step_rng(seed: u64, step: u64) -> Rng {
    Rng::for_name(seed, &format!("data.step.{step}"))
}

/// The rng of a source's fixed content named `what` (`"eval"`, `"table"`, ...).
pub(crate) fn content_rng(seed: u64, what: &str) -> Rng {
    Rng::for_name(seed, &format!("data.{what}"))
}

/// Splits `n` evaluation samples into batches of `batch` rows built by `make`.
pub(crate) fn eval_in_batches(
    n: usize,
    batch: usize,
    seq: usize,
    mut make: impl FnMut(usize) -> Result<Sample, DataError>,
) -> Result<Vec<Batch>, DataError> {
    if batch == 0 {
        return Err(DataError::config("batch", "must be at least 1"));
    }
    let samples: Vec<Sample> = (0..n).map(&mut make).collect::<Result<_, _>>()?;
    samples
        .chunks(batch)
        .map(|c| Batch::from_samples(c, batch, seq))
        .collect()
}
