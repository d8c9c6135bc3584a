//! The window: a header, tabs, the chosen panel, and the problems strip; plus the eframe
//! app that polls the run directory about once a second.

use crate::cache::Caches;
use crate::data::{RunWatcher, Snapshot, Source};
use crate::panels::{self, attention::AttentionView, curves::CurvesView, head_tables::HeadsView};
use crate::panels::{model::ModelView, programs::ProgramsView, routing::RoutingView, Tab};
use eframe::egui;
use std::path::Path;
use std::time::Duration;

/// Everything the user chose: the tab and each panel's view.
#[derive(Clone, Debug)]
pub struct ViewState {
    pub tab: Tab,
    pub curves: CurvesView,
    pub attention: AttentionView,
    pub heads: HeadsView,
    pub routing: RoutingView,
    pub programs: ProgramsView,
    pub model: ModelView,
}

impl ViewState {
    /// Starts on `tab`, or on the first tab with something to show.
    pub fn new(snap: &Snapshot, tab: Option<Tab>) -> Self {
        use weft_rundir::trace_kind;
        let tab = tab.unwrap_or_else(|| {
            if !snap.metrics.train.is_empty() || !snap.metrics.eval.is_empty() {
                Tab::Curves
            } else if !snap.traces.steps(trace_kind::ATTENTION).is_empty() {
                Tab::Attention
            } else if !snap.traces.steps(trace_kind::ROUTING).is_empty()
                || !snap.traces.steps(trace_kind::BASE_ROUTING).is_empty()
            {
                Tab::Routing
            } else if !snap.programs.is_empty() {
                Tab::Programs
            } else {
                Tab::Model
            }
        });
        ViewState {
            tab,
            curves: CurvesView::default(),
            attention: AttentionView::default(),
            heads: HeadsView::default(),
            routing: RoutingView::default(),
            programs: ProgramsView::default(),
            model: ModelView::default(),
        }
    }
}

/// Draws the whole window for `snap`.
pub fn window(ui: &mut egui::Ui, snap: &Snapshot, caches: &mut Caches, state: &mut ViewState) {
    let problems = panels::problems::all(snap, &caches.traces);
    egui::Panel::top("header").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.strong("weft view");
            ui.label(snap.source.path().display().to_string());
            ui.separator();
            if let Some(s) = snap.metrics.last_step() {
                ui.label(format!("step {s}"));
            }
            ui.label(format!("{} traces", snap.traces.len()));
            if !snap.checkpoints.is_empty() {
                ui.label(format!("{} checkpoints", snap.checkpoints.len()));
            }
        });
        ui.horizontal(|ui| {
            for t in Tab::ALL {
                ui.selectable_value(&mut state.tab, t, t.title());
            }
        });
    });
    if !problems.is_empty() {
        egui::Panel::bottom("problems")
            .resizable(false)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("problems-scroll")
                    .max_height(90.0)
                    .show(ui, |ui| panels::problems::show(ui, &problems));
            });
    }
    egui::CentralPanel::default().show(ui, |ui| match state.tab {
        Tab::Curves => panels::curves::show(ui, snap, caches, &mut state.curves),
        Tab::Attention => panels::attention::show(ui, snap, caches, &mut state.attention),
        Tab::Heads => panels::head_tables::show(ui, snap, caches, &mut state.heads),
        Tab::Routing => panels::routing::show(ui, snap, caches, &mut state.routing),
        Tab::Programs => panels::programs::show(ui, snap, &mut state.programs),
        Tab::Model => panels::model::show(ui, snap, &mut state.model),
    });
}

/// The eframe app: a watcher, caches and the view state.
pub struct ViewerApp {
    watcher: RunWatcher,
    caches: Caches,
    state: ViewState,
    seen_version: u64,
}

impl ViewerApp {
    pub fn new(source: Source, tab: Option<Tab>) -> Self {
        let watcher = RunWatcher::open(source);
        let caches = Caches::new(watcher.snapshot());
        let state = ViewState::new(watcher.snapshot(), tab);
        let seen_version = watcher.snapshot().version;
        ViewerApp {
            watcher,
            caches,
            state,
            seen_version,
        }
    }
}

impl eframe::App for ViewerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.watcher.poll();
        let snap = self.watcher.snapshot();
        if snap.version != self.seen_version {
            // New files may have finished arriving: try failed traces again.
            self.caches.traces.retry_failures();
            self.seen_version = snap.version;
        }
        window(ui, snap, &mut self.caches, &mut self.state);
        ui.ctx().request_repaint_after(Duration::from_millis(1000));
    }
}

/// Opens a window on `path` (a run directory or a `.weft` spec) and returns when it closes.
pub fn run(path: &Path, tab: Option<Tab>, size: Option<[f32; 2]>) -> Result<(), String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let source = Source::from_path(path);
    let size = size.unwrap_or([1400.0, 900.0]);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(format!("weft view {}", path.display()))
            .with_inner_size(size)
            .with_position([0.0, 0.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "weft view",
        options,
        Box::new(move |_cc| Ok(Box::new(ViewerApp::new(source, tab)))),
    )
    .map_err(|e| format!("cannot open a window: {e}"))
}
