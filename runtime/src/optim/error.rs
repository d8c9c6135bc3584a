//! Why an optimizer step or a state restore failed.

/// An optimizer error; each variant names the parameter involved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptimError {
    #[error("gradient for `{name}`, but there is no such parameter")]
    UnknownParam { name: String },
    #[error("parameter `{name}` is {dtype}; only f32 parameters can be trained")]
    NotF32 { name: String, dtype: &'static str },
    #[error("gradient for `{name}` has shape {grad:?}, the parameter has shape {param:?}")]
    ShapeMismatch {
        name: String,
        param: Vec<usize>,
        grad: Vec<usize>,
    },
    #[error("optimizer state `{name}`: {what}")]
    BadState { name: String, what: String },
}
