//! Gradient accumulation: the mean gradient over several micro-batches.

use super::Gradients;

/// Sums gradients over micro-batches and returns their mean.
///
/// The mean over `k` micro-batches equals the gradient of one batch `k` times as large only
/// when each micro-batch loss is a mean over the same number of tokens; with variable counts
/// (answer masks, padding) it weights micro-batches equally, as HF Trainer does.
#[derive(Clone, Debug, Default)]
pub struct GradAccumulator {
    sum: Option<Gradients>,
    count: usize,
}

impl GradAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one micro-batch's gradients (the first are kept as they are, not copied). A
    /// parameter missing from some micro-batches counts as a zero gradient there.
    ///
    /// # Panics
    /// If a gradient's shape differs from the one already accumulated for its parameter.
    pub fn add(&mut self, grads: Gradients) {
        self.count += 1;
        let Some(sum) = &mut self.sum else {
            self.sum = Some(grads);
            return;
        };
        for (name, g) in grads.iter() {
            let g = g.as_f32().expect("gradients are f32");
            match sum.get_mut(name) {
                Some(s) => {
                    assert_eq!(
                        s.len(),
                        g.len(),
                        "gradient `{name}` changed size between micro-batches"
                    );
                    s.iter_mut().zip(g).for_each(|(s, g)| *s += g);
                }
                None => sum.insert(
                    name,
                    crate::Tensor::f32(&grads.get(name).unwrap().shape, g.to_vec()),
                ),
            }
        }
    }

    /// Micro-batches added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean gradient, or `None` when nothing was added.
    pub fn finish(self) -> Option<Gradients> {
        let mut sum = self.sum?;
        if self.count > 1 {
            sum.scale(1.0 / self.count as f32);
        }
        Some(sum)
    }
}
