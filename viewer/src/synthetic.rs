//! Synthetic run directories in the real format (written with `weft_rundir`), for
//! tests, the frame-time measurement and screenshots: signed attention maps with negative
//! weights (Cog), MoM routing traces, MoICE base-routing traces, head scores over training,
//! and metrics.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use weft_rundir::Tensor;
use weft_rundir::{trace_kind, RunFiles, StepMetrics, Trace};

/// What to write.
#[derive(Clone, Debug)]
pub struct Synthetic {
    pub layers: usize,
    pub heads: usize,
    pub seq: usize,
    /// Training steps logged (a line every 10 steps).
    pub steps: u64,
    /// Steps at which attention maps and head scores are recorded.
    pub trace_steps: Vec<u64>,
    /// Middle layers use signed (Cog) attention: `sign(s) · softmax(|s|)`.
    pub signed: bool,
    /// Write attention traces.
    pub attention: bool,
    /// Write MoM routing traces (two pools, 4 modules each, 4 iterations, SKIP).
    pub routing: bool,
    /// Write MoICE `base_routing` traces for every layer (each head picks the top 2 of
    /// [`MOICE_BASES`] per token), as the trainer (`weft_runtime::train::trace`) writes them.
    pub moice: bool,
    /// The spec saved as `spec.weft`.
    pub spec: &'static str,
}

/// The rotary bases of the synthetic MoICE attention (as in `examples/moice.weft`).
pub const MOICE_BASES: [f64; 5] = [10000.0, 12000.0, 15000.0, 20000.0, 30000.0];
/// Bases each (token, head) mixes.
const MOICE_TOP_K: usize = 2;

const TEXT: &str = "the cat sat on the mat. the cat ate the rat, then the cat sat on the hat. ";

impl Synthetic {
    /// A Cog model as in `examples/cog_attention.weft`: 6 layers × 4 heads, signed middle
    /// layers, 32 tokens.
    pub fn cog() -> Self {
        Synthetic {
            layers: 6,
            heads: 4,
            seq: 32,
            steps: 300,
            trace_steps: vec![100, 200, 300],
            signed: true,
            attention: true,
            routing: false,
            moice: false,
            spec: include_str!("../../examples/cog_attention.weft"),
        }
    }

    /// A MoM model as in `examples/mom.weft`, with routing traces of its routed layer.
    pub fn mom() -> Self {
        Synthetic {
            layers: 3,
            heads: 4,
            seq: 24,
            steps: 500,
            trace_steps: vec![250, 500],
            signed: false,
            attention: false,
            routing: true,
            moice: false,
            spec: include_str!("../../examples/mom.weft"),
        }
    }

    /// The largest case the viewer must stay responsive on: 12 layers × 12 heads, T = 512,
    /// with attention maps and MoICE base choices for every layer.
    pub fn large() -> Self {
        Synthetic {
            layers: 12,
            heads: 12,
            seq: 512,
            steps: 1000,
            trace_steps: vec![1000],
            moice: true,
            ..Synthetic::cog()
        }
    }

    /// A small run with every kind of trace (for tests).
    pub fn small() -> Self {
        Synthetic {
            layers: 3,
            heads: 3,
            seq: 12,
            steps: 100,
            trace_steps: vec![50, 100],
            signed: true,
            attention: true,
            routing: true,
            moice: false,
            spec: include_str!("../../examples/cog_attention.weft"),
        }
    }

    /// Writes the run directory at `dir` (created; existing files are appended to).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let mut run = RunFiles::create(dir, self.spec)?;
        let mut rng = Rng(0x5eed);
        for m in self.metrics(&mut rng) {
            match m {
                Line::Train(s) => run.metrics().log(&s)?,
                Line::Eval(v) => run.metrics().log_value(&v)?,
            }
        }
        let tokens: Vec<i32> = TEXT.bytes().cycle().take(self.seq).map(i32::from).collect();
        for &step in &self.trace_steps {
            if self.attention {
                for l in 0..self.layers {
                    run.write_trace(&self.attention_trace(l, step, &tokens, &mut rng))?;
                }
                run.write_trace(&self.head_scores("induction_score", step, false))?;
                run.write_trace(&self.head_scores("patching_effect", step, true))?;
            }
            if self.routing {
                for (r, pool) in ["attn", "ffn"].into_iter().enumerate() {
                    run.write_trace(&self.routing_trace(r, pool, step, &tokens, &mut rng))?;
                }
            }
            if self.moice {
                for l in 0..self.layers {
                    run.write_trace(&self.base_routing_trace(l, step, &tokens, &mut rng))?;
                }
            }
        }
        Ok(())
    }

    fn metrics(&self, rng: &mut Rng) -> Vec<Line> {
        let mut out = Vec::new();
        let n = self.steps as f64;
        let batch_tokens = 16 * self.seq as u64;
        for step in (10..=self.steps).step_by(10) {
            let s = step as f64;
            let nll = 1.4 + 4.1 * (-s / (0.25 * n)).exp() + 0.05 * rng.normal();
            let mut aux = BTreeMap::from([("term.0.nll".to_string(), nll)]);
            let mut loss = nll;
            if self.routing {
                let bal = 0.012 + 0.004 * (s / 40.0).sin().abs();
                aux.insert("balance.route0".into(), bal);
                loss += bal;
            }
            let warm = (s / (0.1 * n)).min(1.0);
            let lr = 1e-3 * warm * 0.5 * (1.0 + (std::f64::consts::PI * s / n).cos());
            out.push(Line::Train(StepMetrics {
                step,
                tokens: step * batch_tokens,
                loss,
                aux,
                lr,
                grad_norm: 0.4 + 2.0 * (-s / (0.15 * n)).exp() + 0.08 * rng.normal().abs(),
                tokens_per_s: 12_000.0 + 600.0 * rng.normal(),
                wall_s: s * batch_tokens as f64 / 12_000.0,
            }));
            if step % 50 == 0 {
                // Copy accuracy jumps two-thirds of the way through (an induction bump).
                let copy = 0.05 + 0.9 / (1.0 + (-(s - 0.6 * n) / (0.04 * n)).exp());
                out.push(Line::Eval(serde_json::json!({
                    "kind": "eval", "step": step, "copy_accuracy": copy,
                    "val_loss": nll + 0.08,
                })));
            }
        }
        out
    }

    fn is_signed_layer(&self, l: usize) -> bool {
        self.signed && l > 0 && l + 1 < self.layers
    }

    /// One layer's maps: each head has a recognisable pattern (previous token, attention
    /// sink, induction, local decay); signed layers add negative scores so some weights are
    /// negative.
    fn attention_trace(&self, l: usize, step: u64, tokens: &[i32], rng: &mut Rng) -> Trace {
        let t = self.seq;
        let progress = step as f32 / self.steps.max(1) as f32;
        let mut pattern = Vec::with_capacity(self.heads * t * t);
        let mut scores = vec![0.0f32; t];
        for h in 0..self.heads {
            let kind = (h + l) % 4;
            for q in 0..t {
                for (k, s) in scores.iter_mut().enumerate().take(q + 1) {
                    let mut v = 0.4 * rng.normal() as f32;
                    match kind {
                        0 => v += if k + 1 == q { 5.0 } else { 0.0 },
                        1 => v += if k == 0 { 4.0 } else { -0.15 * (q - k) as f32 },
                        2 => {
                            // Induction: the token after an earlier occurrence of this one.
                            if k > 0 && k < q && tokens[k - 1] == tokens[q] {
                                v += 5.0 * progress;
                            }
                        }
                        _ => v -= 0.3 * (q - k) as f32,
                    }
                    if self.is_signed_layer(l) {
                        // Mostly positive scores (a Cog head adds most tokens) with
                        // earlier copies of the current token suppressed: negative weights.
                        v = v.abs() + 0.2;
                        if kind != 1 && tokens[k] == tokens[q] && k != q {
                            v = -(2.5 + 1.5 * rng.uniform() as f32);
                        }
                    }
                    *s = v;
                }
                let signed = self.is_signed_layer(l);
                let mx = scores[..=q]
                    .iter()
                    .map(|s| if signed { s.abs() } else { *s })
                    .fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores[..=q]
                    .iter()
                    .map(|s| ((if signed { s.abs() } else { *s }) - mx).exp())
                    .collect();
                let z: f32 = e.iter().sum();
                for k in 0..t {
                    pattern.push(if k <= q {
                        let w = e[k] / z;
                        if signed && scores[k] < 0.0 {
                            -w
                        } else {
                            w
                        }
                    } else {
                        0.0
                    });
                }
            }
        }
        Trace {
            name: format!("layers.{l}.attn.pattern"),
            kind: trace_kind::ATTENTION.into(),
            step,
            tensors: BTreeMap::from([
                (
                    "pattern".to_string(),
                    Tensor::f32(&[1, self.heads, t, t], pattern),
                ),
                ("tokens".to_string(), Tensor::i32(&[1, t], tokens.to_vec())),
            ]),
            axes: BTreeMap::from([(
                "pattern".to_string(),
                ["batch", "head", "query", "key"].map(String::from).to_vec(),
            )]),
            attrs: serde_json::json!({"layer": l})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn head_scores(&self, score: &str, step: u64, signed: bool) -> Trace {
        let progress = step as f32 / self.steps.max(1) as f32;
        let mut v = Vec::with_capacity(self.layers * self.heads);
        for l in 0..self.layers {
            for h in 0..self.heads {
                let induction = (h + l) % 4 == 2;
                let x = if signed {
                    let sign = if (l + 2 * h) % 3 == 0 { -1.0 } else { 1.0 };
                    sign * (0.1 + 0.5 * ((l * 7 + h * 3) % 5) as f32 / 5.0) * progress
                } else if induction {
                    0.1 + 0.85 * progress * progress
                } else {
                    0.05 + 0.1 * ((l * 5 + h * 11) % 7) as f32 / 7.0
                };
                v.push(x);
            }
        }
        Trace {
            name: score.to_string(),
            kind: trace_kind::HEAD_SCORES.into(),
            step,
            tensors: BTreeMap::from([(
                "scores".to_string(),
                Tensor::f32(&[self.layers, self.heads], v),
            )]),
            axes: BTreeMap::from([(
                "scores".to_string(),
                vec!["layer".to_string(), "head".to_string()],
            )]),
            attrs: serde_json::json!({"score": score})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Top-1 routing with SKIP over 4 iterations; spaces and punctuation skip more often
    /// and later iterations skip more, so effective depth varies across tokens.
    fn routing_trace(
        &self,
        route: usize,
        pool: &str,
        step: u64,
        tokens: &[i32],
        rng: &mut Rng,
    ) -> Trace {
        let (iters, modules, t) = (4usize, 4usize, self.seq);
        let mut choice = Vec::with_capacity(iters * t);
        let mut weight = Vec::with_capacity(iters * t);
        for it in 0..iters {
            for &tok in tokens.iter().take(t) {
                let plain = (tok as u8).is_ascii_alphabetic();
                let p_skip = if plain { 0.08 } else { 0.45 } + 0.1 * it as f64;
                if rng.uniform() < p_skip {
                    choice.push(-1);
                } else {
                    let m =
                        (tok as usize * 7 + it * 3 + route * 5 + (rng.uniform() * 1.6) as usize)
                            % modules;
                    choice.push(m as i32);
                }
                weight.push((0.45 + 0.5 * rng.uniform()) as f32);
            }
        }
        Trace {
            name: format!("layers.1.route{route}.choice"),
            kind: trace_kind::ROUTING.into(),
            step,
            tensors: BTreeMap::from([
                ("choice".to_string(), Tensor::i32(&[iters, 1, t, 1], choice)),
                ("weight".to_string(), Tensor::f32(&[iters, 1, t, 1], weight)),
                (
                    "tokens".to_string(),
                    Tensor::i32(&[1, t], tokens[..t].to_vec()),
                ),
            ]),
            axes: BTreeMap::from([(
                "choice".to_string(),
                ["iteration", "batch", "token", "slot"]
                    .map(String::from)
                    .to_vec(),
            )]),
            attrs: serde_json::json!({"layer": 1, "pool": pool, "modules": modules})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// One layer's MoICE router output in the format of the runtime's trace writer
    /// (`base_routing_trace` in `runtime/src/train/trace.rs`): router logits `[1, H, T, N]`
    /// with a top-2 choice, turned into `choice` (chosen bases by decreasing probability)
    /// and `weight` (their renormalised probabilities) `[1, H, T, K]`, `probs` (softmax of
    /// the logits) `[1, H, T, N]`, `tokens` `[1, T]`; attrs `layer`, `bases`, `token_text`.
    /// Each head leans to its own bases; far-reaching tokens (spaces, punctuation) and later
    /// positions lean to larger bases.
    fn base_routing_trace(&self, l: usize, step: u64, tokens: &[i32], rng: &mut Rng) -> Trace {
        let (h, t, n, k) = (self.heads, self.seq, MOICE_BASES.len(), MOICE_TOP_K);
        let progress = step as f32 / self.steps.max(1) as f32;
        let mut choice = Vec::with_capacity(h * t * k);
        let mut weight = Vec::with_capacity(h * t * k);
        let mut probs = Vec::with_capacity(h * t * n);
        for head in 0..h {
            let favourite = (head * 3 + l) % n;
            for (q, &tok) in tokens.iter().enumerate().take(t) {
                let plain = (tok as u8).is_ascii_alphabetic();
                let far = q as f32 / t.max(1) as f32 + if plain { 0.0 } else { 0.6 };
                let logits: Vec<f32> = (0..n)
                    .map(|m| {
                        let mut x = 0.8 * rng.normal() as f32;
                        if m == favourite {
                            x += 1.5 * progress;
                        }
                        x + far * (m as f32 / (n - 1).max(1) as f32) * 1.5
                    })
                    .collect();
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
                let z: f32 = e.iter().sum();
                let p: Vec<f32> = e.iter().map(|&x| x / z).collect();
                // The router's top-k, by decreasing probability (ties: lower index first).
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                let chosen = &order[..k.min(n)];
                let kept: f32 = chosen.iter().map(|&m| p[m]).sum();
                for s in 0..k {
                    match chosen.get(s) {
                        Some(&m) => {
                            choice.push(m as i32);
                            weight.push(if kept > 0.0 { p[m] / kept } else { 0.0 });
                        }
                        None => {
                            choice.push(-1);
                            weight.push(0.0);
                        }
                    }
                }
                probs.extend(p);
            }
        }
        let text: Vec<String> = tokens[..t]
            .iter()
            .map(|&id| match u8::try_from(id) {
                Ok(b'\n') => "\\n".into(),
                Ok(b) if (32..127).contains(&b) => char::from(b).to_string(),
                _ => format!("<{id:02x}>"),
            })
            .collect();
        let slot_axes = ["batch", "head", "token", "slot"]
            .map(String::from)
            .to_vec();
        Trace {
            name: format!("layers.{l}.attn.router"),
            kind: trace_kind::BASE_ROUTING.into(),
            step,
            tensors: BTreeMap::from([
                ("choice".to_string(), Tensor::i32(&[1, h, t, k], choice)),
                ("weight".to_string(), Tensor::f32(&[1, h, t, k], weight)),
                ("probs".to_string(), Tensor::f32(&[1, h, t, n], probs)),
                (
                    "tokens".to_string(),
                    Tensor::i32(&[1, t], tokens[..t].to_vec()),
                ),
            ]),
            axes: BTreeMap::from([
                ("choice".to_string(), slot_axes.clone()),
                ("weight".to_string(), slot_axes),
                (
                    "probs".to_string(),
                    ["batch", "head", "token", "base"]
                        .map(String::from)
                        .to_vec(),
                ),
            ]),
            attrs: serde_json::json!({
                "layer": l,
                "bases": MOICE_BASES.to_vec(),
                "token_text": text,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        }
    }
}

enum Line {
    Train(StepMetrics),
    Eval(serde_json::Value),
}

/// splitmix64: deterministic, so snapshots of synthetic runs are stable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}
