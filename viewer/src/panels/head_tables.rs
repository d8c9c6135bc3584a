//! Head tables: one L × H heatmap per `head_scores` trace name (induction, copy, patching
//! effect, learned gain), with a slider over the steps it was recorded at and the chosen
//! head's value over training.

use crate::cache::Caches;
use crate::data::head_scores::HeadTable;
use crate::data::Snapshot;
use crate::panels::curves::palette;
use crate::widgets::heatmap::{self, ValueMap};
use crate::widgets::legend::{fmt_value, legend};
use eframe::egui::{self, Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};
use egui_plot::{Line, Plot, PlotPoints, VLine};
use std::collections::BTreeMap;
use weft_rundir::trace_kind;

/// Per score: which step is shown and which head is selected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadsView {
    /// Index into the score's recorded steps (`None`: the latest).
    pub step_index: BTreeMap<String, usize>,
    /// Selected (layer, head) per score.
    pub selected: BTreeMap<String, (usize, usize)>,
}

/// Draws the panel.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, caches: &mut Caches, view: &mut HeadsView) {
    let names = snap.traces.names(trace_kind::HEAD_SCORES);
    if names.is_empty() {
        ui.label(
            "No head_scores traces in this run (induction/copy scores, patching effects, \
             learned gains are written as kind `head_scores`).",
        );
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("heads-scroll")
        .show(ui, |ui| {
            for name in &names {
                score_section(ui, snap, caches, view, name);
                ui.separator();
            }
        });
}

fn score_section(
    ui: &mut egui::Ui,
    snap: &Snapshot,
    caches: &mut Caches,
    view: &mut HeadsView,
    name: &str,
) {
    let history = snap.traces.history(name);
    let last = history.len() - 1;
    let idx = view.step_index.get(name).copied().unwrap_or(last).min(last);
    let entry = history[idx];
    let table = caches.traces.get(entry).and_then(|t| HeadTable::new(&t));
    let table = match table {
        Ok(t) => t,
        Err(e) => {
            ui.colored_label(Color32::LIGHT_RED, format!("{name}: {e}"));
            return;
        }
    };
    ui.horizontal(|ui| {
        ui.heading(&table.score);
        ui.weak(format!("{} layers × {} heads", table.layers, table.heads));
    });
    if history.len() > 1 {
        let mut i = idx;
        ui.horizontal(|ui| {
            let label = ui.label("step");
            let steps: Vec<u64> = history.iter().map(|e| e.step).collect();
            ui.add(
                egui::Slider::new(&mut i, 0..=last)
                    .custom_formatter(|v, _| steps[v as usize].to_string())
                    .show_value(true),
            )
            .labelled_by(label.id);
            ui.weak(format!("{} recordings", history.len()));
        });
        if i != idx {
            view.step_index.insert(name.to_string(), i);
        }
    }
    let (lo, hi) = table.range();
    let map = ValueMap::for_values(lo, hi, 1.0);
    let sel = view
        .selected
        .get(name)
        .copied()
        .or_else(|| Some(strongest(&table)));
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            let clicked = table_map(ui, caches, &entry.file, &table, &map, sel);
            if let Some(c) = clicked {
                view.selected.insert(name.to_string(), c);
            }
            legend(ui, &map, 260.0, &table.score);
        });
        if history.len() > 1 {
            let (l, h) = sel.unwrap_or_default();
            over_time(ui, caches, &history, name, (l, h), (lo, hi), entry.step);
        }
    });
}

/// The L × H map with values in the cells when they fit; returns a clicked cell.
fn table_map(
    ui: &mut egui::Ui,
    caches: &mut Caches,
    file: &str,
    t: &HeadTable,
    map: &ValueMap,
    selected: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let cell = (420.0 / t.heads.max(1) as f32)
        .min(300.0 / t.layers.max(1) as f32)
        .clamp(14.0, 44.0);
    let label_w = 30.0;
    let size = Vec2::new(
        label_w + cell * t.heads as f32,
        16.0 + cell * t.layers as f32,
    );
    let (outer, resp) = ui.allocate_exact_size(size, Sense::click());
    let rect = Rect::from_min_size(
        outer.min + Vec2::new(label_w, 16.0),
        size - Vec2::new(label_w, 16.0),
    );
    let tex = caches
        .textures
        .get(ui.ctx(), &format!("heads|{file}|{}", map.key()), || {
            heatmap::color_image(&t.values, t.layers, t.heads, map, 4096)
        });
    let p = ui.painter_at(outer);
    p.image(
        tex.id(),
        rect,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    let font = FontId::proportional(10.0);
    let text = ui.visuals().text_color();
    for h in 0..t.heads {
        p.text(
            Pos2::new(rect.left() + (h as f32 + 0.5) * cell, outer.top()),
            Align2::CENTER_TOP,
            format!("H{h}"),
            font.clone(),
            text,
        );
    }
    for l in 0..t.layers {
        p.text(
            Pos2::new(rect.left() - 4.0, rect.top() + (l as f32 + 0.5) * cell),
            Align2::RIGHT_CENTER,
            format!("L{l}"),
            font.clone(),
            text,
        );
        if cell >= 30.0 {
            for h in 0..t.heads {
                let v = t.get(l, h);
                let c = map.cmap().color(map.t(v));
                let light = c.r() as u32 + c.g() as u32 + c.b() as u32 > 380;
                p.text(
                    Pos2::new(
                        rect.left() + (h as f32 + 0.5) * cell,
                        rect.top() + (l as f32 + 0.5) * cell,
                    ),
                    Align2::CENTER_CENTER,
                    fmt_value(v),
                    FontId::proportional(9.0),
                    if light {
                        Color32::BLACK
                    } else {
                        Color32::WHITE
                    },
                );
            }
        }
    }
    if let Some((l, h)) = selected {
        let r = Rect::from_min_size(
            rect.min + Vec2::new(h as f32 * cell, l as f32 * cell),
            Vec2::splat(cell),
        );
        p.rect_stroke(r, 0.0, Stroke::new(2.0, Color32::WHITE), StrokeKind::Inside);
    }
    let hovered = heatmap::hovered_cell(&resp, rect, t.layers, t.heads);
    let clicked = if resp.clicked() { hovered } else { None };
    if let Some((l, h)) = hovered {
        resp.on_hover_text_at_pointer(format!("layer {l} head {h}: {}", t.get(l, h)));
    }
    clicked
}

/// The head with the largest |score|: the one worth following when none is chosen.
fn strongest(t: &HeadTable) -> (usize, usize) {
    let i = (0..t.values.len())
        .filter(|&i| t.values[i].is_finite())
        .max_by(|&a, &b| t.values[a].abs().total_cmp(&t.values[b].abs()))
        .unwrap_or(0);
    (i / t.heads.max(1), i % t.heads.max(1))
}

/// The selected head's score at every recorded step.
fn over_time(
    ui: &mut egui::Ui,
    caches: &mut Caches,
    history: &[&crate::data::TraceEntry],
    name: &str,
    (l, h): (usize, usize),
    (lo, hi): (f32, f32),
    current: u64,
) {
    let pts: Vec<[f64; 2]> = history
        .iter()
        .filter_map(|e| {
            let t = caches.traces.get(e).ok()?;
            let v = HeadTable::new(&t).ok()?.get(l, h);
            v.is_finite().then_some([e.step as f64, v as f64])
        })
        .collect();
    ui.vertical(|ui| {
        ui.weak(format!(
            "L{l} H{h} over training (click a cell to choose another)"
        ));
        Plot::new(format!("heads-time-{name}"))
            .width(320.0)
            .height(170.0)
            .x_axis_label("step")
            .include_y(lo.min(0.0))
            .include_y(hi)
            .show(ui, |p| {
                p.line(Line::new(format!("L{l} H{h}"), PlotPoints::from(pts)).color(palette(1)));
                p.vline(VLine::new("shown", current as f64).color(Color32::from_gray(140)));
            });
    });
}
