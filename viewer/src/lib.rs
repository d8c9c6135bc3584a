//! weft-viewer: a desktop viewer (eframe) over weft run directories and specs.
//!
//! `data` reads a run directory into a [`data::Snapshot`] (tolerating partial and corrupt
//! files, polling for a live run); `panels` draw it, each a function of the snapshot and a
//! small view state; `app` puts them in a window. The viewer only reads run directories and
//! specs; nothing upstream depends on it.

pub mod app;
pub mod cache;
pub mod check;
pub mod colormap;
pub mod data;
pub mod graph_layout;
pub mod panels;
pub mod synthetic;
pub mod textures;
pub mod widgets;

pub use app::{run, window, ViewState, ViewerApp};
pub use cache::Caches;
pub use panels::Tab;

/// The eframe version the viewer is built against (shares the runtime's wgpu).
pub use eframe;
