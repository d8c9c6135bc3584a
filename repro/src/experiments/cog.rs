//! Cog attention (METHODS §2, §11.12 #2): a character LM with signed attention in the middle
//! layers against the same LM with softmax everywhere, three seeds each. Reports validation
//! loss (mean and spread over seeds, and the curve over training), negative attention mass per
//! layer and the representation-collapse probe Δ(n) at the paper's lengths (n = 200..2000,
//! normalised by Δ(200)) on the first seed's models.

use super::copy_recipe::{se_diff, spread};
use crate::{Lab, Report, ReproError, Table, Trained};
use serde_json::json;
use weft_runtime::probes::collapse::{collapse_probe, CollapseConfig};
use weft_runtime::probes::data::CollapseTask;
use weft_runtime::probes::negative_mass::{negative_mass, NegativeMassConfig};

/// The criterion, fixed before the final run (its commit is named in the report).
const CRITERION: &str = include_str!("../../criteria/cog.txt");
/// The largest difference in validation loss (nats) that still counts as "equal".
const MARGIN: f64 = 0.02;

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let mut specs = [lab.spec("softmax.weft")?, lab.spec("cog.weft")?];
    let steps = lab.pick(2000, 12);
    for s in &mut specs {
        s.set("steps", steps);
        s.set("batch", lab.pick(16, 4));
        s.set("eval_every", lab.pick(250, 12));
    }
    let seeds: Vec<u64> = (0..lab.pick(3, 1)).map(|i| lab.seed() + i).collect();
    let names = ["softmax", "cog"];
    // runs[m][s]: model names[m], seed seeds[s].
    let mut all: Vec<Vec<Trained>> = vec![Vec::new(), Vec::new()];
    for (m, spec) in specs.iter().enumerate() {
        for &seed in &seeds {
            let run = format!("{}_seed{seed}", names[m]);
            all[m].push(lab.train_seeded(spec, &run, None, seed)?);
        }
    }
    let vals: Vec<Vec<f64>> = all
        .iter()
        .map(|arm| arm.iter().map(Trained::val_loss).collect())
        .collect();

    let mut losses = Table::new(
        &format!("Language modelling (Shakespeare, characters; {steps} steps of batch 16)"),
        &[
            "model",
            "seed",
            "params",
            "final train loss",
            "val loss",
            "train time (s)",
        ],
    );
    super::seed_rows(&mut losses, &names, &all, &seeds);
    r.table(losses);

    let mut spread_t = Table::new(
        &format!("Validation loss over {} seeds", seeds.len()),
        &["model", "mean", "sd", "SE"],
    );
    for (n, v) in names.iter().zip(&vals) {
        let (m, sd, se) = spread(v);
        spread_t.row(vec![json!(n), json!(m), json!(sd), json!(se)]);
    }
    r.table(spread_t);

    let mut curve = Table::new(
        "Validation loss by step (mean over seeds): converging or separating",
        &["step", "softmax", "cog", "cog − softmax"],
    );
    let val_curve = |t: &Trained| -> Vec<(u64, f64)> {
        t.evals()
            .iter()
            .filter_map(|l| Some((l["step"].as_u64()?, l["val_loss"].as_f64()?)))
            .collect()
    };
    let curves: Vec<Vec<Vec<(u64, f64)>>> = all
        .iter()
        .map(|arm| arm.iter().map(val_curve).collect())
        .collect();
    for (i, &(step, _)) in curves[0][0].iter().enumerate() {
        let at = |m: usize| {
            crate::experiments::mean(
                &curves[m]
                    .iter()
                    .map(|c| c.get(i).map_or(f64::NAN, |p| p.1))
                    .collect::<Vec<_>>(),
            )
        };
        curve.row(vec![
            json!(step),
            json!(at(0)),
            json!(at(1)),
            json!(at(1) - at(0)),
        ]);
    }
    r.table(curve);

    let runs = [&all[0][0], &all[1][0]];
    // The paper's lengths (Δ normalised by Δ(200)); quick mode keeps two short ones.
    let lengths: Vec<usize> = lab.pick(vec![200, 400, 600, 800, 1000, 2000], vec![8, 16]);
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

    let (base, cog) = (spread(&vals[0]).0, spread(&vals[1]).0);
    let se = se_diff(&vals[1], &vals[0]);
    r.headline(
        &format!("val loss (mean of {} seeds)", seeds.len()),
        "softmax",
        base,
        "cog",
        cog,
        cog - base + 2.0 * se <= MARGIN,
        CRITERION.trim(),
    );
    r.note(format!(
        "Cog − softmax: {:+.4} nats, 2·SE of the difference {:.4}; upper end {:+.4} against the \
         margin {MARGIN}. Seeds needed to bring 2·SE under a margin m: n ≥ 4·(sd₀² + sd₁²)/m², \
         with the standard deviations above.",
        cog - base,
        2.0 * se,
        cog - base + 2.0 * se
    ));
    let middle: f64 = (1..layers.saturating_sub(1))
        .map(|l| crate::experiments::mean(&mass_rows[1].mass[l]))
        .sum();
    r.note(format!(
        "Negative mass in Cog's signed middle layers sums to {middle:.4} (softmax layers are 0 by construction)."
    ));
    let last = lengths.len() - 1;
    let (soft, cog) = (deltas[0].normalised[last], deltas[1].normalised[last]);
    r.note(format!(
        "Negative mass and the collapse probe use the seed-{} models; the models train on \
         64-character windows, so the probe's lengths ({}..{}) are far beyond training, as in \
         the paper's probe of its LMs.",
        seeds[0], lengths[0], lengths[last]
    ));
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
