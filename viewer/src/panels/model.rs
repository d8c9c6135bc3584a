//! Model: the spec's structure as a layered graph — layers with their components and
//! parameter counts, pools with the routers that feed them, hook points — with pan/zoom.

use crate::data::model::{ComponentKind, ModelSummary};
use crate::data::Snapshot;
use crate::graph_layout::{fmt_count, layout, GraphLayout, NodeKind};
use eframe::egui::{
    self, Align2, Color32, CornerRadius, FontId, Pos2, Rect, Shape, Stroke, StrokeKind, Vec2,
};

/// The summary of the last spec seen (rebuilt when the text changes) and the scene view.
#[derive(Clone, Debug)]
pub struct ModelView {
    /// Spec text the summary was made from, and the summary or the checker's message.
    pub summary: Option<(String, Result<ModelSummary, String>)>,
    /// The visible part of the graph (pan/zoom state).
    pub scene_rect: Rect,
}

impl Default for ModelView {
    fn default() -> Self {
        ModelView {
            summary: None,
            scene_rect: Rect::NOTHING,
        }
    }
}

const CHIP_FONT: f32 = 12.0;

/// Draws the panel.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, view: &mut ModelView) {
    let Some(src) = &snap.spec else {
        ui.label("No spec: the run directory has no spec.weft.");
        return;
    };
    if view.summary.as_ref().is_none_or(|(s, _)| s != src) {
        let name = snap.source.path().display().to_string();
        view.summary = Some((src.clone(), ModelSummary::from_source(src, &name)));
        view.scene_rect = Rect::NOTHING;
    }
    let Some((_, summary)) = &view.summary else {
        return;
    };
    let m = match summary {
        Ok(m) => m,
        Err(e) => {
            ui.colored_label(Color32::LIGHT_RED, "The spec does not check:");
            egui::ScrollArea::both().show(ui, |ui| ui.monospace(e));
            return;
        }
    };
    ui.horizontal(|ui| {
        ui.heading(format!("model {}", m.name));
        let sizes: Vec<String> = m.sizes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        ui.label(sizes.join(" · "));
        ui.separator();
        ui.label(format!(
            "{} parameters ({} trainable)",
            fmt_count(m.total_params),
            fmt_count(m.trainable_params)
        ));
        ui.weak("drag to pan, ctrl+scroll to zoom");
    });
    let font = FontId::proportional(CHIP_FONT);
    let g = {
        let fonts = ui.ctx();
        let measure = |s: &str| {
            fonts.fonts_mut(|f| {
                f.layout_no_wrap(s.to_string(), font.clone(), Color32::WHITE)
                    .size()
                    .x
            })
        };
        layout(m, &measure)
    };
    if !view.scene_rect.is_positive() {
        view.scene_rect = g.bounds;
    }
    let frame = egui::Frame::canvas(ui.style());
    frame.show(ui, |ui| {
        ui.set_min_size(ui.available_size());
        egui::Scene::new()
            .zoom_range(0.1..=4.0)
            .show(ui, &mut view.scene_rect, |ui| paint(ui, &g));
    });
}

fn kind_color(k: ComponentKind) -> Color32 {
    match k {
        ComponentKind::Attention => Color32::from_rgb(70, 120, 200),
        ComponentKind::Mlp => Color32::from_rgb(70, 150, 90),
        ComponentKind::Norm => Color32::from_rgb(110, 110, 120),
        ComponentKind::Router => Color32::from_rgb(200, 130, 50),
        ComponentKind::Embedding => Color32::from_rgb(140, 90, 170),
        ComponentKind::Other => Color32::from_rgb(100, 100, 100),
    }
}

fn paint(ui: &mut egui::Ui, g: &GraphLayout) {
    let (_, painter) = ui.allocate_painter(g.bounds.max.to_vec2(), egui::Sense::hover());
    let origin = ui.min_rect().min;
    let at = |p: Pos2| p + origin.to_vec2();
    let text = Color32::from_gray(225);
    let weak = Color32::from_gray(150);
    for e in &g.edges {
        let (a, b) = (at(e.from), at(e.to));
        if e.routed {
            let bend = (b.x - a.x) * 0.5;
            let c = [a, Pos2::new(a.x + bend, a.y), Pos2::new(b.x - bend, b.y), b];
            painter.add(Shape::CubicBezier(
                egui::epaint::CubicBezierShape::from_points_stroke(
                    c,
                    false,
                    Color32::TRANSPARENT,
                    Stroke::new(1.5, kind_color(ComponentKind::Router)),
                ),
            ));
            painter.text(
                Pos2::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0 - 4.0),
                Align2::CENTER_BOTTOM,
                &e.label,
                FontId::proportional(11.0),
                kind_color(ComponentKind::Router),
            );
        } else {
            painter.arrow(a, b - a, Stroke::new(1.5, weak));
        }
    }
    for n in &g.nodes {
        let r = n.rect.translate(origin.to_vec2());
        let (fill, border) = match n.kind {
            NodeKind::Pool => (
                Color32::from_rgb(48, 38, 28),
                kind_color(ComponentKind::Router),
            ),
            NodeKind::Input | NodeKind::Output => (
                Color32::from_rgb(36, 32, 44),
                kind_color(ComponentKind::Embedding),
            ),
            NodeKind::Layer => (Color32::from_rgb(32, 36, 44), Color32::from_gray(90)),
        };
        painter.rect(
            r,
            CornerRadius::same(6),
            fill,
            Stroke::new(1.0, border),
            StrokeKind::Inside,
        );
        painter.text(
            r.left_top() + Vec2::new(10.0, 5.0),
            Align2::LEFT_TOP,
            &n.title,
            FontId::proportional(13.0),
            text,
        );
        painter.text(
            r.left_top() + Vec2::new(10.0, 20.0),
            Align2::LEFT_TOP,
            &n.subtitle,
            FontId::proportional(10.0),
            weak,
        );
        for c in &n.chips {
            let cr = c.rect.translate(origin.to_vec2());
            painter.rect_filled(cr, CornerRadius::same(4), kind_color(c.kind));
            painter.text(
                cr.center(),
                Align2::CENTER_CENTER,
                &c.text,
                FontId::proportional(CHIP_FONT),
                Color32::WHITE,
            );
        }
        let hooks_top = n
            .chips
            .first()
            .map_or(r.top() + 34.0, |c| c.rect.bottom() + origin.y + 6.0);
        for (i, line) in n.hooks.iter().enumerate() {
            let prefix = if i == 0 && n.kind == NodeKind::Layer {
                "hooks: "
            } else {
                ""
            };
            painter.text(
                Pos2::new(r.left() + 10.0, hooks_top + i as f32 * 13.0),
                Align2::LEFT_TOP,
                format!("{prefix}{line}"),
                FontId::proportional(10.0),
                if n.kind == NodeKind::Pool {
                    text
                } else {
                    Color32::from_rgb(150, 170, 200)
                },
            );
        }
    }
}
