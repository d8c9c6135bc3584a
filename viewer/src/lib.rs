//! weft-viewer: a desktop viewer (eframe) over weft run directories and specs.
//!
//! The viewer only reads run directories and specs; nothing upstream depends on it.

/// The eframe version the viewer is built against (shares the runtime's wgpu).
pub use eframe;
