//! Subcommand implementations; `main.rs` only parses arguments.

mod compile;
mod eval;
mod spec;

pub use compile::{compile, params, Emit};
pub use eval::{eval, EvalArgs};
pub use spec::{check, fmt};
