//! Shared by the rendering tests: the GPU-or-skip rule and a harness over the whole window.
#![allow(dead_code)]

use egui_kittest::Harness;
use std::path::Path;
use weft_viewer::data::{RunWatcher, Snapshot, Source};
use weft_viewer::{window, Caches, Tab, ViewState};

/// Whether a wgpu adapter exists (lavapipe counts). Without one the test is skipped, unless
/// `WEFT_REQUIRE_GPU=1` (CI), where a missing adapter fails it.
pub fn gpu_or_skip() -> bool {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    if let Some(a) = adapters.first() {
        eprintln!("wgpu adapter: {}", a.get_info().name);
        return true;
    }
    if std::env::var("WEFT_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("WEFT_REQUIRE_GPU=1 but no wgpu adapter");
    }
    eprintln!("skipped: no wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    false
}

/// What the harness draws each frame.
pub struct App {
    pub snap: Snapshot,
    pub caches: Caches,
    pub view: ViewState,
}

impl App {
    pub fn open(dir: &Path, tab: Tab) -> App {
        let w = RunWatcher::open(Source::from_path(dir));
        let snap = w.snapshot().clone();
        App {
            caches: Caches::new(&snap),
            view: ViewState::new(&snap, Some(tab)),
            snap,
        }
    }
}

/// A harness of `size` rendering through egui-wgpu.
pub fn harness(app: App, size: [f32; 2]) -> Harness<'static, App> {
    Harness::builder().with_size(size).wgpu().build_ui_state(
        |ui, app: &mut App| window(ui, &app.snap, &mut app.caches, &mut app.view),
        app,
    )
}

/// `viewer/tests/fixtures/{name}`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies `from` (a directory) to `to` recursively, replacing `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}
