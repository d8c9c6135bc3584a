//! The ten experiments, one file each, in the order of METHODS.md §11.12's table of issue #9.

use crate::{Lab, Report, ReproError};

mod batch_icl;
mod cog;
mod copy_recipe;
mod dr_icl;
mod factual;
mod grok;
mod hope;
mod masked_thought;
mod moice;
mod mom;
mod pear;

/// One reproduction: its name (`weft repro NAME`, `examples/repro/NAME/`), the method, what it
/// is compared with, and the function that runs it.
pub struct Experiment {
    pub name: &'static str,
    pub method: &'static str,
    pub comparison: &'static str,
    pub run: fn(&mut Lab, &mut Report) -> Result<(), ReproError>,
}

/// Every experiment.
pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "cog",
        method: "Cog attention",
        comparison: "signed vs softmax LM, same params",
        run: cog::run,
    },
    Experiment {
        name: "hope",
        method: "HoPE",
        comparison: "RoPE vs HoPE vs NoPE on the copy recipe, train at T, test up to 8T, 3 seeds",
        run: hope::run,
    },
    Experiment {
        name: "pear",
        method: "PEAR",
        comparison: "copy model before/after learned head gains, folded export",
        run: pear::run,
    },
    Experiment {
        name: "grok",
        method: "Grok-to-copy",
        comparison: "weight decay 0 vs 0.1 vs 1.0 on the copy recipe, 3 seeds",
        run: grok::run,
    },
    Experiment {
        name: "mom",
        method: "MoM",
        comparison: "vanilla vs mixture-of-modules, equal params",
        run: mom::run,
    },
    Experiment {
        name: "moice",
        method: "MoICE",
        comparison: "base RoPE model vs router-only trained MoICE",
        run: moice::run,
    },
    Experiment {
        name: "factual",
        method: "Factual recall",
        comparison:
            "SmolLM2-135M-Instruct (GGUF) on facts it knows: patching, MLP regression, final layer",
        run: factual::run,
    },
    Experiment {
        name: "masked_thought",
        method: "Masked Thought",
        comparison: "SFT vs masked-thought SFT",
        run: masked_thought::run,
    },
    Experiment {
        name: "batch_icl",
        method: "Batch-ICL",
        comparison: "N-shot over all orders vs Batch-ICL k-sweep",
        run: batch_icl::run,
    },
    Experiment {
        name: "dr_icl",
        method: "DR-ICL",
        comparison: "plain many-shot NLL vs DR objective, noisy labels",
        run: dr_icl::run,
    },
];

/// Mean of a slice (NaN when empty).
pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}
