//! The problems strip: what is missing or corrupt in the run directory, and trace files that
//! failed to load. Always visible when there is something to say.

use crate::data::{Problem, Severity, Snapshot, TraceStore};
use eframe::egui::{self, Color32};

fn color(s: Severity) -> Color32 {
    match s {
        Severity::Note => Color32::from_gray(160),
        Severity::Warning => Color32::from_rgb(240, 190, 80),
        Severity::Error => Color32::from_rgb(250, 110, 100),
    }
}

/// Every problem: the snapshot's and the trace store's load failures.
pub fn all(snap: &Snapshot, traces: &TraceStore) -> Vec<Problem> {
    let mut v = snap.problems.clone();
    for (file, err) in traces.failures() {
        v.push(Problem::warning(format!(
            "trace {file} could not be loaded: {err}"
        )));
    }
    v.sort_by_key(|p| std::cmp::Reverse(p.severity));
    v
}

/// One line per problem, worst first.
pub fn show(ui: &mut egui::Ui, problems: &[Problem]) {
    if problems.is_empty() {
        ui.weak("run directory read without problems");
        return;
    }
    for p in problems {
        let tag = match p.severity {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        ui.colored_label(color(p.severity), format!("{tag}: {}", p.message));
    }
}
