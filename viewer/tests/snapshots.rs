//! Each panel rendered through egui-wgpu (lavapipe in CI) and compared with the committed
//! image in `tests/snapshots/`, with a small tolerance for rasteriser differences.
//! Regenerate with `UPDATE_SNAPSHOTS=force cargo test -p weft-viewer --test snapshots`.

mod common;

use common::{gpu_or_skip, harness, App};
use egui_kittest::SnapshotOptions;
use std::path::PathBuf;
use weft_viewer::synthetic::Synthetic;
use weft_viewer::Tab;

const SIZE: [f32; 2] = [1200.0, 800.0];

fn options() -> SnapshotOptions {
    // Per-pixel YIQ distance and a budget of ~0.2% of the pixels: another LLVM/lavapipe
    // build antialiases a few edges differently; a real change moves far more.
    SnapshotOptions::new()
        .threshold(1.5)
        .max_failed_pixels(2000)
}

fn run_dir(tag: &str, s: Synthetic) -> PathBuf {
    // No process id in the name: the path is drawn in the header and in problem messages,
    // and must be the same on every run for the images to match.
    let d = std::env::temp_dir().join(format!("weft-viewer-snap-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    s.write(&d).unwrap();
    d
}

fn check(tag: &str, s: Synthetic, tab: Tab, name: &str) {
    if !gpu_or_skip() {
        return;
    }
    let dir = run_dir(tag, s);
    let mut h = harness(App::open(&dir, tab), SIZE);
    h.run();
    h.snapshot_options(name, &options());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn curves_panel() {
    check("curves", Synthetic::cog(), Tab::Curves, "curves");
}

#[test]
fn attention_panel_signed_maps() {
    check("attention", Synthetic::cog(), Tab::Attention, "attention");
}

#[test]
fn attention_panel_follows_arrow_keys() {
    if !gpu_or_skip() {
        return;
    }
    let dir = run_dir("attention-keys", Synthetic::cog());
    let mut app = App::open(&dir, Tab::Attention);
    // Start from layer 0 head 0 instead of the most negative head.
    app.view.attention.chosen = true;
    let mut h = harness(app, SIZE);
    h.run();
    h.key_press(weft_viewer::eframe::egui::Key::ArrowDown);
    h.run();
    h.key_press(weft_viewer::eframe::egui::Key::ArrowDown);
    h.run();
    h.key_press(weft_viewer::eframe::egui::Key::ArrowRight);
    h.run();
    let v = &h.state().view.attention;
    assert_eq!((v.layer, v.head), (2, 1));
    h.snapshot_options("attention_layer2_head1", &options());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn head_tables_panel() {
    check("heads", Synthetic::cog(), Tab::Heads, "head_tables");
}

#[test]
fn routing_panel() {
    check("routing", Synthetic::mom(), Tab::Routing, "routing");
}

#[test]
fn model_panel() {
    check("model", Synthetic::mom(), Tab::Model, "model");
}

#[test]
fn problems_are_shown_in_the_window() {
    if !gpu_or_skip() {
        return;
    }
    let dir = run_dir("problems", Synthetic::small());
    std::fs::write(
        dir.join("traces/layers.1.attn.pattern/step-00000100.safetensors"),
        b"garbage",
    )
    .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("metrics.jsonl"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"kind\": \"tra"))
        .unwrap();
    let mut h = harness(App::open(&dir, Tab::Attention), SIZE);
    h.run();
    // The failed trace is listed and the other layers still draw.
    assert!(h
        .state()
        .caches
        .traces
        .failures()
        .iter()
        .any(|(f, _)| f.contains("layers.1")));
    h.snapshot_options("problems", &options());
    let _ = std::fs::remove_dir_all(&dir);
}
