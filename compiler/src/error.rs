use weft_dsl::Span;

/// Everything that can go wrong while building, checking, differentiating or rewriting a graph.
///
/// Errors carry the op name and, where the node came from a spec, the span of the spec text
/// that made it, so diagnostics can point at the source line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IrError {
    /// An op was applied to inputs whose shapes or dtypes it does not accept.
    #[error("shape error in `{op}`: {msg}")]
    Shape {
        op: String,
        msg: String,
        span: Option<Span>,
    },
    /// The graph breaks an invariant (`verify`): a dangling handle, a stale shape, ...
    #[error("invalid graph at %{node}: {msg}")]
    Invalid { node: u32, msg: String },
    /// The builder was asked for something inconsistent (duplicate names with different types).
    #[error("graph builder: {0}")]
    Builder(String),
    /// Autodiff met an op without a VJP rule on a path that needs a gradient.
    #[error("`{op}` is not differentiable (needed a gradient at %{node})")]
    NotDifferentiable {
        op: String,
        node: u32,
        span: Option<Span>,
    },
    /// Autodiff was called with an unusable loss or selection.
    #[error("autodiff: {0}")]
    Grad(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = IrError> = std::result::Result<T, E>;
