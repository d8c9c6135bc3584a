//! Drawing helpers shared by panels.

pub mod heatmap;
pub mod legend;
