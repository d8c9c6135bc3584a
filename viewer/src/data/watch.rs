//! Polls a run directory and keeps a [`Snapshot`] of it up to date while a run writes it.

use super::programs::{ProgramsReader, PROGRAMS_DIR};
use super::tail::JsonlTail;
use super::traces::{read_header, TraceEntry};
use super::{Metrics, Problem, Snapshot, Source};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use weft_rundir::{CHECKPOINTS_DIR, METRICS_FILE, SPEC_FILE, TRACES_DIR, TRACE_INDEX};

/// Reads a run directory (or a spec) into a [`Snapshot`] and re-reads only what changed:
/// new metrics lines, new index lines, new trace files, a rewritten spec.
#[derive(Debug)]
pub struct RunWatcher {
    snapshot: Snapshot,
    metrics: JsonlTail,
    index: JsonlTail,
    /// Index lines that were JSON but not a trace entry.
    bad_index_entries: usize,
    /// Trace files found by scanning `traces/` that the index did not name.
    scanned: HashMap<String, Result<(), String>>,
    /// Indexed files not on disk (checked again each poll: a copy may still be arriving).
    missing: BTreeSet<String>,
    spec_stamp: Option<(SystemTime, u64)>,
    programs: ProgramsReader,
    last_poll: Option<Instant>,
    /// How often [`RunWatcher::poll`] looks at the disk.
    pub interval: Duration,
}

impl RunWatcher {
    /// Opens `source` and reads it once.
    pub fn open(source: Source) -> Self {
        let root = source.path().to_path_buf();
        let mut w = RunWatcher {
            snapshot: Snapshot::empty(source),
            metrics: JsonlTail::new(root.join(METRICS_FILE)),
            index: JsonlTail::new(root.join(TRACES_DIR).join(TRACE_INDEX)),
            bad_index_entries: 0,
            scanned: HashMap::new(),
            missing: BTreeSet::new(),
            spec_stamp: None,
            programs: ProgramsReader::default(),
            last_poll: None,
            interval: Duration::from_secs(1),
        };
        w.poll_now();
        w
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Polls if [`RunWatcher::interval`] has passed since the last poll; returns whether the
    /// snapshot changed.
    pub fn poll(&mut self) -> bool {
        match self.last_poll {
            Some(t) if t.elapsed() < self.interval => false,
            _ => self.poll_now(),
        }
    }

    /// Reads whatever is new now; returns whether the snapshot changed.
    pub fn poll_now(&mut self) -> bool {
        self.last_poll = Some(Instant::now());
        let mut problems = Vec::new();
        let mut changed = false;
        match self.snapshot.source.clone() {
            Source::Spec(path) => changed |= self.read_spec(&path, &mut problems, true),
            Source::RunDir(root) => {
                if !root.is_dir() {
                    problems.push(Problem::error(format!(
                        "{} is not a directory (deleted?)",
                        root.display()
                    )));
                } else {
                    changed |= self.read_spec(&root.join(SPEC_FILE), &mut problems, false);
                    changed |= self.read_metrics(&mut problems);
                    changed |= self.read_index(&mut problems);
                    changed |= self.scan_traces(&root.join(TRACES_DIR), &mut problems);
                    changed |= self.read_checkpoints(&root.join(CHECKPOINTS_DIR));
                    changed |= self.read_programs(&root.join(PROGRAMS_DIR), &mut problems);
                }
            }
        }
        if problems != self.snapshot.problems {
            self.snapshot.problems = problems;
            changed = true;
        }
        if changed {
            self.snapshot.version += 1;
        }
        changed
    }

    fn read_spec(&mut self, path: &Path, problems: &mut Vec<Problem>, required: bool) -> bool {
        let stamp = fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp.is_some() && stamp == self.spec_stamp {
            return false;
        }
        self.spec_stamp = stamp;
        let text = match fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => {
                let msg = format!("cannot read {}: {e}", path.display());
                problems.push(if required {
                    Problem::error(msg)
                } else {
                    Problem::note(format!("no {SPEC_FILE}: the Model panel is empty ({e})"))
                });
                // Try again next poll: the run may not have written it yet.
                self.spec_stamp = None;
                None
            }
        };
        let changed = text != self.snapshot.spec;
        self.snapshot.spec = text;
        changed
    }

    fn read_metrics(&mut self, problems: &mut Vec<Problem>) -> bool {
        let mut changed = false;
        match self.metrics.poll() {
            Ok(p) => {
                if p.reset {
                    self.snapshot.metrics = Metrics::default();
                    changed = true;
                }
                for v in &p.values {
                    changed |= self.snapshot.metrics.push(v);
                }
            }
            Err(e) => {
                if self.snapshot.metrics != Metrics::default() {
                    self.snapshot.metrics = Metrics::default();
                    changed = true;
                }
                problems.push(if e.kind() == io::ErrorKind::NotFound {
                    Problem::note(format!("no {METRICS_FILE} yet"))
                } else {
                    Problem::warning(format!("cannot read {METRICS_FILE}: {e}"))
                });
            }
        }
        if self.metrics.bad_lines > 0 {
            problems.push(Problem::warning(format!(
                "{} line(s) of {METRICS_FILE} are not JSON and were skipped",
                self.metrics.bad_lines
            )));
        }
        if self.metrics.torn_bytes() > 0 {
            problems.push(Problem::note(format!(
                "the last line of {METRICS_FILE} is incomplete ({} bytes): still being written, \
                 or torn by a killed writer",
                self.metrics.torn_bytes()
            )));
        }
        changed
    }

    fn read_index(&mut self, problems: &mut Vec<Problem>) -> bool {
        let mut changed = false;
        match self.index.poll() {
            Ok(p) => {
                if p.reset {
                    self.snapshot.traces = Default::default();
                    self.scanned.clear();
                    self.bad_index_entries = 0;
                    changed = true;
                }
                for v in &p.values {
                    match TraceEntry::from_json(v) {
                        Some(e) => changed |= self.snapshot.traces.push(e),
                        None => self.bad_index_entries += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => problems.push(Problem::warning(format!(
                "cannot read {TRACES_DIR}/{TRACE_INDEX}: {e}"
            ))),
        }
        let bad = self.index.bad_lines + self.bad_index_entries;
        if bad > 0 {
            problems.push(Problem::warning(format!(
                "{bad} line(s) of {TRACES_DIR}/{TRACE_INDEX} are not trace entries and were skipped"
            )));
        }
        if self.index.torn_bytes() > 0 {
            problems.push(Problem::note(format!(
                "the last line of {TRACES_DIR}/{TRACE_INDEX} is incomplete ({} bytes)",
                self.index.torn_bytes()
            )));
        }
        changed
    }

    /// Finds trace files the index does not name (the index is missing, or a writer died
    /// between writing a file and its index line) and indexed files that are missing.
    fn scan_traces(&mut self, dir: &Path, problems: &mut Vec<Problem>) -> bool {
        let mut changed = false;
        let mut unindexed = 0;
        for file in list_trace_files(dir) {
            if self.snapshot.traces.contains_file(&file) || self.scanned.contains_key(&file) {
                continue;
            }
            let r = read_header(dir, &file).map_err(|e| e.to_string());
            if let Ok(e) = &r {
                unindexed += 1;
                changed |= self.snapshot.traces.push(e.clone());
            }
            self.scanned.insert(file, r.map(|_| ()));
        }
        let found_by_scan = self.scanned.values().filter(|r| r.is_ok()).count();
        if found_by_scan > 0 && (unindexed > 0 || !self.index.path().exists()) {
            problems.push(Problem::note(format!(
                "{found_by_scan} trace file(s) are not in {TRACES_DIR}/{TRACE_INDEX}; found by scanning"
            )));
        }
        let mut unreadable: Vec<String> = self
            .scanned
            .iter()
            .filter_map(|(f, r)| r.as_ref().err().map(|e| format!("{f}: {e}")))
            .collect();
        unreadable.sort();
        for u in unreadable {
            problems.push(Problem::warning(format!("unreadable trace file {u}")));
        }
        for e in self.snapshot.traces.entries() {
            if !self.missing.contains(&e.file) && !dir.join(&e.file).is_file() {
                self.missing.insert(e.file.clone());
            }
        }
        self.missing.retain(|f| !dir.join(f).is_file());
        if let Some(first) = self.missing.iter().next() {
            problems.push(Problem::warning(format!(
                "{} indexed trace file(s) are missing (first: {TRACES_DIR}/{first})",
                self.missing.len()
            )));
        }
        changed
    }

    /// `programs/*.json`; files that do not parse (or whose result has the wrong shape for
    /// their probe) are warnings, and shown in the Programs panel.
    fn read_programs(&mut self, dir: &Path, problems: &mut Vec<Problem>) -> bool {
        let (entries, changed) = self.programs.poll(dir);
        for e in &entries {
            let err = match &e.program {
                Err(err) => Some(err.as_str()),
                Ok(p) => p.result.as_ref().err().map(String::as_str),
            };
            if let Some(err) = err {
                problems.push(Problem::warning(format!(
                    "{PROGRAMS_DIR}/{}: {err}",
                    e.file
                )));
            }
        }
        self.snapshot.programs = entries;
        changed
    }

    fn read_checkpoints(&mut self, dir: &Path) -> bool {
        let mut steps: Vec<u64> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| weft_rundir::parse_step_file(e.file_name().to_str()?))
            .collect();
        steps.sort_unstable();
        let changed = steps != self.snapshot.checkpoints;
        self.snapshot.checkpoints = steps;
        changed
    }
}

/// `NAME/step-*.safetensors` under `traces/`, relative to it, sorted; temporary files
/// (`.NAME.tmp.PID`) of a writer in progress are skipped.
fn list_trace_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(name) = sub.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !sub.path().is_dir() {
            continue;
        }
        for f in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            if let Ok(file) = f.file_name().into_string() {
                if file.starts_with("step-") && file.ends_with(".safetensors") {
                    out.push(format!("{name}/{file}"));
                }
            }
        }
    }
    out.sort();
    out
}
