//! `program NAME = probe(...)`: maps a checked probe call onto its library function and
//! returns the result as JSON (the body of `programs/NAME.json`, see docs/programs.md).

use super::attribution::{head_attribution, AttributionConfig};
use super::batch_icl::{batch_icl, BatchIclConfig};
use super::collapse::{collapse_probe, CollapseConfig};
use super::copy::{copy_accuracy, CopyConfig};
use super::data::CollapseTask;
use super::distance::{attention_distance, DistanceConfig};
use super::final_layer::{final_layer, FinalIntervention, FinalLayerConfig};
use super::icl_orders::{icl_orders, OrderQuery};
use super::induction::{induction_score, InductionConfig};
use super::length_sweep::{length_sweep, LengthSweepConfig, LengthTask};
use super::logit_lens::{logit_lens, LensConfig};
use super::mlp_decomposition::mlp_decomposition;
use super::needle_sweep::{needle_sweep, NeedleSweepConfig};
use super::negative_mass::{negative_mass, NegativeMassConfig};
use super::ov::{ov_copy_score, OvConfig, OvForm};
use super::path_patching::{path_patching, PatchingData};
use super::prompts::{
    fact_prompts, facts_of, icl_queries, label_mapping_of, recall_prompts, train_data,
};
use super::rope_components::{rope_components, RopeComponentsConfig};
use super::shots_sweep::{shots_sweep, ShotsSweepConfig};
use super::{Model, ProbeError};
use serde::Serialize;
use serde_json::Value as Json;
use std::path::Path;
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
    "final_layer",
    "shots_sweep",
    "needle_sweep",
    "length_sweep",
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
            let lengths: Vec<usize> = int_list(call, "lengths")
                .unwrap_or_else(|| vec![16, 32, 64])
                .into_iter()
                .map(|n| n.max(1))
                .collect();
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
            let data = recall_prompts(model, decomposition_samples(model), seed)?;
            json(mlp_decomposition(model, int("layer", 0), &data)?)
        }
        "final_layer" => {
            let intervention = if call.name_arg("intervention") == Some("remove_intercept") {
                FinalIntervention::RemoveIntercept
            } else {
                FinalIntervention::SelfOnly
            };
            let prompts = recall_prompts(model, decomposition_samples(model), seed)?;
            json(final_layer(
                model,
                &FinalLayerConfig {
                    intervention,
                    prompts,
                },
            )?)
        }
        "length_sweep" => {
            let lengths = int_list(call, "lengths").unwrap_or_else(|| vec![128, 256, 512, 1024]);
            // `weft run` does not pass the spec's folder: a text source's relative path
            // resolves against the working directory (the error names it if absent).
            let task = LengthTask::from_spec(model.spec, Path::new("."), seed)?;
            json(length_sweep(
                model,
                &LengthSweepConfig {
                    lengths,
                    samples: 32,
                    batch: 16,
                    seed,
                    train_len: train_seq(model),
                    task,
                },
            )?)
        }
        "needle_sweep" => {
            // The spec's kv_recall task when it trains on one, at its length.
            let kv = train_data(model.spec, "kv_recall");
            let kv_int = |k: &str| kv.and_then(|c| c.int(k)).map(|v| v.max(0) as usize);
            let len = kv_int("len")
                .or_else(|| train_seq(model))
                .unwrap_or(ctx)
                .min(ctx);
            json(needle_sweep(
                model,
                &NeedleSweepConfig {
                    pairs: kv_int("pairs").unwrap_or(8),
                    len,
                    depths: NeedleSweepConfig::evenly_spaced(int("positions", 8)),
                    samples: 64,
                    batch: 16,
                    seed,
                },
            )?)
        }
        "shots_sweep" => {
            let task = label_mapping_of(model.spec, "shots_sweep", seed)?;
            json(shots_sweep(
                model,
                &ShotsSweepConfig {
                    task,
                    shots: int_list(call, "shots").unwrap_or_else(|| vec![1, 4, 16, 64]),
                    samples: 64,
                    batch: 16,
                    seed,
                },
            )?)
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

/// An integer-list argument, negatives clamped to 0.
fn int_list(call: &CallValue, key: &str) -> Option<Vec<usize>> {
    call.get(key).and_then(|v| v.as_list()).map(|l| {
        l.iter()
            .filter_map(|v| v.as_int())
            .map(|v| v.max(0) as usize)
            .collect()
    })
}

/// The spec's training length (`train { seq }`, default ctx), if it has a train section.
fn train_seq(model: &Model) -> Option<usize> {
    let t = model.spec.train.as_ref()?;
    Some(t.int("seq").map_or(model.ctx(), |s| s.max(0) as usize))
}

/// Prompts of the MLP decomposition (and so of `final_layer`): enough for the (H+1)-weight
/// fit to be well determined.
fn decomposition_samples(model: &Model) -> usize {
    (2 * model.heads() + 8).max(64)
}
