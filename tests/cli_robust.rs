//! The five findings of issue 16, as a user meets them on the command line: a huge literal
//! is a diagnostic, a model too large for memory is refused with numbers before anything is
//! allocated (and `weft params` counts it right), a run directory holding a run is refused
//! with `--resume` and `--overwrite` named, and `--overwrite` moves the old run aside.

use std::path::PathBuf;
use std::process::Command;

fn weft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("runs the weft binary")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-cli-robust-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const SPEC: &str = "model tiny {
  vocab = 16
  dim = 16
  heads = 2
  layers = 1
  ctx = 16
  block b {
    x = x + attention(rms_norm(x))
    x = x + swiglu(rms_norm(x), hidden: 32)
  }
  layers { 0 .. layers => b }
}
train {
  data = copy_task(len: 4)
  seq = 8
  batch = 4
  steps = 3
  eval_every = 3
}
";

#[test]
fn a_literal_past_64_bits_is_a_diagnostic() {
    let dir = tmp("literal");
    let spec = dir.join("huge.weft");
    std::fs::write(
        &spec,
        SPEC.replace("layers = 1", "layers = 99999999999999999999999999"),
    )
    .unwrap();
    let out = weft(&["check", spec.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        !t.contains("panicked") && !t.contains("capacity overflow"),
        "{t}"
    );
    assert!(
        t.contains("huge.weft:5:") && t.contains("99999999999999999999999999"),
        "{t}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_model_too_large_for_memory_is_refused_with_numbers() {
    let dir = tmp("memory");
    let spec = dir.join("wide.weft");
    std::fs::write(&spec, SPEC.replace("dim = 16", "dim = 1048576")).unwrap();
    // It checks: the numbers are sane, the machine is what is too small.
    assert!(weft(&["check", spec.to_str().unwrap()]).status.success());
    // `weft params` counts it without overflow and says what it means in memory.
    let t = text(&weft(&["params", spec.to_str().unwrap()]));
    assert!(t.contains("TiB"), "{t}");
    let out_dir = dir.join("run");
    let out = weft(&[
        "train",
        spec.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(!t.contains("memory allocation of"), "{t}");
    assert!(
        t.contains("training needs about") && t.contains("TiB"),
        "{t}"
    );
    assert!(t.contains("is available") && t.contains("`dim`"), "{t}");
    assert!(!out_dir.exists(), "nothing was written");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_refuses_a_directory_with_a_run_and_overwrite_moves_it_aside() {
    let dir = tmp("rundir");
    let spec = dir.join("tiny.weft");
    std::fs::write(&spec, SPEC).unwrap();
    let out_dir = dir.join("run");
    let args = [
        "train",
        spec.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let first = weft(&args);
    assert!(first.status.success(), "{}", text(&first));
    let latest = std::fs::read(out_dir.join("checkpoints/latest")).unwrap();
    let again = weft(&args);
    let t = text(&again);
    assert_eq!(again.status.code(), Some(1), "{t}");
    assert!(t.contains("--resume") && t.contains("--overwrite"), "{t}");
    assert_eq!(
        std::fs::read(out_dir.join("checkpoints/latest")).unwrap(),
        latest
    );
    let mut over = args.to_vec();
    over.push("--overwrite");
    let o = weft(&over);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("moved the earlier run aside to"), "{t}");
    let aside: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("run.old-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(aside[0].join("checkpoints/latest")).unwrap(),
        latest
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
