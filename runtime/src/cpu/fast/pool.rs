//! Buffers kept across runs, keyed by length: a training step asks for the same lengths in
//! the same order every time, so after the first step every request is served from here.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    /// Buffers of each length this pool has allocated: at most that many can be out at once,
    /// so the free list of a length never needs more.
    made: HashMap<usize, usize>,
    /// Buffers allocated because none of the length was free (a test reads it to check that
    /// the steady state allocates nothing).
    pub allocated: usize,
    /// Their total size in bytes.
    pub bytes: usize,
}

impl Pool {
    /// A buffer of `n` elements. Its contents are whatever the last user left: every kernel
    /// overwrites all of its output.
    pub fn take(&mut self, n: usize) -> Vec<f32> {
        match self.free.get_mut(&n).and_then(Vec::pop) {
            Some(v) => v,
            None => {
                self.allocated += 1;
                self.bytes += n * std::mem::size_of::<f32>();
                *self.made.entry(n).or_default() += 1;
                vec![0.0; n]
            }
        }
    }

    /// Returns a buffer for later runs. Values computed outside the pool (the reference's
    /// evaluation of an op the fast path lacks) come back here too; keeping every one of them
    /// grew the pool by those values each training step, so a length keeps no more free
    /// buffers than the pool has handed out.
    pub fn give(&mut self, v: Vec<f32>) {
        let n = v.len();
        let free = self.free.entry(n).or_default();
        if free.len() < self.made.get(&n).copied().unwrap_or(0) {
            free.push(v);
        }
    }

    /// Free buffers held, of every length.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.free.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_made_elsewhere_do_not_accumulate() {
        let mut pool = Pool::default();
        for _ in 0..100 {
            // One run: a pooled buffer and a value the reference allocated, both returned.
            let own = pool.take(16);
            pool.give(own);
            pool.give(vec![0.0; 16]);
            pool.give(vec![0.0; 7]);
        }
        assert_eq!(pool.allocated, 1);
        assert_eq!(pool.held(), 1);
    }
}
