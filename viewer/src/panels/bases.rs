//! MoICE base choices (part of the routing tab): for one layer, a token × head grid coloured
//! by the rotary base each head chose for each token (top-k slots stacked, each as tall as its
//! mixing weight), a legend with the base values, base usage per head, and a base-usage
//! histogram for every layer. The grid is a cached texture (12 heads × 512 tokens × top-2 would
//! otherwise be 12 288 rectangles a frame).

use crate::cache::Caches;
use crate::colormap::ColorMap;
use crate::data::bases::BaseChoices;
use crate::data::Snapshot;
use eframe::egui::{
    self, Align2, Color32, ColorImage, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2,
};
use std::ops::Range;
use std::sync::Arc;
use weft_rundir::trace_kind;

/// What the MoICE view is looking at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BasesView {
    pub step: Option<u64>,
    /// Index into the layers traced at that step.
    pub layer: usize,
    pub batch: usize,
}

/// Colour of base `i` of `n`: the sequential map, so the order of the bases (smallest =
/// fastest rotation) reads as dark to light.
pub fn base_color(i: usize, n: usize) -> Color32 {
    let f = if n > 1 {
        i as f32 / (n - 1) as f32
    } else {
        0.5
    };
    ColorMap::Sequential.color(0.18 + 0.82 * f)
}

/// Draws the view.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, caches: &mut Caches, view: &mut BasesView) {
    let steps = snap.traces.steps(trace_kind::BASE_ROUTING);
    let Some(&latest) = steps.last() else {
        ui.label("No MoICE traces in this run (mixed-base attention writes kind `base_routing`).");
        return;
    };
    let step = view.step.filter(|s| steps.contains(s)).unwrap_or(latest);
    let mut layers = Vec::new();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for e in snap.traces.at(trace_kind::BASE_ROUTING, step) {
        match caches.bases.get(&mut caches.traces, e) {
            Ok(c) => {
                layers.push(c);
                files.push(e.file.clone());
            }
            Err(err) => errors.push(err),
        }
    }
    ui.horizontal(|ui| {
        let label = ui.label("step");
        egui::ComboBox::from_id_salt("bases-step")
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
        if !layers.is_empty() {
            view.layer = view.layer.min(layers.len() - 1);
            ui.separator();
            ui.label("layer");
            for (i, c) in layers.iter().enumerate() {
                let name = c.layer.map_or_else(|| c.name.clone(), |l| l.to_string());
                ui.selectable_value(&mut view.layer, i, name);
            }
        }
    });
    for e in errors {
        ui.colored_label(Color32::LIGHT_RED, e);
    }
    let Some(chosen) = layers.get(view.layer).cloned() else {
        return;
    };
    let file = files[view.layer].clone();
    if ui.input(|i| i.key_pressed(egui::Key::ArrowDown)) {
        view.layer = (view.layer + 1).min(layers.len() - 1);
    }
    if ui.input(|i| i.key_pressed(egui::Key::ArrowUp)) {
        view.layer = view.layer.saturating_sub(1);
    }
    let batch = chosen.batch.max(1);
    view.batch = view.batch.min(batch - 1);
    if batch > 1 {
        ui.horizontal(|ui| {
            let label = ui.label("batch row");
            ui.add(egui::DragValue::new(&mut view.batch).range(0..=batch - 1))
                .labelled_by(label.id);
        });
    }
    egui::ScrollArea::vertical()
        .id_salt("bases-scroll")
        .show(ui, |ui| {
            legend(ui, &chosen);
            ui.add_space(4.0);
            grid(ui, caches, &file, &chosen, view.batch);
            ui.add_space(8.0);
            ui.horizontal_top(|ui| {
                head_usage(ui, &chosen);
                ui.add_space(16.0);
                layer_histograms(ui, &layers, view.layer);
            });
        });
}

fn legend(ui: &mut egui::Ui, c: &BaseChoices) {
    ui.horizontal(|ui| {
        ui.label(if c.bases.is_some() {
            "rotary base"
        } else {
            "base index"
        });
        for i in 0..c.n_bases {
            let (r, _) = ui.allocate_exact_size(Vec2::new(14.0, 14.0), Sense::hover());
            ui.painter().rect_filled(r, 2.0, base_color(i, c.n_bases));
            ui.label(c.base_label(i));
            ui.add_space(6.0);
        }
        ui.weak(format!(
            "top-{} of {} bases per token and head; slots stacked by weight",
            c.k, c.n_bases
        ));
    });
}

/// Texel rows per head in the grid texture: band heights are quantised to 1/36 of a cell
/// (a pixel at the tallest cells).
const ROWS_PER_HEAD: usize = 36;

/// Heads as rows, tokens as columns; each cell shows the chosen bases as bands whose heights
/// are their mixing weights (largest on top). Hover for the exact choice. The cells are one
/// texture per (trace `file`, batch row `b`), made once ([`grid_image`]).
fn grid(ui: &mut egui::Ui, caches: &mut Caches, file: &str, c: &BaseChoices, b: usize) {
    let left = 56.0;
    let label_h = 16.0;
    let avail = ui.available_width().max(200.0);
    let cell_w = ((avail - left - 8.0) / c.tokens.max(1) as f32).clamp(3.0, 24.0);
    let cell_h = (ui.available_height() * 0.45 / c.heads.max(1) as f32).clamp(10.0, 36.0);
    let size = Vec2::new(
        left + cell_w * c.tokens as f32 + 4.0,
        label_h + cell_h * c.heads as f32 + 4.0,
    );
    egui::ScrollArea::horizontal()
        .id_salt("bases-grid")
        .show(ui, |ui| {
            let (rect, resp) = ui.allocate_exact_size(size, Sense::hover());
            let p = ui.painter_at(rect);
            let text = ui.visuals().text_color();
            let origin = rect.min + Vec2::new(left, label_h);
            for h in 0..c.heads {
                p.text(
                    Pos2::new(
                        rect.left() + left - 6.0,
                        origin.y + (h as f32 + 0.5) * cell_h,
                    ),
                    Align2::RIGHT_CENTER,
                    format!("head {h}"),
                    FontId::proportional(11.0),
                    text,
                );
            }
            // Token labels when there is room for them, else every tenth position.
            for t in 0..c.tokens {
                let x = origin.x + (t as f32 + 0.5) * cell_w;
                let label = if cell_w >= 11.0 {
                    c.token_label(b, t)
                } else if t % 10 == 0 {
                    t.to_string()
                } else {
                    continue;
                };
                p.text(
                    Pos2::new(x, rect.top()),
                    Align2::CENTER_TOP,
                    label,
                    FontId::monospace(10.0),
                    text,
                );
            }
            // Tokens beyond the largest texture side go to further textures.
            let max_side = ui.ctx().input(|i| i.max_texture_side).max(1);
            let rows = ROWS_PER_HEAD.min(max_side / c.heads.max(1)).max(1);
            let per_texture = max_side.min(4096);
            for t0 in (0..c.tokens).step_by(per_texture) {
                let t1 = (t0 + per_texture).min(c.tokens);
                let key = format!("bases/{file}/b{b}/r{rows}/t{t0}-{t1}");
                let tex = caches
                    .textures
                    .get(ui.ctx(), &key, || grid_image(c, b, rows, t0..t1));
                let r = Rect::from_min_size(
                    origin + Vec2::new(t0 as f32 * cell_w, 0.0),
                    Vec2::new((t1 - t0) as f32 * cell_w, c.heads as f32 * cell_h),
                );
                let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
                p.image(tex.id(), r, uv, Color32::WHITE);
            }
            // Wide cells are set apart by a pixel of background.
            if cell_w >= 6.0 {
                let gap = Stroke::new(1.0, ui.visuals().panel_fill);
                let (w, h) = (cell_w * c.tokens as f32, cell_h * c.heads as f32);
                for t in 0..=c.tokens {
                    let x = origin.x + t as f32 * cell_w;
                    p.line_segment([Pos2::new(x, origin.y), Pos2::new(x, origin.y + h)], gap);
                }
                for hd in 0..=c.heads {
                    let y = origin.y + hd as f32 * cell_h;
                    p.line_segment([Pos2::new(origin.x, y), Pos2::new(origin.x + w, y)], gap);
                }
            }
            if let Some(pos) = resp.hover_pos() {
                let v = (pos - origin) / Vec2::new(cell_w, cell_h);
                let (t, h) = (v.x.floor(), v.y.floor());
                if t >= 0.0 && h >= 0.0 && (t as usize) < c.tokens && (h as usize) < c.heads {
                    let (t, h) = (t as usize, h as usize);
                    let cell = Rect::from_min_size(
                        origin + Vec2::new(t as f32 * cell_w, h as f32 * cell_h),
                        Vec2::new(cell_w, cell_h),
                    );
                    p.rect_stroke(
                        cell,
                        0.0,
                        Stroke::new(1.5, Color32::WHITE),
                        StrokeKind::Outside,
                    );
                    let weights = c.weights(b, h, t);
                    let parts: Vec<String> = c
                        .choices(b, h, t)
                        .iter()
                        .enumerate()
                        .filter(|(_, &x)| x >= 0)
                        .map(|(s, &x)| match weights.and_then(|w| w.get(s)) {
                            Some(w) => format!("{} ({:.2})", c.base_label(x as usize), w),
                            None => c.base_label(x as usize),
                        })
                        .collect();
                    resp.on_hover_text_at_pointer(format!(
                        "token {t} '{}', head {h}\nbases: {}",
                        c.token_label(b, t),
                        parts.join(", ")
                    ));
                }
            }
        });
}

/// Tokens `cols` of batch row `b` as an image: a texel column per token and `rows` texel rows
/// per head, each cell's chosen bases stacked top-down as bands as tall as their mixing
/// weights (transparent where nothing was chosen).
fn grid_image(c: &BaseChoices, b: usize, rows: usize, cols: Range<usize>) -> ColorImage {
    let w = cols.len();
    let palette: Vec<Color32> = (0..c.n_bases).map(|i| base_color(i, c.n_bases)).collect();
    let mut pixels = vec![Color32::TRANSPARENT; w * rows * c.heads];
    for h in 0..c.heads {
        for (x, t) in cols.clone().enumerate() {
            let choices = c.choices(b, h, t);
            let weights = c.weights(b, h, t);
            let total: f32 = match weights {
                Some(w) => w.iter().filter(|x| x.is_finite()).sum(),
                None => choices.iter().filter(|&&x| x >= 0).count() as f32,
            };
            let mut y = 0.0f32;
            for (s, &base) in choices.iter().enumerate() {
                if base < 0 {
                    continue;
                }
                let share = match weights {
                    Some(w) => w.get(s).copied().unwrap_or(0.0).max(0.0),
                    None => 1.0,
                } / total.max(1e-12);
                let r0 = ((y * rows as f32).round() as usize).min(rows);
                y += share;
                let r1 = ((y * rows as f32).round() as usize).min(rows);
                let color = palette
                    .get(base as usize)
                    .copied()
                    .unwrap_or_else(|| base_color(base as usize, c.n_bases));
                for r in r0..r1 {
                    pixels[(h * rows + r) * w + x] = color;
                }
            }
        }
    }
    ColorImage::new([w, rows * c.heads], pixels)
}

/// Share of each head's choices per base (the chosen layer), as one stacked bar per head.
fn head_usage(ui: &mut egui::Ui, c: &BaseChoices) {
    ui.vertical(|ui| {
        ui.strong("base usage per head");
        let (label_w, bar_w, row_h) = (52.0, 300.0, 20.0);
        let size = Vec2::new(label_w + bar_w, row_h * c.heads as f32);
        let (rect, resp) = ui.allocate_exact_size(size, Sense::hover());
        let p = ui.painter_at(rect);
        let text = ui.visuals().text_color();
        let mut hovered = None;
        for h in 0..c.heads {
            let y = rect.top() + h as f32 * row_h;
            p.text(
                Pos2::new(rect.left() + label_w - 4.0, y + row_h / 2.0),
                Align2::RIGHT_CENTER,
                format!("head {h}"),
                FontId::proportional(10.0),
                text,
            );
            let mut x = rect.left() + label_w;
            for (i, &share) in c.head_usage(h).iter().enumerate() {
                let r = Rect::from_min_size(
                    Pos2::new(x, y + 1.0),
                    Vec2::new(bar_w * share, row_h - 2.0),
                );
                x += bar_w * share;
                let fill = base_color(i, c.n_bases);
                p.rect_filled(r, 0.0, fill);
                if r.width() > 28.0 {
                    p.text(
                        r.center(),
                        Align2::CENTER_CENTER,
                        format!("{:.0}%", share * 100.0),
                        FontId::proportional(10.0),
                        contrast(fill),
                    );
                }
                if resp.hover_pos().is_some_and(|q| r.contains(q)) {
                    hovered = Some((h, i, share));
                }
            }
        }
        if let Some((h, i, share)) = hovered {
            resp.on_hover_text_at_pointer(format!(
                "head {h}: base {} in {:.1}% of its choices",
                c.base_label(i),
                share * 100.0
            ));
        }
    });
}

/// Black or white, whichever reads on `fill`.
fn contrast(fill: Color32) -> Color32 {
    let l = 0.299 * fill.r() as f32 + 0.587 * fill.g() as f32 + 0.114 * fill.b() as f32;
    if l > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// One histogram per layer: the share of (token, head, slot) choices that went to each base.
fn layer_histograms(ui: &mut egui::Ui, layers: &[Arc<BaseChoices>], chosen: usize) {
    ui.vertical(|ui| {
        ui.strong("base usage per layer (all heads and tokens)");
        ui.horizontal_wrapped(|ui| {
            for (li, c) in layers.iter().enumerate() {
                let n = c.n_bases.max(1);
                let bar = 46.0;
                let (plot_h, label_h, title_h) = (110.0, 16.0, 16.0);
                let size = Vec2::new(bar * n as f32 + 8.0, title_h + plot_h + label_h);
                let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
                let p = ui.painter_at(rect);
                let text = ui.visuals().text_color();
                let weak = ui.visuals().weak_text_color();
                let title = c
                    .layer
                    .map_or_else(|| c.name.clone(), |l| format!("layer {l}"));
                p.text(
                    rect.left_top(),
                    Align2::LEFT_TOP,
                    title,
                    FontId::proportional(11.0),
                    if li == chosen { text } else { weak },
                );
                let base_y = rect.top() + title_h + plot_h;
                p.line_segment(
                    [
                        Pos2::new(rect.left(), base_y),
                        Pos2::new(rect.right(), base_y),
                    ],
                    Stroke::new(1.0, weak),
                );
                let top = c.usage().iter().copied().fold(0.0f32, f32::max).max(1e-6);
                for (i, &share) in c.usage().iter().enumerate() {
                    let x = rect.left() + 4.0 + i as f32 * bar;
                    let h = (plot_h - 14.0) * share / top;
                    let r = Rect::from_min_max(
                        Pos2::new(x + 4.0, base_y - h),
                        Pos2::new(x + bar - 4.0, base_y),
                    );
                    p.rect_filled(r, 1.0, base_color(i, c.n_bases));
                    p.text(
                        Pos2::new(r.center().x, r.top() - 1.0),
                        Align2::CENTER_BOTTOM,
                        format!("{:.0}%", share * 100.0),
                        FontId::proportional(10.0),
                        text,
                    );
                    p.text(
                        Pos2::new(r.center().x, base_y + 2.0),
                        Align2::CENTER_TOP,
                        c.base_label(i),
                        FontId::proportional(10.0),
                        text,
                    );
                }
                ui.add_space(12.0);
            }
        });
    });
}
