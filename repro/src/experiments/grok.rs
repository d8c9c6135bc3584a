//! Grok-to-copy (METHODS §5, §11.12 #5): the same LM, on a bigram chain with occasionally
//! repeated spans, trained with weight decay 0 and 0.1, and with weight decay 0.1 at twice
//! the batch. Copy accuracy on repeated random
//! strings and per-head induction scores are recorded every `eval_every` steps by the
//! training loop's eval probes; the report reads them back from the run directories.

use crate::{Lab, Report, ReproError, Table, Trained};
use serde_json::json;
use weft_runtime::rundir::{read_trace, trace_kind};

/// Copy accuracy that counts as "has learned to copy".
const JUMP: f64 = 0.5;

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let steps = lab.pick(600, 12);
    let batch = lab.pick(16, 4);
    let configs = [
        ("wd 0", 0.0, batch),
        ("wd 0.1", 0.1, batch),
        ("wd 0.1, 2× batch", 0.1, 2 * batch),
    ];
    let mut runs = Vec::new();
    for (i, (name, wd, b)) in configs.iter().enumerate() {
        let mut spec = lab.spec("grok.weft")?;
        spec.set("steps", steps);
        spec.set("batch", *b);
        spec.set("eval_every", lab.pick(50, 6));
        spec.set_weight_decay(*wd);
        let dir = ["wd0", "wd0.1", "wd0.1_batch2x"][i];
        runs.push((name, lab.train(&spec, dir, None)?));
    }

    let mut curve = Table::new(
        "Copy accuracy on repeated random strings (len 24) by step",
        &[
            "step",
            "tokens (wd 0.1)",
            "wd 0",
            "wd 0.1",
            "wd 0.1, 2× batch",
        ],
    );
    let curves: Vec<Vec<(u64, f64)>> = runs
        .iter()
        .map(|(_, t)| t.probe_curve("copy_accuracy", "accuracy"))
        .collect();
    let tokens = tokens_by_step(&runs[1].1);
    for (i, &(step, _)) in curves[0].iter().enumerate() {
        let at = |c: &Vec<(u64, f64)>| c.get(i).map_or(f64::NAN, |p| p.1);
        // Tokens seen by `step`: the last logged step line at or before it.
        let tok = tokens
            .iter()
            .rev()
            .find(|p| p.0 <= step)
            .map_or(0.0, |p| p.1);
        curve.row(vec![
            json!(step),
            json!(tok),
            json!(at(&curves[0])),
            json!(at(&curves[1])),
            json!(at(&curves[2])),
        ]);
    }
    r.table(curve);

    let mut summary = Table::new(
        "Per run",
        &[
            "run",
            "final loss",
            "val loss",
            "final copy acc",
            "mean copy acc over evals",
            "first step with copy acc ≥ 0.5",
            "best induction score",
            "its layer",
        ],
    );
    let mut means = Vec::new();
    for ((name, t), c) in runs.iter().zip(&curves) {
        let mean = crate::experiments::mean(&c.iter().map(|p| p.1).collect::<Vec<_>>());
        means.push(mean);
        let jump = c.iter().find(|p| p.1 >= JUMP).map(|p| p.0);
        let (best, layer) = best_induction(t);
        summary.row(vec![
            json!(name),
            json!(t.final_loss),
            json!(t.val_loss()),
            json!(c.last().map_or(f64::NAN, |p| p.1)),
            json!(mean),
            json!(jump.map_or("not reached".to_string(), |s| s.to_string())),
            json!(best),
            json!(layer),
        ]);
    }
    r.table(summary);

    let mut by_layer = Table::new(
        "Best induction score per layer over training (wd 0.1)",
        &["step", "layer 0", "layer 1"],
    );
    for (step, layers) in induction_by_layer(&runs[1].1) {
        let mut row = vec![json!(step)];
        row.extend(layers.iter().map(|v| json!(v)));
        by_layer.row(row);
    }
    r.table(by_layer);

    r.headline(
        "mean copy accuracy over training",
        "wd 0",
        means[0],
        "wd 0.1",
        means[1],
        means[1] >= means[0] + 0.02,
        "weight decay 0.1 raises the mean copy accuracy over the evaluations by at least 0.02 \
         (an earlier copy jump)",
    );
    r.note(
        "Batch-size comparison: the paper expects emergence to align in steps, not tokens; compare the \
         `wd 0.1` and `wd 0.1, 2× batch` columns by step.",
    );
    r.note("Attention dropout and the L = 4 variant of §11.12 #5 are not run here (budget).");
    r.note(
        "Why the repeated span sits at a random offset: in a tuning run with the span always at \
         offset 32 (a copy task on chain strings) the model reached val loss 0.76 in 600 steps \
         while copy accuracy on random strings of period 24 stayed at chance (0.018) — it had \
         learned a fixed-offset head, not induction.",
    );
    Ok(())
}

/// `(step, tokens seen)` of every step metrics line of a run, in step order.
fn tokens_by_step(t: &Trained) -> Vec<(u64, f64)> {
    weft_runtime::rundir::read_metrics(&t.dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .iter()
        .filter(|l| l["kind"] != "eval")
        .filter_map(|l| Some((l["step"].as_u64()?, l["tokens"].as_f64()?)))
        .collect()
}

/// `(step, best score per layer)` of every recorded induction-score table.
fn induction_by_layer(t: &Trained) -> Vec<(u64, Vec<f64>)> {
    let dir = t.dir.join("traces").join("induction_score");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|f| read_trace(f).ok())
        .filter(|tr| tr.kind == trace_kind::HEAD_SCORES)
        .filter_map(|tr| {
            let s = tr.tensors.get("scores")?;
            let (l, h) = (s.shape[0], s.shape[1]);
            let v = s.to_f64_vec();
            let best = (0..l)
                .map(|i| {
                    v[i * h..(i + 1) * h]
                        .iter()
                        .cloned()
                        .fold(f64::MIN, f64::max)
                })
                .collect();
            Some((tr.step, best))
        })
        .collect()
}

/// The highest induction score recorded at the end of training, and its layer.
fn best_induction(t: &Trained) -> (f64, usize) {
    induction_by_layer(t)
        .last()
        .map(|(_, layers)| {
            layers
                .iter()
                .enumerate()
                .fold((f64::MIN, 0), |b, (i, &v)| if v > b.0 { (v, i) } else { b })
        })
        .unwrap_or((f64::NAN, 0))
}
