//! Subcommand implementations; `main.rs` only parses arguments.

mod spec;

pub use spec::{check, fmt};
