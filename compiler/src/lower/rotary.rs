//! Rotary frequency tables: RoPE, HoPE and explicit tables all become one per-pair table
//! θ[i], i = 0 .. d/2 (pair 0 the highest frequency). Zeros mean "no rotation".

use weft_dsl::typed::PositionRule;

/// θ_i = base^(−2i/d).
pub fn rope_table(base: f64, head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| base.powf(-2.0 * i as f64 / head_dim as f64) as f32)
        .collect()
}

/// HoPE: keep the `keep` highest-frequency pairs, zero the rest. Without `keep`, pair i is
/// kept iff θ_i · train_len ≥ 2π (it completes a period inside the training window).
pub fn hope_table(base: f64, head_dim: usize, keep: Option<usize>, train_len: usize) -> Vec<f32> {
    let mut t = rope_table(base, head_dim);
    let keep = keep.unwrap_or_else(|| {
        t.iter()
            .filter(|&&th| th as f64 * train_len as f64 >= 2.0 * std::f64::consts::PI)
            .count()
    });
    for th in t.iter_mut().skip(keep) {
        *th = 0.0;
    }
    t
}

/// The table(s) of a checked position rule; `None` for `nope`. MoICE's `bases` give one
/// table per base.
pub fn tables(pos: &PositionRule, head_dim: usize) -> Option<Vec<Vec<f32>>> {
    match pos {
        PositionRule::Nope => None,
        PositionRule::Rope {
            bases: Some(bases), ..
        } => Some(bases.iter().map(|&b| rope_table(b, head_dim)).collect()),
        PositionRule::Rope {
            base, bases: None, ..
        } => Some(vec![rope_table(*base, head_dim)]),
        PositionRule::Hope {
            base,
            keep,
            train_len,
            ..
        } => Some(vec![hope_table(*base, head_dim, *keep, *train_len)]),
        PositionRule::Freqs { table, .. } => Some(vec![table.iter().map(|&f| f as f32).collect()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hope_rule_matches_methods_examples() {
        // METHODS §3.2: b = 10000, d = 64, L = 512 → r = 16; L = 2048 → r = 21.
        let kept = |d, l| {
            hope_table(10000.0, d, None, l)
                .iter()
                .filter(|&&t| t != 0.0)
                .count()
        };
        assert_eq!(kept(64, 512), 16);
        assert_eq!(kept(64, 2048), 21);
        assert_eq!(kept(128, 4096), 46);
    }

    #[test]
    fn rope_pair_zero_is_highest_frequency() {
        let t = rope_table(10000.0, 8);
        assert_eq!(t[0], 1.0);
        assert!(t.windows(2).all(|w| w[0] > w[1]));
    }
}
