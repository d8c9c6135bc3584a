//! weft-runtime: executes compiled weft graphs on a backend, trains them and writes run
//! directories.
//!
//! Backends ([`Backend`]): the numerical reference [`cpu::CpuBackend`] (with an f64 mode for
//! gradient checks), the fast CPU path [`cpu::FastCpuBackend`] and [`wgpu::WgpuBackend`]
//! (generated WGSL on any GPU). Training: [`train`] (the loop, its plan from the typed
//! `train { }` section, traces, training's memory budget), [`optim`], [`data`],
//! [`checkpoint`], [`rundir`] (the run-directory format of the `weft-rundir` crate, which
//! also defines [`Tensor`], plus the trainer's `RunDir`), [`memory`] (memory budgets of every
//! command). Training steps are built by `weft_compiler::pipeline`. Interpretability:
//! [`probes`] (and `program NAME = probe(...)`), [`replace`] (hook replacement), [`fold`]
//! (PEAR gain folding). Models in and out: [`hf`] (HF and GGUF
//! import, export, decoding). [`bench`] holds the benchmark workloads. [`select_backend`]
//! turns `--backend` names into backends.

mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod data;
mod error;
pub mod fold;
pub mod hf;
pub mod init;
pub mod memory;
pub mod optim;
pub mod probes;
pub mod replace;
pub mod resident;
pub mod rundir;
mod select;
/// The host tensor lives in weft-rundir (traces are files of tensors); re-exported here.
use weft_rundir::tensor;
pub mod tensor_file;
pub mod train;
pub mod wgpu;

pub use backend::{Backend, HookSelection, Outputs, ParamStore};
pub use cpu::{CpuBackend, FastCpuBackend, Precision};
pub use error::RunError;
pub use init::{init_params, Rng};
pub use replace::{Intervention, Sel};
pub use select::select_backend;
pub use tensor::{Tensor, TensorData};
pub use wgpu::WgpuBackend;
