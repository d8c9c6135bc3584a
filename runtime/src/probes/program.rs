//! `program NAME = probe(...)`: maps a typed probe (`weft_dsl::typed::Probe`, one variant per
//! probe of the builtins table, matched exhaustively) onto its library function and
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
    default_source, fact_prompts, facts_of, icl_queries, label_mapping_of, recall_prompts,
    train_data,
};
use super::rope_components::{rope_components, RopeComponentsConfig};
use super::shots_sweep::{shots_sweep, ShotsSweepConfig};
use super::{Model, ProbeError};
use serde::Serialize;
use serde_json::Value as Json;
use std::path::Path;
use weft_dsl::typed::{self as spec, DataSource, Probe, Resolved};

/// Queries Batch-ICL and `icl_orders` evaluate.
const ICL_QUERIES: usize = 32;

fn json<T: Serialize>(r: T) -> Result<Json, ProbeError> {
    serde_json::to_value(r)
        .map_err(|e| ProbeError::Numerical(format!("serialising the result: {e}")))
}

/// Runs one typed probe on `model`; data generators are seeded from `seed`.
pub fn run_probe(model: &Model, probe: &Probe, seed: u64) -> Result<Json, ProbeError> {
    let ctx = model.ctx();
    match probe {
        // Lengths are capped to what the context holds (two copies must fit).
        &Probe::CopyAccuracy { len, samples } => json(copy_accuracy(
            model,
            &CopyConfig {
                len: len.min(ctx / 2),
                samples,
                seed,
            },
        )?),
        &Probe::InductionScore { len, samples } => json(induction_score(
            model,
            &InductionConfig {
                len: len.min(ctx / 2),
                samples,
                seed,
            },
        )?),
        &Probe::OvCopyScore { form, k } => {
            let form = match form {
                spec::OvForm::Topk => OvForm::Topk,
                spec::OvForm::Eigen => OvForm::Eigen,
            };
            json(ov_copy_score(
                model,
                &OvConfig {
                    form,
                    k,
                    max_tokens: 512,
                    seed,
                },
            )?)
        }
        &Probe::LogitLens { len } => json(logit_lens(
            model,
            &LensConfig {
                len: len.min(ctx),
                samples: 16,
                seed,
            },
        )?),
        &Probe::HeadAttribution { len } => json(head_attribution(
            model,
            &AttributionConfig {
                len: len.min(ctx),
                samples: 16,
                seed,
            },
        )?),
        &Probe::AttentionDistance { len } => json(attention_distance(
            model,
            &DistanceConfig {
                len: len.min(ctx),
                samples: 4,
                seed,
            },
        )?),
        &Probe::NegativeMass { len } => json(negative_mass(
            model,
            &NegativeMassConfig {
                len: len.min(ctx),
                samples: 4,
                seed,
            },
        )?),
        &Probe::RopeComponents { layer, head } => json(rope_components(
            model,
            &RopeComponentsConfig {
                layer,
                head,
                len: ctx.min(128),
                samples: 4,
                seed,
            },
        )?),
        Probe::CollapseProbe { task, lengths } => {
            let task = match task {
                spec::CollapseTaskName::FindZero => CollapseTask::FindZero,
                spec::CollapseTaskName::CountOnes => CollapseTask::CountOnes,
            };
            let lengths: Vec<usize> = lengths.iter().map(|&n| n.max(1)).collect();
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
        &Probe::PathPatching {
            task,
            corruption,
            samples,
        } => {
            let mut data = match task {
                spec::PatchTask::Facts => {
                    fact_prompts(&facts_of(model.spec, seed)?, samples, seed).0
                }
                spec::PatchTask::Copy => {
                    PatchingData::copy(samples, (ctx / 2).min(25), model.vocab(), seed)
                }
            };
            match corruption {
                spec::PatchCorruption::Corrupted => {}
                spec::PatchCorruption::Mean => data.corrupted = None,
            }
            json(path_patching(model, &data)?)
        }
        &Probe::Pear {
            heads,
            steps,
            lr,
            len,
        } => json(super::pear::pear(
            model,
            &super::pear::PearConfig::new(heads, steps, lr, len, seed),
        )?),
        &Probe::MlpDecomposition { layer } => {
            let data = recall_prompts(model, decomposition_samples(model), seed)?;
            json(mlp_decomposition(model, layer, &data)?)
        }
        &Probe::FinalLayer { intervention } => {
            let intervention = match intervention {
                spec::FinalIntervention::RemoveIntercept => FinalIntervention::RemoveIntercept,
                spec::FinalIntervention::SelfOnly => FinalIntervention::SelfOnly,
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
        Probe::LengthSweep { lengths } => {
            // `weft run` does not pass the spec's folder: a text source's relative path
            // resolves against the working directory (the error names it if absent).
            let task = LengthTask::from_spec(model.spec, Path::new("."), seed)?;
            json(length_sweep(
                model,
                &LengthSweepConfig {
                    lengths: lengths.clone(),
                    samples: 32,
                    batch: 16,
                    seed,
                    train_len: train_seq(model),
                    task,
                },
            )?)
        }
        &Probe::NeedleSweep { positions } => {
            // The spec's kv_recall task when it trains on one, at its length.
            // Otherwise `kv_recall()`'s own number of pairs, at the training length.
            let (pairs, len) = match train_data(model.spec) {
                Some(&DataSource::KvRecall { pairs, len }) => (pairs, Some(len)),
                _ => match default_source(model.spec, "kv_recall()")? {
                    DataSource::KvRecall { pairs, .. } => (pairs, None),
                    other => {
                        return Err(ProbeError::Config(format!(
                            "`kv_recall()` resolved to `{}`",
                            other.name()
                        )))
                    }
                },
            };
            let len = len.or_else(|| train_seq(model)).unwrap_or(ctx).min(ctx);
            json(needle_sweep(
                model,
                &NeedleSweepConfig {
                    pairs,
                    len,
                    depths: NeedleSweepConfig::evenly_spaced(positions),
                    samples: 64,
                    batch: 16,
                    seed,
                },
            )?)
        }
        Probe::ShotsSweep { shots } => {
            let task = label_mapping_of(model.spec, "shots_sweep", seed)?;
            json(shots_sweep(
                model,
                &ShotsSweepConfig {
                    task,
                    shots: shots.clone(),
                    samples: 64,
                    batch: 16,
                    seed,
                },
            )?)
        }
        &Probe::BatchIcl {
            demos,
            layer,
            positions,
            alpha,
            epochs,
        } => {
            let lm = label_mapping_of(model.spec, "batch_icl", seed)?;
            let queries: Vec<_> = icl_queries(&lm, demos, ICL_QUERIES, seed)
                .into_iter()
                .map(|c| c.query)
                .collect();
            let cfg = BatchIclConfig {
                positions,
                layer,
                alpha,
                epochs: epochs.max(1),
            };
            json(batch_icl(model, &queries, &cfg)?)
        }
        &Probe::IclOrders { demos } => {
            let lm = label_mapping_of(model.spec, "icl_orders", seed)?;
            let queries: Vec<OrderQuery> = icl_queries(&lm, demos, ICL_QUERIES, seed)
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
    }
}

/// The spec's training length (`train { seq }`, whose default is ctx), if it has a train
/// section.
fn train_seq(model: &Model) -> Option<usize> {
    model.spec.train.as_ref().map(|t| t.seq)
}

/// Prompts of the MLP decomposition (and so of `final_layer`): enough for the (H+1)-weight
/// fit to be well determined.
fn decomposition_samples(model: &Model) -> usize {
    (2 * model.heads() + 8).max(64)
}
