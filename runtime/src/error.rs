use weft_compiler::IrError;

/// Why a run failed. Every variant names the tensor or node involved.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("missing input `{name}`")]
    MissingInput { name: String },
    #[error("input `{name}`: expected {expected} shape {want:?}, got {got} shape {got_shape:?}")]
    InputType {
        name: String,
        expected: String,
        want: Vec<usize>,
        got: &'static str,
        got_shape: Vec<usize>,
    },
    #[error("missing parameter `{name}`")]
    MissingParam { name: String },
    #[error("parameter `{name}`: expected f32 shape {want:?}, got {got} shape {got_shape:?}")]
    ParamType {
        name: String,
        want: Vec<usize>,
        got: &'static str,
        got_shape: Vec<usize>,
    },
    #[error("hook `{name}` is not defined by the graph")]
    UnknownHook { name: String },
    /// A hook replacement that does not fit its hook point (indices, shape, dtype).
    #[error("replacing hook `{name}`: {msg}")]
    Replacement { name: String, msg: String },
    #[error("{op} at %{node}: index {index} out of range 0..{bound}")]
    IndexOutOfRange {
        op: &'static str,
        node: u32,
        index: i64,
        bound: usize,
    },
    #[error("{0} is not supported by this backend")]
    Unsupported(String),
    #[error("invalid graph: {0}")]
    Graph(#[from] IrError),
    /// Code generation for a GPU backend failed (names the kernel and tensor).
    #[error("codegen: {0}")]
    Codegen(#[from] weft_compiler::codegen::CodegenError),
    /// The GPU device failed: no adapter, a validation error, device loss or a timeout.
    #[error("gpu: {0}")]
    Device(String),
}
