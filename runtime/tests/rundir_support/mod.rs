//! Shared by the `rundir_*` tests: a tiny model that trains in milliseconds, and scratch
//! directories private to one test process.
#![allow(dead_code)]

use std::path::PathBuf;

/// Four steps of a one-layer model on the copy task, logging every step and evaluating
/// every other one, so a run leaves metrics, traces and several checkpoints.
pub const TINY_SPEC: &str = r#"
model tiny {
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
  steps = 4
  log_every = 1
  eval_every = 2
}
"#;

/// An empty (removed if present) directory under the system temp dir, named by the test
/// file, the process and the case.
pub fn tmpdir(test: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-{test}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
