//! `weft repro all --quick` through the library: every experiment runs its reduced version,
//! writes a report whose numbers are finite, and the summary covers all of them. It checks that
//! the reproductions run, not that their effects appear (quick budgets are too small).

use std::path::PathBuf;
use weft_repro::{
    read_reports, run_experiment, smollm2_path, summary_markdown, Options, EXPERIMENTS,
};

#[test]
fn every_experiment_writes_a_finite_report_in_quick_mode() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("weft-repro-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = Options {
        out: out.clone(),
        quick: true,
        backend: "cpu".into(),
        seed: 0,
        root,
    };
    // Factual recall and MoICE run on SmolLM2 (a GGUF file `.ci/run` fetches): without the
    // file they are skipped with a message locally and fail under CI, as
    // runtime/tests/gguf_import.rs does.
    let model = smollm2_path().filter(|p| p.is_file());
    let skip_pretrained = model.is_none() && std::env::var_os("CI").is_none();
    let runs: Vec<_> = EXPERIMENTS
        .iter()
        .filter(|e| !(skip_pretrained && e.pretrained))
        .collect();
    if skip_pretrained {
        eprintln!("skipped: the experiments on SmolLM2 (no GGUF; set WEFT_SMOLLM2_GGUF or run the fetch step in .ci/run)");
    }
    let mut failures = Vec::new();
    for &e in &runs {
        match run_experiment(e, &opts) {
            Ok(r) => {
                let h = r.headline.as_ref();
                if h.is_none() {
                    failures.push(format!("{}: no headline comparison", e.name));
                }
                if let Some(bad) = r.numbers().iter().find(|x| !x.is_finite()) {
                    failures.push(format!("{}: non-finite number {bad}", e.name));
                }
                if r.missing_numbers() > 0 {
                    failures.push(format!(
                        "{}: {} empty table cells",
                        e.name,
                        r.missing_numbers()
                    ));
                }
                if r.tables.is_empty() || r.runs.is_empty() {
                    failures.push(format!("{}: no tables or no run directories", e.name));
                }
                for f in ["report.md", "report.json"] {
                    if !out.join(e.name).join(f).is_file() {
                        failures.push(format!("{}: {f} not written", e.name));
                    }
                }
            }
            Err(err) => failures.push(format!("{}: {err}", e.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let reports = read_reports(&out).unwrap();
    assert_eq!(reports.len(), runs.len());
    let md = summary_markdown(&reports, "runs/repro");
    for e in &runs {
        assert!(md.contains(e.method), "summary lacks {}", e.method);
    }
    if !skip_pretrained {
        assert!(!md.contains("No report yet"));
    }
    let _ = std::fs::remove_dir_all(&out);
}
