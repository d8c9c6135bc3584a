//! Probes and programs (`program NAME = probe(...)`, `train { eval = [...] }`).

use super::{choice, Args, ResolveError, Resolved};
use crate::builtins::Kind;
use crate::check::value::CallValue;
use serde::{Deserialize, Serialize};

choice! {
    /// The score form of `ov_copy_score`.
    OvForm {
        /// Eigenvalue positivity of the OV circuit.
        Eigen = "eigen",
        /// Top-k token copying.
        Topk = "topk",
    }
}

choice! {
    /// The prompt pair of `collapse_probe`.
    CollapseTaskName {
        CountOnes = "count_ones",
        FindZero = "find_zero",
    }
}

choice! {
    /// The prompts and metric of `path_patching`.
    PatchTask {
        Copy = "copy",
        Facts = "facts",
    }
}

choice! {
    /// What replaces a head's result in `path_patching`.
    PatchCorruption {
        /// The batch mean.
        Mean = "mean",
        /// The corrupted run's value.
        Corrupted = "corrupted",
    }
}

choice! {
    /// The intervention of `final_layer`.
    FinalIntervention {
        SelfOnly = "self_only",
        RemoveIntercept = "remove_intercept",
    }
}

/// A probe call with its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Probe {
    CopyAccuracy {
        len: usize,
        samples: usize,
    },
    InductionScore {
        len: usize,
        samples: usize,
    },
    OvCopyScore {
        form: OvForm,
        k: usize,
    },
    LogitLens {
        len: usize,
    },
    HeadAttribution {
        len: usize,
    },
    AttentionDistance {
        len: usize,
    },
    RopeComponents {
        layer: usize,
        head: usize,
    },
    NegativeMass {
        len: usize,
    },
    CollapseProbe {
        task: CollapseTaskName,
        lengths: Vec<usize>,
    },
    PathPatching {
        task: PatchTask,
        corruption: PatchCorruption,
        samples: usize,
    },
    Pear {
        heads: usize,
        steps: usize,
        lr: f64,
        len: usize,
    },
    MlpDecomposition {
        layer: usize,
    },
    FinalLayer {
        intervention: FinalIntervention,
    },
    BatchIcl {
        demos: usize,
        layer: Option<usize>,
        positions: usize,
        alpha: f64,
        epochs: usize,
    },
    IclOrders {
        demos: usize,
    },
    ShotsSweep {
        shots: Vec<usize>,
    },
    NeedleSweep {
        positions: usize,
    },
    LengthSweep {
        lengths: Vec<usize>,
    },
}

impl Resolved for Probe {
    const KIND: Kind = Kind::Probe;
    const NAMES: &'static [&'static str] = &[
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
        "pear",
        "mlp_decomposition",
        "final_layer",
        "batch_icl",
        "icl_orders",
        "shots_sweep",
        "needle_sweep",
        "length_sweep",
    ];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "copy_accuracy" => Probe::CopyAccuracy {
                len: a.count("len")?,
                samples: a.count("samples")?,
            },
            "induction_score" => Probe::InductionScore {
                len: a.count("len")?,
                samples: a.count("samples")?,
            },
            "ov_copy_score" => Probe::OvCopyScore {
                form: a.choice("form")?,
                k: a.count("k")?,
            },
            "logit_lens" => Probe::LogitLens {
                len: a.count("len")?,
            },
            "head_attribution" => Probe::HeadAttribution {
                len: a.count("len")?,
            },
            "attention_distance" => Probe::AttentionDistance {
                len: a.count("len")?,
            },
            "rope_components" => Probe::RopeComponents {
                layer: a.count("layer")?,
                head: a.count("head")?,
            },
            "negative_mass" => Probe::NegativeMass {
                len: a.count("len")?,
            },
            "collapse_probe" => Probe::CollapseProbe {
                task: a.choice("task")?,
                lengths: a.counts("lengths")?,
            },
            "path_patching" => Probe::PathPatching {
                task: a.choice("task")?,
                corruption: a.choice("corruption")?,
                samples: a.count("samples")?,
            },
            "pear" => Probe::Pear {
                heads: a.count("heads")?,
                steps: a.count("steps")?,
                lr: a.float("lr")?,
                len: a.count("len")?,
            },
            "mlp_decomposition" => Probe::MlpDecomposition {
                layer: a.count("layer")?,
            },
            "final_layer" => Probe::FinalLayer {
                intervention: a.choice("intervention")?,
            },
            "batch_icl" => Probe::BatchIcl {
                demos: a.count("demos")?,
                layer: a.opt("layer", Args::count)?,
                positions: a.count("positions")?,
                alpha: a.float("alpha")?,
                epochs: a.count("epochs")?,
            },
            "icl_orders" => Probe::IclOrders {
                demos: a.count("demos")?,
            },
            "shots_sweep" => Probe::ShotsSweep {
                shots: a.counts("shots")?,
            },
            "needle_sweep" => Probe::NeedleSweep {
                positions: a.count("positions")?,
            },
            "length_sweep" => Probe::LengthSweep {
                lengths: a.counts("lengths")?,
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Probe::CopyAccuracy { .. } => "copy_accuracy",
            Probe::InductionScore { .. } => "induction_score",
            Probe::OvCopyScore { .. } => "ov_copy_score",
            Probe::LogitLens { .. } => "logit_lens",
            Probe::HeadAttribution { .. } => "head_attribution",
            Probe::AttentionDistance { .. } => "attention_distance",
            Probe::RopeComponents { .. } => "rope_components",
            Probe::NegativeMass { .. } => "negative_mass",
            Probe::CollapseProbe { .. } => "collapse_probe",
            Probe::PathPatching { .. } => "path_patching",
            Probe::Pear { .. } => "pear",
            Probe::MlpDecomposition { .. } => "mlp_decomposition",
            Probe::FinalLayer { .. } => "final_layer",
            Probe::BatchIcl { .. } => "batch_icl",
            Probe::IclOrders { .. } => "icl_orders",
            Probe::ShotsSweep { .. } => "shots_sweep",
            Probe::NeedleSweep { .. } => "needle_sweep",
            Probe::LengthSweep { .. } => "length_sweep",
        }
    }
}
