//! Nothing a user has is lost by starting a run in the wrong place: a fresh run refuses a
//! directory that holds one (naming `--resume` and `--overwrite`), `--overwrite` moves the
//! old run aside instead of deleting it, and one trainer owns a directory at a time (a live
//! owner's lock refuses, a dead owner's stale lock is taken over).

// `TrainError` is large by design (see `weft_runtime::train`); tests pass it through.
#![allow(clippy::result_large_err)]

mod rundir_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft_runtime::rundir::{existing_run, LockError, RunLock, LOCK_FILE};
use weft_runtime::train::{start_over, train, TrainError, TrainOptions, TrainReport};
use weft_runtime::CpuBackend;

const SPEC: &str = rundir_support::TINY_SPEC;

fn tmpdir(name: &str) -> PathBuf {
    rundir_support::tmpdir("lock", name)
}

fn run(out: &Path, resume: bool) -> Result<TrainReport, TrainError> {
    let spec = weft_dsl::check_source(SPEC).unwrap();
    let mut on_log = |_: &_, _: u64| {};
    train(
        &spec,
        SPEC,
        &CpuBackend::new(),
        TrainOptions {
            out: out.to_path_buf(),
            spec_dir: PathBuf::from("."),
            steps: None,
            seed: Some(1),
            resume,
            stop: None,
            init: None,
            on_log: &mut on_log,
        },
    )
}

#[test]
fn a_fresh_run_refuses_a_directory_that_holds_one() {
    let out = tmpdir("refuse");
    run(&out, false).unwrap();
    let before = std::fs::read(out.join("checkpoints/latest")).unwrap();
    let metrics = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let err = run(&out, false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::Exists { .. }), "{msg}");
    assert!(
        msg.contains("--resume") && msg.contains("--overwrite"),
        "{msg}"
    );
    assert!(msg.contains("checkpoints up to step 4"), "{msg}");
    // Nothing was touched, and the lock was released.
    assert_eq!(
        std::fs::read(out.join("checkpoints/latest")).unwrap(),
        before
    );
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), metrics);
    assert!(!out.join(LOCK_FILE).exists());
    // A directory with unrelated files is refused too; an empty one is fine.
    let other = tmpdir("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let msg = run(&other, false).unwrap_err().to_string();
    assert!(msg.contains("notes.txt"), "{msg}");
    let empty = tmpdir("empty");
    std::fs::create_dir_all(&empty).unwrap();
    run(&empty, false).unwrap();
    for d in [out, other, empty] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn overwrite_moves_the_old_run_aside_and_deletes_nothing() {
    let out = tmpdir("overwrite");
    assert_eq!(start_over(&out).unwrap(), None, "nothing to move");
    run(&out, false).unwrap();
    let old_latest = std::fs::read(out.join("checkpoints/latest")).unwrap();
    let moved = start_over(&out).unwrap().expect("moved");
    let name = moved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!(
            "{}.old-",
            out.file_name().unwrap().to_string_lossy()
        )),
        "{name}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read(moved.join("checkpoints/latest")).unwrap(),
        old_latest
    );
    assert!(!moved.join(LOCK_FILE).exists());
    run(&out, false).unwrap();
    // A second overwrite in the same second gets a numbered name, not a clash.
    let again = start_over(&out).unwrap().unwrap();
    assert_ne!(again, moved);
    assert!(moved.exists() && again.exists());
    for d in [moved, again] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_live_lock_refuses_and_names_its_owner() {
    let out = tmpdir("live");
    let held = RunLock::acquire(&out).unwrap();
    let text = std::fs::read_to_string(out.join(LOCK_FILE)).unwrap();
    assert!(
        text.contains(&format!("\"pid\":{}", std::process::id())),
        "{text}"
    );
    let err = run(&out, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TrainError::Lock(LockError::Held { pid: Some(p), .. }) if p == std::process::id()),
        "{msg}"
    );
    assert!(
        msg.contains("in use by process") && msg.contains(LOCK_FILE),
        "{msg}"
    );
    // --overwrite cannot move a live run either.
    std::fs::write(out.join("spec.weft"), SPEC).unwrap();
    assert!(matches!(start_over(&out), Err(TrainError::Lock(_))));
    drop(held);
    assert!(
        !out.join(LOCK_FILE).exists(),
        "released locks delete their file"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_stale_lock_of_a_dead_process_is_taken_over() {
    let out = tmpdir("stale");
    std::fs::create_dir_all(&out).unwrap();
    // What `kill -9` leaves: the file with the dead owner's pid, no OS lock on it.
    std::fs::write(out.join(LOCK_FILE), "{\"pid\":5000000000}\n").unwrap();
    assert_eq!(
        existing_run(&out).unwrap(),
        None,
        "a lock file alone is not a run"
    );
    let lock = RunLock::acquire(&out).unwrap();
    assert_eq!(lock.took_over, None, "5000000000 is not a u32 pid");
    drop(lock);
    std::fs::write(out.join(LOCK_FILE), "{\"pid\":3999999}\n").unwrap();
    let lock = RunLock::acquire(&out).unwrap();
    assert_eq!(lock.took_over, Some(3_999_999));
    drop(lock);
    std::fs::write(out.join(LOCK_FILE), "{\"pid\":3999999}\n").unwrap();
    run(&out, false).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

/// Another process holds the lock (util-linux `flock`, as a stand-in for a second trainer):
/// refused while it lives, taken over once it is killed.
#[test]
fn a_lock_held_by_another_process_is_released_by_its_death() {
    let out = tmpdir("process");
    std::fs::create_dir_all(&out).unwrap();
    let lock = out.join(LOCK_FILE);
    // `-o`: the lock is held by `flock` itself, not inherited by `sleep`.
    let child = Command::new("flock")
        .args(["-x", "-o"])
        .arg(&lock)
        .args(["sleep", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("no `flock` command here; covered in-process by the other tests");
        return;
    };
    // Wait until `flock` holds the file, probing without deleting it.
    let start = Instant::now();
    loop {
        if let Ok(f) = std::fs::File::open(&lock) {
            if matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)) {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "flock never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = RunLock::acquire(&out).unwrap_err();
    assert!(matches!(refused, LockError::Held { .. }), "{refused}");
    assert!(refused.to_string().contains("in use"), "{refused}");
    child.kill().unwrap();
    child.wait().unwrap();
    // `flock` forks `sleep`, which closes its inherited copy of the lock right after the
    // fork; a kill in between leaves it to that close, so allow it a moment.
    let start = Instant::now();
    let l = loop {
        match RunLock::acquire(&out) {
            Ok(l) => break l,
            Err(e) if start.elapsed() > Duration::from_secs(10) => {
                panic!("the dead owner's lock outlived it: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    drop(l);
    std::fs::remove_dir_all(&out).unwrap();
}
