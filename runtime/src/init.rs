//! Deterministic parameter initialisation: a small seeded RNG (splitmix64 seeding a
//! xoshiro256** stream, Box–Muller normals) and `Init` rules applied per parameter.

use crate::backend::ParamStore;
use crate::tensor::Tensor;
use weft_compiler::ir::{Graph, Init};

/// A small, fast, seedable RNG (xoshiro256**), identical on every platform.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A stream determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        Rng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
            spare_normal: None,
        }
    }

    /// A stream for one named object, independent of every other name (adding a parameter
    /// does not change how the others are initialised).
    pub fn for_name(seed: u64, name: &str) -> Self {
        // FNV-1a of the name, mixed with the seed.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
        Rng::new(seed ^ h.rotate_left(17))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift; the bias is below 2^-32 for the sizes used here.
        ((self.next_u64() >> 32) * n) >> 32
    }

    /// Standard normal (Box–Muller, both values used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln never sees 0
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare_normal = Some(r * s);
        r * c
    }
}

/// Draws one tensor of `shape` from `init`.
pub fn init_tensor(init: &Init, shape: &[usize], rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match *init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Constant { value } => vec![value; n],
        Init::Normal { std } => (0..n).map(|_| (rng.normal() * std as f64) as f32).collect(),
        Init::Uniform { low, high } => (0..n)
            .map(|_| (low as f64 + (high - low) as f64 * rng.uniform()) as f32)
            .collect(),
        // Lowering sizes the values to the shape; a short list pads with zeros.
        Init::Values { ref values } => (0..n)
            .map(|i| values.get(i).copied().unwrap_or(0.0))
            .collect(),
    };
    Tensor::f32(shape, data)
}

/// Initialises every parameter of `g` from its `Init`, deterministically from `seed`.
pub fn init_params(g: &Graph, seed: u64) -> ParamStore {
    g.params
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                init_tensor(&p.init, &p.shape, &mut Rng::for_name(seed, &p.name)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_moments_and_streams_are_reproducible() {
        let mut r = Rng::new(7);
        let xs: Vec<f64> = (0..200_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
        let mut a = Rng::new(7);
        assert_eq!(a.normal(), xs[0]);
        assert_ne!(
            Rng::for_name(1, "a").next_u64(),
            Rng::for_name(1, "b").next_u64()
        );
    }

    #[test]
    fn uniform_respects_bounds() {
        let mut r = Rng::new(3);
        let t = init_tensor(
            &Init::Uniform {
                low: -0.5,
                high: 0.25,
            },
            &[1000],
            &mut r,
        );
        let v = t.as_f32().unwrap();
        assert!(v.iter().all(|&x| (-0.5..0.25).contains(&x)));
        assert!(v.iter().any(|&x| x < -0.4) && v.iter().any(|&x| x > 0.15));
    }
}
