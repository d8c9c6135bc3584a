//! Cog attention (METHODS §2, §11.12 #2): a character LM with signed attention in the middle
//! layers against the same LM with softmax everywhere. Reports validation loss, negative
//! attention mass per layer and the representation-collapse probe Δ(n).

use crate::{Lab, Report, ReproError, Table};
use serde_json::json;
use weft_runtime::probes::collapse::{collapse_probe, CollapseConfig};
use weft_runtime::probes::data::CollapseTask;
use weft_runtime::probes::negative_mass::{negative_mass, NegativeMassConfig};

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let mut specs = [lab.spec("softmax.weft")?, lab.spec("cog.weft")?];
    for s in &mut specs {
        s.set("steps", lab.pick(400, 12));
        s.set("batch", lab.pick(16, 4));
        s.set("eval_every", lab.pick(100, 12));
    }
    let names = ["softmax", "cog"];
    let runs = [
        lab.train(&specs[0], names[0], None)?,
        lab.train(&specs[1], names[1], None)?,
    ];

    let mut losses = Table::new(
        "Language modelling (Shakespeare, characters)",
        &[
            "model",
            "params",
            "final train loss",
            "val loss",
            "train time (s)",
        ],
    );
    for (n, t) in names.iter().zip(&runs) {
        losses.row(vec![
            json!(n),
            json!(t.param_count()),
            json!(t.final_loss),
            json!(t.val_loss()),
            json!(t.wall_s),
        ]);
    }
    r.table(losses);

    let lengths: Vec<usize> = lab.pick(vec![8, 16, 32, 48], vec![8, 16]);
    let mut mass_rows = Vec::new();
    let mut deltas = Vec::new();
    for (spec, t) in specs.iter().zip(&runs) {
        let model = lab.model(spec, &t.params);
        let mass = lab.probe("negative mass", || {
            negative_mass(
                &model,
                &NegativeMassConfig {
                    len: 64,
                    samples: lab.pick(8, 2),
                    seed: lab.seed(),
                },
            )
        })?;
        mass_rows.push(mass);
        let c = lab.probe("collapse probe", || {
            collapse_probe(
                &model,
                &CollapseConfig {
                    task: CollapseTask::CountOnes,
                    lengths: lengths.clone(),
                },
            )
        })?;
        deltas.push(c);
    }

    let mut mass = Table::new(
        "Negative attention mass per layer (mean over heads of Σ|w| over w < 0)",
        &["layer", "softmax", "cog"],
    );
    let layers = mass_rows[1].mass.len();
    for l in 0..layers {
        let m = |i: usize| crate::experiments::mean(&mass_rows[i].mass[l]);
        mass.row(vec![json!(l), json!(m(0)), json!(m(1))]);
    }
    r.table(mass);

    let mut collapse = Table::new(
        "Collapse probe Δ(n) on count-ones prompts (last-token state distance, n+1 tokens)",
        &[
            "n",
            "softmax Δ(n)",
            "cog Δ(n)",
            "softmax Δ(n)/Δ(n₀)",
            "cog Δ(n)/Δ(n₀)",
        ],
    );
    for (i, n) in lengths.iter().enumerate() {
        collapse.row(vec![
            json!(n),
            json!(deltas[0].delta[i]),
            json!(deltas[1].delta[i]),
            json!(deltas[0].normalised[i]),
            json!(deltas[1].normalised[i]),
        ]);
    }
    r.table(collapse);

    let (base, cog) = (runs[0].val_loss(), runs[1].val_loss());
    r.headline(
        "val loss",
        "softmax",
        base,
        "cog",
        cog,
        cog <= base + 0.02,
        "Cog's validation loss is at most 0.02 nats above softmax's (the paper: equal or slightly lower)",
    );
    let middle: f64 = (1..layers.saturating_sub(1))
        .map(|l| crate::experiments::mean(&mass_rows[1].mass[l]))
        .sum();
    r.note(format!(
        "Negative mass in Cog's signed middle layers sums to {middle:.4} (softmax layers are 0 by construction)."
    ));
    let last = lengths.len() - 1;
    let (soft, cog) = (deltas[0].normalised[last], deltas[1].normalised[last]);
    // Within 5 % the two decay alike; the probe's samples are few.
    let verdict = if cog > 1.05 * soft {
        "more slowly"
    } else if cog < soft / 1.05 {
        "faster"
    } else {
        "about as fast"
    };
    r.note(format!(
        "Δ(n) at n = {} relative to n = {}: softmax {soft:.3}, cog {cog:.3} — Cog's decays \
         {verdict} (the paper expects more slowly).",
        lengths[last], lengths[0],
    ));
    Ok(())
}
