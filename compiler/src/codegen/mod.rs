//! WGSL codegen.
