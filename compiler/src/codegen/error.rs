//! Codegen errors. Every variant names the kernel (and where it applies, the tensor) so a
//! failure points at the fused group that caused it, never at a wgpu panic.

/// What can go wrong while turning a graph into WGSL kernels.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// naga rejected a generated module (a codegen bug): the message and the whole source.
    #[error("kernel `{kernel}`: generated WGSL is invalid: {message}\n--- source ---\n{wgsl}")]
    InvalidWgsl {
        kernel: String,
        message: String,
        wgsl: String,
    },
    /// A kernel needs more storage buffers than one shader stage may bind.
    #[error(
        "kernel `{kernel}` binds {count} storage buffers but the limit is {limit} per stage \
         (the last one bound is `{tensor}`); split the op or raise the limit"
    )]
    TooManyBindings {
        kernel: String,
        tensor: String,
        count: u32,
        limit: u32,
    },
    /// A tensor does not fit one storage binding.
    #[error(
        "kernel `{kernel}`: tensor `{tensor}` needs {bytes} bytes, over the storage-binding \
         limit of {limit} bytes"
    )]
    TooLarge {
        kernel: String,
        tensor: String,
        bytes: u64,
        limit: u64,
    },
    /// A hook name the graph does not define.
    #[error("hook `{0}` is not defined by the graph")]
    UnknownHook(String),
    /// A template slot was missing or unknown (a codegen bug, reported rather than panicking).
    #[error("template `{template}`: {message}")]
    Template { template: String, message: String },
}
