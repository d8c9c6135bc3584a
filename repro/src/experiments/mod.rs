//! The experiments, one file each, in the order of METHODS.md §11.12's table of issue #9 (a
//! method with a from-scratch and a pretrained-LM experiment has one of each).

use crate::{Lab, Report, ReproError};

mod batch_icl;
mod batch_icl_lm;
mod cog;
mod colour_lines;
mod copy_recipe;
mod dr_icl;
mod factual;
mod grok;
mod hope;
mod masked_thought;
mod moice;
mod mom;
mod pear;
mod pear_lm;

/// One reproduction: its name (`weft repro NAME`, `examples/repro/NAME/`), the method, what it
/// is compared with, and the function that runs it.
pub struct Experiment {
    pub name: &'static str,
    pub method: &'static str,
    pub comparison: &'static str,
    /// Runs on SmolLM2-135M-Instruct (the GGUF file [`crate::smollm2_path`] names), not on a
    /// model it trains from scratch.
    pub pretrained: bool,
    pub run: fn(&mut Lab, &mut Report) -> Result<(), ReproError>,
}

/// Every experiment.
pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "cog",
        method: "Cog attention",
        comparison: "signed vs softmax LM, same params",
        pretrained: false,
        run: cog::run,
    },
    Experiment {
        name: "hope",
        method: "HoPE",
        comparison: "RoPE vs HoPE vs NoPE on the copy recipe, train at T, test up to 8T, 3 seeds",
        pretrained: false,
        run: hope::run,
    },
    Experiment {
        name: "pear",
        method: "PEAR",
        comparison: "retrieval before/after learned head gains (K = 2), copy-trained LM, folded export, 3 seeds",
        pretrained: false,
        run: pear::run,
    },
    Experiment {
        name: "pear_lm",
        method: "PEAR (SmolLM2)",
        comparison: "SmolLM2-135M-Instruct (GGUF) before/after learned gains of K = 4 detected heads, folded: retrieval by depth, 3 seeds",
        pretrained: true,
        run: pear_lm::run,
    },
    Experiment {
        name: "grok",
        method: "Grok-to-copy",
        comparison: "weight decay 0 vs 0.1 vs 1.0 on the copy recipe, 3 seeds",
        pretrained: false,
        run: grok::run,
    },
    Experiment {
        name: "mom",
        method: "MoM",
        comparison: "vanilla vs mixture-of-modules (top-2 and top-1 routing), equal params, 3 seeds",
        pretrained: false,
        run: mom::run,
    },
    Experiment {
        name: "moice",
        method: "MoICE",
        comparison:
            "SmolLM2-135M-Instruct (GGUF) vs its MoICE copy (routers trained, all else frozen): retrieval by depth, 3 router seeds",
        pretrained: true,
        run: moice::run,
    },
    Experiment {
        name: "factual",
        method: "Factual recall",
        comparison:
            "SmolLM2-135M-Instruct (GGUF) on facts it knows: patching, MLP regression, final layer",
        pretrained: true,
        run: factual::run,
    },
    Experiment {
        name: "masked_thought",
        method: "Masked Thought",
        comparison: "SFT vs masked-thought SFT (<mask> at p 0.2 and random token at p 0.4), 3 seeds",
        pretrained: false,
        run: masked_thought::run,
    },
    Experiment {
        name: "batch_icl",
        method: "Batch-ICL",
        comparison: "Batch-ICL (k chosen on validation) vs N-shot in each of 24 orders, 3 seeds",
        pretrained: false,
        run: batch_icl::run,
    },
    Experiment {
        name: "batch_icl_lm",
        method: "Batch-ICL (SmolLM2)",
        comparison: "SmolLM2-135M-Instruct (GGUF) on word categories: Batch-ICL (k chosen on validation) vs N-shot in each of 24 orders",
        pretrained: true,
        run: batch_icl_lm::run,
    },
    Experiment {
        name: "dr_icl",
        method: "DR-ICL",
        comparison: "plain many-shot NLL vs DR objective, noisy labels, task id hidden, 5 seeds",
        pretrained: false,
        run: dr_icl::run,
    },
];

/// Mean of a slice (NaN when empty).
pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// One row per trained run (`runs[arm][seed]`): arm name, seed, params, final train loss, val
/// loss, train time — the columns of a multi-seed training table.
pub(crate) fn seed_rows(
    table: &mut crate::Table,
    names: &[&str],
    runs: &[Vec<crate::Trained>],
    seeds: &[u64],
) {
    for (n, arm) in names.iter().zip(runs) {
        for (t, seed) in arm.iter().zip(seeds) {
            table.row(vec![
                serde_json::json!(n),
                serde_json::json!(seed),
                serde_json::json!(t.param_count()),
                serde_json::json!(t.final_loss),
                serde_json::json!(t.val_loss()),
                serde_json::json!(t.wall_s),
            ]);
        }
    }
}
