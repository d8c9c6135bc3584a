//! Training's memory budget: before a run allocates anything the size of the model, estimate
//! what it needs — parameters, gradients and their accumulator, optimizer state, and the
//! activation peak the memory planner (`passes::plan_memory`) computes for the graph — and
//! refuse with the numbers and the setting to lower (the measure and the verdict:
//! [`crate::memory`]).

use super::{Plan, TrainError};
use crate::memory::{
    advice, available, graph_parts, judge, param_counts, MemoryError, MAX_ACTIVATION_ELEMENTS,
};
use crate::optim::OptimizerConfig;
use weft_compiler::ir::Graph;
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::Checked;

/// Optimizer state per trainable element (AdamW: two moments; SGD: momentum if any).
fn optimizer_slots(o: &OptimizerConfig) -> u128 {
    match o {
        OptimizerConfig::Adamw(_) => 2,
        OptimizerConfig::Sgd(s) if s.momentum != 0.0 => 1,
        OptimizerConfig::Sgd(_) => 0,
    }
}

/// What training needs besides activations: f32 parameters, gradients, the accumulator
/// gradients are summed into, and optimizer state.
fn state_parts(all: u128, trainable: u128, p: &Plan) -> Vec<(String, u128)> {
    let slots = optimizer_slots(&p.optimizer);
    vec![
        ("parameters".into(), 4 * all),
        ("gradients".into(), 2 * 4 * trainable),
        ("optimizer state".into(), slots * 4 * trainable),
    ]
}

/// First check, before the full-size training graph is built: parameters and optimizer
/// state from the model at one token, plus the activations no training step can avoid (the
/// logits, one attention score matrix per layer). Also refuses shapes whose element counts
/// would not fit the planner's 64-bit arithmetic.
pub fn check_training(spec: &Checked, p: &Plan) -> Result<(), TrainError> {
    check_training_with(spec, p, available())
}

/// [`check_training`] against a given amount of memory (`None`: unlimited).
pub fn check_training_with(
    spec: &Checked,
    p: &Plan,
    available: Option<(u64, String)>,
) -> Result<(), TrainError> {
    let mut opts = LowerOptions::new(1, 1);
    opts.with_loss = true;
    opts.trainable = p.trainable.clone();
    // A spec that only lowers at its real shape is sized by the second check alone.
    let Ok(small) = lower(spec, &opts) else {
        return Ok(());
    };
    let (all, trainable) = param_counts(&small);
    let micro = (p.batch / p.accumulate.max(1)) as u128;
    let seq = p.seq as u128;
    let c = &spec.model.config;
    let (vocab, heads, layers) = (
        c.vocab.max(1) as u128,
        c.heads.max(1) as u128,
        c.layers.max(1) as u128,
    );
    let widest = small
        .params
        .iter()
        .flat_map(|q| q.shape.iter().copied())
        .max()
        .unwrap_or(1) as u128;
    let largest = [
        micro * heads * seq * seq,
        micro * seq * widest,
        micro * seq * vocab,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let mut parts = state_parts(all, trainable, p);
    // Logits and their gradient; attention scores and weights per layer, kept for backward.
    parts.push((
        "activations (at least)".into(),
        4 * (2 * micro * seq * vocab + 2 * layers * micro * heads * seq * seq),
    ));
    if largest > MAX_ACTIVATION_ELEMENTS {
        let needed: u128 = parts.iter().map(|(_, n)| *n).sum::<u128>().max(4 * largest);
        let (avail, from) = available.unwrap_or((0, "no limit known".into()));
        return Err(MemoryError {
            what: "training".into(),
            needed,
            available: avail,
            available_from: from,
            parts,
            advice: advice(4 * all <= avail as u128, true),
        }
        .into());
    }
    Ok(judge("training", parts, available, true)?)
}

/// Second check, on the training graph itself: the planned activation peak of one
/// micro-batch, the inputs it reads, and the state of [`check_training`].
pub fn check_graph(g: &Graph, p: &Plan) -> Result<(), TrainError> {
    check_graph_with(g, p, available())
}

/// [`check_graph`] against a given amount of memory.
pub fn check_graph_with(
    g: &Graph,
    p: &Plan,
    available: Option<(u64, String)>,
) -> Result<(), TrainError> {
    let (all, trainable) = param_counts(g);
    let mut parts = state_parts(all, trainable, p);
    parts.extend(graph_parts(g));
    Ok(judge("training", parts, available, true)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::tests::{limit, SPEC};
    use weft_compiler::passes::plan_memory;

    fn plan_of(src: &str) -> (Checked, Plan) {
        let spec = weft_dsl::check_source(src).unwrap();
        let p = super::super::plan(&spec, None, None).unwrap();
        (spec, p)
    }

    fn refusal(r: Result<(), TrainError>) -> MemoryError {
        match r {
            Err(TrainError::Memory(m)) => *m,
            other => panic!("expected a memory refusal, got {other:?}"),
        }
    }

    #[test]
    fn refuses_with_numbers_and_the_setting_to_lower() {
        let (spec, p) = plan_of(SPEC);
        let g = super::super::training_graph(&spec, p.batch, p.seq).unwrap();
        let (all, trainable) = param_counts(&g);
        assert!(all > 10_000 && trainable == all);
        // Plenty: accepted by both checks.
        check_training_with(&spec, &p, limit(1 << 40)).unwrap();
        check_graph_with(&g, &p, limit(1 << 40)).unwrap();
        // Less than the weights: the model is what to shrink.
        let m = refusal(check_training_with(&spec, &p, limit(1000)));
        assert!(m.needed > 16 * all, "{m}");
        let text = m.to_string();
        assert!(
            text.contains("training needs about") && text.contains("is available (the test)"),
            "{text}"
        );
        assert!(
            text.contains("parameters")
                && text.contains("optimizer state")
                && text.contains("`dim`"),
            "{text}"
        );
        // Room for weights and optimizer state, not for this batch's activations: lower batch.
        let state = 4 * all + 16 * trainable;
        let m = refusal(check_graph_with(&g, &p, limit(state + 1024)));
        let text = m.to_string();
        assert!(
            text.contains("activations (planned peak)") && text.contains("`batch`"),
            "{text}"
        );
        let peak = m
            .parts
            .iter()
            .find(|(k, _)| k.starts_with("activations"))
            .unwrap()
            .1;
        assert!(
            peak > 64 * 64 * 64 * 4,
            "logits of one batch at least: {peak}"
        );
        // Accumulating over 8 micro-batches shrinks the planned peak: the advice works.
        let (spec8, p8) = plan_of(&SPEC.replace("steps = 3", "steps = 3\n  accumulate = 8"));
        let g8 = super::super::training_graph(&spec8, p8.batch / 8, p8.seq).unwrap();
        let peak8 = plan_memory(&g8, true).peak_bytes as u128;
        assert!(peak8 * 4 < peak, "{peak8} vs {peak}");
    }

    #[test]
    fn a_model_past_any_memory_is_refused_before_its_graph_is_built() {
        // The spec: 70 trillion parameters. Sized from the one-token graph alone.
        let (spec, p) = plan_of(&SPEC.replace("dim = 32", "dim = 1048576"));
        let m = refusal(check_training_with(&spec, &p, limit(24 << 30)));
        assert!(m.needed > 1 << 47, "{m}");
        assert!(
            m.to_string().contains("TiB") && m.advice.contains("`dim`"),
            "{m}"
        );
        // Sizes whose products would pass 64 bits are refused without building anything.
        let huge = SPEC
            .replace("ctx = 64", "ctx = 16777216")
            .replace("seq = 64", "seq = 16777216")
            .replace("batch = 64", "batch = 1048576")
            .replace("heads = 4", "heads = 16");
        let (spec, p) = plan_of(&huge);
        let m = refusal(check_training_with(&spec, &p, None));
        assert!(m.needed > 1 << 64, "{m}");
    }
}
