//! Probes: interpretability measurements and evaluation sweeps over a model (METHODS §1.6,
//! §2.5, §3.3–3.4, §4.2, §5.2, §7.4, §8.3–8.6, §10.2, §11.9). Each probe is a library function taking a [`Model`] and a small
//! config (with a seed for its built-in data generator) and returning a plain result struct
//! that serialises to JSON; [`program::run_probe`] maps a spec's typed `program NAME = probe(...)`
//! (`weft_dsl::typed::Probe`, matched exhaustively) onto them.
//!
//! They run on any [`crate::Backend`]; those that patch values (path patching, Batch-ICL)
//! need [`crate::Backend::run_replacing`].

pub mod attribution;
pub mod batch_icl;
pub mod collapse;
pub mod copy;
pub mod data;
pub mod distance;
pub mod eigen;
pub mod final_layer;
pub mod icl_orders;
pub mod induction;
pub mod length_sweep;
pub mod linalg;
pub mod logit_lens;
pub mod mlp_decomposition;
mod model;
pub mod needle_sweep;
pub mod negative_mass;
pub mod ov;
pub mod path_patching;
pub mod pear;
pub mod program;
pub mod prompts;
pub mod readout;
pub mod rope_components;
pub mod shots_sweep;
mod tally;

pub use model::{hook, logits, Lowered, Model};

use crate::error::RunError;

/// Why a probe could not run. Every message names what was missing or wrong.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe's configuration does not fit the model (too long, bad layer...).
    #[error("{0}")]
    Config(String),
    /// The model lacks something the probe reads (a weight, a hook point, a rotary table).
    #[error("{0}")]
    Model(String),
    /// The backend failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A numerical routine failed (a singular system, QR without convergence).
    #[error("{0}")]
    Numerical(String),
}

/// Mean of a slice (NaN when empty).
pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}
