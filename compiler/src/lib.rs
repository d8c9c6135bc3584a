//! weft-compiler: turns a checked weft AST into an IR graph, differentiates it,
//! runs passes over it and (later) generates WGSL kernels from it.
//!
//! Stages are modules: [`ir`] (the graph, its builder, shape rules and validator),
//! [`autodiff`] (reverse mode as an IR → IR pass) and [`passes`] (small rewrites and the
//! memory planner). The crate knows nothing about devices: backends live in `weft-runtime`.

pub mod autodiff;
pub mod codegen;
mod error;
pub mod ir;
pub mod lower;
pub mod passes;

pub use error::IrError;
