//! `weft repro NAME|all [--quick]`: runs reproductions (weft-repro) and writes their reports;
//! `weft repro summary` regenerates REPRODUCTIONS.md from the reports on disk and keeps a copy
//! of them in `repro/results/` (a test checks the two agree).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weft_repro::{
    experiment, read_reports, run_experiment, save_results, summary_markdown, Options, EXPERIMENTS,
};

/// Arguments of `weft repro`.
pub struct ReproArgs {
    /// An experiment name, `all`, `summary` or `list`.
    pub name: String,
    pub quick: bool,
    pub backend: String,
    pub seed: u64,
    pub out: PathBuf,
    /// Where `summary` writes (default REPRODUCTIONS.md).
    pub summary: PathBuf,
}

pub fn repro(a: &ReproArgs) -> ExitCode {
    let names: Vec<&str> = EXPERIMENTS.iter().map(|e| e.name).collect();
    let chosen: Vec<&str> = match a.name.as_str() {
        "list" => {
            for e in EXPERIMENTS {
                println!("{:16} {} — {}", e.name, e.method, e.comparison);
            }
            return ExitCode::SUCCESS;
        }
        "summary" => return write_summary(&a.out, &a.summary),
        "all" => names.clone(),
        one if experiment(one).is_some() => vec![one],
        other => {
            eprintln!(
                "error: no experiment `{other}`; choose one of: {}, or `all`, `list`, `summary`",
                names.join(", ")
            );
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        out: a.out.clone(),
        quick: a.quick,
        backend: a.backend.clone(),
        seed: a.seed,
        root: repo_root(),
    };
    let mut failed = Vec::new();
    for name in chosen {
        let Some(e) = experiment(name) else { continue };
        eprintln!("repro {name}: {} — {}", e.method, e.comparison);
        match run_experiment(e, &opts) {
            Ok(r) => {
                if let Some(h) = &r.headline {
                    println!(
                        "{name}: {} — {} {:.4} vs {} {:.4}, {} ({:.0} s); report {}",
                        h.metric,
                        h.baseline_name,
                        h.baseline,
                        h.method_name,
                        h.method,
                        h.verdict(),
                        r.wall_s,
                        a.out.join(name).join("report.md").display()
                    );
                }
            }
            Err(err) => {
                eprintln!("error: repro {name}: {err}");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

fn write_summary(out: &Path, to: &Path) -> ExitCode {
    let reports = match read_reports(out) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if reports.is_empty() {
        eprintln!(
            "error: no reports under {}; run `weft repro all` first",
            out.display()
        );
        return ExitCode::FAILURE;
    }
    let results = repo_root().join("repro/results");
    if let Err(e) = save_results(&reports, &results) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let text = summary_markdown(&reports, &out.display().to_string());
    match std::fs::write(to, text) {
        Ok(()) => {
            eprintln!(
                "wrote {} ({} reports, kept in {})",
                to.display(),
                reports.len(),
                results.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", to.display());
            ExitCode::FAILURE
        }
    }
}

/// The repository root: the current folder when it holds `examples/repro`, else the one
/// this binary was built from.
fn repo_root() -> PathBuf {
    if Path::new("examples/repro").is_dir() {
        PathBuf::from(".")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}
