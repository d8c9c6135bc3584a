//! Task prompts for the probes that need more than random tokens, built from the spec's own
//! training data source: factual-recall prompt pairs (`facts`) and Batch-ICL queries
//! (`label_mapping`). The sources are rebuilt from the spec's arguments and the run seed, so
//! a probe sees the same facts and mappings the model was trained on when given the
//! training seed.

use super::batch_icl::IclQuery;
use super::mlp_decomposition::DecompositionData;
use super::path_patching::PatchingData;
use super::{Model, ProbeError};
use crate::data::{Facts, LabelMapping, PAD};
use crate::init::Rng;
use weft_dsl::builtins::Kind;
use weft_dsl::typed::{DataSource, Resolved};
use weft_dsl::Checked;

/// The spec's `train { data = ... }` source, if it has a train section.
pub fn train_data(spec: &Checked) -> Option<&DataSource> {
    spec.train.as_ref().map(|t| &t.data)
}

/// The `facts` source of the spec: its own arguments when it trains on facts, else the
/// builtins table's defaults for `facts()`.
pub fn facts_of(spec: &Checked, seed: u64) -> Result<Facts, ProbeError> {
    let (pairs, templates) = match train_data(spec) {
        Some(&DataSource::Facts { pairs, templates }) => (pairs, templates),
        _ => match default_source(spec, "facts()")? {
            DataSource::Facts { pairs, templates } => (pairs, templates),
            other => {
                return Err(ProbeError::Config(format!(
                    "`facts()` resolved to `{}`",
                    other.name()
                )))
            }
        },
    };
    let vocab = spec.model.config.vocab;
    Facts::new(pairs, templates, vocab, seed)
        .map_err(|e| ProbeError::Config(format!("facts prompts: {e}")))
}

/// A data source written as weft source, resolved in the spec's model scope with the
/// builtins table's defaults.
pub fn default_source(spec: &Checked, src: &str) -> Result<DataSource, ProbeError> {
    let call = spec
        .model
        .call_source(src, Kind::Data)
        .map_err(|d| ProbeError::Config(format!("resolving `{src}`: {d:?}")))?;
    DataSource::from_call(&call).map_err(|e| ProbeError::Config(e.to_string()))
}

/// `samples` clean/corrupted fact prompts, left-padded to a common length, query at the last
/// position, answers `K_i`; subjects `C_i` for the decomposition.
pub fn fact_prompts(facts: &Facts, samples: usize, seed: u64) -> (PatchingData, DecompositionData) {
    let mut rng = Rng::for_name(seed, "probe.facts");
    let pairs: Vec<_> = (0..samples).map(|_| facts.prompt_pair(&mut rng)).collect();
    let t = pairs.iter().map(|p| p.clean.len()).max().unwrap_or(0);
    let pad = |p: &[i32]| {
        std::iter::repeat_n(PAD, t - p.len())
            .chain(p.iter().copied())
            .collect::<Vec<_>>()
    };
    let clean: Vec<i32> = pairs.iter().flat_map(|p| pad(&p.clean)).collect();
    let corrupted: Vec<i32> = pairs.iter().flat_map(|p| pad(&p.corrupted)).collect();
    let answers: Vec<i32> = pairs.iter().map(|p| p.answer).collect();
    let subjects: Vec<i32> = pairs
        .iter()
        .map(|p| facts.subject_token(p.subject))
        .collect();
    (
        PatchingData {
            clean: clean.clone(),
            corrupted: Some(corrupted),
            seq: t,
            query: -1,
            answers: answers.clone(),
        },
        DecompositionData {
            tokens: clean,
            seq: t,
            query: -1,
            answers,
            subjects,
        },
    )
}

/// Prompts for the MLP decomposition and the final-layer analysis: `samples` of the spec's
/// `facts` (see [`fact_prompts`]) when it trains on them, else `samples` rows of repeated
/// random tokens `x ⊕ x` (n = min(ctx/2, 25)) queried at 2n − 2, answer `x_{n−1}` and
/// "subject" the query token `x_{n−2}`. Both probes draw the same prompts for the same seed,
/// so `final_layer`'s diagnosis is `mlp_decomposition` of the last layer.
pub fn recall_prompts(
    model: &Model,
    samples: usize,
    seed: u64,
) -> Result<DecompositionData, ProbeError> {
    if let Some(DataSource::Facts { .. }) = train_data(model.spec) {
        return Ok(fact_prompts(&facts_of(model.spec, seed)?, samples, seed).1);
    }
    let n = (model.ctx() / 2).min(25);
    if n < 2 {
        return Err(ProbeError::Config(format!(
            "repeated-token prompts need ctx ≥ 4, the model has {}",
            model.ctx()
        )));
    }
    let tokens = super::data::repeated_tokens(
        &mut Rng::for_name(seed, "probe.mlp_decomposition"),
        samples,
        n,
        model.vocab(),
    );
    let rows: Vec<&[i32]> = tokens.chunks(2 * n).collect();
    Ok(DecompositionData {
        answers: rows.iter().map(|r| r[n - 1]).collect(),
        subjects: rows.iter().map(|r| r[n - 2]).collect(),
        tokens: tokens.clone(),
        seq: 2 * n,
        query: 2 * n as i64 - 2,
    })
}

/// The `label_mapping` source of the spec; Batch-ICL needs one.
pub fn label_mapping_of(
    spec: &Checked,
    probe: &str,
    seed: u64,
) -> Result<LabelMapping, ProbeError> {
    let Some(&DataSource::LabelMapping {
        tasks,
        inputs,
        labels,
        shots,
        noise,
        task_id,
    }) = train_data(spec)
    else {
        return Err(ProbeError::Config(format!("{probe} builds its prompts from `train {{ data = label_mapping(...) }}`, which this spec does not have")));
    };
    let vocab = spec.model.config.vocab;
    LabelMapping::new(tasks, inputs, labels, shots, noise, vocab, seed)
        .map(|lm| lm.with_task_id(task_id))
        .map_err(|e| ProbeError::Config(format!("{probe} prompts: {e}")))
}

/// One generated ICL query: the Batch-ICL prompts and what built them.
pub struct IclCase {
    pub query: IclQuery,
    pub task: usize,
    /// `(input, label)` demonstrations, in the one-shot prompts' order.
    pub demos: Vec<(usize, usize)>,
    /// The query input.
    pub input: usize,
}

/// `count` Batch-ICL queries of `demos` demonstrations each (distinct inputs where possible,
/// true labels), with the N-shot prompt in `IclQuery::one_shot` order.
pub fn icl_queries(lm: &LabelMapping, demos: usize, count: usize, seed: u64) -> Vec<IclCase> {
    let mut rng = Rng::for_name(seed, "probe.icl");
    (0..count)
        .map(|_| {
            let task = rng.below(lm.tasks as u64) as usize;
            let query = rng.below(lm.inputs as u64) as usize;
            // Demonstration inputs: a seeded shuffle of the other inputs (repeating when
            // there are fewer than `demos`).
            let mut others: Vec<usize> = (0..lm.inputs)
                .filter(|&x| x != query || lm.inputs == 1)
                .collect();
            for i in (1..others.len()).rev() {
                others.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let ds: Vec<(usize, usize)> = (0..demos)
                .map(|j| others[j % others.len()])
                .map(|x| (x, lm.label_of(task, x)))
                .collect();
            let q = IclQuery {
                zero_shot: lm.prompt(task, &[], query),
                one_shot: ds.iter().map(|&d| lm.prompt(task, &[d], query)).collect(),
                answer: Some(lm.label_token(lm.label_of(task, query))),
            };
            IclCase {
                query: q,
                task,
                demos: ds,
                input: query,
            }
        })
        .collect()
}
