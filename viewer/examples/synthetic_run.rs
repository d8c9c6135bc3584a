//! Writes a synthetic run directory in the real format (metrics, attention maps with
//! negative Cog weights, MoM routing, head scores; `large` adds MoICE base routing), for
//! screenshots and trying the viewer.
//!
//! `cargo run -p weft-viewer --example synthetic_run -- OUT [cog|mom|small|large]`

use std::path::PathBuf;
use std::process::ExitCode;
use weft_viewer::synthetic::Synthetic;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synthetic_run OUT [cog|mom|small|large]");
        return ExitCode::FAILURE;
    };
    let which = args.next().unwrap_or_else(|| "cog".into());
    let s = match which.as_str() {
        "cog" => Synthetic::cog(),
        "mom" => Synthetic::mom(),
        "small" => Synthetic::small(),
        "large" => Synthetic::large(),
        other => {
            eprintln!("unknown preset `{other}` (cog, mom, small, large)");
            return ExitCode::FAILURE;
        }
    };
    // Start clean: the writer appends to an existing directory.
    let _ = std::fs::remove_dir_all(&out);
    match s.write(&out) {
        Ok(()) => {
            println!("wrote {} ({which})", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
