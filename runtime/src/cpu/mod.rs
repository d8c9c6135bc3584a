//! The CPU reference backend: an interpreter over the IR that executes every op in
//! topological order with a real GEMM (`matrixmultiply`) and rayon across batches/rows.
//!
//! It is generic over the float type: `Precision::F32` is the reference the GPU kernels are
//! checked against; `Precision::F64` evaluates the same graph in double precision so that
//! finite-difference gradient checks can use tight tolerances.

pub(crate) mod attention;
mod elementwise;
mod exec;
mod fast;
mod index;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod real;
pub(crate) mod reduce;
pub(crate) mod rope;
pub(crate) mod shape_ops;
pub(crate) mod value;

pub use fast::FastCpuBackend;

use crate::backend::{Backend, HookSelection, Outputs, ParamStore};
use crate::error::RunError;
use crate::replace::Intervention;
use crate::tensor::Tensor;
use std::collections::HashMap;
use weft_compiler::ir::Graph;

/// Float precision the CPU backend computes f32-typed values in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Real f32 arithmetic (the reference for the GPU).
    #[default]
    F32,
    /// f64 arithmetic; f32-typed inputs may be given as f32 or f64 tensors, and f32-typed
    /// results come back as f64 tensors. For gradient checks.
    F64,
}

/// The CPU backend.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    pub precision: Precision,
}

impl CpuBackend {
    /// An f32 backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// An f64 backend (gradient checks).
    pub fn f64() -> Self {
        CpuBackend {
            precision: Precision::F64,
        }
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        match self.precision {
            Precision::F32 => "cpu",
            Precision::F64 => "cpu-f64",
        }
    }

    fn run(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
    ) -> Result<Outputs, RunError> {
        self.run_replacing(graph, inputs, params, hooks, &[])
    }

    fn run_replacing(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
        replace: &[Intervention],
    ) -> Result<Outputs, RunError> {
        match self.precision {
            Precision::F32 => exec::run::<f32>(graph, inputs, params, hooks, replace),
            Precision::F64 => exec::run::<f64>(graph, inputs, params, hooks, replace),
        }
    }
}
