//! Attention rules written in a spec, on the fast path: the blocked loops of the built-in
//! rules ([`super::attention_tiled`]: query blocks of [`ROWS`], keys up to the last one a
//! block can see, per-thread scratch, the `T × T` weights never stored) with the rule's
//! expressions compiled into row programs ([`Program`]) in place of the built-in normaliser.
//! A rule that only modifies the score under a named mask keeps the built-in normaliser in
//! its forward ([`CompiledRule::softmax`]).
//!
//! The definitions are the reference's (`cpu::attention`, `RuleRows`): modified scores
//! `s = score(p)`, weights `h(s)·e^{f(s)−m} / (c·e^{−m} + Σ e^{f(s)−m})` or `φ(s)` over the
//! visible keys, `dL/ds = a·(g·(h' + h·f') − f'·δ)` (or `g·φ'`), `dL/dp = dL/ds · score'(p)`,
//! and each rule parameter's per-row gradient `Σ_j dL/ds · ∂score/∂θ`. Transcendental
//! functions run vectorised ([`exp`]) and sums lane by lane, so weights, `y` and gradients
//! agree with the reference to float noise; the `attn.pattern` kernel ([`pattern`]) computes
//! the forward's weights with the same arithmetic, so a captured pattern gives the same `y`.

use super::attention::{self, key_end, seg_of, ROWS};
use super::attention_tiled::{transpose, with_scratch};
use super::rule_program::{Arith, Program, Registers, RowPlace};
use super::simd::with_avx2;
use super::{exp, small_gemm};
use crate::cpu::attention::Dims;
use crate::cpu::real::CpuReal;
use rayon::prelude::*;
use std::cell::RefCell;
use weft_compiler::ir::rule::{d_ds, d_wrt, Wrt};
use weft_compiler::ir::{AttentionMask, AttentionRule, Normaliser, RuleEnv, RuleExpr, RuleVar};

/// A rule's expressions and the derivatives its backward needs, compiled (once per graph:
/// the fast path's plan keeps them; compiled per call, they cost a tenth of a T 128
/// forward).
#[derive(Debug)]
pub(crate) struct CompiledRule {
    rule: AttentionRule,
    /// The score modification, for the forward and the pattern.
    score: Option<Program>,
    /// The backward's per-key values in one program whose common steps run once
    /// (soft-capping's `tanh`, ALiBi's `i − j`): the score, `score'(p)` where it is not 1
    /// (`chain`), and `∂score/∂θ_k` per rule parameter, in that order. `None` for a raw
    /// score without parameters.
    grads: Option<Program>,
    /// Whether `dL/dp = dL/ds · score'` needs `score'` (not 1 as it is for ALiBi).
    chain: bool,
    /// A mask written in the spec (the named masks are tested directly).
    mask: Option<Program>,
    norm: Norm,
    /// Whether the weights are softmax of the modified scores under a named mask (ALiBi,
    /// soft-capping, any score modification): the forward then normalises a block of them
    /// with the built-in rules' [`attention::normalise`], one call per block instead of
    /// the rule's per-row loops (which cost ALiBi and soft-capping about 3% of a T 128
    /// forward, measured with `rule_cost`).
    softmax: bool,
}

// One per compiled rule, never moved in a loop: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Norm {
    Normalised {
        factor: Program,
        exponent: Program,
        d_factor: Program,
        d_exponent: Program,
        sink: f32,
    },
    Direct {
        phi: Program,
        d_phi: Program,
    },
}

/// Per-thread buffers of one row's keys.
#[derive(Default)]
struct RowScratch {
    regs: Registers,
    /// Which keys the row sees, when that is not one run of keys.
    visible: Vec<bool>,
    /// The modified scores, then the backward's other values ([`CompiledRule::grads`]).
    vals: Vec<Vec<f32>>,
    a: Vec<f32>,
    p: Vec<f32>,
    h: Vec<f32>,
    dh: Vec<f32>,
    df: Vec<f32>,
}

impl RowScratch {
    /// Grows the buffers to `n` keys and `vals` value rows (never shrinks them: called once
    /// per head, each row slices what it uses).
    fn fit(&mut self, n: usize, vals: usize) {
        if self.visible.len() < n {
            self.visible.resize(n, false);
        }
        if self.vals.len() < vals {
            self.vals.resize_with(vals, Vec::new);
        }
        for v in self.vals.iter_mut().chain([
            &mut self.a,
            &mut self.p,
            &mut self.h,
            &mut self.dh,
            &mut self.df,
        ]) {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        }
    }
}

/// The keys a row sees: one run `lo..hi` (the named masks without segments), or those
/// `RowScratch::visible` marks.
#[derive(Clone, Copy)]
enum Seen {
    Run(usize, usize),
    Marked,
}

impl Seen {
    /// How many leading keys hold every visible one: a row's work stops there (a causal
    /// row of a block sees up to 31 keys fewer than the block's last row).
    fn extent(self, n: usize) -> usize {
        match self {
            Seen::Run(_, hi) => hi,
            Seen::Marked => n,
        }
    }
}

thread_local! {
    static ROW: RefCell<RowScratch> = RefCell::new(RowScratch::default());
}

/// One (batch, head): what a rule's variables read besides the query and key positions.
struct Head<'a> {
    head: usize,
    kv_head: usize,
    keys: usize,
    seg: Option<&'a [i32]>,
    params: &'a [Vec<f32>],
}

impl<'a> Head<'a> {
    fn new(
        rule: &AttentionRule,
        dm: Dims,
        bh: usize,
        seg: Option<&'a [i32]>,
        params: &'a [Vec<f32>],
    ) -> Self {
        let head = bh % dm.h;
        Head {
            head,
            kv_head: head / rule.group.max(1),
            keys: dm.t,
            seg: seg_of(seg, bh / dm.h, dm.t),
            params,
        }
    }

    fn row(&self, i: usize) -> RowPlace<'a> {
        RowPlace {
            env: RuleEnv {
                score: 0.0,
                i,
                j: 0,
                head: self.head,
                kv_head: self.kv_head,
                keys: self.keys,
                seg_i: self.seg.map_or(0, |s| s[i]),
                seg_j: 0,
                params: self.params,
            },
            seg: self.seg,
        }
    }
}

impl CompiledRule {
    /// The compiled rule, or `None` for one the fast path leaves to the reference (a mask
    /// that reads the score, which the checker refuses but the IR could hold).
    pub fn new(rule: &AttentionRule) -> Option<Self> {
        let fast = |e: &RuleExpr| Program::new(e, Arith::Fast);
        let mask = match &rule.mask {
            AttentionMask::Rule(e) if e.reads(RuleVar::Score) => return None,
            AttentionMask::Rule(e) => Some(Program::new(e, Arith::Exact)),
            _ => None,
        };
        let norm = match rule.weights.normaliser() {
            Normaliser::Normalised {
                factor,
                exponent,
                sink,
            } => Norm::Normalised {
                d_factor: fast(&d_ds(&factor)),
                d_exponent: fast(&d_ds(&exponent)),
                factor: fast(&factor),
                exponent: fast(&exponent),
                sink,
            },
            Normaliser::Direct(phi) => Norm::Direct {
                d_phi: fast(&d_ds(&phi)),
                phi: fast(&phi),
            },
        };
        let score = rule.score.clone().unwrap_or_else(RuleExpr::s);
        let d_score = d_ds(&score);
        let chain = fast(&d_score).constant() != Some(1.0);
        let d_params: Vec<RuleExpr> = (0..rule.params)
            .map(|k| d_wrt(&score, Wrt::Param(k)))
            .collect();
        let grads = (rule.score.is_some() || !d_params.is_empty()).then(|| {
            let mut es = vec![&score];
            es.extend(chain.then_some(&d_score));
            es.extend(&d_params);
            Program::all(&es, Arith::Fast)
        });
        let softmax = mask.is_none()
            && matches!(&norm, Norm::Normalised { factor, exponent, sink, .. }
                if exponent.is_score() && factor.constant() == Some(1.0) && *sink == 0.0);
        Some(CompiledRule {
            rule: rule.clone(),
            score: rule.score.as_ref().map(fast),
            grads,
            chain,
            mask,
            norm,
            softmax,
        })
    }

    /// Where `∂score/∂θ_k` lies in `RowScratch::vals` after the backward's scores.
    fn d_param(&self, k: usize) -> usize {
        1 + usize::from(self.chain) + k
    }

    /// Fits the row scratch to a head of `t` keys and forgets the last head's row values
    /// (each head's loop calls it first).
    fn fit(&self, t: usize, rs: &mut RowScratch) {
        rs.regs.next_head();
        rs.fit(t, 1 + usize::from(self.chain) + self.rule.params);
    }

    /// One past the last key any row in `i0..i1` sees.
    fn key_end(&self, hd: &Head, (i0, i1, t): (usize, usize, usize), rs: &mut RowScratch) -> usize {
        let Some(mask) = &self.mask else {
            return key_end(&self.rule, hd.seg, i0, i1, t);
        };
        let mut end = 0;
        for i in i0..i1 {
            // The checker refuses masks that read the score (`CompiledRule::new` too).
            mask.run(&hd.row(i), &[], &mut rs.regs, &mut rs.a[..t]);
            if let Some(j) = rs.a[..t].iter().rposition(|&v| v != 0.0) {
                end = end.max(j + 1);
            }
        }
        end
    }

    /// Which keys row `i` sees (`..raw.len()`), the extent `m` of its work
    /// ([`Seen::extent`]), and whether its modified scores at keys `..m` went into
    /// `rs.vals[0]` (a rule without a score modification reads `raw` itself); with `grads`,
    /// the backward's other values into the rest ([`CompiledRule::grads`]).
    fn scores(
        &self,
        (hd, place, i): (&Head, &RowPlace, usize),
        raw: &[f32],
        rs: &mut RowScratch,
        grads: bool,
    ) -> (Seen, usize, bool) {
        let n = raw.len();
        let seen = match (&self.mask, &self.rule.mask) {
            (Some(mask), _) => {
                mask.run(place, raw, &mut rs.regs, &mut rs.a[..n]);
                for (v, &m) in rs.visible[..n].iter_mut().zip(&rs.a[..n]) {
                    *v = m != 0.0;
                }
                Seen::Marked
            }
            (None, AttentionMask::Causal) => Seen::Run(0, (i + 1).min(n)),
            (None, AttentionMask::Bidirectional) => Seen::Run(0, n),
            (None, AttentionMask::SelfOnly) => Seen::Run(i.min(n), (i + 1).min(n)),
            (None, m) => {
                let si = place.env.seg_i;
                for (j, v) in rs.visible[..n].iter_mut().enumerate() {
                    *v = m.visible(i, j, si, hd.seg.map_or(0, |s| s[j]));
                }
                Seen::Marked
            }
        };
        let m = seen.extent(n);
        let raw = &raw[..m];
        let RowScratch { regs, vals, .. } = rs;
        match (&self.grads, &self.score) {
            (Some(p), _) if grads => p.run_all(place, raw, regs, m, vals),
            (_, Some(p)) => p.run(place, raw, regs, &mut vals[0][..m]),
            (_, None) => return (seen, m, false),
        }
        (seen, m, true)
    }

    /// The normaliser's probabilities `e^{a_j−m}/z` of the keys `seen` marks, 0 elsewhere,
    /// into `p`: hidden keys as −∞, lane-wise maxima and sums, the vectorised [`exp::exp`]
    /// and one reciprocal — the built-in softmax rows' arithmetic (forward, pattern and
    /// backward all use it, so they agree to the bit).
    fn probs(a: &[f32], seen: Seen, visible: &[bool], sink: f32, p: &mut [f32]) {
        let n = a.len();
        let (lo, hi) = match seen {
            Seen::Run(lo, hi) => (lo, hi),
            Seen::Marked => (0, n),
        };
        p[..lo].fill(0.0);
        p[hi..n].fill(0.0);
        let (a, p) = (&a[lo..hi], &mut p[lo..hi]);
        match seen {
            Seen::Run(..) => with_avx2!(|| normalise::<false>(a, &[], sink, p)),
            Seen::Marked => with_avx2!(|| normalise::<true>(a, &visible[lo..hi], sink, p)),
        }
    }

    /// Row `i`'s modified scores at the keys the normaliser reads (the named masks'
    /// extent; the rest of `s` is left as it is, [`attention::normalise`] zeroes it) from
    /// its raw scores, for a [`CompiledRule::softmax`] rule.
    fn modified_scores(
        &self,
        hd: &Head,
        i: usize,
        raw: &[f32],
        s: &mut [f32],
        rs: &mut RowScratch,
    ) {
        let n = raw.len();
        let m = match self.rule.mask {
            AttentionMask::Causal | AttentionMask::SelfOnly => (i + 1).min(n),
            _ => n,
        };
        match &self.score {
            Some(p) => p.run(&hd.row(i), &raw[..m], &mut rs.regs, &mut s[..m]),
            None => s[..m].copy_from_slice(&raw[..m]),
        }
    }

    /// The applied weights of row `i` from its raw scores, into `w`.
    fn weights_row(&self, hd: &Head, i: usize, raw: &[f32], w: &mut [f32], rs: &mut RowScratch) {
        let place = hd.row(i);
        let (seen, m, modified) = self.scores((hd, &place, i), raw, rs, false);
        let RowScratch {
            regs,
            visible,
            vals,
            a,
            h,
            ..
        } = rs;
        let s = if modified { &vals[0][..m] } else { &raw[..m] };
        let visible = &visible[..m];
        let (w, hidden) = w.split_at_mut(m);
        hidden.fill(0.0);
        match &self.norm {
            Norm::Normalised {
                factor,
                exponent,
                sink,
                ..
            } => {
                let a = if exponent.is_score() {
                    s
                } else {
                    exponent.run(&place, s, regs, &mut a[..m]);
                    &a[..m]
                };
                Self::probs(a, seen, visible, *sink, w);
                // `h·p` (the reference's product; `1·p` is `p`).
                if factor.constant() != Some(1.0) {
                    factor.run(&place, s, regs, &mut h[..m]);
                    for (w, &h) in w.iter_mut().zip(&h[..m]) {
                        *w *= h;
                    }
                }
            }
            Norm::Direct { phi, .. } => {
                phi.run(&place, s, regs, w);
                hide(w, seen, visible);
            }
        }
    }

    /// Row `i`'s gradient in `g` (which holds `dL/dw = dy·vᵀ`), `delta = dy_i·y_i`: with
    /// `chain`, `dL/dp` (the raw score's), else `dL/ds` (the modified score's); its weights
    /// into `w` when asked, and with `params` each rule parameter's `Σ_j dL/ds_j ·
    /// ∂score/∂θ_k` (hidden keys add nothing, even where `∂score/∂θ` is not finite).
    /// Values only matter here, not the reference's bits.
    #[allow(clippy::too_many_arguments)]
    fn grad_row(
        &self,
        hd: &Head,
        i: usize,
        raw: &[f32],
        (g, delta): (&mut [f32], f32),
        w: Option<&mut [f32]>,
        params: Option<&mut [f32]>,
        chain: bool,
        rs: &mut RowScratch,
    ) {
        let place = hd.row(i);
        let (seen, m, modified) = self.scores((hd, &place, i), raw, rs, true);
        let RowScratch {
            regs,
            visible,
            vals,
            a,
            p,
            h,
            dh,
            df,
        } = rs;
        let s = if modified { &vals[0][..m] } else { &raw[..m] };
        let visible = &visible[..m];
        let (g, hidden) = g.split_at_mut(m);
        hidden.fill(0.0);
        let w = w.map(|w| {
            let (w, hidden) = w.split_at_mut(m);
            hidden.fill(0.0);
            w
        });
        // `dL/dp = dL/ds · score'`, applied in the loop that makes `dL/ds` where nothing
        // else reads `dL/ds` (a select keeps `dL/ds = 0` at 0, as in the reference).
        let sd = (chain && self.chain).then(|| &vals[1][..m]);
        let fused = sd.filter(|_| params.is_none());
        let mut chained = false;
        let apply = |x: f32, f: f32| if x == 0.0 { 0.0 } else { x * f };
        let (h, dh) = (&mut h[..m], &mut dh[..m]);
        match &self.norm {
            Norm::Normalised {
                factor,
                exponent,
                d_factor,
                d_exponent,
                sink,
            } => {
                let a = if exponent.is_score() {
                    s
                } else {
                    exponent.run(&place, s, regs, &mut a[..m]);
                    &a[..m]
                };
                let constants = (
                    factor.constant(),
                    d_factor.constant(),
                    d_exponent.constant(),
                );
                if let (Some(hc), Some(dhc), Some(dfc)) = constants {
                    // Softmax-like rules (`h`, `f'` constant, as for any score modification
                    // under softmax): no per-key factor rows to make, and with `h = 1` the
                    // probabilities are the weights.
                    let (p, w) = match w {
                        Some(w) if hc == 1.0 => (w, None),
                        w => (&mut p[..m], w),
                    };
                    Self::probs(a, seen, visible, *sink, p);
                    let k = dhc + hc * dfc;
                    match fused {
                        Some(sd) => {
                            with_avx2!(|| {
                                for ((g, &p), &f) in g.iter_mut().zip(p.iter()).zip(sd) {
                                    *g = apply(p * (*g * k - dfc * delta), f);
                                }
                            });
                            chained = true;
                        }
                        None => with_avx2!(|| {
                            for (g, &p) in g.iter_mut().zip(p.iter()) {
                                *g = p * (*g * k - dfc * delta);
                            }
                        }),
                    }
                    if let Some(w) = w {
                        with_avx2!(|| {
                            for (w, &p) in w.iter_mut().zip(p.iter()) {
                                *w = hc * p;
                            }
                        });
                    }
                } else {
                    let p = &mut p[..m];
                    Self::probs(a, seen, visible, *sink, p);
                    factor.run(&place, s, regs, h);
                    d_factor.run(&place, s, regs, dh);
                    let df = &mut df[..m];
                    d_exponent.run(&place, s, regs, df);
                    with_avx2!(|| {
                        let terms = p.iter().zip(h.iter()).zip(dh.iter()).zip(df.iter());
                        for (g, (((&p, &h), &dh), &df)) in g.iter_mut().zip(terms) {
                            *g = p * (*g * (dh + h * df) - df * delta);
                        }
                    });
                    if let Some(w) = w {
                        with_avx2!(|| {
                            for ((w, &h), &p) in w.iter_mut().zip(h.iter()).zip(p.iter()) {
                                *w = h * p;
                            }
                        });
                    }
                }
            }
            Norm::Direct { phi, d_phi } => {
                phi.run(&place, s, regs, h);
                d_phi.run(&place, s, regs, dh);
                with_avx2!(|| {
                    for (g, &d) in g.iter_mut().zip(dh.iter()) {
                        *g *= d;
                    }
                });
                if let Some(w) = w {
                    w.copy_from_slice(h);
                    hide(w, seen, visible);
                }
            }
        }
        hide(g, seen, visible);
        if let Some(out) = params {
            for (k, o) in out.iter_mut().enumerate() {
                *o = dot_visible(g, &vals[self.d_param(k)][..m]);
            }
        }
        if let Some(sd) = sd.filter(|_| !chained) {
            with_avx2!(|| {
                for (x, &f) in g.iter_mut().zip(sd) {
                    *x = apply(*x, f);
                }
            });
        }
    }

    /// How many rule parameters get gradients.
    pub fn params(&self) -> usize {
        self.rule.params
    }
}

/// `Σ_j ds_j · f_j` over keys with `ds ≠ 0` (a hidden key adds 0 even where `f` is not
/// finite, as in the reference), in lane-wise sums.
fn dot_visible(ds: &[f32], f: &[f32]) -> f32 {
    // 32 lanes: four vectors of partial sums, so the adds do not wait on each other.
    const L: usize = 32;
    let term = |x: f32, f: f32| if x == 0.0 { 0.0 } else { x * f };
    with_avx2!(|| {
        let mut sums = [0.0f32; L];
        let (dc, fc) = (ds.chunks_exact(L), f.chunks_exact(L));
        let (dr, fr) = (dc.remainder(), fc.remainder());
        for (d, f) in dc.zip(fc) {
            for ((z, &x), &f) in sums.iter_mut().zip(d).zip(f) {
                *z += term(x, f);
            }
        }
        let tail: f32 = dr.iter().zip(fr).map(|(&x, &f)| term(x, f)).sum();
        sums.iter().sum::<f32>() + tail
    })
}

/// [`CompiledRule::probs`] of one row's keys `a` into `p`; with `MARKED`, keys whose
/// `visible` entry is false count as −∞ (out of the maximum, `exp(−∞) = 0` in the sums).
/// One loop per step, each free of branches so it vectorises.
#[inline(always)]
fn normalise<const MARKED: bool>(a: &[f32], visible: &[bool], sink: f32, p: &mut [f32]) {
    const L: usize = 8;
    let at = |x: f32, v: bool| if MARKED && !v { f32::NEG_INFINITY } else { x };
    let vis = |j: usize| MARKED && visible[j];
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut it = a.chunks_exact(L);
    for (c, chunk) in (&mut it).enumerate() {
        for (k, (m, &x)) in lanes.iter_mut().zip(chunk).enumerate() {
            let x = at(x, vis(c * L + k));
            if x > *m {
                *m = x;
            }
        }
    }
    let floor = if sink > 0.0 {
        sink.ln()
    } else {
        f32::NEG_INFINITY
    };
    let start = a.len() - it.remainder().len();
    let m = it
        .remainder()
        .iter()
        .enumerate()
        .map(|(k, &x)| at(x, vis(start + k)))
        .chain(lanes)
        .fold(floor, |m, x| if x > m { x } else { m });
    if m == f32::NEG_INFINITY {
        // No key visible and no sink: the row's weights are 0.
        p.fill(0.0);
        return;
    }
    let mut sums = [0.0f32; L];
    let mut tail = 0.0f32;
    // Per chunk of 64 keys: the exponentials, then their lane sums (two loops that each
    // vectorise, over data still in L1).
    for (c, (pc, ac)) in p.chunks_mut(64).zip(a.chunks(64)).enumerate() {
        for (k, (e, &x)) in pc.iter_mut().zip(ac).enumerate() {
            *e = exp::exp(at(x, vis(c * 64 + k)) - m);
        }
        let mut it = pc.chunks_exact(L);
        for ch in &mut it {
            for (z, &e) in sums.iter_mut().zip(ch) {
                *z += e;
            }
        }
        tail += it.remainder().iter().sum::<f32>();
    }
    let sunk = if sink > 0.0 { sink * (-m).exp() } else { 0.0 };
    let z = sunk + sums.iter().sum::<f32>() + tail;
    if z > 0.0 {
        let inv = 1.0 / z;
        p.iter_mut().for_each(|x| *x *= inv);
    } else {
        p.fill(0.0);
    }
}

/// Zeroes the keys a row does not see.
fn hide(x: &mut [f32], seen: Seen, visible: &[bool]) {
    match seen {
        Seen::Run(lo, hi) => {
            x[..lo].fill(0.0);
            x[hi..].fill(0.0);
        }
        Seen::Marked => {
            for (x, &v) in x.iter_mut().zip(visible) {
                if !v {
                    *x = 0.0;
                }
            }
        }
    }
}

/// `C = α·A·B + β·C`, row-major operands: [`small_gemm`]'s tiles where the machine has
/// them, else `matrixmultiply`.
#[allow(clippy::too_many_arguments)]
fn mm(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if small_gemm::available() {
        small_gemm::gemm((m, n, k), alpha, a, lda, b, ldb, beta, c, ldc);
    } else {
        f32::gemm(m, k, n, alpha, a, (lda, 1), b, (ldb, 1), beta, c, (ldc, 1));
    }
}

/// [`mm`] with `Aᵀ` for `A`, `a` holding the `k × m` matrix row-major (row stride `lda`).
#[allow(clippy::too_many_arguments)]
fn mm_at(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if small_gemm::available() {
        small_gemm::gemm_at((m, n, k), alpha, a, lda, b, ldb, beta, c, ldc);
    } else {
        f32::gemm(m, k, n, alpha, a, (1, lda), b, (ldb, 1), beta, c, (ldc, 1));
    }
}

/// The raw scores `scale·q kᵀ` of `r` query rows (from `q`) against keys `..kend`, from the
/// transposed keys `kt` (`[d, T]`), into `raw` (`[r, kend]`).
fn raw_scores(
    scale: f32,
    q: &[f32],
    kt: &[f32],
    (r, kend, t, d): (usize, usize, usize, usize),
    raw: &mut [f32],
) {
    mm((r, kend, d), scale, q, d, kt, t, 0.0, raw, kend);
}

fn with_row<R>(f: impl FnOnce(&mut RowScratch) -> R) -> R {
    ROW.with(|r| f(&mut r.borrow_mut()))
}

/// The applied weights of head `bh`, block of query rows by block: `f(i0, i1, kend, w)` with
/// `w` the `[i1 − i0, kend]` weights of rows `i0..i1` against keys `..kend` (empty when no
/// row of the block sees a key).
#[allow(clippy::too_many_arguments)]
fn head_weights(
    c: &CompiledRule,
    (q, k): (&[f32], &[f32]),
    seg: Option<&[i32]>,
    params: &[Vec<f32>],
    dm: Dims,
    bh: usize,
    mut f: impl FnMut(usize, usize, usize, &[f32]),
) {
    let (t, d, hs) = (dm.t, dm.d, dm.t * dm.d);
    let hd = Head::new(&c.rule, dm, bh, seg, params);
    with_scratch(t, d, |s| {
        with_row(|rs| {
            let r0 = bh * hs;
            let (qh, kh) = (&q[r0..r0 + hs], &k[r0..r0 + hs]);
            transpose(kh, t, d, &mut s.kt);
            c.fit(t, rs);
            for i0 in (0..t).step_by(ROWS) {
                let i1 = (i0 + ROWS).min(t);
                let r = i1 - i0;
                let kend = c.key_end(&hd, (i0, i1, t), rs);
                if kend == 0 {
                    f(i0, i1, 0, &[]);
                    continue;
                }
                let raw = &mut s.g[..r * kend];
                raw_scores(c.rule.scale, &qh[i0 * d..], &s.kt, (r, kend, t, d), raw);
                let w = &mut s.w[..r * kend];
                let rows = raw.chunks(kend).zip(w.chunks_mut(kend)).enumerate();
                if c.softmax {
                    for (ri, (raw, w)) in rows {
                        c.modified_scores(&hd, i0 + ri, raw, w, rs);
                    }
                    attention::normalise(&c.rule, hd.seg, (i0, kend), w);
                } else {
                    for (ri, (raw, w)) in rows {
                        c.weights_row(&hd, i0 + ri, raw, w, rs);
                    }
                }
                f(i0, i1, kend, w);
            }
        })
    })
}

/// `y = W v` for every (batch, head) into `y` (`[B,H,T,d]`).
pub(crate) fn forward(
    c: &CompiledRule,
    (q, k, v): (&[f32], &[f32], &[f32]),
    seg: Option<&[i32]>,
    params: &[Vec<f32>],
    dm: Dims,
    y: &mut [f32],
) {
    let (d, hs) = (dm.d, dm.t * dm.d);
    y.par_chunks_mut(hs).enumerate().for_each(|(bh, yh)| {
        let vh = &v[bh * hs..(bh + 1) * hs];
        head_weights(c, (q, k), seg, params, dm, bh, |i0, i1, kend, w| {
            let yb = &mut yh[i0 * d..i1 * d];
            if kend == 0 {
                yb.fill(0.0);
            } else {
                mm((i1 - i0, d, kend), 1.0, w, kend, vh, d, 0.0, yb, d);
            }
        });
    });
}

/// The weights `[B,H,T,T]` (the `attn.pattern` hook point) with [`forward`]'s arithmetic,
/// 0 for hidden keys: the captured pattern times `v` is the fused forward to the bit.
pub(crate) fn pattern(
    c: &CompiledRule,
    (q, k): (&[f32], &[f32]),
    seg: Option<&[i32]>,
    params: &[Vec<f32>],
    dm: Dims,
    out: &mut [f32],
) {
    let t = dm.t;
    out.par_chunks_mut(t * t).enumerate().for_each(|(bh, ph)| {
        head_weights(c, (q, k), seg, params, dm, bh, |i0, i1, kend, w| {
            let rows = ph[i0 * t..i1 * t].chunks_mut(t);
            for (ri, row) in rows.enumerate() {
                row[..kend].copy_from_slice(&w[ri * kend..(ri + 1) * kend]);
                row[kend..].fill(0.0);
            }
        });
    });
}

/// `dy_i · y_i`, the normaliser's term of row `i`.
fn delta(dy: &[f32], y: &[f32], i: usize, d: usize) -> f32 {
    let r = i * d..(i + 1) * d;
    dy[r.clone()]
        .iter()
        .zip(&y[r])
        .fold(0.0, |acc, (a, b)| acc + a * b)
}

/// `(dq, dk, dv)` stacked as `[3,B,H,T,d]` into `out` and, with `rule_out`, the rule
/// parameters' per-row gradients `[B,H,T,P]` ([`rule_grad`]'s) from the same pass: one walk
/// over the scores instead of two when a rule's parameters train.
pub(crate) fn backward(
    c: &CompiledRule,
    (q, k, v, y, dy): super::attention::Operands5<'_>,
    seg: Option<&[i32]>,
    params: &[Vec<f32>],
    dm: Dims,
    out: &mut [f32],
    rule_out: Option<&mut [f32]>,
) {
    let (t, d, hs, np) = (dm.t, dm.d, dm.t * dm.d, c.params());
    let n = q.len();
    let (dq, rest) = out.split_at_mut(n);
    let (dk, dv) = rest.split_at_mut(n);
    let mut rows: Vec<Option<&mut [f32]>> = match rule_out {
        Some(o) if np > 0 => o.chunks_mut(t * np).map(Some).collect(),
        _ => (0..n / hs.max(1)).map(|_| None).collect(),
    };
    dq.par_chunks_mut(hs)
        .zip(dk.par_chunks_mut(hs))
        .zip(dv.par_chunks_mut(hs))
        .zip(rows.par_iter_mut())
        .enumerate()
        .for_each(|(bh, (((dqh, dkh), dvh), rg))| {
            let hd = Head::new(&c.rule, dm, bh, seg, params);
            with_scratch(t, d, |s| {
                with_row(|rs| {
                    let hr = bh * hs..(bh + 1) * hs;
                    let (qh, kh, vh) = (&q[hr.clone()], &k[hr.clone()], &v[hr.clone()]);
                    let (yh, dyh) = (&y[hr.clone()], &dy[hr]);
                    transpose(kh, t, d, &mut s.kt);
                    transpose(vh, t, d, &mut s.vt);
                    dkh.fill(0.0);
                    dvh.fill(0.0);
                    c.fit(t, rs);
                    if let Some(o) = rg.as_deref_mut() {
                        o.fill(0.0);
                    }
                    for i0 in (0..t).step_by(ROWS) {
                        let i1 = (i0 + ROWS).min(t);
                        let r = i1 - i0;
                        let kend = c.key_end(&hd, (i0, i1, t), rs);
                        if kend == 0 {
                            dqh[i0 * d..i1 * d].fill(0.0);
                            continue;
                        }
                        let (qb, dyb) = (&qh[i0 * d..i1 * d], &dyh[i0 * d..i1 * d]);
                        let raw = &mut s.raw[..r * kend];
                        raw_scores(c.rule.scale, qb, &s.kt, (r, kend, t, d), raw);
                        // g = dy vᵀ over the visible keys, then dL/dp in place.
                        let g = &mut s.g[..r * kend];
                        mm((r, kend, d), 1.0, dyb, d, &s.vt, t, 0.0, g, kend);
                        let w = &mut s.w[..r * kend];
                        for (ri, ((raw, g), w)) in raw
                            .chunks(kend)
                            .zip(g.chunks_mut(kend))
                            .zip(w.chunks_mut(kend))
                            .enumerate()
                        {
                            let i = i0 + ri;
                            let dl = delta(dyh, yh, i, d);
                            let o = rg.as_deref_mut().map(|o| &mut o[i * np..(i + 1) * np]);
                            c.grad_row(&hd, i, raw, (g, dl), Some(w), o, true, rs);
                        }
                        let dqb = &mut dqh[i0 * d..i1 * d];
                        mm((r, d, kend), c.rule.scale, g, kend, kh, d, 0.0, dqb, d);
                        let dkb = &mut dkh[..kend * d];
                        mm_at((kend, d, r), c.rule.scale, g, kend, qb, d, 1.0, dkb, d);
                        let dvb = &mut dvh[..kend * d];
                        mm_at((kend, d, r), 1.0, w, kend, dyb, d, 1.0, dvb, d);
                    }
                })
            })
        });
}

/// The rule parameters' per-row gradients `[B,H,T,P]` (`AttentionRuleGrad`) into `out`.
pub(crate) fn rule_grad(
    c: &CompiledRule,
    (q, k, v, y, dy): super::attention::Operands5<'_>,
    seg: Option<&[i32]>,
    params: &[Vec<f32>],
    dm: Dims,
    out: &mut [f32],
) {
    let (t, d, hs, p) = (dm.t, dm.d, dm.t * dm.d, c.params());
    if p == 0 {
        return;
    }
    out.par_chunks_mut(t * p).enumerate().for_each(|(bh, oh)| {
        let hd = Head::new(&c.rule, dm, bh, seg, params);
        with_scratch(t, d, |s| {
            with_row(|rs| {
                let hr = bh * hs..(bh + 1) * hs;
                let (qh, kh, vh) = (&q[hr.clone()], &k[hr.clone()], &v[hr.clone()]);
                let (yh, dyh) = (&y[hr.clone()], &dy[hr]);
                transpose(kh, t, d, &mut s.kt);
                transpose(vh, t, d, &mut s.vt);
                oh.fill(0.0);
                c.fit(t, rs);
                for i0 in (0..t).step_by(ROWS) {
                    let i1 = (i0 + ROWS).min(t);
                    let r = i1 - i0;
                    let kend = c.key_end(&hd, (i0, i1, t), rs);
                    if kend == 0 {
                        continue;
                    }
                    let raw = &mut s.raw[..r * kend];
                    raw_scores(c.rule.scale, &qh[i0 * d..], &s.kt, (r, kend, t, d), raw);
                    let g = &mut s.g[..r * kend];
                    mm((r, kend, d), 1.0, &dyh[i0 * d..], d, &s.vt, t, 0.0, g, kend);
                    for (ri, (raw, ds)) in raw.chunks(kend).zip(g.chunks_mut(kend)).enumerate() {
                        let (i, o) = (i0 + ri, &mut oh[(i0 + ri) * p..(i0 + ri + 1) * p]);
                        let dl = delta(dyh, yh, i, d);
                        c.grad_row(&hd, i, raw, (ds, dl), None, Some(o), false, rs);
                    }
                }
            })
        })
    });
}
