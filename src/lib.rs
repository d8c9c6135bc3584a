//! weft: declarative transformer research models, compiled to an IR, differentiated, fused
//! into WGSL compute shaders and run on any GPU through wgpu, or on the CPU.
//!
//! This crate is the facade and the CLI; the work lives in the stage crates, re-exported
//! here: [`dsl`] (language), [`compiler`] (IR and passes), [`runtime`] (backends).
pub use weft_compiler as compiler;
pub use weft_dsl as dsl;
pub use weft_runtime as runtime;

pub mod cli;
