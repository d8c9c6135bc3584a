//! `weft check` and `weft fmt`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Reads a spec, printing a one-line error (not a panic) when it cannot be read.
pub(crate) fn read_spec(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            None
        }
    }
}

/// Reads and checks a spec (resolving `extends`), printing diagnostics; `None` when it has
/// errors.
pub(crate) fn load_checked(path: &Path) -> Option<(weft_dsl::Checked, String)> {
    let src = read_spec(path)?;
    match weft_dsl::check_file(path) {
        Ok(c) => Some((c, src)),
        Err(diags) => {
            for d in &diags {
                eprintln!("{}", d.render());
            }
            None
        }
    }
}

/// Checks each file; prints every diagnostic. Exit 0 when all are clean.
pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = 0usize;
    for path in files {
        if read_spec(path).is_none() {
            failed += 1;
            continue;
        }
        let name = path.display().to_string();
        match weft_dsl::check_file(path) {
            Ok(_) => {}
            Err(diags) => {
                failed += 1;
                for d in &diags {
                    eprintln!("{}", d.render());
                }
                eprintln!(
                    "{name}: {} error{}",
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" }
                );
            }
        }
    }
    if failed == 0 {
        println!(
            "{} spec{} checked, no errors",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints (or writes back) the canonical form of one spec.
pub fn fmt(path: &Path, write: bool, check_only: bool) -> ExitCode {
    let Some(src) = read_spec(path) else {
        return ExitCode::FAILURE;
    };
    let name = path.display().to_string();
    let file = match weft_dsl::parse(&src) {
        Ok(f) => f,
        Err(diags) => {
            for d in &diags {
                eprintln!("{}", d.render(&name, &src));
            }
            return ExitCode::FAILURE;
        }
    };
    let out = weft_dsl::format(&file, Some(&src));
    if check_only {
        return if out == src {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if write {
        if out != src {
            if let Err(e) = std::fs::write(path, &out) {
                eprintln!("error: cannot write {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{out}");
    }
    ExitCode::SUCCESS
}
