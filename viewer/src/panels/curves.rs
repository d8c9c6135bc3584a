//! Curves: loss and auxiliary terms, learning rate, gradient norm, throughput and every
//! evaluation metric, against steps or training tokens.

use crate::data::metrics::{Group, Series};
use crate::data::Snapshot;
use eframe::egui::{self, Color32, Id};
use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};

/// What the Curves panel shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurvesView {
    /// X axis: training tokens instead of steps.
    pub by_tokens: bool,
    /// Loss on a log scale (log10 of the value).
    pub log_loss: bool,
}

/// Draws the panel.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, view: &mut CurvesView) {
    let series = snap.metrics.series();
    if series.is_empty() {
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
    let cols = if groups.len() > 1 { 2 } else { 1 };
    let rows = groups.len().div_ceil(cols);
    let h = ((ui.available_height() - 8.0) / rows as f32 - 22.0).max(100.0);
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
