//! Routing. MoM: for a chosen token, the iteration × module trellis (SKIP visible, routing
//! weights on the edges); module utilisation per iteration; effective depth per token.
//! MoICE: the base choices per token and head ([`crate::panels::bases`]).

use crate::cache::Caches;
use crate::colormap::ColorMap;
use crate::data::attention::token_label;
use crate::data::routing::{RoutedLayer, Routing, Stage, SKIP};
use crate::data::{Snapshot, TraceEntry};
use crate::panels::bases::{self, BasesView};
use crate::widgets::legend::fmt_value;
use eframe::egui::{
    self, Align2, Color32, CornerRadius, FontId, Pos2, Rect, Sense, Shape, Stroke, StrokeKind, Vec2,
};
use egui_plot::{Bar, BarChart, Plot};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_rundir::trace_kind;

/// What the routing panel is looking at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutingView {
    pub step: Option<u64>,
    /// Index into the routed layers at that step.
    pub layer: usize,
    pub batch: usize,
    pub token: usize,
    /// Show MoICE base choices instead of MoM pools (when the run has both).
    pub moice: bool,
    pub bases: BasesView,
}

const SKIP_COLOR: Color32 = Color32::from_rgb(120, 120, 128);

/// Colour of the i-th pool (attention pools blue, FFN pools green, then others).
fn pool_color(i: usize) -> Color32 {
    const C: [Color32; 4] = [
        Color32::from_rgb(90, 160, 250),
        Color32::from_rgb(110, 205, 120),
        Color32::from_rgb(240, 160, 70),
        Color32::from_rgb(210, 120, 220),
    ];
    C[i % C.len()]
}

/// Draws the panel: MoM pools, MoICE bases, or a choice between them when the run has both.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, caches: &mut Caches, view: &mut RoutingView) {
    let mom = !snap.traces.steps(trace_kind::ROUTING).is_empty();
    let moice = !snap.traces.steps(trace_kind::BASE_ROUTING).is_empty();
    if !mom && !moice {
        ui.label(
            "No routing traces in this run (MoM routers write kind `routing`, MoICE \
             attention kind `base_routing`).",
        );
        return;
    }
    if mom && moice {
        ui.horizontal(|ui| {
            ui.selectable_value(&mut view.moice, false, "MoM pools");
            ui.selectable_value(&mut view.moice, true, "MoICE bases");
        });
    }
    if moice && (view.moice || !mom) {
        bases::show(ui, snap, caches, &mut view.bases);
    } else {
        show_mom(ui, snap, caches, view);
    }
}

fn show_mom(ui: &mut egui::Ui, snap: &Snapshot, caches: &mut Caches, view: &mut RoutingView) {
    let steps = snap.traces.steps(trace_kind::ROUTING);
    let Some(&latest) = steps.last() else {
        return;
    };
    let step = view.step.filter(|s| steps.contains(s)).unwrap_or(latest);
    // Group the step's routing traces by layer; each group is one routed block.
    let mut groups: BTreeMap<String, Vec<&TraceEntry>> = BTreeMap::new();
    for e in snap.traces.at(trace_kind::ROUTING, step) {
        let key = e
            .layer()
            .map_or_else(|| e.name.clone(), |l| format!("layer {l:03}"));
        groups.entry(key).or_default().push(e);
    }
    let keys: Vec<String> = groups.keys().cloned().collect();
    view.layer = view.layer.min(keys.len() - 1);
    let mut pools = Vec::new();
    let mut errors = Vec::new();
    for e in &groups[&keys[view.layer]] {
        match caches.traces.get(e).and_then(|t| Routing::new(&t)) {
            Ok(r) => pools.push(Arc::new(r)),
            Err(err) => errors.push(err),
        }
    }
    let routed = RoutedLayer::new(pools);
    let tokens = routed.tokens();
    let batch = routed.batch().max(1);
    view.batch = view.batch.min(batch - 1);
    view.token = view.token.min(tokens.saturating_sub(1));

    ui.horizontal(|ui| {
        let label = ui.label("step");
        egui::ComboBox::from_id_salt("route-step")
            .selected_text(step.to_string())
            .show_ui(ui, |ui| {
                for &s in steps.iter().rev() {
                    if ui.selectable_label(s == step, s.to_string()).clicked() {
                        view.step = Some(s);
                    }
                }
            })
            .response
            .labelled_by(label.id);
        if keys.len() > 1 {
            let label = ui.label("block");
            egui::ComboBox::from_id_salt("route-layer")
                .selected_text(
                    keys[view.layer]
                        .trim_start_matches("layer ")
                        .trim_start_matches('0'),
                )
                .show_ui(ui, |ui| {
                    for (i, k) in keys.iter().enumerate() {
                        ui.selectable_value(&mut view.layer, i, k.as_str());
                    }
                })
                .response
                .labelled_by(label.id);
        }
        if batch > 1 {
            let label = ui.label("batch row");
            ui.add(egui::DragValue::new(&mut view.batch).range(0..=batch - 1))
                .labelled_by(label.id);
        }
        if tokens > 0 {
            let label = ui.label("token");
            ui.add(egui::Slider::new(&mut view.token, 0..=tokens - 1))
                .labelled_by(label.id);
        }
    });
    for e in errors {
        ui.colored_label(Color32::LIGHT_RED, e);
    }
    if routed.pools.is_empty() || tokens == 0 {
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("route-scroll")
        .show(ui, |ui| {
            token_strip(ui, &routed, view);
            ui.add_space(6.0);
            trellis(ui, &routed, view);
            ui.add_space(8.0);
            ui.horizontal_top(|ui| {
                utilisation(ui, &routed);
                ui.add_space(16.0);
                depth_chart(ui, &routed, view);
            });
        });
}

fn label_of(routed: &RoutedLayer, b: usize, t: usize) -> String {
    routed
        .token_ids(b)
        .and_then(|ids| ids.get(t))
        .map_or_else(|| t.to_string(), |&id| token_label(id))
}

/// The sequence as clickable tokens, shaded by effective depth.
fn token_strip(ui: &mut egui::Ui, routed: &RoutedLayer, view: &mut RoutingView) {
    let max_depth = routed.stages.len().max(1) as f32;
    egui::ScrollArea::horizontal()
        .id_salt("route-tokens")
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.spacing_mut().item_spacing.x = 2.0;
                for t in 0..routed.tokens() {
                    let d = routed.effective_depth(view.batch, t) as f32 / max_depth;
                    let (r, resp) = ui.allocate_exact_size(Vec2::new(18.0, 22.0), Sense::click());
                    let fill = ColorMap::Sequential.color(d);
                    ui.painter().rect_filled(r, 3.0, fill);
                    if t == view.token {
                        ui.painter().rect_stroke(
                            r,
                            3.0,
                            Stroke::new(2.0, Color32::WHITE),
                            StrokeKind::Outside,
                        );
                    }
                    let light = d > 0.6;
                    ui.painter().text(
                        r.center(),
                        Align2::CENTER_CENTER,
                        label_of(routed, view.batch, t),
                        FontId::monospace(11.0),
                        if light {
                            Color32::BLACK
                        } else {
                            Color32::WHITE
                        },
                    );
                    let resp = resp.on_hover_text(format!(
                        "token {t}: effective depth {}",
                        routed.effective_depth(view.batch, t)
                    ));
                    if resp.clicked() {
                        view.token = t;
                    }
                }
            });
        });
    ui.weak("tokens shaded by effective depth (modules run); click one to trace its path");
}

/// Iteration × module grid for the chosen token: chosen modules filled, SKIP in its own
/// row, edges from each stage's choice to the next labelled with the routing weight.
fn trellis(ui: &mut egui::Ui, routed: &RoutedLayer, view: &RoutingView) {
    let (b, t) = (view.batch, view.token);
    let rows = routed.pools.iter().map(|p| p.modules).max().unwrap_or(1) + 1;
    let row_h = 30.0;
    let header = 34.0;
    let left = 86.0;
    let width = ui.available_width().max(400.0);
    let height = header + rows as f32 * row_h + 10.0;
    let (rect, _) = ui.allocate_exact_size(Vec2::new(width, height), Sense::hover());
    let p = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    let weak = ui.visuals().weak_text_color();
    let cols = routed.stages.len() + 1;
    let col_w = (width - left - 30.0) / cols as f32;
    let x_of = |c: usize| rect.left() + left + (c as f32 + 0.5) * col_w;
    let y_of = |row: usize| rect.top() + header + (row as f32 + 0.5) * row_h;
    let skip_row = rows - 1;
    // Row labels: module indices, then SKIP.
    for r in 0..rows {
        let label = if r == skip_row {
            "SKIP".to_string()
        } else {
            format!("module {r}")
        };
        p.text(
            Pos2::new(rect.left() + left - 8.0, y_of(r)),
            Align2::RIGHT_CENTER,
            label,
            FontId::proportional(11.0),
            if r == skip_row { SKIP_COLOR } else { text },
        );
    }
    let skip_band = Rect::from_min_max(
        Pos2::new(rect.left() + left, y_of(skip_row) - row_h / 2.0),
        Pos2::new(rect.right() - 10.0, y_of(skip_row) + row_h / 2.0),
    );
    p.rect_filled(
        skip_band,
        4.0,
        Color32::from_rgba_unmultiplied(120, 120, 128, 24),
    );
    // Column headers.
    p.text(
        Pos2::new(x_of(0), rect.top() + 4.0),
        Align2::CENTER_TOP,
        format!("token {t}\n'{}'", label_of(routed, b, t)),
        FontId::proportional(11.0),
        text,
    );
    for (c, s) in routed.stages.iter().enumerate() {
        let pool = &routed.pools[s.pool];
        p.text(
            Pos2::new(x_of(c + 1), rect.top() + 4.0),
            Align2::CENTER_TOP,
            format!("iter {}\n{}", s.iteration, pool.pool),
            FontId::proportional(11.0),
            pool_color(s.pool),
        );
    }
    // The token's node.
    let start = Pos2::new(x_of(0), y_of(0) + (rows as f32 - 1.0) * row_h / 2.0);
    p.circle_filled(start, 10.0, Color32::from_gray(220));
    // Edges first (under the nodes).
    let chosen_rows = |s: Stage| -> Vec<(usize, Option<f32>)> {
        let pool = &routed.pools[s.pool];
        let ws = pool.weights(s.iteration, b, t);
        pool.choices(s.iteration, b, t)
            .iter()
            .enumerate()
            .map(|(k, &c)| {
                let row = if c == SKIP { skip_row } else { c as usize };
                (row, ws.and_then(|w| w.get(k).copied()))
            })
            .collect()
    };
    let mut prev: Vec<Pos2> = vec![start];
    for (c, &s) in routed.stages.iter().enumerate() {
        let here = chosen_rows(s);
        for &(row, w) in &here {
            let to = Pos2::new(x_of(c + 1), y_of(row));
            for &from in &prev {
                let width = 1.0 + 4.0 * w.unwrap_or(0.5).clamp(0.0, 1.0);
                let color = if row == skip_row {
                    SKIP_COLOR
                } else {
                    pool_color(s.pool)
                };
                let mid_x = (from.x + to.x) / 2.0;
                let curve = egui::epaint::CubicBezierShape::from_points_stroke(
                    [from, Pos2::new(mid_x, from.y), Pos2::new(mid_x, to.y), to],
                    false,
                    Color32::TRANSPARENT,
                    Stroke::new(width, color.gamma_multiply(0.8)),
                );
                p.add(Shape::CubicBezier(curve));
                if let Some(w) = w {
                    let at = Pos2::new(mid_x, (from.y + to.y) / 2.0);
                    let galley = p.layout_no_wrap(fmt_value(w), FontId::proportional(10.0), text);
                    let bg = Rect::from_center_size(at, galley.size() + Vec2::new(6.0, 2.0));
                    p.rect_filled(bg, CornerRadius::same(3), ui.visuals().extreme_bg_color);
                    p.galley(bg.min + Vec2::new(3.0, 1.0), galley, text);
                }
            }
        }
        prev = here
            .iter()
            .map(|&(row, _)| Pos2::new(x_of(c + 1), y_of(row)))
            .collect();
    }
    // Nodes: every module of each stage's pool; the chosen ones filled.
    for (c, &s) in routed.stages.iter().enumerate() {
        let pool = &routed.pools[s.pool];
        let chosen: Vec<usize> = chosen_rows(s).iter().map(|x| x.0).collect();
        for row in (0..pool.modules).chain(std::iter::once(skip_row)) {
            let at = Pos2::new(x_of(c + 1), y_of(row));
            let color = if row == skip_row {
                SKIP_COLOR
            } else {
                pool_color(s.pool)
            };
            if chosen.contains(&row) {
                p.circle_filled(at, 9.0, color);
                let name = if row == skip_row {
                    "S".to_string()
                } else {
                    row.to_string()
                };
                p.text(
                    at,
                    Align2::CENTER_CENTER,
                    name,
                    FontId::proportional(10.0),
                    Color32::BLACK,
                );
            } else {
                p.circle_stroke(at, 5.0, Stroke::new(1.0, weak));
            }
        }
    }
    let depth = routed.effective_depth(b, t);
    p.text(
        Pos2::new(rect.left() + 4.0, rect.top() + 4.0),
        Align2::LEFT_TOP,
        format!("depth {depth}/{}", routed.stages.len()),
        FontId::proportional(11.0),
        weak,
    );
}

/// Per pool: share of choices per module (and SKIP) at each iteration, over the batch.
fn utilisation(ui: &mut egui::Ui, routed: &RoutedLayer) {
    ui.vertical(|ui| {
        ui.strong("module utilisation per iteration");
        for (pi, pool) in routed.pools.iter().enumerate() {
            ui.colored_label(pool_color(pi), format!("pool {}", pool.pool));
            let cell = Vec2::new(46.0, 20.0);
            let cols = pool.modules + 1;
            let size = Vec2::new(
                52.0 + cell.x * cols as f32,
                16.0 + cell.y * pool.iterations as f32,
            );
            let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
            let p = ui.painter_at(rect);
            let text = ui.visuals().text_color();
            for m in 0..cols {
                let label = if m == pool.modules {
                    "SKIP".to_string()
                } else {
                    pool.module_names[m].clone()
                };
                p.text(
                    Pos2::new(rect.left() + 52.0 + (m as f32 + 0.5) * cell.x, rect.top()),
                    Align2::CENTER_TOP,
                    label,
                    FontId::proportional(10.0),
                    text,
                );
            }
            for it in 0..pool.iterations {
                let u = pool.utilisation(it);
                let y = rect.top() + 16.0 + it as f32 * cell.y;
                p.text(
                    Pos2::new(rect.left() + 48.0, y + cell.y / 2.0),
                    Align2::RIGHT_CENTER,
                    format!("iter {it}"),
                    FontId::proportional(10.0),
                    text,
                );
                for (m, &share) in u.iter().enumerate() {
                    let r = Rect::from_min_size(
                        Pos2::new(rect.left() + 52.0 + m as f32 * cell.x, y),
                        cell - Vec2::splat(1.0),
                    );
                    let fill = ColorMap::Sequential.color(share);
                    p.rect_filled(r, 2.0, fill);
                    p.text(
                        r.center(),
                        Align2::CENTER_CENTER,
                        format!("{:.0}%", share * 100.0),
                        FontId::proportional(10.0),
                        if share > 0.6 {
                            Color32::BLACK
                        } else {
                            Color32::WHITE
                        },
                    );
                }
            }
        }
    });
}

/// Effective depth of every token of the row, the chosen one highlighted.
fn depth_chart(ui: &mut egui::Ui, routed: &RoutedLayer, view: &RoutingView) {
    let bars: Vec<Bar> = (0..routed.tokens())
        .map(|t| {
            let d = routed.effective_depth(view.batch, t) as f64;
            let color = if t == view.token {
                Color32::from_rgb(250, 210, 90)
            } else {
                Color32::from_rgb(90, 160, 250)
            };
            Bar::new(t as f64, d)
                .width(0.8)
                .fill(color)
                .name(label_of(routed, view.batch, t))
        })
        .collect();
    ui.vertical(|ui| {
        ui.strong(format!(
            "effective depth per token (of {} routed stages)",
            routed.stages.len()
        ));
        Plot::new("route-depth")
            .height(170.0)
            .width(ui.available_width().max(240.0))
            .x_axis_label("token position")
            .include_y(0.0)
            .include_y(routed.stages.len() as f64)
            .show(ui, |p| p.bar_chart(BarChart::new("depth", bars)));
    });
}
