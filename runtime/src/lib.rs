//! weft-runtime: executes compiled weft graphs on a backend (the CPU reference or wgpu),
//! trains them and writes run directories.
//!
//! Today: [`Tensor`], the [`Backend`] trait, the CPU reference backend ([`cpu::CpuBackend`],
//! with an f64 mode for gradient checks) and seeded parameter initialisation ([`init`]).
//! Training infrastructure: [`optim`] (optimizers, schedules, clipping, accumulation), [`data`]
//! (batches, synthetic tasks, text, transforms), [`checkpoint`] and [`rundir`].

mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod data;
mod error;
pub mod fold;
pub mod hf;
pub mod init;
pub mod optim;
pub mod probes;
pub mod replace;
pub mod rundir;
mod select;
mod tensor;
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
