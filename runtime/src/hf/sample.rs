//! Choosing the next token from a logits row: greedy (argmax), or sampling with a
//! temperature, top-k and top-p (nucleus) filters and a seeded generator, so a run is
//! reproducible from its seed.

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    /// The first index of the maximum.
    Greedy,
    /// Softmax of `logits / temperature`, restricted to the `top_k` most likely tokens
    /// (0 = all) and then to the smallest prefix whose probability reaches `top_p` (1 = all).
    Sample {
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    },
}

impl Sampling {
    /// Checks the parameters; the message names the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if let Sampling::Sample {
            temperature, top_p, ..
        } = self
        {
            if !(temperature.is_finite() && *temperature > 0.0) {
                return Err(format!(
                    "--temperature must be a positive number, found {temperature}"
                ));
            }
            if !(*top_p > 0.0 && *top_p <= 1.0) {
                return Err(format!("--top-p must be in (0, 1], found {top_p}"));
            }
        }
        Ok(())
    }
}

/// A [`Sampling`] with its generator state.
pub struct Sampler {
    how: Sampling,
    state: u64,
}

impl Sampler {
    pub fn new(how: Sampling) -> Sampler {
        let state = match &how {
            Sampling::Sample { seed, .. } => *seed,
            Sampling::Greedy => 0,
        };
        Sampler { how, state }
    }

    /// splitmix64: small, fast, and good enough to draw one uniform per token.
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next token for `logits`.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        let (temperature, top_k, top_p) = match self.how {
            Sampling::Greedy => return argmax(logits),
            Sampling::Sample {
                temperature,
                top_k,
                top_p,
                ..
            } => (temperature, top_k, top_p),
        };
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        // Most likely first; ties by id, so the order (and the draw) is deterministic.
        let key = |&i: &u32| (std::cmp::Reverse(ordered(logits[i as usize])), i);
        let k = if top_k == 0 {
            logits.len()
        } else {
            top_k.min(logits.len())
        };
        if k < order.len() {
            order.select_nth_unstable_by_key(k - 1, key);
            order.truncate(k);
        }
        order.sort_unstable_by_key(key);
        let max = logits[order[0] as usize];
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| (((logits[i as usize] - max) / temperature) as f64).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        // Nucleus: the shortest prefix reaching top_p (always at least one token).
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (n, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= top_p as f64 {
                keep = n + 1;
                break;
            }
        }
        let mass: f64 = probs[..keep].iter().sum();
        let mut u = self.uniform() * mass;
        for (n, p) in probs[..keep].iter().enumerate() {
            if u < *p {
                return order[n];
            }
            u -= p;
        }
        order[keep - 1]
    }
}

/// A total order on floats for sorting (NaN last).
fn ordered(x: f32) -> i64 {
    if x.is_nan() {
        return i64::MIN;
    }
    let b = x.to_bits() as i32;
    (if b < 0 { !(b & 0x7fff_ffff) } else { b }) as i64
}

/// The first index of the maximum.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(k: usize, p: f32, t: f32, seed: u64) -> Sampler {
        Sampler::new(Sampling::Sample {
            temperature: t,
            top_k: k,
            top_p: p,
            seed,
        })
    }

    #[test]
    fn float_order_matches_partial_cmp() {
        let xs = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, -1e30, 7.25];
        for a in xs {
            for b in xs {
                if a < b {
                    assert!(ordered(a) < ordered(b), "{a} {b}");
                }
            }
        }
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.1f32, 2.0, -1.0, 1.9, 0.5];
        for seed in 0..20 {
            assert_eq!(sample(1, 1.0, 1.0, seed).pick(&logits), 1);
            assert_eq!(sample(0, 1e-6, 1.0, seed).pick(&logits), 1);
        }
        assert_eq!(Sampler::new(Sampling::Greedy).pick(&logits), 1);
    }

    #[test]
    fn frequencies_follow_the_softmax_within_top_k() {
        // Top-2 of these logits: ids 1 and 3 with probabilities e^2 : e^1.5.
        let logits = [0.0f32, 2.0, -1.0, 1.5, 0.5];
        let mut s = sample(2, 1.0, 1.0, 7);
        let n = 20_000;
        let mut counts = [0usize; 5];
        for _ in 0..n {
            counts[s.pick(&logits) as usize] += 1;
        }
        assert_eq!(counts[0] + counts[2] + counts[4], 0, "{counts:?}");
        let want = 1.0 / (1.0 + (-0.5f64).exp());
        let got = counts[1] as f64 / n as f64;
        assert!((got - want).abs() < 0.02, "p(1) = {got}, want {want}");
    }

    #[test]
    fn the_seed_fixes_the_draws() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.7).sin()).collect();
        let draw = |seed| {
            let mut s = sample(0, 0.9, 0.8, seed);
            (0..30).map(|_| s.pick(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
