//! `program NAME = probe(...)`: maps a checked probe call onto its library function and
//! returns the result as JSON (the body of `programs/NAME.json`, see docs/programs.md).

use super::attribution::{head_attribution, AttributionConfig};
use super::batch_icl::{batch_icl, BatchIclConfig};
use super::collapse::{collapse_probe, CollapseConfig};
use super::copy::{copy_accuracy, CopyConfig};
use super::data::CollapseTask;
use super::distance::{attention_distance, DistanceConfig};
use super::icl_orders::{icl_orders, OrderQuery};
use super::induction::{induction_score, InductionConfig};
use super::logit_lens::{logit_lens, LensConfig};
use super::mlp_decomposition::{mlp_decomposition, DecompositionData};
use super::negative_mass::{negative_mass, NegativeMassConfig};
use super::ov::{ov_copy_score, OvConfig, OvForm};
use super::path_patching::{path_patching, PatchingData};
use super::prompts::{fact_prompts, facts_of, icl_queries, label_mapping_of, train_data};
use super::rope_components::{rope_components, RopeComponentsConfig};
use super::{Model, ProbeError};
use crate::init::Rng;
use serde::Serialize;
use serde_json::Value as Json;
use weft_dsl::check::value::CallValue;

/// Probes that `run_program` implements.
pub const IMPLEMENTED: &[&str] = &[
    "copy_accuracy",
    "induction_score",
    "ov_copy_score",
    "logit_lens",
    "head_attribution",
    "attention_distance",
    "rope_components",
    "negative_mass",
    "collapse_probe",
    "path_patching",
    "mlp_decomposition",
    "batch_icl",
    "icl_orders",
    "pear",
];

/// Queries Batch-ICL and `icl_orders` evaluate.
const ICL_QUERIES: usize = 32;

fn json<T: Serialize>(r: T) -> Result<Json, ProbeError> {
    serde_json::to_value(r)
        .map_err(|e| ProbeError::Numerical(format!("serialising the result: {e}")))
}

/// Runs the probe `call` on `model`; data generators are seeded from `seed`.
pub fn run_program(model: &Model, call: &CallValue, seed: u64) -> Result<Json, ProbeError> {
    let int = |k: &str, d: usize| call.int(k).map_or(d, |v| v.max(0) as usize);
    let ctx = model.ctx();
    match call.name.as_str() {
        // Lengths are capped to what the context holds (two copies must fit).
        "copy_accuracy" => json(copy_accuracy(
            model,
            &CopyConfig {
                len: int("len", 32).min(ctx / 2),
                samples: int("samples", 64),
                seed,
            },
        )?),
        "induction_score" => json(induction_score(
            model,
            &InductionConfig {
                len: int("len", 32).min(ctx / 2),
                samples: int("samples", 16),
                seed,
            },
        )?),
        "ov_copy_score" => {
            let form = if call.name_arg("form") == Some("topk") {
                OvForm::Topk
            } else {
                OvForm::Eigen
            };
            json(ov_copy_score(
                model,
                &OvConfig {
                    form,
                    k: int("k", 10),
                    max_tokens: 512,
                    seed,
                },
            )?)
        }
        "logit_lens" => json(logit_lens(
            model,
            &LensConfig {
                len: int("len", 32).min(ctx),
                samples: 16,
                seed,
            },
        )?),
        "head_attribution" => json(head_attribution(
            model,
            &AttributionConfig {
                len: int("len", 32).min(ctx),
                samples: 16,
                seed,
            },
        )?),
        "attention_distance" => json(attention_distance(
            model,
            &DistanceConfig {
                len: int("len", ctx).min(ctx),
                samples: 4,
                seed,
            },
        )?),
        "negative_mass" => json(negative_mass(
            model,
            &NegativeMassConfig {
                len: int("len", ctx).min(ctx),
                samples: 4,
                seed,
            },
        )?),
        "rope_components" => json(rope_components(
            model,
            &RopeComponentsConfig {
                layer: int("layer", 0),
                head: int("head", 0),
                len: ctx.min(128),
                samples: 4,
                seed,
            },
        )?),
        "collapse_probe" => {
            let task = if call.name_arg("task") == Some("find_zero") {
                CollapseTask::FindZero
            } else {
                CollapseTask::CountOnes
            };
            let lengths = match call.get("lengths").and_then(|v| v.as_list()) {
                Some(l) => l
                    .iter()
                    .filter_map(|v| v.as_int())
                    .map(|v| v.max(1) as usize)
                    .collect(),
                None => vec![16, 32, 64],
            };
            // Lengths past the context cannot run; keep those that fit and say so if none do.
            let fit: Vec<usize> = lengths.iter().copied().filter(|&n| n < ctx).collect();
            if fit.is_empty() {
                return Err(ProbeError::Config(format!("collapse_probe: no length in {lengths:?} fits ctx = {ctx} (prompts are n + 1 tokens)")));
            }
            json(collapse_probe(
                model,
                &CollapseConfig { task, lengths: fit },
            )?)
        }
        "path_patching" => {
            let samples = int("samples", 32);
            let mut data = if call.name_arg("task") == Some("facts") {
                fact_prompts(&facts_of(model.spec, seed)?, samples, seed).0
            } else {
                PatchingData::copy(samples, (ctx / 2).min(25), model.vocab(), seed)
            };
            if call.name_arg("corruption") != Some("corrupted") {
                data.corrupted = None;
            }
            json(path_patching(model, &data)?)
        }
        "pear" => json(super::pear::pear(
            model,
            &super::pear::PearConfig {
                heads: int("heads", 4),
                steps: int("steps", 60),
                lr: call.float("lr").unwrap_or(5e-3),
                len: int("len", 50),
                seed,
            },
        )?),
        "mlp_decomposition" => {
            let data = decomposition_data(model, seed)?;
            json(mlp_decomposition(model, int("layer", 0), &data)?)
        }
        "batch_icl" => {
            let lm = label_mapping_of(model.spec, "batch_icl", seed)?;
            let queries: Vec<_> = icl_queries(&lm, int("demos", 4), ICL_QUERIES, seed)
                .into_iter()
                .map(|c| c.query)
                .collect();
            let cfg = BatchIclConfig {
                positions: int("positions", 2),
                layer: call.int("layer").map(|k| k.max(0) as usize),
                alpha: call.float("alpha").unwrap_or(0.0),
                epochs: int("epochs", 1).max(1),
            };
            json(batch_icl(model, &queries, &cfg)?)
        }
        "icl_orders" => {
            let lm = label_mapping_of(model.spec, "icl_orders", seed)?;
            let queries: Vec<OrderQuery> = icl_queries(&lm, int("demos", 4), ICL_QUERIES, seed)
                .into_iter()
                .map(|c| {
                    let lm = lm.clone();
                    let (task, input) = (c.task, c.input);
                    OrderQuery {
                        demos: c.demos,
                        prompt: Box::new(move |d: &[(usize, usize)]| lm.prompt(task, d, input)),
                        answer: c.query.answer.unwrap_or(-1),
                    }
                })
                .collect();
            json(icl_orders(model, &queries)?)
        }
        other => Err(ProbeError::NotImplemented(other.to_string())),
    }
}

/// Decomposition prompts: the spec's facts when it trains on them, else repeated random
/// tokens queried at 2n − 2 (answer `x_{n−1}`, "subject" the query token `x_{n−2}`).
fn decomposition_data(model: &Model, seed: u64) -> Result<DecompositionData, ProbeError> {
    if train_data(model.spec, "facts").is_some() {
        return Ok(fact_prompts(&facts_of(model.spec, seed)?, 64, seed).1);
    }
    let n = (model.ctx() / 2).min(25);
    let samples = (2 * model.heads() + 8).max(64);
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
