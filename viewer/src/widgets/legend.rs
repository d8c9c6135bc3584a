//! A colour legend: the gradient with tick labels in true values.

use super::heatmap::ValueMap;
use eframe::egui::{self, epaint, Align2, Color32, FontId, Pos2, Rect, Sense, Shape, Stroke, Vec2};

/// Draws a horizontal legend `width` wide for `map`, labelled `label`.
pub fn legend(ui: &mut egui::Ui, map: &ValueMap, width: f32, label: &str) {
    let height = if label.is_empty() { 28.0 } else { 40.0 };
    let (rect, _) = ui.allocate_exact_size(Vec2::new(width, height), Sense::hover());
    let bar = Rect::from_min_size(rect.min + Vec2::new(0.0, 2.0), Vec2::new(width, 9.0));
    let cmap = map.cmap();
    let (t0, t1) = (cmap.t_min(), 1.0);
    let mut mesh = epaint::Mesh::default();
    let n = 48;
    for i in 0..=n {
        let f = i as f32 / n as f32;
        let c = cmap.color(t0 + f * (t1 - t0));
        let x = bar.left() + f * bar.width();
        mesh.colored_vertex(Pos2::new(x, bar.top()), c);
        mesh.colored_vertex(Pos2::new(x, bar.bottom()), c);
        if i > 0 {
            let k = 2 * i as u32;
            mesh.add_triangle(k - 2, k - 1, k);
            mesh.add_triangle(k - 1, k + 1, k);
        }
    }
    let painter = ui.painter();
    painter.add(Shape::mesh(mesh));
    painter.rect_stroke(
        bar,
        0.0,
        Stroke::new(1.0, Color32::from_gray(90)),
        egui::StrokeKind::Outside,
    );
    let font = FontId::proportional(10.0);
    let text = ui.visuals().text_color();
    let ticks: &[f32] = if t0 < 0.0 {
        &[-1.0, -0.5, 0.0, 0.5, 1.0]
    } else {
        &[0.0, 0.5, 1.0]
    };
    for &t in ticks {
        let f = (t - t0) / (t1 - t0);
        let x = bar.left() + f * bar.width();
        painter.line_segment(
            [Pos2::new(x, bar.bottom()), Pos2::new(x, bar.bottom() + 3.0)],
            Stroke::new(1.0, text),
        );
        let align = if f <= 0.0 {
            Align2::LEFT_TOP
        } else if f >= 1.0 {
            Align2::RIGHT_TOP
        } else {
            Align2::CENTER_TOP
        };
        painter.text(
            Pos2::new(x, bar.bottom() + 4.0),
            align,
            fmt_value(map.value_at(t)),
            font.clone(),
            text,
        );
    }
    if !label.is_empty() {
        painter.text(
            Pos2::new(bar.center().x, rect.bottom()),
            Align2::CENTER_BOTTOM,
            label,
            FontId::proportional(9.0),
            ui.visuals().weak_text_color(),
        );
    }
}

/// A compact number: 3 significant digits, scientific for very small or large values.
pub fn fmt_value(v: f32) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
