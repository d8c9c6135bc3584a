//! The `weft` command-line tool.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Declarative transformer research models, compiled to fused kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check specs for errors; exit 0 when all are clean, 1 with diagnostics on stderr.
    Check {
        /// Spec files (`.weft`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the canonical form of a spec (comments kept).
    Fmt {
        /// The spec to format.
        file: PathBuf,
        /// Rewrite the file in place instead of printing.
        #[arg(long)]
        write: bool,
        /// Exit 1 if the file is not already formatted (prints nothing).
        #[arg(long, conflicts_with = "write")]
        check: bool,
    },
    /// Lower a spec to IR and print it.
    Compile {
        file: PathBuf,
        /// What to print.
        #[arg(long, value_enum, default_value = "ir")]
        emit: weft::cli::Emit,
        /// Batch size the graph is built for.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Sequence length (default: the model's ctx).
        #[arg(long)]
        seq: Option<usize>,
        /// Include the loss and the backward graph.
        #[arg(long)]
        grad: bool,
    },
    /// List every parameter: name, shape, count, trainable; totals.
    Params { file: PathBuf },
    /// One forward pass: logits and captured hook values written as safetensors.
    Eval {
        file: PathBuf,
        /// Weights (safetensors); without it, weights are initialised from --seed.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// JSON array of equal-length arrays of token ids (batch × seq).
        #[arg(long)]
        tokens: PathBuf,
        /// Output safetensors: `logits` [batch, seq, vocab] and each captured hook.
        #[arg(long)]
        out: PathBuf,
        /// Hook points to capture (comma-separated; `*` globs), e.g. layers.*.attn.pattern.
        #[arg(long, value_delimiter = ',')]
        capture: Vec<String>,
        /// cpu, wgpu or auto.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Seed for initialisation when no --weights are given.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write the weights used (e.g. the seeded initialisation) to this file.
        #[arg(long)]
        save_init: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => weft::cli::check(&files),
        Command::Fmt { file, write, check } => weft::cli::fmt(&file, write, check),
        Command::Compile {
            file,
            emit,
            batch,
            seq,
            grad,
        } => weft::cli::compile(&file, emit, batch, seq, grad),
        Command::Params { file } => weft::cli::params(&file),
        Command::Eval {
            file,
            weights,
            tokens,
            out,
            capture,
            backend,
            seed,
            save_init,
        } => weft::cli::eval(&weft::cli::EvalArgs {
            spec: file,
            weights,
            tokens,
            out,
            capture,
            backend,
            seed,
            save_init,
        }),
    }
}
