//! What is missing or broken in a run directory: shown in the window, never a panic.

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Expected in a live or partial run (no metrics yet, a line still being written).
    Note,
    /// Something the writer should not have left (a corrupt line, a missing trace file).
    Warning,
    /// The directory or spec cannot be read at all.
    Error,
}

/// One thing the viewer could not read, with where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub message: String,
}

impl Problem {
    pub fn note(m: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Note,
            message: m.into(),
        }
    }

    pub fn warning(m: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            message: m.into(),
        }
    }

    pub fn error(m: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            message: m.into(),
        }
    }
}
