//! The data source a spec's `train { data = ... }` names, built from its typed value.

use super::{
    Arithmetic, ArithmeticLevel, CopyTask, DataError, DataSource as Source, Facts, KvRecall,
    LabelMapping, Markov, TextData, Tokenizer,
};
use std::path::Path;
use weft_dsl::typed::DataSource;

/// Builds the data source a `data = ...` call names, seeded. Paths are relative to the spec's
/// folder; token ids are drawn below `vocab`.
pub fn from_spec(
    data: &DataSource,
    spec_dir: &Path,
    vocab: usize,
    seed: u64,
) -> Result<Box<dyn Source>, DataError> {
    let src: Box<dyn Source> = match data {
        DataSource::Text {
            path,
            tokenizer,
            field,
            valid,
        } => {
            let path = spec_dir.join(path);
            let tok = Tokenizer::from_name(tokenizer, spec_dir)?;
            Box::new(TextData::load(
                &path,
                tok,
                field.as_deref(),
                *valid,
                vocab,
                seed,
            )?)
        }
        DataSource::CopyTask { len, vocab: v } => {
            Box::new(CopyTask::new(*len, (*v).min(vocab), seed)?)
        }
        DataSource::Markov {
            branching,
            repeat_p,
            span,
        } => Box::new(Markov::new(vocab, *branching, *repeat_p, *span, seed)?),
        DataSource::KvRecall { pairs, len } => Box::new(KvRecall::new(*pairs, *len, vocab, seed)?),
        DataSource::LabelMapping {
            tasks,
            inputs,
            labels,
            shots,
            noise,
            task_id,
        } => Box::new(
            LabelMapping::new(*tasks, *inputs, *labels, *shots, *noise, vocab, seed)?
                .with_task_id(*task_id),
        ),
        DataSource::Arithmetic {
            terms,
            modulus,
            problems,
        } => {
            let modulus = *modulus as u32;
            // One token per number when the vocabulary has room, else characters.
            let level = if vocab >= 7 + modulus as usize {
                ArithmeticLevel::Tokens
            } else {
                ArithmeticLevel::Chars
            };
            Box::new(Arithmetic::new(
                *terms, modulus, *problems, level, vocab, seed,
            )?)
        }
        DataSource::Facts { pairs, templates } => {
            Box::new(Facts::new(*pairs, *templates, vocab, seed)?)
        }
    };
    Ok(src)
}
