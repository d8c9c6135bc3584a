//! What the viewer finds in a run directory, without a window (`weft view --check`): the
//! problems it would show, and every trace decoded the way its panel decodes it. Lets a
//! script (or a reproduction's checklist) confirm that runs open before anyone looks at them.

use crate::data::attention::AttentionMaps;
use crate::data::bases::BaseChoices;
use crate::data::head_scores::HeadTable;
use crate::data::routing::Routing;
use crate::data::segments::Segments;
use crate::data::{Problem, RunWatcher, Severity, Source, TraceStore};
use std::collections::BTreeMap;
use std::path::Path;
use weft_rundir::trace_kind;

/// What [`check`] found in one run directory (or spec).
#[derive(Debug)]
pub struct CheckReport {
    /// Whether a spec was read (`spec.weft` of a run, or the spec file).
    pub spec: bool,
    /// Metrics lines the curves panel plots (train and eval).
    pub metrics_lines: usize,
    /// Trace files by kind.
    pub traces: BTreeMap<String, usize>,
    /// What the window would list, plus any trace its panel could not decode (an error).
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// No warnings and no errors (notes, such as "no metrics yet", are fine).
    pub fn ok(&self) -> bool {
        self.problems.iter().all(|p| p.severity == Severity::Note)
    }

    /// One line: what is there, then the problems.
    pub fn summary(&self) -> String {
        let traces: Vec<String> = self
            .traces
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let problems: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{:?}: {}", p.severity, p.message))
            .collect();
        format!(
            "spec {}, {} metrics lines, traces: {}; problems: {}",
            if self.spec { "yes" } else { "no" },
            self.metrics_lines,
            if traces.is_empty() {
                "none".to_string()
            } else {
                traces.join(", ")
            },
            if problems.is_empty() {
                "none".to_string()
            } else {
                problems.join("; ")
            }
        )
    }
}

/// Reads `path` as the viewer does and decodes every trace it indexes.
pub fn check(path: &Path) -> CheckReport {
    let watcher = RunWatcher::open(Source::from_path(path));
    let snap = watcher.snapshot();
    let mut problems = snap.problems.clone();
    let mut store = TraceStore::new(snap.traces_dir());
    let mut traces = BTreeMap::new();
    for e in snap.traces.entries() {
        *traces.entry(e.kind.clone()).or_insert(0) += 1;
        let decoded = store.get(e).and_then(|t| match e.kind.as_str() {
            trace_kind::ATTENTION => AttentionMaps::new(t).map(drop),
            trace_kind::HEAD_SCORES => HeadTable::new(&t).map(drop),
            trace_kind::ROUTING => Routing::new(&t).map(drop),
            trace_kind::BASE_ROUTING => BaseChoices::new(&t).map(drop),
            trace_kind::SEGMENTS => Segments::new(&t).map(drop),
            _ => Ok(()),
        });
        if let Err(msg) = decoded {
            problems.push(Problem::error(format!("traces/{}: {msg}", e.file)));
        }
    }
    CheckReport {
        spec: snap.spec.is_some(),
        metrics_lines: snap.metrics.train.len() + snap.metrics.eval.len(),
        traces,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Synthetic;

    #[test]
    fn a_synthetic_run_checks_clean_and_a_broken_trace_is_an_error() {
        let dir = std::env::temp_dir().join(format!("weft-view-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Synthetic::cog().write(&dir).expect("synthetic run");
        let r = check(&dir);
        assert!(r.ok(), "{}", r.summary());
        assert!(r.spec && r.metrics_lines > 0, "{}", r.summary());
        assert!(r.traces.get(trace_kind::ATTENTION).is_some_and(|&n| n > 0));
        // Truncate one attention trace file: its panel cannot decode it.
        let entry = RunWatcher::open(Source::RunDir(dir.clone()))
            .snapshot()
            .traces
            .of_kind(trace_kind::ATTENTION)
            .next()
            .expect("an attention trace")
            .file
            .clone();
        let file = dir.join(weft_rundir::TRACES_DIR).join(&entry);
        let bytes = std::fs::read(&file).expect("trace file");
        std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");
        let r = check(&dir);
        assert!(!r.ok(), "{}", r.summary());
        assert!(r.summary().contains(&entry), "{}", r.summary());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
