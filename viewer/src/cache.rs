//! Caches the panels share: loaded traces, derived attention statistics, MoICE base choices,
//! textures.

use crate::data::attention::AttentionCache;
use crate::data::bases::BasesCache;
use crate::data::{Snapshot, TraceStore};
use crate::textures::TextureCache;

/// Everything expensive to rebuild each frame. Panels read the snapshot and fill these on
/// demand; dropping them only costs time.
pub struct Caches {
    pub traces: TraceStore,
    pub attention: AttentionCache,
    pub bases: BasesCache,
    pub textures: TextureCache,
}

impl Caches {
    pub fn new(snap: &Snapshot) -> Self {
        Caches {
            traces: TraceStore::new(snap.traces_dir()),
            attention: AttentionCache::default(),
            bases: BasesCache::default(),
            textures: TextureCache::default(),
        }
    }
}
