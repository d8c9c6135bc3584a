//! REPRODUCTIONS.md is generated, not typed: it must equal the summary of the reports kept in
//! `repro/results/` (written by `weft repro summary` next to it), and those reports must cover
//! every experiment with finite numbers.

use std::path::PathBuf;
use weft_repro::{read_results, summary_markdown, EXPERIMENTS};

#[test]
fn reproductions_md_is_the_summary_of_the_kept_reports() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let reports = read_results(&root.join("repro/results")).unwrap();
    let names: Vec<&str> = reports.iter().map(|r| r.experiment.as_str()).collect();
    for e in EXPERIMENTS {
        assert!(names.contains(&e.name), "no kept report for {}", e.name);
    }
    for r in &reports {
        assert!(r.headline.is_some(), "{}: no headline", r.experiment);
        assert!(
            r.numbers().iter().all(|x| x.is_finite()) && r.missing_numbers() == 0,
            "{}: non-finite numbers",
            r.experiment
        );
    }
    let md = std::fs::read_to_string(root.join("REPRODUCTIONS.md")).unwrap();
    assert!(
        md == summary_markdown(&reports, "runs/repro"),
        "REPRODUCTIONS.md differs from the summary of repro/results/*.json; regenerate it with \
         `weft repro summary`"
    );
}
