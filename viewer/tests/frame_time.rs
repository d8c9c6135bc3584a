//! Frame time on the largest case the viewer must handle: 12 layers × 12 heads, T = 512
//! (144 maps of 512 × 512 signed weights). Prints milliseconds per frame; fails only if a
//! steady frame is grossly slow or re-uploads textures (the heatmaps must be cached).
//!
//! `cargo test -p weft-viewer --release --test frame_time -- --nocapture`

mod common;

use common::{gpu_or_skip, harness, App};
use std::time::Instant;
use weft_viewer::synthetic::Synthetic;
use weft_viewer::Tab;

#[test]
fn attention_panel_frame_time_12x12_heads_512_tokens() {
    if !gpu_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weft-viewer-large-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    Synthetic::large().write(&dir).unwrap();
    eprintln!(
        "wrote the 12×12×512² run in {:.1} s",
        t.elapsed().as_secs_f64()
    );

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
    eprintln!("steady frame, egui update + tessellation: {cpu_ms:.2} ms/frame");
    eprintln!("steady frame incl. wgpu render + readback:  {render_ms:.1} ms/frame");
    eprintln!("texture uploads during {n} steady frames: {new_uploads} (3 head changes)");
    // Three selection changes upload at most the three newly enlarged maps.
    assert!(new_uploads <= 3, "textures re-uploaded: {new_uploads}");
    assert!(cpu_ms < 250.0, "steady frames too slow: {cpu_ms:.1} ms");
    let _ = std::fs::remove_dir_all(&dir);
}
