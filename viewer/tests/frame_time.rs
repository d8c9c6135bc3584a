//! Frame time on the largest case the viewer must handle: 12 layers × 12 heads, T = 512
//! (144 maps of 512 × 512 signed weights; MoICE base choices for 12 heads × 512 tokens in each
//! of the 12 layers). Prints milliseconds per frame; fails only if a steady frame is grossly
//! slow or does work that must be cached (re-uploaded heatmaps, a grid drawn cell by cell).
//!
//! `cargo test -p weft-viewer --release --test frame_time -- --nocapture`

mod common;

use common::{gpu_or_skip, harness, App};
use std::time::Instant;
use weft_viewer::synthetic::Synthetic;
use weft_viewer::Tab;

/// Writes `Synthetic::large()` (12 layers × 12 heads × 512 tokens: attention patterns and
/// MoICE base routing) into a fresh temporary run directory.
fn large_run(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-viewer-large-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    Synthetic::large().write(&dir).unwrap();
    eprintln!(
        "wrote the 12×12×512 run (attention and base routing) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    dir
}

#[test]
fn attention_panel_frame_time_12x12_heads_512_tokens() {
    if !gpu_or_skip() {
        return;
    }
    let dir = large_run("attention");

    // Building the harness runs the first frames: 12 traces loaded, 144 thumbnails made.
    let t = Instant::now();
    let mut h = harness(App::open(&dir, Tab::Attention), [1400.0, 900.0]);
    let first = t.elapsed().as_secs_f64() * 1e3;
    let textures = h.state().caches.textures.len();
    assert!(
        textures > 144,
        "144 thumbnails and the enlarged map: {textures}"
    );
    // Let layout settle (first frames size things), then measure steady frames.
    for _ in 0..3 {
        h.step();
    }
    let uploads = h.state().caches.textures.uploads;
    let n = 30;
    let t = Instant::now();
    for i in 0..n {
        // Move the selection every few frames, as arrow-key browsing would.
        if i % 10 == 9 {
            h.key_press(weft_viewer::eframe::egui::Key::ArrowRight);
        }
        h.step();
    }
    let cpu_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let new_uploads = h.state().caches.textures.uploads - uploads;
    let m = 5;
    let t = Instant::now();
    for _ in 0..m {
        h.step();
        h.render().expect("render");
    }
    let render_ms = t.elapsed().as_secs_f64() * 1e3 / m as f64;
    eprintln!("first frames (load 12 traces, make {textures} textures): {first:.0} ms");
    eprintln!("steady frame, egui update (layout + paint lists): {cpu_ms:.2} ms/frame");
    eprintln!("steady frame incl. tessellation + wgpu render + readback: {render_ms:.1} ms/frame");
    eprintln!("texture uploads during {n} steady frames: {new_uploads} (3 head changes)");
    // Three selection changes upload at most the three newly enlarged maps.
    assert!(new_uploads <= 3, "textures re-uploaded: {new_uploads}");
    assert!(cpu_ms < 250.0, "steady frames too slow: {cpu_ms:.1} ms");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shapes in a frame's paint lists (nested `Shape::Vec`s counted by their members).
fn count_shapes(shapes: &[weft_viewer::eframe::egui::epaint::ClippedShape]) -> usize {
    use weft_viewer::eframe::egui::Shape;
    fn count(s: &Shape) -> usize {
        match s {
            Shape::Vec(v) => v.iter().map(count).sum(),
            Shape::Noop => 0,
            _ => 1,
        }
    }
    shapes.iter().map(|c| count(&c.shape)).sum()
}

/// The MoICE view (Routing tab, base choices) on the same scale: 12 layers of
/// `base_routing` traces, each 12 heads × 512 tokens × top-2 bases. The token × head grid
/// must be one cached texture per (layer, batch row), not 12 × 512 × 2 rectangles a frame.
#[test]
fn moice_bases_panel_frame_time_12x12_heads_512_tokens() {
    use egui_kittest::kittest::Queryable;
    use weft_viewer::eframe::egui::Key;
    if !gpu_or_skip() {
        return;
    }
    let dir = large_run("moice");
    let t = Instant::now();
    let app = App::open(&dir, Tab::Routing);
    let entries = app
        .snap
        .traces
        .at(weft_rundir::trace_kind::BASE_ROUTING, 1000);
    assert_eq!(entries.len(), 12, "12 layers of base_routing traces");
    assert_eq!(entries[0].shape("choice"), Some(&[1, 12, 512, 2][..]));
    let mut h = harness(app, [1400.0, 900.0]);
    let first = t.elapsed().as_secs_f64() * 1e3;
    // The MoICE view is showing (its legend line), on layer 0.
    h.get_by_label_contains("top-2 of 5 bases per token and head");
    for _ in 0..3 {
        h.step();
    }
    let uploads = h.state().caches.textures.uploads;
    let n = 30;
    let t = Instant::now();
    for i in 0..n {
        // Move to the next layer every few frames, as arrow-key browsing would.
        if i % 10 == 9 {
            h.key_press(Key::ArrowDown);
        }
        h.step();
    }
    let cpu_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let new_uploads = h.state().caches.textures.uploads - uploads;
    assert_eq!(h.state().view.routing.bases.layer, 3, "three layer changes");
    let shapes = count_shapes(&h.output().shapes);
    let m = 5;
    let ppp = h.ctx.pixels_per_point();
    let t = Instant::now();
    let mut vertices = 0;
    for _ in 0..m {
        let prims = h.ctx.tessellate(h.output().shapes.clone(), ppp);
        vertices = prims
            .iter()
            .map(|p| match &p.primitive {
                weft_viewer::eframe::egui::epaint::Primitive::Mesh(m) => m.vertices.len(),
                _ => 0,
            })
            .sum::<usize>();
    }
    let tess_ms = t.elapsed().as_secs_f64() * 1e3 / m as f64;
    let t = Instant::now();
    for _ in 0..m {
        h.step();
        h.render().expect("render");
    }
    let render_ms = t.elapsed().as_secs_f64() * 1e3 / m as f64;
    eprintln!("first frames (load 12 base_routing traces): {first:.0} ms");
    eprintln!("steady frame, egui update (layout + paint lists): {cpu_ms:.2} ms/frame");
    eprintln!(
        "steady frame, tessellation alone: {tess_ms:.2} ms/frame \
         ({shapes} shapes, {vertices} vertices)"
    );
    eprintln!("steady frame incl. tessellation + wgpu render + readback: {render_ms:.1} ms/frame");
    eprintln!("texture uploads during {n} steady frames: {new_uploads} (3 layer changes)");
    // Each newly shown layer uploads its grid once; the grid is a texture, not 12 × 512 × 2
    // rectangles (the rest of the view is a few hundred shapes).
    assert!(new_uploads <= 3, "textures re-uploaded: {new_uploads}");
    assert!(
        shapes < 12 * 512,
        "the grid is drawn cell by cell: {shapes} shapes"
    );
    assert!(cpu_ms < 250.0, "steady frames too slow: {cpu_ms:.1} ms");
    let _ = std::fs::remove_dir_all(&dir);
}
