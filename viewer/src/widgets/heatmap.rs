//! Heatmaps drawn as one texture each, with hover read-out and optional axis labels.

use crate::colormap::{ColorMap, Scale};
use eframe::egui::{self, Color32, ColorImage, Pos2, Rect, Response, Sense, TextureHandle, Vec2};

/// How values become colours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueMap {
    /// Diverging map centred on zero.
    Signed(Scale),
    /// Sequential map from `lo` to `hi`.
    Range { lo: f32, hi: f32 },
}

impl ValueMap {
    /// Signed when any value is negative, else a range from 0 (or the minimum) to the max.
    pub fn for_values(lo: f32, hi: f32, gamma: f32) -> ValueMap {
        if lo < 0.0 {
            ValueMap::Signed(Scale::new(lo.abs().max(hi.abs()), gamma))
        } else {
            ValueMap::Range {
                lo: lo.min(0.0),
                hi: if hi > lo.min(0.0) {
                    hi
                } else {
                    lo.min(0.0) + 1.0
                },
            }
        }
    }

    pub fn cmap(&self) -> ColorMap {
        match self {
            ValueMap::Signed(_) => ColorMap::Diverging,
            ValueMap::Range { .. } => ColorMap::Sequential,
        }
    }

    /// Position on the colour axis.
    pub fn t(&self, v: f32) -> f32 {
        match *self {
            ValueMap::Signed(s) => s.to_t(v),
            ValueMap::Range { lo, hi } => ((v - lo) / (hi - lo)).clamp(0.0, 1.0),
        }
    }

    /// The value at colour-axis position `t`.
    pub fn value_at(&self, t: f32) -> f32 {
        match *self {
            ValueMap::Signed(s) => s.value_at(t),
            ValueMap::Range { lo, hi } => lo + t * (hi - lo),
        }
    }

    pub fn color(&self, v: f32) -> Color32 {
        if !v.is_finite() {
            return Color32::from_rgb(255, 0, 255);
        }
        self.cmap().color(self.t(v))
    }

    /// A stable key for texture caches.
    pub fn key(&self) -> String {
        match self {
            ValueMap::Signed(s) => format!("s{:.6}g{:.3}", s.max, s.gamma),
            ValueMap::Range { lo, hi } => format!("r{lo:.6}-{hi:.6}"),
        }
    }
}

/// A `rows × cols` image of `values` (row-major). Larger maps are reduced to at most
/// `max_side` pixels a side by keeping, in each block, the value of largest magnitude, so
/// a sharp diagonal or a single negative weight survives in a thumbnail.
pub fn color_image(
    values: &[f32],
    rows: usize,
    cols: usize,
    map: &ValueMap,
    max_side: usize,
) -> ColorImage {
    let fr = rows.div_ceil(max_side.max(1)).max(1);
    let fc = cols.div_ceil(max_side.max(1)).max(1);
    let (h, w) = (rows.div_ceil(fr).max(1), cols.div_ceil(fc).max(1));
    let mut pixels = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let mut best = 0.0f32;
            for r in y * fr..((y + 1) * fr).min(rows) {
                let row = &values[r * cols..(r + 1) * cols];
                for &v in &row[x * fc..((x + 1) * fc).min(cols)] {
                    if v.abs() > best.abs() || !v.is_finite() {
                        best = v;
                    }
                }
            }
            pixels.push(map.color(best));
        }
    }
    ColorImage::new([w, h], pixels)
}

/// Paints `tex` into a `size` rectangle; returns the response (hover, click).
pub fn paint(ui: &mut egui::Ui, tex: &TextureHandle, size: Vec2, sense: Sense) -> Response {
    let (rect, resp) = ui.allocate_exact_size(size, sense);
    ui.painter().image(
        tex.id(),
        rect,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    resp
}

/// The `(row, col)` cell under the pointer, if it is over `rect`.
pub fn hovered_cell(
    resp: &Response,
    rect: Rect,
    rows: usize,
    cols: usize,
) -> Option<(usize, usize)> {
    let p = resp.hover_pos()?;
    if !rect.contains(p) || rows == 0 || cols == 0 {
        return None;
    }
    let r = ((p.y - rect.top()) / rect.height() * rows as f32) as usize;
    let c = ((p.x - rect.left()) / rect.width() * cols as f32) as usize;
    Some((r.min(rows - 1), c.min(cols - 1)))
}

/// Every how many cells a label fits, so labels of `font_px` never overlap.
pub fn label_stride(cell_px: f32, font_px: f32) -> usize {
    if cell_px <= 0.0 {
        return 1;
    }
    (font_px / cell_px).ceil().max(1.0) as usize
}
