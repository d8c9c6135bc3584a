//! Scoring next-token predictions: greedy accuracy and mean negative log-likelihood over a
//! set of (logit row, target) pairs, shared by the sweeps.

/// Running counts of hits and NLL over scored positions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    hits: usize,
    nll: f64,
    count: usize,
}

impl Tally {
    /// Scores one position: `logits` over the whole vocabulary, `target` the true id. The
    /// argmax takes the first maximum, as [`super::readout::argmax`] does.
    pub fn add(&mut self, logits: &[f64], target: usize) {
        self.add_among(logits, target, None);
    }

    /// Like [`Tally::add`], with the greedy choice restricted to `among` (label-token
    /// scoring) when given; the NLL is always over the whole vocabulary.
    pub fn add_among(&mut self, logits: &[f64], target: usize, among: Option<&[usize]>) {
        let best = match among {
            Some(ids) => ids
                .iter()
                .copied()
                .fold(None::<usize>, |b, i| match b {
                    Some(j) if logits[j] >= logits[i] => Some(j),
                    _ => Some(i),
                })
                .unwrap_or(usize::MAX),
            None => super::readout::argmax(logits),
        };
        self.hits += usize::from(best == target);
        self.nll += nll(logits, target);
        self.count += 1;
    }

    /// Fraction of hits (NaN when nothing was scored).
    pub fn accuracy(&self) -> f64 {
        self.hits as f64 / self.count as f64
    }

    /// Mean NLL (NaN when nothing was scored).
    pub fn loss(&self) -> f64 {
        self.nll / self.count as f64
    }

    /// Positions scored.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// `−log softmax(logits)[target]`, computed stably.
pub(crate) fn nll(logits: &[f64], target: usize) -> f64 {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    m + z.ln() - logits[target]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_and_nll() {
        let mut t = Tally::default();
        t.add(&[0.0, 0.0], 0);
        assert!((t.loss() - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(t.accuracy(), 1.0);
        // Restricted to ids {1, 2}, id 2 wins although id 0 is largest overall.
        t.add_among(&[5.0, 1.0, 2.0], 2, Some(&[1, 2]));
        assert_eq!(t.accuracy(), 1.0);
        t.add(&[5.0, 1.0, 2.0], 2);
        assert_eq!(t.count(), 3);
        assert!((t.accuracy() - 2.0 / 3.0).abs() < 1e-12);
    }
}
