//! One trainer per run directory: `DIR/lock` holds the owner's pid while an OS file lock
//! (`flock` on Unix, `LockFileEx` on Windows) is held on it. The OS drops that lock when the
//! owner exits however it exits (`kill -9`, OOM killer, power loss), so a lock file left by a
//! dead process is stale by construction and the next trainer takes it over; a live owner
//! makes [`RunLock::acquire`] refuse, naming its pid. On a filesystem without file locks
//! (some network mounts) the pid alone decides: a pid that no longer runs is stale.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = "lock";

/// Why a run directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "run directory {} is in use by {} (lock file {}); wait for that run to finish or stop it{}",
        dir.display(),
        owner(*pid),
        lock.display(),
        if *pid == Some(std::process::id()) { " (it is this process: open the directory once)" } else { "" }
    )]
    Held {
        dir: PathBuf,
        pid: Option<u32>,
        lock: PathBuf,
    },
    #[error("lock file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn owner(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("process {p}"),
        None => "another process".into(),
    }
}

/// A held run-directory lock; dropping it deletes the lock file and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: Option<File>,
    path: PathBuf,
    /// The pid a stale lock file named when this lock took it over.
    pub took_over: Option<u32>,
}

impl RunLock {
    /// Locks `dir` (creating it if needed) for this process.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        // A previous owner deletes the file just before unlocking it; if we opened that file
        // and then won its lock, it is no longer the one at `path`: try again on the new one.
        for _ in 0..100 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err)?;
            let previous = read_pid(&mut file);
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        pid: read_pid(&mut file).or(previous),
                        lock: path.clone(),
                    })
                }
                Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
                    // No file locks here: a pid that still runs holds the directory.
                    if let Some(pid) = previous.filter(|&p| p != std::process::id()) {
                        if alive(pid) {
                            return Err(LockError::Held {
                                dir: dir.to_path_buf(),
                                pid: Some(pid),
                                lock: path.clone(),
                            });
                        }
                    }
                }
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            let took_over = read_pid(&mut file);
            write_owner(&mut file).map_err(io_err)?;
            return Ok(RunLock {
                file: Some(file),
                path,
                took_over,
            });
        }
        Err(io_err(io::Error::other(
            "the lock file keeps being replaced by other processes",
        )))
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the locked directory aside to `DIR.old-<UTC timestamp>` (a numbered suffix if
    /// that exists) without deleting anything, and returns the new name. The lock goes with
    /// it and is released; the caller locks `DIR` afresh for the new run.
    pub fn move_aside(mut self) -> Result<PathBuf, LockError> {
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let stamp = utc_stamp(std::time::SystemTime::now());
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        let mut target = dir.with_file_name(format!("{name}.old-{stamp}"));
        let mut n = 2;
        while target.exists() {
            target = dir.with_file_name(format!("{name}.old-{stamp}-{n}"));
            n += 1;
        }
        fs::rename(&dir, &target).map_err(|source| LockError::Io {
            path: dir.clone(),
            source,
        })?;
        self.path = target.join(LOCK_FILE);
        Ok(target)
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Delete first, unlock second (closing the file): a waiter that opened the old file
        // then sees it is no longer at `path` and retries on a fresh one.
        let _ = fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(4096).read_to_string(&mut s).ok()?;
    let v: serde_json::Value = serde_json::from_str(s.trim()).ok()?;
    v.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok())
}

fn write_owner(file: &mut File) -> io::Result<()> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = serde_json::json!({"pid": std::process::id(), "since_unix_s": since}).to_string();
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_all()
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

/// Whether a process with this pid runs (Linux: `/proc/PID`; elsewhere assumed alive, so a
/// lock without OS support is never stolen from a live run).
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

/// `YYYYMMDDTHHMMSSZ` for a time (UTC, proleptic Gregorian).
pub fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        // 2024-02-29 12:34:56 UTC, a leap day.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(utc_stamp(t), "20240229T123456Z");
    }
}
