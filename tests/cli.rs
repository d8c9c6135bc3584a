//! The `weft` binary end to end: exit codes and what reaches stdout/stderr.

use std::path::Path;
use std::process::Command;

fn weft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("weft runs")
}

fn example_paths() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "weft"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_every_example() {
    let files = example_paths();
    assert_eq!(files.len(), 11);
    let args: Vec<&str> = std::iter::once("check").chain(files.iter().map(String::as_str)).collect();
    let out = weft(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("11 specs checked, no errors"));
}

#[test]
fn check_reports_file_line_col_source_and_hint_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("weft-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.weft");
    std::fs::write(
        &bad,
        "model m {\n  vocab = 8 dim = 8 heads = 2 layers = 1 ctx = 8\n  block b { x = x + attention(x, weights: sigend) }\n  layers { 0 => b }\n}\n",
    )
    .unwrap();
    let out = weft(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.weft:3:43"), "{err}");
    assert!(err.contains("unknown weight rule `sigend`"), "{err}");
    assert!(err.contains("attention(x, weights: sigend)"), "{err}");
    assert!(err.contains("did you mean `signed`?"), "{err}");
}

#[test]
fn fmt_prints_canonical_form_and_check_flag_detects_drift() {
    let dir = std::env::temp_dir().join(format!("weft-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("m.weft");
    std::fs::write(&f, "model m{vocab=8;dim=8 # width\nheads=2 layers=1 ctx=8 block b{x=x+swiglu(rms_norm(x))} layers{0=>b}}").unwrap();
    let out = weft(&["fmt", f.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  dim = 8  # width\n"), "{text}");
    assert!(text.contains("    x = x + swiglu(rms_norm(x))\n"), "{text}");
    assert_eq!(weft(&["fmt", "--check", f.to_str().unwrap()]).status.code(), Some(1));
    assert!(weft(&["fmt", "--write", f.to_str().unwrap()]).status.success());
    assert!(weft(&["fmt", "--check", f.to_str().unwrap()]).status.success());
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let out = weft(&["check", "does/not/exist.weft"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read does/not/exist.weft"));
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["check", "fmt"] {
        let out = weft(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}
