//! weft-compiler: turns a checked weft spec into IR graphs, differentiates them, runs passes
//! over them and generates WGSL kernels from them.
//!
//! Stages are modules: [`ir`] (the graph, its builder, shape rules and validator), [`lower`]
//! (checked spec → graph plus the manifest of its sites), [`autodiff`] (reverse mode as an
//! IR → IR pass), [`passes`] (small rewrites, gain folding and the memory planner),
//! [`pipeline`] (the one assembly of a training step) and [`codegen`] (fused kernels, WGSL
//! validated by naga). The crate knows nothing about devices: backends live in
//! `weft-runtime`.

pub mod autodiff;
pub mod codegen;
mod error;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod pipeline;

pub use error::IrError;
