//! Attention: a layer × head grid of thumbnails and one map enlarged, with token labels,
//! a diverging colour map centred on zero (negative Cog weights are blue), hover read-out,
//! per-head negative mass, and arrow-key navigation.

use crate::cache::Caches;
use crate::colormap::Scale;
use crate::data::attention::{token_label, AttentionMaps};
use crate::data::model::ModelSummary;
use crate::data::{Snapshot, TraceEntry};
use crate::widgets::heatmap::{self, ValueMap};
use crate::widgets::legend::{fmt_value, legend};
use eframe::egui::{
    self, epaint::TextShape, Align2, Color32, FontId, Key, Pos2, Rect, Sense, Stroke, StrokeKind,
    Vec2,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_rundir::trace_kind;

/// What the Attention panel is looking at.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionView {
    /// Chosen step (`None`: the latest).
    pub step: Option<u64>,
    /// Index into the layers traced at that step.
    pub layer: usize,
    pub head: usize,
    /// Batch row.
    pub batch: usize,
    /// Colour-axis exponent (see [`Scale`]).
    pub gamma: f32,
    /// Whether a head was chosen yet; the first view opens on the head with the most
    /// negative mass (a Cog head), or layer 0 head 0.
    pub chosen: bool,
    /// The spec text the rules were read from, and each attention's rule by hook prefix
    /// (`ModelSummary::attention_rules`; empty when the spec does not check).
    pub rules: Option<(String, BTreeMap<String, String>)>,
}

impl Default for AttentionView {
    fn default() -> Self {
        AttentionView {
            step: None,
            layer: 0,
            head: 0,
            batch: 0,
            gamma: 0.5,
            chosen: false,
            rules: None,
        }
    }
}

/// Thumbnails are reduced to at most this many pixels a side.
const THUMB_PX: usize = 64;

/// Draws the panel.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, caches: &mut Caches, view: &mut AttentionView) {
    let steps = snap.traces.steps(trace_kind::ATTENTION);
    let Some(&latest) = steps.last() else {
        ui.label(
            "No attention traces in this run. Record them with a capture of \
             `layers.*.attn.pattern` (kind `attention`).",
        );
        return;
    };
    let step = view.step.filter(|s| steps.contains(s)).unwrap_or(latest);
    let entries = snap.traces.at(trace_kind::ATTENTION, step);
    if !view.chosen {
        view.chosen = true;
        if let Some((l, h)) = most_negative_head(&entries, caches, view.batch) {
            (view.layer, view.head) = (l, h);
        }
    }
    navigate(ui, view, &entries);
    if let Some(src) = &snap.spec {
        if view.rules.as_ref().is_none_or(|(s, _)| s != src) {
            let name = snap.source.path().display().to_string();
            let rules = ModelSummary::from_source(src, &name)
                .map(|m| m.attention_rules)
                .unwrap_or_default();
            view.rules = Some((src.clone(), rules));
        }
    }

    ui.horizontal(|ui| {
        let label = ui.label("step");
        egui::ComboBox::from_id_salt("attn-step")
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
        let batch = entries
            .first()
            .and_then(|e| e.shape("pattern"))
            .map_or(1, |s| s[0]);
        if batch > 1 {
            let label = ui.label("batch row");
            ui.add(egui::DragValue::new(&mut view.batch).range(0..=batch - 1))
                .labelled_by(label.id);
        }
        view.batch = view.batch.min(batch.saturating_sub(1));
        let label = ui.label("contrast (gamma)");
        ui.add(egui::Slider::new(&mut view.gamma, 0.2..=1.0).step_by(0.05))
            .labelled_by(label.id);
        ui.weak("arrow keys: left/right = heads, up/down = layers");
    });
    ui.separator();

    let avail = ui.available_size();
    let grid_w = (avail.x * 0.42).clamp(220.0, 640.0);
    ui.horizontal_top(|ui| {
        let down = egui::Layout::top_down(egui::Align::Min);
        ui.allocate_ui_with_layout(Vec2::new(grid_w, avail.y), down, |ui| {
            ui.set_width(grid_w);
            egui::ScrollArea::both()
                .id_salt("attn-grid")
                .show(ui, |ui| grid(ui, &entries, caches, view, grid_w));
        });
        ui.separator();
        ui.vertical(|ui| {
            if let Some(e) = entries.get(view.layer) {
                detail(ui, e, caches, view, step);
            }
        });
    });
}

/// The (layer index, head) with the largest negative mass, if any weight is negative.
fn most_negative_head(
    entries: &[&TraceEntry],
    caches: &mut Caches,
    b: usize,
) -> Option<(usize, usize)> {
    let mut best: Option<(f32, usize, usize)> = None;
    for (li, e) in entries.iter().enumerate() {
        let Ok(m) = caches.attention.get(&mut caches.traces, e) else {
            continue;
        };
        for h in 0..m.heads {
            let nm = m.stats(b, h).negative_mass;
            if nm > 0.0 && best.is_none_or(|x| nm > x.0) {
                best = Some((nm, li, h));
            }
        }
    }
    best.map(|(_, l, h)| (l, h))
}

/// Arrow keys move the selection unless a text field has focus.
fn navigate(ui: &egui::Ui, view: &mut AttentionView, entries: &[&TraceEntry]) {
    let layers = entries.len();
    if layers == 0 {
        return;
    }
    if !ui.ctx().egui_wants_keyboard_input() {
        ui.input(|i| {
            if i.key_pressed(Key::ArrowRight) {
                view.head += 1;
            }
            if i.key_pressed(Key::ArrowLeft) {
                view.head = view.head.saturating_sub(1);
            }
            if i.key_pressed(Key::ArrowDown) {
                view.layer += 1;
            }
            if i.key_pressed(Key::ArrowUp) {
                view.layer = view.layer.saturating_sub(1);
            }
        });
    }
    view.layer = view.layer.min(layers - 1);
    let heads = heads_of(entries[view.layer]);
    view.head = view.head.min(heads.saturating_sub(1));
}

fn heads_of(e: &TraceEntry) -> usize {
    e.shape("pattern")
        .map_or(0, |s| s.get(1).copied().unwrap_or(0))
}

fn layer_label(e: &TraceEntry, i: usize) -> String {
    format!("L{}", e.layer().unwrap_or(i))
}

/// The rule of the attention whose pattern `e` traced (`layers.1.attn.pattern` is the
/// attention at hook prefix `layers.1.attn`), when the spec names it.
fn rule_of<'a>(view: &'a AttentionView, e: &TraceEntry) -> Option<&'a str> {
    let (_, rules) = view.rules.as_ref()?;
    let hook = e.name.strip_suffix(".pattern")?;
    rules.get(hook).map(String::as_str)
}

fn signed_map(maps: &AttentionMaps, b: usize, h: usize, gamma: f32) -> ValueMap {
    ValueMap::Signed(Scale::new(maps.stats(b, h).max_abs, gamma))
}

/// The layer × head grid of thumbnails.
fn grid(
    ui: &mut egui::Ui,
    entries: &[&TraceEntry],
    caches: &mut Caches,
    view: &mut AttentionView,
    width: f32,
) {
    let max_heads = entries
        .iter()
        .map(|e| heads_of(e))
        .max()
        .unwrap_or(1)
        .max(1);
    let side = ((width - 48.0) / max_heads as f32 - 4.0).clamp(22.0, 72.0);
    let b = view.batch;
    ui.horizontal(|ui| {
        ui.add_space(34.0);
        for h in 0..max_heads {
            let (r, _) = ui.allocate_exact_size(Vec2::new(side, 14.0), Sense::hover());
            ui.painter().text(
                r.center(),
                Align2::CENTER_CENTER,
                format!("H{h}"),
                FontId::proportional(10.0),
                ui.visuals().weak_text_color(),
            );
        }
    });
    for (li, e) in entries.iter().enumerate() {
        let maps = caches.attention.get(&mut caches.traces, e);
        ui.horizontal(|ui| {
            let (r, _) = ui.allocate_exact_size(Vec2::new(30.0, side), Sense::hover());
            let signed = maps.as_ref().is_ok_and(|m| m.is_signed());
            ui.painter().text(
                r.right_center() - Vec2::new(2.0, if signed { 6.0 } else { 0.0 }),
                Align2::RIGHT_CENTER,
                layer_label(e, li),
                FontId::proportional(11.0),
                ui.visuals().text_color(),
            );
            if signed {
                ui.painter().text(
                    r.right_center() + Vec2::new(-2.0, 7.0),
                    Align2::RIGHT_CENTER,
                    "signed",
                    FontId::proportional(8.0),
                    Color32::from_rgb(110, 170, 240),
                );
            }
            for h in 0..heads_of(e) {
                let selected = li == view.layer && h == view.head;
                let resp = match &maps {
                    Ok(m) => thumbnail(ui, caches, e, m, b, h, side, view.gamma),
                    Err(err) => {
                        let (r, resp) = ui.allocate_exact_size(Vec2::splat(side), Sense::click());
                        ui.painter()
                            .rect_filled(r, 2.0, Color32::from_rgb(90, 20, 20));
                        ui.painter().text(
                            r.center(),
                            Align2::CENTER_CENTER,
                            "!",
                            FontId::proportional(14.0),
                            Color32::WHITE,
                        );
                        resp.on_hover_text(err.as_str())
                    }
                };
                if selected {
                    ui.painter().rect_stroke(
                        resp.rect.expand(1.5),
                        2.0,
                        Stroke::new(2.0, ui.visuals().selection.stroke.color),
                        StrokeKind::Outside,
                    );
                }
                if resp.clicked() {
                    view.layer = li;
                    view.head = h;
                }
            }
        });
        ui.add_space(2.0);
    }
    ui.add_space(6.0);
    ui.weak("Each map is scaled to its own max |w| (shown under it); blue is negative.");
    legend(
        ui,
        &ValueMap::Signed(Scale::new(1.0, view.gamma)),
        (width - 20.0).min(260.0),
        "w / max |w| of the map",
    );
}

#[allow(clippy::too_many_arguments)]
fn thumbnail(
    ui: &mut egui::Ui,
    caches: &mut Caches,
    e: &TraceEntry,
    m: &Arc<AttentionMaps>,
    b: usize,
    h: usize,
    side: f32,
    gamma: f32,
) -> egui::Response {
    let map = signed_map(m, b, h, gamma);
    let key = format!("thumb|{}|{b}|{h}|{}", e.file, map.key());
    let tex = caches.textures.get(ui.ctx(), &key, || {
        heatmap::color_image(m.map(b, h), m.queries, m.keys, &map, THUMB_PX)
    });
    let stats = m.stats(b, h);
    let resp = ui
        .vertical(|ui| {
            ui.spacing_mut().item_spacing.y = 0.0;
            let r = heatmap::paint(ui, &tex, Vec2::splat(side), Sense::click());
            // Each thumbnail's own scale: its legend in one line.
            let (lr, _) = ui.allocate_exact_size(Vec2::new(side, 3.0), Sense::hover());
            let half = lr.width() / 2.0;
            let p = ui.painter();
            p.rect_filled(
                Rect::from_min_size(lr.min, Vec2::new(half, 3.0)),
                0.0,
                map.color(-stats.max_abs),
            );
            p.rect_filled(
                Rect::from_min_size(lr.min + Vec2::new(half, 0.0), Vec2::new(half, 3.0)),
                0.0,
                map.color(stats.max_abs),
            );
            r
        })
        .inner;
    resp.on_hover_text(format!(
        "head {h}: max |w| {}, range [{}, {}], negative mass {:.1}%",
        fmt_value(stats.max_abs),
        fmt_value(stats.min),
        fmt_value(stats.max),
        stats.negative_mass * 100.0
    ))
}

/// The enlarged map, its legend and the layer's negative-mass bars.
fn detail(
    ui: &mut egui::Ui,
    e: &TraceEntry,
    caches: &mut Caches,
    view: &mut AttentionView,
    step: u64,
) {
    let maps = match caches.attention.get(&mut caches.traces, e) {
        Ok(m) => m,
        Err(err) => {
            ui.colored_label(Color32::LIGHT_RED, format!("cannot show {}: {err}", e.file));
            return;
        }
    };
    let (b, h) = (view.batch, view.head);
    let stats = maps.stats(b, h);
    ui.horizontal(|ui| {
        ui.heading(format!("{} · head {h}", layer_label(e, view.layer)));
        if let Some(rule) = rule_of(view, e) {
            ui.strong(rule);
        }
        ui.label(format!(
            "step {step} · {}×{} · max |w| {} · negative mass {:.1}%",
            maps.queries,
            maps.keys,
            fmt_value(stats.max_abs),
            stats.negative_mass * 100.0
        ));
    });
    let avail = ui.available_size();
    let label_px = 44.0;
    let bars_h = 110.0;
    let side = (avail.x - label_px - 10.0)
        .min(avail.y - label_px - bars_h - 60.0)
        .max(120.0);
    let (outer, resp) = ui.allocate_exact_size(Vec2::splat(side + label_px), Sense::hover());
    let rect = Rect::from_min_size(outer.min + Vec2::splat(label_px), Vec2::splat(side));
    let map = signed_map(&maps, b, h, view.gamma);
    let key = format!("full|{}|{b}|{h}|{}", e.file, map.key());
    let tex = caches.textures.get(ui.ctx(), &key, || {
        heatmap::color_image(maps.map(b, h), maps.queries, maps.keys, &map, 1024)
    });
    let painter = ui.painter_at(outer.expand(2.0));
    painter.image(
        tex.id(),
        rect,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    let tokens = maps.tokens(b);
    let label = |i: usize| match &tokens {
        Some(t) => t
            .get(i)
            .map_or_else(|| i.to_string(), |&id| token_label(id)),
        None => i.to_string(),
    };
    axis_labels(ui, &painter, rect, maps.queries, maps.keys, &label);
    if let Some((q, k)) = heatmap::hovered_cell(&resp, rect, maps.queries, maps.keys) {
        let w = maps
            .map(b, h)
            .get(q * maps.keys + k)
            .copied()
            .unwrap_or(f32::NAN);
        let (cw, ch) = (
            rect.width() / maps.keys as f32,
            rect.height() / maps.queries as f32,
        );
        let cell = Rect::from_min_size(
            rect.min + Vec2::new(k as f32 * cw, q as f32 * ch),
            Vec2::new(cw, ch),
        );
        painter.rect_stroke(
            cell.expand(1.0),
            0.0,
            Stroke::new(1.0, Color32::WHITE),
            StrokeKind::Outside,
        );
        resp.on_hover_text_at_pointer(format!(
            "query {q} '{}' -> key {k} '{}'\nw = {w:.6}",
            label(q),
            label(k)
        ));
    }
    ui.add_space(4.0);
    legend(ui, &map, side.min(360.0), "attention weight (this map)");
    ui.add_space(4.0);
    negative_mass_bars(ui, &maps, view, side + label_px, bars_h);
}

/// Token labels along the left (queries) and top (keys, rotated), thinned so they never
/// overlap.
fn axis_labels(
    ui: &egui::Ui,
    painter: &egui::Painter,
    rect: Rect,
    rows: usize,
    cols: usize,
    label: &dyn Fn(usize) -> String,
) {
    let font = FontId::monospace(9.0);
    let color = ui.visuals().text_color();
    let (cw, ch) = (rect.width() / cols as f32, rect.height() / rows as f32);
    let stride = heatmap::label_stride(ch, 10.0);
    for q in (0..rows).step_by(stride) {
        painter.text(
            Pos2::new(rect.left() - 3.0, rect.top() + (q as f32 + 0.5) * ch),
            Align2::RIGHT_CENTER,
            label(q),
            font.clone(),
            color,
        );
    }
    let stride = heatmap::label_stride(cw, 10.0);
    for k in (0..cols).step_by(stride) {
        let galley = painter.layout_no_wrap(label(k), font.clone(), color);
        let x = rect.left() + (k as f32 + 0.5) * cw - galley.size().y / 2.0;
        painter.add(
            TextShape::new(Pos2::new(x, rect.top() - 3.0), galley, color)
                .with_angle(-std::f32::consts::FRAC_PI_2),
        );
    }
    painter.text(
        rect.left_top() - Vec2::new(3.0, 3.0),
        Align2::RIGHT_BOTTOM,
        "q\\k",
        FontId::proportional(9.0),
        ui.visuals().weak_text_color(),
    );
}

/// One bar per head of the layer: the share of attention mass that is negative.
fn negative_mass_bars(
    ui: &mut egui::Ui,
    maps: &AttentionMaps,
    view: &mut AttentionView,
    width: f32,
    height: f32,
) {
    let heads = maps.heads.max(1);
    let (rect, resp) = ui.allocate_exact_size(Vec2::new(width, height), Sense::click());
    let p = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    p.text(
        rect.left_top(),
        Align2::LEFT_TOP,
        "negative mass per head (sum |w| over w < 0, over sum |w|)",
        FontId::proportional(10.0),
        ui.visuals().weak_text_color(),
    );
    let plot = Rect::from_min_max(
        rect.min + Vec2::new(0.0, 28.0),
        rect.max - Vec2::new(0.0, 14.0),
    );
    let top = (0..heads)
        .map(|h| maps.stats(view.batch, h).negative_mass)
        .fold(0.25f32, f32::max);
    let bw = plot.width() / heads as f32;
    for h in 0..heads {
        let nm = maps.stats(view.batch, h).negative_mass;
        let x0 = plot.left() + h as f32 * bw;
        let bh = plot.height() * (nm / top);
        let bar = Rect::from_min_max(
            Pos2::new(x0 + bw * 0.15, plot.bottom() - bh),
            Pos2::new(x0 + bw * 0.85, plot.bottom()),
        );
        let color = if h == view.head {
            Color32::from_rgb(120, 190, 255)
        } else {
            Color32::from_rgb(60, 110, 200)
        };
        p.rect_filled(bar, 1.0, color);
        p.text(
            Pos2::new(bar.center().x, bar.top() - 1.0),
            Align2::CENTER_BOTTOM,
            format!("{:.0}%", nm * 100.0),
            FontId::proportional(9.0),
            text,
        );
        p.text(
            Pos2::new(bar.center().x, plot.bottom() + 1.0),
            Align2::CENTER_TOP,
            format!("H{h}"),
            FontId::proportional(9.0),
            text,
        );
    }
    p.line_segment(
        [plot.left_bottom(), plot.right_bottom()],
        Stroke::new(1.0, ui.visuals().weak_text_color()),
    );
    if resp.clicked() {
        if let Some(pos) = resp.interact_pointer_pos() {
            view.head = (((pos.x - plot.left()) / bw) as usize).min(heads - 1);
        }
    }
}
