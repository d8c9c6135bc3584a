//! Colour maps: a diverging map centred on zero for signed attention (Cog weights read as
//! blue at a glance) and a sequential map for non-negative scores.

use eframe::egui::Color32;

/// How values map to the colour axis `t ∈ [-1, 1]`: `t = sign(v) · (|v| / max)^gamma`.
/// `gamma < 1` lifts small weights (a 512-token softmax row spreads mass thinly) while the
/// legend keeps reading in true values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub max: f32,
    pub gamma: f32,
}

impl Scale {
    pub fn new(max: f32, gamma: f32) -> Self {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        Scale { max, gamma }
    }

    /// Value → colour axis position in `[-1, 1]`.
    pub fn to_t(&self, v: f32) -> f32 {
        if !v.is_finite() {
            return 0.0;
        }
        let a = (v.abs() / self.max).min(1.0).powf(self.gamma);
        a.copysign(v)
    }

    /// Colour axis position → value (for legend ticks).
    pub fn value_at(&self, t: f32) -> f32 {
        (t.abs().powf(1.0 / self.gamma) * self.max).copysign(t)
    }
}

/// Which colour map a heatmap uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColorMap {
    /// Cyan–blue for negative, near-black at zero, red–yellow for positive.
    Diverging,
    /// Dark violet to yellow (viridis-like) over `[0, 1]`.
    Sequential,
}

impl ColorMap {
    /// Colour at `t` (`[-1, 1]` diverging, `[0, 1]` sequential; clamped).
    pub fn color(self, t: f32) -> Color32 {
        match self {
            ColorMap::Diverging => diverging(t),
            ColorMap::Sequential => sequential(t),
        }
    }

    /// The lower end of the colour axis.
    pub fn t_min(self) -> f32 {
        match self {
            ColorMap::Diverging => -1.0,
            ColorMap::Sequential => 0.0,
        }
    }
}

/// Stops of the diverging map; symmetric in lightness so neither sign dominates.
const DIVERGING: [(f32, [u8; 3]); 7] = [
    (-1.0, [150, 230, 255]),
    (-0.6, [60, 140, 235]),
    (-0.25, [35, 60, 140]),
    (0.0, [22, 22, 28]),
    (0.25, [140, 40, 35]),
    (0.6, [235, 100, 45]),
    (1.0, [255, 225, 130]),
];

const SEQUENTIAL: [(f32, [u8; 3]); 5] = [
    (0.0, [68, 1, 84]),
    (0.25, [59, 82, 139]),
    (0.5, [33, 145, 140]),
    (0.75, [94, 201, 98]),
    (1.0, [253, 231, 37]),
];

fn diverging(t: f32) -> Color32 {
    lerp_stops(&DIVERGING, t)
}

fn sequential(t: f32) -> Color32 {
    lerp_stops(&SEQUENTIAL, t)
}

fn lerp_stops(stops: &[(f32, [u8; 3])], t: f32) -> Color32 {
    let t = if t.is_finite() { t } else { 0.0 };
    let t = t.clamp(stops[0].0, stops[stops.len() - 1].0);
    let i = stops
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(stops.len() - 2);
    let (a, b) = (stops[i], stops[i + 1]);
    let f = (t - a.0) / (b.0 - a.0);
    let mix = |x: u8, y: u8| (x as f32 + f * (y as f32 - x as f32)).round() as u8;
    Color32::from_rgb(
        mix(a.1[0], b.1[0]),
        mix(a.1[1], b.1[1]),
        mix(a.1[2], b.1[2]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_is_centred_on_zero_and_tells_signs_apart() {
        let zero = ColorMap::Diverging.color(0.0);
        let neg = ColorMap::Diverging.color(-0.8);
        let pos = ColorMap::Diverging.color(0.8);
        assert_eq!(zero, Color32::from_rgb(22, 22, 28));
        assert!(neg.b() > neg.r(), "negative is blue: {neg:?}");
        assert!(pos.r() > pos.b(), "positive is red: {pos:?}");
    }

    #[test]
    fn scale_round_trips_through_the_colour_axis() {
        let s = Scale::new(0.5, 0.5);
        for v in [-0.5f32, -0.1, 0.0, 0.02, 0.3, 0.5] {
            assert!((s.value_at(s.to_t(v)) - v).abs() < 1e-5, "{v}");
        }
        assert_eq!(s.to_t(2.0), 1.0);
    }
}
