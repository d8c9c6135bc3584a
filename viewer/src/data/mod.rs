//! The data model: a run directory (or a lone spec) read into a [`Snapshot`] that the panels
//! draw. Reading never panics: whatever is missing or corrupt becomes a [`Problem`].

pub mod attention;
pub mod bases;
pub mod head_scores;
pub mod metrics;
pub mod model;
pub mod problems;
pub mod programs;
pub mod routing;
pub mod segments;
pub mod tail;
pub mod traces;
pub mod watch;

pub use metrics::Metrics;
pub use problems::{Problem, Severity};
pub use programs::ProgramEntry;
pub use traces::{TraceEntry, TraceIndex, TraceStore};
pub use watch::RunWatcher;

use std::path::PathBuf;

/// What the viewer was pointed at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A run directory (metrics, traces, checkpoints, `spec.weft`).
    RunDir(PathBuf),
    /// A `.weft` spec on its own: only the Model panel has something to show.
    Spec(PathBuf),
}

impl Source {
    /// A directory is a run directory; anything else is read as a spec file.
    pub fn from_path(path: impl Into<PathBuf>) -> Source {
        let path = path.into();
        if path.is_dir() {
            Source::RunDir(path)
        } else {
            Source::Spec(path)
        }
    }

    pub fn path(&self) -> &std::path::Path {
        match self {
            Source::RunDir(p) | Source::Spec(p) => p,
        }
    }
}

/// Everything the panels draw, as read at the last poll. Trace tensors are not in here: the
/// index says what exists, and [`TraceStore`] loads files when a panel first needs them.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub source: Source,
    /// The spec text (`spec.weft` of a run, or the spec file itself).
    pub spec: Option<String>,
    pub metrics: Metrics,
    pub traces: TraceIndex,
    /// Checkpoint steps found in `checkpoints/`, ascending.
    pub checkpoints: Vec<u64>,
    /// `programs/*.json` results of `weft run`, by file name.
    pub programs: Vec<ProgramEntry>,
    pub problems: Vec<Problem>,
    /// Increases whenever anything above changes (panels key caches on it).
    pub version: u64,
}

impl Snapshot {
    /// An empty snapshot of `source` (nothing read yet).
    pub fn empty(source: Source) -> Self {
        Snapshot {
            source,
            spec: None,
            metrics: Metrics::default(),
            traces: TraceIndex::default(),
            checkpoints: Vec::new(),
            programs: Vec::new(),
            problems: Vec::new(),
            version: 0,
        }
    }

    /// `traces/` of the run directory (a spec has none).
    pub fn traces_dir(&self) -> PathBuf {
        self.source.path().join(weft_rundir::TRACES_DIR)
    }
}
