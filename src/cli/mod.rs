//! Subcommand implementations; `main.rs` only parses arguments.

mod bench;
mod compile;
mod eval;
mod generate;
mod import;
mod repro;
mod run;
mod spec;
mod train;
mod tune;
mod view;

pub use bench::{bench, BenchArgs};
pub use compile::{compile, params, Emit};
pub use eval::{eval, EvalArgs};
pub use generate::{generate, GenerateArgs};
pub use import::{export, import};
pub use repro::{repro, ReproArgs};
pub use run::{run, RunArgs};
pub use spec::{check, fmt};
pub use train::{train, TrainArgs};
pub use tune::{tune, TuneArgs};
pub use view::{view, view_check};
