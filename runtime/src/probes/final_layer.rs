//! The final layer's anti-overconfidence (factual recall, METHODS §8.6): how much the last
//! layer lowers the answer's probability, and what is left when it is stopped.
//!
//! Diagnosis: the last layer's MLP output is decomposed as in §8.4
//! ([`super::mlp_decomposition`]), and its intercept `b` is projected onto
//! `span{u_answer, ū}` (ū the mean unembedding row — uniform over the vocabulary, as weft has
//! no corpus token counts): `cos(P b, ū) > 0` and `cos(P b, ū − u_answer) > 0` mean the layer
//! pushes predictions toward generic tokens and away from the answer. The answer's probability
//! is also read at the last layer's `resid_mid` (after its attention, before its MLP) through
//! the final norm and unembedding.
//!
//! Interventions, each a one-line change of the last layer (§8.6's two variants):
//! - `self_only`: every position attends only to itself. Done by replacing each of the layer's
//!   `attn.pattern` hooks (one per rotary base under MoICE) by the pattern a `self_only` mask
//!   produces — the identity for softmax weights, `diag(sign(score_ii))` for signed (Cog)
//!   weights, the rule's weight of a lone key for a rule written in the spec
//!   ([`self_only_weight`]) — which is exactly what lowering that layer with
//!   `mask: self_only` computes.
//! - `remove_intercept`: the fitted intercept `b` is subtracted from the layer's `mlp_out` at
//!   the query position.
//!
//! Before and after, at the query position: mean `p(answer)`, its rank (1 = top), the logit
//! difference `logit(answer) − mean logit`, greedy accuracy and the entropy of the prediction.

use super::linalg::{cosine, dot, project};
use super::mlp_decomposition::{mlp_decomposition, DecompositionData};
use super::readout::{argmax, logit_diff, prob, Readout};
use super::{hook, logits, Model, ProbeError};
use crate::replace::Intervention;
use crate::tensor::Tensor;
use serde::Serialize;
use weft_compiler::ir::{AttentionRule, AttentionWeights, Normaliser, Op, RuleEnv};
use weft_compiler::lower::glob::glob_match;
use weft_compiler::lower::hooks;

/// Which intervention `final_layer` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalIntervention {
    /// The last layer's attention sees only the position itself.
    SelfOnly,
    /// The last layer's fitted MLP intercept is subtracted at the query position.
    RemoveIntercept,
}

/// What `final_layer` runs.
#[derive(Clone, Debug)]
pub struct FinalLayerConfig {
    pub intervention: FinalIntervention,
    /// The prompts, their query position and answer (and subject) tokens — the same data the
    /// MLP decomposition takes; [`super::prompts::recall_prompts`] builds the defaults (the
    /// spec's `facts`, else repeated random tokens).
    pub prompts: DecompositionData,
}

/// A change to the last layer for one run.
#[derive(Clone, Debug, PartialEq)]
pub enum LastLayerChange {
    /// The model as it is.
    None,
    /// Attention patterns replaced by the `self_only` pattern.
    SelfOnly,
    /// `b` (D entries) subtracted from `mlp_out` at the query position.
    SubtractIntercept(Vec<f64>),
}

/// Means over the prompts of the read-outs at the query position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct QueryStats {
    pub p_answer: f64,
    /// 1 + the number of tokens with a larger logit than the answer.
    pub rank: f64,
    pub logit_diff: f64,
    /// Greedy accuracy (argmax over the vocabulary).
    pub accuracy: f64,
    /// Entropy of the predicted distribution, in nats.
    pub entropy: f64,
    /// `p(answer)` read at the last layer's `resid_mid` through the final norm and unembedding.
    pub p_answer_mid: f64,
}

/// One run of the prompts: statistics and the query logits `[N, V]`.
#[derive(Clone, Debug)]
pub struct QueryRun {
    pub stats: QueryStats,
    pub logits: Vec<Vec<f64>>,
}

/// The result: before/after statistics and the diagnosis.
#[derive(Clone, Debug, Serialize)]
pub struct FinalLayer {
    pub intervention: FinalIntervention,
    /// The last layer's index, L − 1.
    pub layer: usize,
    pub p_answer_before: f64,
    pub p_answer_after: f64,
    pub rank_before: f64,
    pub rank_after: f64,
    pub logit_diff_before: f64,
    pub logit_diff_after: f64,
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    pub entropy_before: f64,
    pub entropy_after: f64,
    pub p_answer_mid_before: f64,
    pub p_answer_mid_after: f64,
    /// The last layer's MLP decomposition: relative error, `‖b‖`, and the mean over prompts of
    /// `cos(P b, ū)` and `cos(P b, ū − u_answer)`, P onto span{u_answer, ū}. `null` when the
    /// fit is singular (only `self_only` runs without it).
    pub relative_error: Option<f64>,
    pub intercept_norm: Option<f64>,
    pub intercept_toward_mean: Option<f64>,
    pub intercept_toward_generic: Option<f64>,
    pub samples: usize,
}

fn query_index(p: &DecompositionData) -> Result<usize, ProbeError> {
    let t = p.seq as i64;
    let e = if p.query < 0 { t + p.query } else { p.query };
    if !(0..t).contains(&e) || p.tokens.len() != p.answers.len() * p.seq || p.answers.is_empty() {
        return Err(ProbeError::Config(format!(
            "final_layer: query {} and {} ids for {} prompts of {}",
            p.query,
            p.tokens.len(),
            p.answers.len(),
            p.seq
        )));
    }
    Ok(e as usize)
}

fn last_layer(model: &Model) -> Result<usize, ProbeError> {
    model
        .layers()
        .checked_sub(1)
        .ok_or_else(|| ProbeError::Model("final_layer: the model has no layers".into()))
}

/// Runs `prompts` with `change` applied to the last layer and reads the query position.
pub fn last_layer_run(
    model: &Model,
    prompts: &DecompositionData,
    change: &LastLayerChange,
) -> Result<QueryRun, ProbeError> {
    let e = query_index(prompts)?;
    let l = last_layer(model)?;
    let (n, t) = (prompts.answers.len(), prompts.seq);
    let (mid, mlp) = (
        hooks::join(&hooks::layer(l), hooks::RESID_MID),
        hooks::join(&hooks::layer(l), hooks::MLP_OUT),
    );
    let (pattern_glob, scores_glob) = (
        format!("{}.*pattern", hooks::layer(l)),
        format!("{}.*scores", hooks::layer(l)),
    );
    let out = match change {
        LastLayerChange::None => {
            let g = model.lower(n, t, &[])?;
            model.run(&g, &prompts.tokens, &[mid.as_str()], &[])?
        }
        LastLayerChange::SubtractIntercept(b) => {
            let g = model.lower(n, t, &[])?;
            let clean = model.run(&g, &prompts.tokens, &[mlp.as_str()], &[])?;
            let y = hook(&clean, &mlp)?;
            let d = y.shape[2];
            if b.len() != d {
                return Err(ProbeError::Config(format!(
                    "final_layer: an intercept of {} entries for a model of width {d}",
                    b.len()
                )));
            }
            let yv = y.to_f64_vec();
            let mut with = Vec::with_capacity(n * d);
            for r in 0..n {
                let at = (r * t + e) * d;
                with.extend(yv[at..at + d].iter().zip(b).map(|(y, b)| (y - b) as f32));
            }
            let replace = Intervention::at_positions(
                mlp.as_str(),
                &[e as i64],
                Tensor::f32(&[n, 1, d], with),
            );
            model.run(&g, &prompts.tokens, &[mid.as_str()], &[replace])?
        }
        LastLayerChange::SelfOnly => {
            let g = model.lower(n, t, &[pattern_glob.as_str(), scores_glob.as_str()])?;
            // Each pattern hook with its rule and the rule's parameters (`[k][head]`).
            let mut patterns: Vec<(String, Option<RuleWithParams>)> = Vec::new();
            for (name, v) in &g.graph.hooks {
                if !glob_match(&pattern_glob, name) {
                    continue;
                }
                let node = g.graph.node(*v);
                let Op::AttentionPattern(r) = &node.op else {
                    patterns.push((name.clone(), None));
                    continue;
                };
                // Plain softmax puts weight 1 on a lone key: no scores needed.
                if r.weights == AttentionWeights::Softmax && r.score.is_none() {
                    patterns.push((name.clone(), None));
                    continue;
                }
                let params = node.inputs[node.inputs.len() - r.params..]
                    .iter()
                    .map(|&p| match g.graph.node(p).op {
                        Op::Param { index } => {
                            let pname = &g.graph.params[index].name;
                            model
                                .params
                                .get(pname)
                                .map(Tensor::to_f64_vec)
                                .ok_or_else(|| {
                                    ProbeError::Model(format!(
                                        "final_layer: no parameter `{pname}`"
                                    ))
                                })
                        }
                        _ => Err(ProbeError::Model(
                            "final_layer: an attention rule's parameter is not a parameter".into(),
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                patterns.push((name.clone(), Some((r.clone(), params))));
            }
            if patterns.is_empty() {
                return Err(ProbeError::Model(format!(
                    "final_layer: layer {l} has no attention pattern hook (`layers.{l}.attn.pattern`)"
                )));
            }
            // Other rules' weight on the one visible key depends on its score (signed weights
            // keep its sign), so they need the diagonal scores; a first run reads them.
            let scores: Vec<String> = patterns
                .iter()
                .filter(|(_, r)| r.is_some())
                .map(|(p, _)| format!("{}scores", p.trim_end_matches("pattern")))
                .collect();
            let first = if scores.is_empty() {
                None
            } else {
                let names: Vec<&str> = scores.iter().map(String::as_str).collect();
                Some(model.run(&g, &prompts.tokens, &names, &[])?)
            };
            let mut replace = Vec::new();
            for (name, rule) in &patterns {
                let shape = g.graph.shape(hook_id(&g.graph, name)).to_vec();
                let (b, h, tq) = (shape[0], shape[1], shape[2]);
                let diag: Vec<f32> = match rule {
                    Some((r, params)) => {
                        let s = format!("{}scores", name.trim_end_matches("pattern"));
                        let sv = hook(first.as_ref().expect("scores were read"), &s)?.to_f64_vec();
                        (0..b * h * tq)
                            .map(|x| {
                                let (head, i) = ((x / tq) % h, x % tq);
                                let env = RuleEnv {
                                    score: sv[x * tq + i],
                                    i,
                                    j: i,
                                    head,
                                    kv_head: head / r.group.max(1),
                                    keys: tq,
                                    seg_i: 0,
                                    seg_j: 0,
                                    params,
                                };
                                self_only_weight(r, env) as f32
                            })
                            .collect()
                    }
                    None => vec![1.0; b * h * tq],
                };
                let mut w = vec![0.0f32; b * h * tq * tq];
                for (i, &x) in diag.iter().enumerate() {
                    w[i * tq + i % tq] = x;
                }
                replace.push(Intervention::replace(name.clone(), Tensor::f32(&shape, w)));
            }
            model.run(&g, &prompts.tokens, &[mid.as_str()], &replace)?
        }
    };
    let lg = logits(&out)?;
    let v = lg.shape[2];
    let lv = lg.to_f64_vec();
    let mv = hook(&out, &mid)?.to_f64_vec();
    let ro = Readout::of(model)?;
    let d = ro.dim;
    let mut stats = QueryStats::default();
    let mut rows = Vec::with_capacity(n);
    for (r, &a) in prompts.answers.iter().enumerate() {
        let row = lv[(r * t + e) * v..(r * t + e + 1) * v].to_vec();
        let a = a as usize;
        stats.p_answer += prob(&row, a);
        stats.rank += 1.0 + row.iter().filter(|&&x| x > row[a]).count() as f64;
        stats.logit_diff += logit_diff(&row, a);
        stats.accuracy += f64::from(u8::from(argmax(&row) == a));
        stats.entropy += entropy(&row);
        let x = &mv[(r * t + e) * d..(r * t + e + 1) * d];
        stats.p_answer_mid += prob(&ro.logits(x), a);
        rows.push(row);
    }
    let k = n as f64;
    for s in [
        &mut stats.p_answer,
        &mut stats.rank,
        &mut stats.logit_diff,
        &mut stats.accuracy,
        &mut stats.entropy,
        &mut stats.p_answer_mid,
    ] {
        *s /= k;
    }
    Ok(QueryRun {
        stats,
        logits: rows,
    })
}

fn hook_id(g: &weft_compiler::ir::Graph, name: &str) -> weft_compiler::ir::ValueId {
    g.hooks
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .expect("the name came from the graph's hooks")
}

/// Entropy of `softmax(logits)` in nats.
fn entropy(logits: &[f64]) -> f64 {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    logits
        .iter()
        .map(|l| {
            let p = (l - m).exp() / z;
            if p > 0.0 {
                -p * p.ln()
            } else {
                0.0
            }
        })
        .sum()
}

/// The final-layer analysis with `cfg.intervention`.
pub fn final_layer(model: &Model, cfg: &FinalLayerConfig) -> Result<FinalLayer, ProbeError> {
    let l = last_layer(model)?;
    let p = &cfg.prompts;
    query_index(p)?;
    let fit = match mlp_decomposition(model, l, p) {
        Ok(f) => Some(f),
        // Stopping the attention needs no fit; report the diagnosis as missing instead.
        Err(ProbeError::Numerical(_)) if cfg.intervention == FinalIntervention::SelfOnly => None,
        Err(e) => return Err(e),
    };
    let change = match cfg.intervention {
        FinalIntervention::SelfOnly => LastLayerChange::SelfOnly,
        FinalIntervention::RemoveIntercept => LastLayerChange::SubtractIntercept(
            fit.as_ref()
                .expect("remove_intercept returned above without a fit")
                .fit
                .intercept
                .clone(),
        ),
    };
    let before = last_layer_run(model, p, &LastLayerChange::None)?.stats;
    let after = last_layer_run(model, p, &change)?.stats;
    let (mut toward_mean, mut generic) = (Vec::new(), Vec::new());
    if let Some(f) = &fit {
        let ro = Readout::of(model)?;
        let b = &f.fit.intercept;
        let mean_row: Vec<f64> = (0..ro.dim)
            .map(|j| (0..ro.vocab).map(|v| ro.row(v)[j]).sum::<f64>() / ro.vocab as f64)
            .collect();
        for &a in &p.answers {
            let ua = ro.row(a as usize);
            if let Some(pb) = project(b, &[ua, &mean_row]) {
                let away: Vec<f64> = mean_row.iter().zip(ua).map(|(m, u)| m - u).collect();
                toward_mean.push(cosine(&pb, &mean_row));
                generic.push(cosine(&pb, &away));
            }
        }
    }
    let nonempty = |x: &[f64]| (!x.is_empty()).then(|| super::mean(x));
    Ok(FinalLayer {
        intervention: cfg.intervention,
        layer: l,
        p_answer_before: before.p_answer,
        p_answer_after: after.p_answer,
        rank_before: before.rank,
        rank_after: after.rank,
        logit_diff_before: before.logit_diff,
        logit_diff_after: after.logit_diff,
        accuracy_before: before.accuracy,
        accuracy_after: after.accuracy,
        entropy_before: before.entropy,
        entropy_after: after.entropy,
        p_answer_mid_before: before.p_answer_mid,
        p_answer_mid_after: after.p_answer_mid,
        relative_error: fit.as_ref().map(|f| f.fit.relative_error),
        intercept_norm: fit
            .as_ref()
            .map(|f| dot(&f.fit.intercept, &f.fit.intercept).sqrt()),
        intercept_toward_mean: nonempty(&toward_mean),
        intercept_toward_generic: nonempty(&generic),
        samples: p.answers.len(),
    })
}

/// An attention rule and its parameters' values, `[k][head]`.
type RuleWithParams = (AttentionRule, Vec<Vec<f64>>);

/// The weight `rule` puts on key `env.j = env.i` when it is the only key a query sees (what
/// `mask: self_only` gives), from its raw score `env.score`: `h(s)·e^{f(s)} / (c + e^{f(s)})`
/// for a normalised rule (1 for softmax, `sign(s)` for signed), `φ(s)` for direct weights,
/// with `s` the rule's score modification of the raw score.
fn self_only_weight(rule: &AttentionRule, env: RuleEnv<f64>) -> f64 {
    let s = rule.score.as_ref().map_or(env.score, |e| e.eval(&env));
    let env = env.with_score(s);
    match rule.weights.normaliser() {
        Normaliser::Normalised {
            factor,
            exponent,
            sink,
        } => {
            // e^f / (c + e^f) = 1 / (c·e^{−f} + 1), finite for any f.
            let lone = 1.0 / (f64::from(sink) * (-exponent.eval(&env)).exp() + 1.0);
            factor.eval(&env) * lone
        }
        Normaliser::Direct(phi) => phi.eval(&env),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_compiler::ir::{AttentionMask, BinaryOp, RuleExpr, UnaryOp};

    fn at(score: f64) -> RuleEnv<'static, f64> {
        RuleEnv {
            score,
            i: 3,
            j: 3,
            head: 0,
            kv_head: 0,
            keys: 8,
            seg_i: 0,
            seg_j: 0,
            params: &[],
        }
    }

    #[test]
    fn a_lone_key_gets_the_rules_weight() {
        let rule = |weights| AttentionRule::builtin(weights, AttentionMask::Causal, 1.0);
        let softmax = rule(AttentionWeights::Softmax);
        let signed = rule(AttentionWeights::Signed);
        assert_eq!(self_only_weight(&softmax, at(-2.0)), 1.0);
        assert_eq!(self_only_weight(&signed, at(-2.0)), -1.0);
        assert_eq!(self_only_weight(&signed, at(0.0)), 0.0);
        // A sink of 1: e^s / (1 + e^s); doubled scores first.
        let sink = AttentionRule {
            score: Some(RuleExpr::binary(
                BinaryOp::Mul,
                RuleExpr::Const(2.0),
                RuleExpr::s(),
            )),
            ..rule(AttentionWeights::Rule(Normaliser::Normalised {
                factor: RuleExpr::Const(1.0),
                exponent: RuleExpr::s(),
                sink: 1.0,
            }))
        };
        let want = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((self_only_weight(&sink, at(0.5)) - want).abs() < 1e-12);
        let sigmoid = rule(AttentionWeights::Rule(Normaliser::Direct(RuleExpr::unary(
            UnaryOp::Sigmoid,
            RuleExpr::s(),
        ))));
        assert!((self_only_weight(&sigmoid, at(0.0)) - 0.5).abs() < 1e-12);
    }
}
