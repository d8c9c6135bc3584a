//! A run killed at any moment loses at most the steps since its last checkpoint: checkpoints
//! are written by default every 10% of the steps and every `checkpoint_minutes`, the newest
//! few plus the best by held-out loss are kept, and resuming after `kill -9` repeats the
//! uninterrupted run bit for bit. Diverged weights are never saved as a checkpoint.

// `TrainError` is large by design (see `weft_runtime::train`); tests pass it through.
#![allow(clippy::result_large_err)]

mod rundir_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft_runtime::checkpoint::{read_meta, CheckpointDir, Expect};
use weft_runtime::rundir::{read_metrics, LOCK_FILE};
use weft_runtime::train::{train, TrainError, TrainOptions, TrainReport};
use weft_runtime::{CpuBackend, ParamStore};

const SPEC: &str = r#"
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
  steps = 20
  log_every = 1
  eval_every = 5
  optimizer = adamw(lr: 1e-2)
}
"#;

fn tmpdir(name: &str) -> PathBuf {
    rundir_support::tmpdir("resume", name)
}

/// Trains `src` into `out`; `pause` sleeps after every logged step (to give a killer time).
fn run(
    src: &str,
    out: &Path,
    steps: Option<u64>,
    resume: bool,
    pause: Duration,
) -> Result<TrainReport, TrainError> {
    let spec = weft_dsl::check_source(src).unwrap();
    let mut on_log = |_: &_, _: u64| std::thread::sleep(pause);
    train(
        &spec,
        src,
        &CpuBackend::new(),
        TrainOptions {
            out: out.to_path_buf(),
            spec_dir: PathBuf::from("."),
            steps,
            seed: Some(5),
            resume,
            stop: None,
            init: None,
            on_log: &mut on_log,
        },
    )
}

fn steps_on_disk(out: &Path) -> Vec<u64> {
    CheckpointDir::open(out.join("checkpoints"))
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

fn bits(p: &ParamStore) -> BTreeMap<String, Vec<u32>> {
    p.iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.to_f32_vec().iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

#[test]
fn default_cadence_keeps_the_newest_three_and_the_best() {
    let out = tmpdir("cadence");
    run(SPEC, &out, None, false, Duration::ZERO).unwrap();
    let cd = CheckpointDir::open(out.join("checkpoints")).unwrap();
    let latest = cd.latest().unwrap().unwrap();
    assert_eq!(latest, cd.file_for(20));
    let best = cd
        .best()
        .unwrap()
        .expect("evaluations mark a best checkpoint");
    let best_meta = read_meta(&best).unwrap();
    let best_val = best_meta.extra["val_loss"].as_f64().unwrap();
    // `best` is the lowest val_loss among the evaluations (steps 5, 10, 15, 20).
    let evals: Vec<(u64, f64)> = read_metrics(&out.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "eval" && v.get("val_loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["val_loss"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        evals.iter().map(|e| e.0).collect::<Vec<_>>(),
        [5, 10, 15, 20]
    );
    let lowest = evals.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!((best_meta.step, best_val), *lowest);
    // Every 10% of 20 steps = every 2 steps, pruned to the newest 3 plus `best`.
    let mut want = vec![16, 18, 20];
    if !want.contains(&lowest.0) {
        want.insert(0, lowest.0);
    }
    assert_eq!(steps_on_disk(&out), want);
    std::fs::remove_dir_all(&out).unwrap();

    // keep_checkpoints = 0 keeps every one of them: the 10% cadence, plus the evaluations.
    let all = tmpdir("keep_all");
    let src = SPEC.replace("eval_every = 5", "eval_every = 5\n  keep_checkpoints = 0");
    run(&src, &all, None, false, Duration::ZERO).unwrap();
    let steps = steps_on_disk(&all);
    for s in [2, 4, 6, 8, 10, 12, 14, 16, 18, 20] {
        assert!(steps.contains(&s), "no checkpoint at step {s}: {steps:?}");
    }
    std::fs::remove_dir_all(&all).unwrap();
}

#[test]
fn wall_time_alone_triggers_checkpoints() {
    let out = tmpdir("minutes");
    // Steps alone would save only at the end; 0.0005 minutes = 30 ms.
    let src = SPEC.replace(
        "eval_every = 5",
        "eval_every = 100\n  checkpoint_every = 1000\n  checkpoint_minutes = 0.0005\n  keep_checkpoints = 0",
    );
    run(&src, &out, Some(6), false, Duration::from_millis(40)).unwrap();
    let steps = steps_on_disk(&out);
    assert!(steps.len() >= 5, "one per step past 30 ms: {steps:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

const CHILD_ENV: &str = "WEFT_TRAINER_CHILD_DIR";

/// Not a test on its own: with the env var set (by the kill test, re-running this binary)
/// it trains slowly into that directory until it is killed.
#[test]
fn trainer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    run(
        SPEC,
        Path::new(&dir),
        None,
        false,
        Duration::from_millis(60),
    )
    .unwrap();
}

#[test]
fn a_killed_run_resumes_from_its_latest_checkpoint_bit_for_bit() {
    let straight = run(SPEC, &tmpdir("straight"), None, false, Duration::ZERO).unwrap();
    let out = tmpdir("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "trainer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once a periodic checkpoint past step 4 exists: no final save, no cleanup.
    let start = Instant::now();
    loop {
        // Read the pointer directly: opening a CheckpointDir would create the folder, and
        // the trainer refuses a directory that is not empty when it starts.
        let latest = std::fs::read_to_string(out.join("checkpoints/latest"))
            .ok()
            .and_then(|name| read_meta(&out.join("checkpoints").join(name.trim())).ok())
            .map_or(0, |m| m.step);
        if latest >= 6 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "the trainer exited");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = read_metrics(&out.join("metrics.jsonl")).unwrap();
    let last = logged
        .iter()
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap();
    assert!(last < 20, "killed mid-run, at step {last}");
    // The dead trainer's lock file is still there; the next trainer takes it over.
    assert!(out.join(LOCK_FILE).exists());
    // A fresh run would refuse this directory; resuming continues it.
    assert!(matches!(
        run(SPEC, &out, None, false, Duration::ZERO),
        Err(TrainError::Exists { .. })
    ));
    let resumed = run(SPEC, &out, None, true, Duration::ZERO).unwrap();
    assert_eq!(resumed.steps_done, 20);
    assert_eq!(bits(&straight.params), bits(&resumed.params));
    // The two runs' final checkpoints hold the same optimizer state too.
    let a = CheckpointDir::open(out.join("checkpoints"))
        .unwrap()
        .load_latest(&Expect::default())
        .unwrap();
    let b = weft_runtime::checkpoint::load(
        straight.last_checkpoint.as_ref().unwrap(),
        &Expect::default(),
    )
    .unwrap();
    assert_eq!(a.optimizer, b.optimizer);
    // metrics.jsonl has each step once.
    let steps: Vec<u64> = read_metrics(&out.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=20).collect::<Vec<_>>());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn weights_that_overflow_are_never_checkpointed() {
    // The rate explodes at the second update (linear from 1e-3 to 1e297 over 4 steps):
    // gradients and loss are finite, the updated weights are not.
    let src = SPEC
        .replace("optimizer = adamw(lr: 1e-2)", "optimizer = sgd(lr: 1e-3)\n  clip = 0\n  checkpoint_every = 1\n  schedule = linear(final: 1e300)")
        .replace("steps = 20", "steps = 4");
    let out = tmpdir("overflow");
    let err = run(&src, &out, None, false, Duration::ZERO).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::NonFinite(_)), "{msg}");
    assert!(
        msg.contains("after step 2") && msg.contains("parameter `"),
        "{msg}"
    );
    assert!(
        msg.contains("last good checkpoint:") && msg.contains("step-00000001"),
        "{msg}"
    );
    let cd = CheckpointDir::open(out.join("checkpoints")).unwrap();
    let ck = cd.load_latest(&Expect::default()).unwrap();
    assert_eq!(ck.meta.step, 1);
    assert!(ck
        .params
        .values()
        .all(|t| t.to_f64_vec().iter().all(|x| x.is_finite())));
    assert!(!cd.file_for(2).exists());
    std::fs::remove_dir_all(&out).unwrap();
}
