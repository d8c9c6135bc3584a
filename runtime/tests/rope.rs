//! RoPE: both layouts, exact zero frequencies, relative-position property, VJP.

mod common;
use common::*;
use std::collections::HashMap;
use weft_compiler::ir::{ConstValue, DType, GraphBuilder, Init, RopeLayout};
use weft_runtime::{Backend, CpuBackend, HookSelection, ParamStore, Rng, Tensor};

const LAYOUTS: [RopeLayout; 2] = [RopeLayout::Interleaved, RopeLayout::Half];

/// Rotates `x [1,1,T,d]` at the given positions with a frequency table.
fn rotate(x: &[f32], d: usize, freqs: &[f32], pos: &[i32], layout: RopeLayout) -> Vec<f32> {
    let t = pos.len();
    let mut b = GraphBuilder::new();
    let xi = b.input("x", &[1, 1, t, d], DType::F32);
    let f = b
        .constant(ConstValue::F32(freqs.to_vec()), &[d / 2])
        .unwrap();
    let p = b.input("pos", &[t], DType::I32);
    let y = b.rope(xi, f, p, layout).unwrap();
    b.output("y", y);
    let g = b.finish().unwrap();
    let mut ins = HashMap::new();
    ins.insert("x".into(), Tensor::f32(&[1, 1, t, d], x.to_vec()));
    ins.insert("pos".into(), Tensor::i32(&[t], pos.to_vec()));
    let out = CpuBackend::new()
        .run(&g, &ins, &ParamStore::new(), &HookSelection::None)
        .unwrap();
    out.get("y").unwrap().to_f32_vec()
}

#[test]
fn layouts_rotate_the_documented_pairs() {
    let x = [1.0, 2.0, 3.0, 4.0];
    let freqs = [1.0, 0.5];
    let (c1, s1, c2, s2) = (1f32.cos(), 1f32.sin(), 0.5f32.cos(), 0.5f32.sin());
    // Interleaved: pairs (0,1), (2,3).
    let want = [
        1.0 * c1 - 2.0 * s1,
        1.0 * s1 + 2.0 * c1,
        3.0 * c2 - 4.0 * s2,
        3.0 * s2 + 4.0 * c2,
    ];
    let got = rotate(&x, 4, &freqs, &[1], RopeLayout::Interleaved);
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    // Half: pairs (0,2), (1,3).
    let want = [
        1.0 * c1 - 3.0 * s1,
        2.0 * c2 - 4.0 * s2,
        1.0 * s1 + 3.0 * c1,
        2.0 * s2 + 4.0 * c2,
    ];
    let got = rotate(&x, 4, &freqs, &[1], RopeLayout::Half);
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn zero_frequency_pairs_are_untouched_and_others_rotate() {
    let mut rng = Rng::new(1);
    let d = 8;
    let freqs = [0.9, 0.0, 0.3, 0.0];
    for layout in LAYOUTS {
        let x = randn(&mut rng, 3 * d);
        let y = rotate(&x, d, &freqs, &[0, 7, 1234], layout);
        for row in 0..3 {
            for (i, &f) in freqs.iter().enumerate() {
                let (a, b) = layout.pair(i, d);
                let (xa, xb, ya, yb) = (
                    x[row * d + a],
                    x[row * d + b],
                    y[row * d + a],
                    y[row * d + b],
                );
                if f == 0.0 || row == 0 {
                    // Exact: cos 0 = 1, sin 0 = 0.
                    assert_eq!((ya, yb), (xa, xb), "{layout:?} pair {i} row {row}");
                } else {
                    assert!(
                        (ya - xa).abs() + (yb - xb).abs() > 1e-3,
                        "{layout:?} pair {i} should rotate"
                    );
                    let (n0, n1) = (xa * xa + xb * xb, ya * ya + yb * yb);
                    assert!(
                        (n0 - n1).abs() < 1e-4 * n0.max(1.0),
                        "rotation preserves the pair's norm"
                    );
                }
            }
        }
    }
}

/// `⟨R(m)q, R(n)k⟩` for one pair of vectors.
fn score(q: &[f32], k: &[f32], m: i32, n: i32, freqs: &[f32], layout: RopeLayout) -> f32 {
    let d = q.len();
    let x: Vec<f32> = q.iter().chain(k).copied().collect();
    let y = rotate(&x, d, freqs, &[m, n], layout);
    (0..d).map(|c| y[c] * y[d + c]).sum()
}

#[test]
fn scores_depend_only_on_relative_position_and_zero_pairs_on_neither() {
    let mut rng = Rng::new(2);
    let d = 8;
    for layout in LAYOUTS {
        let q = randn(&mut rng, d);
        let k = randn(&mut rng, d);
        let freqs = [1.0, 0.1, 0.01, 0.001];
        let s = score(&q, &k, 5, 2, &freqs, layout);
        assert!(
            (s - score(&q, &k, 45, 42, &freqs, layout)).abs() < 1e-4,
            "shift invariance"
        );
        assert!(
            (s - score(&q, &k, 9, 2, &freqs, layout)).abs() > 1e-3,
            "relative distance matters"
        );
        // Only zero frequencies: the score ignores positions entirely (HoPE's NoPE part).
        let zeros = [0.0; 4];
        let s0 = score(&q, &k, 5, 2, &zeros, layout);
        assert_eq!(s0, score(&q, &k, 300, 2, &zeros, layout));
        let plain: f32 = q.iter().zip(&k).map(|(a, b)| a * b).sum();
        assert!((s0 - plain).abs() < 1e-5);
    }
}

#[test]
fn vjp_matches_finite_differences() {
    let mut rng = Rng::new(3);
    for (li, layout) in LAYOUTS.into_iter().enumerate() {
        for per_batch in [false, true] {
            let pshape: Vec<usize> = if per_batch { vec![2, 5] } else { vec![5] };
            let mut ins = HashMap::new();
            ins.insert("pos".to_string(), ids(&mut rng, &pshape, 50));
            grad_check(400 + li as u64, ins, |b| {
                let x = b.param("x", &[2, 3, 5, 6], Init::Normal { std: 1.0 }, true);
                let f = b.constant(ConstValue::F32(vec![1.0, 0.0, 0.05]), &[3])?;
                let p = b.input("pos", &pshape, DType::I32);
                b.rope(x, f, p, layout)
            });
        }
    }
}
