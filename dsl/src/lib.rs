//! weft-dsl: the weft language — grammar, AST with spans, semantic checks, diagnostics and
//! the formatter. It knows nothing about tensors or devices.
//!
//! Architecture invariant: parsing and checking never panic; they return a tree or a list
//! of diagnostics.
pub mod ast;
pub mod builtins;
pub mod check;
pub mod diagnostic;
pub mod edit;
pub mod extends;
pub mod format;
mod parse;
mod span;
pub mod typed;

pub use check::{check, check_source, Checked};
pub use diagnostic::Diagnostic;
pub use extends::{check_file, FileDiagnostic};
pub use format::format;
pub use parse::parse;
pub use span::Span;
