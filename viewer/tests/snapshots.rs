//! Each panel rendered through egui-wgpu (lavapipe in CI) and compared with the committed
//! image in `tests/snapshots/`, with a small tolerance for rasteriser differences.
//! Regenerate with `UPDATE_SNAPSHOTS=force cargo test -p weft-viewer --test snapshots`.

mod common;

use common::{copy_dir, fixture, gpu_or_skip, harness, App};
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

/// A copy of `tests/fixtures/{name}` at a fixed path (drawn in the header).
fn fixture_dir(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-viewer-snap-{tag}"));
    copy_dir(&fixture(name), &d);
    d
}

/// The Programs tab on real `weft run` results (a directory with only `programs/`, as
/// `weft run --out DIR` leaves it), showing `file`.
fn check_program(file: &str, name: &str) {
    if !gpu_or_skip() {
        return;
    }
    // One directory per test: the program tests run in parallel, and each removes its
    // directory when done (a shared one was removed under another test's feet).
    let dir = std::env::temp_dir().join(format!("weft-viewer-snap-{name}-{}", std::process::id()));
    copy_dir(&fixture("programs"), &dir.join("programs"));
    let mut app = App::open(&dir, Tab::Programs);
    app.view.programs.selected = Some(file.into());
    let mut h = harness(app, SIZE);
    h.run();
    h.snapshot_options(name, &options());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn programs_panel_attention_distance() {
    check_program("distance.json", "programs_distance");
}

#[test]
fn programs_panel_batch_icl() {
    check_program("sweep.json", "programs_batch_icl");
}

#[test]
fn programs_panel_icl_orders() {
    check_program("orders.json", "programs_icl_orders");
}

#[test]
fn programs_panel_length_sweep() {
    check_program("length_sweep.json", "programs_length_sweep");
}

#[test]
fn programs_panel_final_layer_table() {
    check_program("final_layer.json", "programs_final_layer");
}

#[test]
fn programs_panel_draws_every_file_and_malformed_ones() {
    if !gpu_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weft-viewer-programs-all-{}", std::process::id()));
    copy_dir(&fixture("programs"), &dir.join("programs"));
    std::fs::write(dir.join("programs/torn.json"), b"{\"program\": ").unwrap();
    std::fs::write(
        dir.join("programs/short.json"),
        br#"{"program": "s", "probe": "length_sweep", "result": {"lengths": [1], "accuracy": []}}"#,
    )
    .unwrap();
    let app = App::open(&dir, Tab::Programs);
    let files: Vec<String> = app.snap.programs.iter().map(|e| e.file.clone()).collect();
    assert_eq!(files.len(), 11);
    let mut h = harness(app, SIZE);
    for f in files {
        h.state_mut().view.programs.selected = Some(f);
        h.run();
    }
    // Keyboard: ↓ moves to the next layer of the distance plot.
    h.state_mut().view.programs.selected = Some("distance.json".into());
    h.run();
    h.key_press(weft_viewer::eframe::egui::Key::ArrowDown);
    h.run();
    assert_eq!(h.state().view.programs.layer, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn routing_panel_moice_bases() {
    if !gpu_or_skip() {
        return;
    }
    let dir = fixture_dir("moice", "moice_run");
    let mut h = harness(App::open(&dir, Tab::Routing), SIZE);
    h.run();
    h.snapshot_options("routing_moice", &options());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn curves_panel_dricl_demonstrations() {
    if !gpu_or_skip() {
        return;
    }
    let dir = fixture_dir("dricl", "dricl_run");
    let mut h = harness(App::open(&dir, Tab::Curves), SIZE);
    h.run();
    h.snapshot_options("curves_dricl", &options());
    let _ = std::fs::remove_dir_all(&dir);
}
