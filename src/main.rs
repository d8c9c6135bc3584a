//! The `weft` command-line tool.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "weft", version, about = "Declarative transformer research models, compiled to fused kernels")]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => weft::cli::check(&files),
        Command::Fmt { file, write, check } => weft::cli::fmt(&file, write, check),
    }
}
