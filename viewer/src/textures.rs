//! A cache of GPU textures keyed by what they show, so a heatmap is uploaded once and then
//! drawn as one textured rectangle per frame (not one rectangle per cell).

use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};
use std::collections::HashMap;

/// Textures by key; the whole cache is dropped when it grows past [`TextureCache::capacity`]
/// (keys include the step and trace file, so old steps simply age out).
#[derive(Default)]
pub struct TextureCache {
    textures: HashMap<String, TextureHandle>,
    /// Uploads so far (tests check that a steady frame uploads nothing).
    pub uploads: usize,
}

impl TextureCache {
    const CAPACITY: usize = 600;

    pub fn capacity() -> usize {
        Self::CAPACITY
    }

    /// The texture for `key`, made by `make` the first time.
    pub fn get(
        &mut self,
        ctx: &egui::Context,
        key: &str,
        make: impl FnOnce() -> ColorImage,
    ) -> TextureHandle {
        if let Some(t) = self.textures.get(key) {
            return t.clone();
        }
        if self.textures.len() >= Self::CAPACITY {
            self.textures.clear();
        }
        self.uploads += 1;
        let t = ctx.load_texture(key, make(), TextureOptions::NEAREST);
        self.textures.insert(key.to_string(), t.clone());
        t
    }

    pub fn len(&self) -> usize {
        self.textures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.textures.is_empty()
    }
}
