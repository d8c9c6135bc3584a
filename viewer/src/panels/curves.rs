//! Curves: loss and auxiliary terms, learning rate, gradient norm, throughput and every
//! evaluation metric, against steps or training tokens; and, for a `segment_nll` objective
//! (DR-ICL), the mean loss and weight per demonstration index at a chosen step.

use crate::cache::Caches;
use crate::data::metrics::{Group, Series};
use crate::data::segments::Segments;
use crate::data::Snapshot;
use eframe::egui::{self, Color32, Id};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points, VLine};
use weft_rundir::trace_kind;

/// What the Curves panel shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurvesView {
    /// X axis: training tokens instead of steps.
    pub by_tokens: bool,
    /// Loss on a log scale (log10 of the value).
    pub log_loss: bool,
    /// Index into the steps with per-demonstration traces (`None`: the latest).
    pub segments_step: Option<usize>,
}

/// Draws the panel.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, caches: &mut Caches, view: &mut CurvesView) {
    let series = snap.metrics.series();
    let segment_steps = snap.traces.history(SEGMENTS_TRACE);
    if series.is_empty() && segment_steps.is_empty() {
        ui.label("No metrics yet: metrics.jsonl is missing or has no train/eval lines.");
        return;
    }
    ui.horizontal(|ui| {
        ui.label("x axis");
        ui.selectable_value(&mut view.by_tokens, false, "steps");
        ui.selectable_value(&mut view.by_tokens, true, "tokens");
        ui.separator();
        ui.checkbox(&mut view.log_loss, "log loss");
        ui.separator();
        let m = &snap.metrics;
        ui.weak(format!(
            "{} train lines, {} eval lines, last step {}",
            m.train.len(),
            m.eval.len(),
            m.last_step().map_or("-".into(), |s| s.to_string())
        ));
    });
    let groups: Vec<Group> = Group::ALL
        .into_iter()
        .filter(|g| series.iter().any(|s| s.group == *g))
        .collect();
    let demos = !segment_steps.is_empty();
    let cols = if groups.len() > 1 || demos { 2 } else { 1 };
    // The per-demonstration row has a header line more and gets half a row extra.
    let rows = groups.len().div_ceil(cols) as f32 + if demos { 1.5 } else { 0.0 };
    let h = ((ui.available_height() - 8.0) / rows - 22.0).max(100.0);
    let link = Id::unique("curves-x");
    let w = (ui.available_width() - 12.0 * (cols - 1) as f32) / cols as f32;
    for row in groups.chunks(cols) {
        ui.horizontal_top(|ui| {
            ui.spacing_mut().item_spacing.x = 12.0;
            for g in row {
                let down = egui::Layout::top_down(egui::Align::Min);
                ui.allocate_ui_with_layout(egui::Vec2::new(w, h + 22.0), down, |ui| {
                    ui.strong(g.title());
                    plot(ui, snap, view, &series, *g, w, h, link);
                });
            }
        });
    }
    if demos {
        demonstrations(ui, caches, view, &segment_steps, w, 1.5 * h);
    }
}

#[allow(clippy::too_many_arguments)]
fn plot(
    ui: &mut egui::Ui,
    snap: &Snapshot,
    view: &CurvesView,
    series: &[Series],
    group: Group,
    w: f32,
    h: f32,
    link: Id,
) {
    let x = |step: u64| -> Option<f64> {
        if view.by_tokens {
            snap.metrics.tokens_at(step)
        } else {
            Some(step as f64)
        }
    };
    let log = view.log_loss && group == Group::Loss;
    Plot::new(format!("curve-{}", group as usize))
        .legend(Legend::default())
        .width(w)
        .height(h)
        .link_axis(link, [true, false])
        .x_axis_label(if view.by_tokens { "tokens" } else { "step" })
        .y_axis_label(if log { "log10" } else { "" })
        .show(ui, |p| {
            for (i, s) in series.iter().filter(|s| s.group == group).enumerate() {
                let pts: Vec<[f64; 2]> = s
                    .points
                    .iter()
                    .filter_map(|&(step, v)| {
                        let v = v?;
                        let v = if log { v.max(1e-12).log10() } else { v };
                        Some([x(step)?, v])
                    })
                    .collect();
                p.line(
                    Line::new(s.name.clone(), PlotPoints::from(pts))
                        .color(palette(i))
                        .width(1.5),
                );
                if let Some(at) = s.diverged_at().and_then(x) {
                    p.vline(
                        VLine::new(format!("{} diverged", s.name), at)
                            .color(Color32::from_rgb(230, 60, 60)),
                    );
                }
            }
        });
}

/// The trace the training loop writes for a `segment_nll` objective (kind `segments`).
const SEGMENTS_TRACE: &str = "loss.segments";

/// DR-ICL: mean loss ℓ_k and mean (detached) weight per demonstration index k over the
/// held-out sequences, at the chosen step (slider), with the first recording faint behind.
fn demonstrations(
    ui: &mut egui::Ui,
    caches: &mut Caches,
    view: &mut CurvesView,
    history: &[&crate::data::TraceEntry],
    w: f32,
    h: f32,
) {
    let history: Vec<_> = history
        .iter()
        .filter(|e| e.kind == trace_kind::SEGMENTS)
        .collect();
    let Some(last) = history.len().checked_sub(1) else {
        return;
    };
    let idx = view.segments_step.unwrap_or(last).min(last);
    let load = |caches: &mut Caches, i: usize| {
        caches
            .traces
            .get(history[i])
            .and_then(|t| Segments::new(&t))
    };
    let now = load(caches, idx);
    let first = if idx > 0 { load(caches, 0).ok() } else { None };
    ui.horizontal(|ui| {
        ui.strong("DR-ICL: loss and weight per demonstration");
        if history.len() > 1 {
            let mut i = idx;
            let steps: Vec<u64> = history.iter().map(|e| e.step).collect();
            let label = ui.label("step");
            ui.add(
                egui::Slider::new(&mut i, 0..=last)
                    .custom_formatter(|v, _| steps[v as usize].to_string())
                    .show_value(true),
            )
            .labelled_by(label.id);
            if i != idx {
                view.segments_step = Some(i);
            }
        } else {
            ui.weak(format!("step {}", history[idx].step));
        }
        if let Ok(s) = &now {
            ui.weak(format!(
                "means over {} held-out sequences; weights are detached",
                s.sequences
            ));
        }
    });
    let now = match now {
        Ok(s) => s,
        Err(e) => {
            ui.colored_label(Color32::LIGHT_RED, e);
            return;
        }
    };
    let link = Id::unique("curves-demos-x");
    ui.horizontal_top(|ui| {
        ui.spacing_mut().item_spacing.x = 12.0;
        let before = first.as_ref().map(|f| (f.step, &f.loss));
        demo_plot(
            ui,
            "loss",
            "mean loss ℓ_k",
            0,
            &now.loss,
            before,
            now.step,
            [w, h],
            link,
        );
        if let Some(weight) = &now.weight {
            let before = first
                .as_ref()
                .and_then(|f| Some((f.step, f.weight.as_ref()?)));
            demo_plot(
                ui,
                "weight",
                "mean weight",
                1,
                weight,
                before,
                now.step,
                [w, h],
                link,
            );
        }
    });
}

/// One per-demonstration curve at `step`, with an earlier recording faint behind it.
#[allow(clippy::too_many_arguments)]
fn demo_plot(
    ui: &mut egui::Ui,
    id: &str,
    y_label: &str,
    color: usize,
    values: &[f64],
    before: Option<(u64, &Vec<f64>)>,
    step: u64,
    [w, h]: [f32; 2],
    link: Id,
) {
    let pts = |v: &[f64]| -> Vec<[f64; 2]> {
        v.iter()
            .enumerate()
            .filter(|(_, y)| y.is_finite())
            .map(|(k, &y)| [k as f64, y])
            .collect()
    };
    Plot::new(format!("curves-demos-{id}"))
        .legend(Legend::default())
        .width(w)
        .height(h)
        .link_axis(link, [true, false])
        // Weight 1 is no reweighting: keep it in view.
        .include_y(if id == "weight" { 1.0 } else { 0.0 })
        .x_axis_label("demonstration index k")
        .y_axis_label(y_label)
        .show(ui, |p| {
            if let Some((s, b)) = before {
                p.line(
                    Line::new(format!("step {s}"), PlotPoints::from(pts(b)))
                        .color(Color32::from_gray(110))
                        .width(1.0),
                );
            }
            let name = format!("step {step}");
            p.line(
                Line::new(name.clone(), PlotPoints::from(pts(values)))
                    .color(palette(color))
                    .width(1.8),
            );
            p.points(
                Points::new(name, PlotPoints::from(pts(values)))
                    .color(palette(color))
                    .radius(2.0),
            );
        });
}

/// Distinct, readable line colours on a dark background.
pub fn palette(i: usize) -> Color32 {
    const C: [Color32; 8] = [
        Color32::from_rgb(240, 150, 60),
        Color32::from_rgb(90, 170, 250),
        Color32::from_rgb(120, 210, 120),
        Color32::from_rgb(230, 100, 160),
        Color32::from_rgb(200, 200, 90),
        Color32::from_rgb(170, 130, 250),
        Color32::from_rgb(80, 210, 200),
        Color32::from_rgb(220, 220, 220),
    ];
    C[i % C.len()]
}
