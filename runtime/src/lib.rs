//! weft-runtime: executes compiled weft graphs on a backend (CPU now, wgpu later),
//! trains them and writes run directories.
//!
//! Today: [`Tensor`], the [`Backend`] trait, the CPU reference backend ([`cpu::CpuBackend`],
//! with an f64 mode for gradient checks) and seeded parameter initialisation ([`init`]).

mod backend;
pub mod cpu;
mod error;
pub mod init;
mod tensor;

pub use backend::{Backend, HookSelection, Outputs, ParamStore};
pub use cpu::{CpuBackend, Precision};
pub use error::RunError;
pub use init::{init_params, Rng};
pub use tensor::{Tensor, TensorData};
