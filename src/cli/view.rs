//! `weft view`: the desktop viewer on a run directory (live while it is written) or a spec;
//! `weft view --check` reads paths as the viewer would, without a window.

use std::path::Path;
use std::process::ExitCode;
use weft_viewer::Tab;

/// Opens the window; returns when it is closed.
pub fn view(path: &Path, tab: Option<&str>, size: Option<&str>) -> ExitCode {
    let tab = match tab.map(|t| (t, Tab::parse(t))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((t, None)) => {
            eprintln!(
                "error: unknown tab `{t}` (curves, attention, heads, routing, programs, model)"
            );
            return ExitCode::FAILURE;
        }
    };
    let size = match size.map(parse_size) {
        None => None,
        Some(Some(s)) => Some(s),
        Some(None) => {
            eprintln!("error: --size takes WIDTHxHEIGHT, e.g. 1400x900");
            return ExitCode::FAILURE;
        }
    };
    match weft_viewer::run(path, tab, size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_size(s: &str) -> Option<[f32; 2]> {
    let (w, h) = s.split_once('x')?;
    Some([w.trim().parse().ok()?, h.trim().parse().ok()?])
}

/// `weft view --check PATH...`: one line per path (what the viewer finds, and its problems);
/// fails when any path has a warning or an error.
pub fn view_check(paths: &[std::path::PathBuf]) -> ExitCode {
    let mut bad = 0;
    for p in paths {
        let r = weft_viewer::check::check(p);
        println!(
            "{} {}: {}",
            if r.ok() { "ok " } else { "BAD" },
            p.display(),
            r.summary()
        );
        bad += usize::from(!r.ok());
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {bad} of {} paths have problems", paths.len());
        ExitCode::FAILURE
    }
}
