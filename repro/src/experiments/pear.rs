//! PEAR (METHODS §4, §11.12 #4): a small LM that can copy (pretrained on skip-bigram Markov
//! windows mixed with copy windows, see `examples/repro/pear/pear.weft`) before and after PEAR.
//! The probe `pear` detects copy-suppression heads by path patching with batch-mean ablation
//! on repeated random tokens, trains one gain per detected head on the copy proxy (loss on the
//! second half, everything else frozen, AdamW lr 5e-3, linear decay, 100 steps) and folds the
//! gains into W_O. Baseline: the pretrained model (every gain 1); method: the same weights
//! with the learned gains, for K = 1, 2 and 4 heads. Both are measured on held-out copy-proxy
//! sequences (loss, greedy copy accuracy) and on key–value retrieval with distractors
//! (`kv_recall` prompts, which neither pretraining nor gain training saw), and the folded
//! export is compared with the gained model logit for logit. The headline is the held-out
//! copy loss for K = 2 together with the sign of the learned gains (τ < 1).

use crate::{Lab, Report, ReproError, Table};
use serde_json::json;
use std::path::Path;
use weft_dsl::typed::DataSource;
use weft_runtime::probes::copy::{copy_accuracy, CopyConfig};
use weft_runtime::probes::needle_sweep::{needle_sweep, NeedleSweep, NeedleSweepConfig};
use weft_runtime::probes::path_patching::{path_patching, PatchingData};
use weft_runtime::probes::pear::{pear, PearConfig};
use weft_runtime::{ParamStore, Rng, Tensor};

/// Ids of the corpus: 2 .. VOCAB (0 and 1 are reserved, as in the built-in generators).
const VOCAB: u8 = 128;
/// Probability that a Markov step follows σ(token two back).
const PRIOR: f64 = 0.75;
/// Share of windows that are copies.
const COPY_SHARE: f64 = 0.75;
/// Share of a copy window's second half that follows the Markov chain instead of the copy.
const NOISE: f64 = 0.1;
/// Copy proxy length n = ctx / 2 (sequences are 2n = 64 tokens; the paper's n is 50).
const PROXY_LEN: usize = 32;
/// Numbers of heads re-weighted (§11.12 #4); the headline uses HEADLINE_K, fixed in advance.
const KS: [usize; 3] = [1, 2, 4];
const HEADLINE_K: usize = 2;

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let corpus = absolute(&lab.dir().join("data").join("markov_copy.txt"))?;
    write_corpus(&corpus, lab.pick(10_000, 400), 2 * PROXY_LEN, lab.seed())?;
    let mut spec = lab.spec("pear.weft")?;
    spec.set("steps", lab.pick(500, 12));
    spec.set("batch", lab.pick(16, 4));
    spec.set("eval_every", lab.pick(100, 12));
    if let Some(DataSource::Text { path, .. }) = spec.checked.train.as_mut().map(|t| &mut t.data) {
        *path = corpus.display().to_string();
    }
    let base = lab.train(&spec, "pretrain", None)?;

    let steps = lab.pick(100, 4);
    let samples = lab.pick(64, 4);
    let depths = NeedleSweepConfig::evenly_spaced(lab.pick(5, 2));
    let kv_pairs = 8;
    let measure = |params: &ParamStore| -> Result<(f64, NeedleSweep), ReproError> {
        let model = lab.model(&spec, params);
        let copy = lab.probe("copy accuracy", || {
            copy_accuracy(
                &model,
                &CopyConfig {
                    len: PROXY_LEN,
                    samples: lab.pick(64, 4),
                    seed: lab.seed() + 1,
                },
            )
        })?;
        let kv = lab.probe("kv_recall retrieval", || {
            needle_sweep(
                &model,
                &NeedleSweepConfig {
                    pairs: kv_pairs,
                    len: model.ctx(),
                    depths: depths.clone(),
                    samples,
                    batch: 16,
                    seed: lab.seed() + 2,
                },
            )
        })?;
        Ok((copy.accuracy, kv))
    };

    // Detection table over every head (the same prompts the pear probe patches).
    let model = lab.model(&spec, &base.params);
    let patched = lab.probe("path patching (copy, mean)", || {
        path_patching(
            &model,
            &PatchingData::copy(32, PROXY_LEN, model.vocab(), lab.seed()),
        )
    })?;
    let mut detect = Table::new(
        &format!("Path patching on repeated random tokens (n = {PROXY_LEN}, 32 prompts): Δπ when a head's result at the query is mean-ablated, q/k/v frozen (positive = the head suppresses copying)"),
        &["layer", "head 0", "head 1", "head 2", "head 3", "MLP"],
    );
    for (l, row) in patched.heads.iter().enumerate() {
        let mut cells = vec![json!(l)];
        cells.extend((0..4).map(|h| json!(row.get(h).copied().unwrap_or(0.0))));
        cells.push(json!(patched.mlp[l]));
        detect.row(cells);
    }
    r.table(detect);

    let (copy0, kv0) = measure(&base.params)?;
    let kv0_mean = crate::experiments::mean(&kv0.accuracy);
    let mut results = Vec::new();
    for k in lab.pick(KS.to_vec(), vec![HEADLINE_K]) {
        let p = lab.probe("pear", || {
            pear(
                &model,
                &PearConfig {
                    heads: k,
                    steps,
                    lr: 5e-3,
                    len: PROXY_LEN,
                    seed: lab.seed(),
                },
            )
        })?;
        let gained = with_gains(&base.params, &p.gains);
        let (copy1, kv1) = measure(&gained)?;
        results.push((k, p, copy1, kv1));
    }

    let mut table = Table::new(
        &format!("PEAR by number of heads K (gains trained {steps} steps on the copy proxy; held-out proxy and kv_recall prompts)"),
        &[
            "K",
            "detected heads (layer.head: Δπ)",
            "learned gains τ",
            "copy loss before",
            "copy loss after",
            "copy acc before",
            "copy acc after",
            "retrieval acc before",
            "retrieval acc after",
            "folded vs gained max rel. logit diff",
            "gain ops after folding",
        ],
    );
    for (k, p, copy1, kv1) in &results {
        let heads: Vec<String> = p
            .detected
            .iter()
            .map(|(l, h, d)| format!("{l}.{h}: {d:+.3}"))
            .collect();
        let gains: Vec<String> = p
            .gains
            .iter()
            .map(|(l, h, t)| format!("{l}.{h}: {t:.3}"))
            .collect();
        table.row(vec![
            json!(k),
            json!(heads.join(", ")),
            json!(gains.join(", ")),
            json!(p.copy_loss_before),
            json!(p.copy_loss_after),
            json!(copy0),
            json!(copy1),
            json!(kv0_mean),
            json!(crate::experiments::mean(&kv1.accuracy)),
            json!(p.fold_max_rel_err),
            json!(p.gain_ops_after_folding),
        ]);
    }
    r.table(table);

    let (_, hp, _, hkv) = results
        .iter()
        .find(|x| x.0 == HEADLINE_K)
        .expect("HEADLINE_K is one of KS");
    let mut depth = Table::new(
        &format!(
            "kv_recall retrieval accuracy by needle depth ({kv_pairs} pairs among filler, {} tokens, {samples} prompts per depth)",
            kv0.len
        ),
        &["needle depth", "before gains", &format!("K = {HEADLINE_K} gains")],
    );
    for (i, d) in depths.iter().enumerate() {
        depth.row(vec![
            json!(d),
            json!(kv0.accuracy[i]),
            json!(hkv.accuracy[i]),
        ]);
    }
    r.table(depth);

    let evals = base.probe_curve("copy_accuracy", "accuracy");
    let mut curve = Table::new(
        &format!("Pretraining: copy accuracy on repeated random strings (len {PROXY_LEN})"),
        &["step", "copy accuracy"],
    );
    for (s, a) in &evals {
        curve.row(vec![json!(s), json!(a)]);
    }
    curve.row(vec![json!("final val loss"), json!(base.val_loss())]);
    r.table(curve);

    let kv1_mean = crate::experiments::mean(&hkv.accuracy);
    let all_below = hp.gains.iter().all(|g| g.2 < 1.0);
    r.headline(
        "held-out copy-proxy loss (second half of x ⊕ x)",
        "before gains",
        hp.copy_loss_before,
        &format!("PEAR, K = {HEADLINE_K}"),
        hp.copy_loss_after,
        all_below && hp.copy_loss_after < hp.copy_loss_before,
        &format!("every learned gain τ < 1 (the detected heads are down-weighted, as the paper reports) and the held-out copy loss falls; K = {HEADLINE_K} was fixed in advance"),
    );
    let best = (0..kv0.accuracy.len())
        .max_by(|&i, &j| kv0.accuracy[i].total_cmp(&kv0.accuracy[j]))
        .unwrap_or(0);
    let others = (0..kv0.accuracy.len())
        .filter(|&i| i != best)
        .map(|i| kv0.accuracy[i])
        .fold(0.0, f64::max);
    r.note(format!(
        "Retrieval (kv_recall, mean over depths) before vs after K = {HEADLINE_K} gains: {kv0_mean:.4} vs {kv1_mean:.4}. The model copies by relative position (its copy windows always repeat at distance {PROXY_LEN}; content-addressed induction heads did not form within ~1500 steps in trials), so it retrieves mainly at the depth whose pair sits about {PROXY_LEN} tokens before the query (depth {}: {:.4} → {:.4}) and at most {others:.4} at the other depths: this transfer test is too weak to show the paper's downstream gain here.",
        depths[best], kv0.accuracy[best], hkv.accuracy[best]
    ));
    let positive = patched.heads.iter().flatten().filter(|&&d| d > 0.0).count();
    r.note(format!(
        "{positive} of {} heads have Δπ > 0 (mean-ablating their result at the query raises the copy logit: suppression candidates); clean π = {:.3}.",
        patched.heads.iter().map(Vec::len).sum::<usize>(),
        patched.clean_metric
    ));
    for (k, p, _, kv1) in &results {
        r.note(format!(
            "K = {k}: gains {} 1, copy loss {:.4} → {:.4}, retrieval {:.4} → {:.4}, folded export max relative logit difference {:.2e} with {} gain multiplications left.",
            if p.gains.iter().all(|g| g.2 < 1.0) { "all below" } else { "not all below" },
            p.copy_loss_before,
            p.copy_loss_after,
            kv0_mean,
            crate::experiments::mean(&kv1.accuracy),
            p.fold_max_rel_err,
            p.gain_ops_after_folding
        ));
    }
    r.note(format!("Scaled down from §11.12 #4 (D = 128, the grok-to-copy model): D = 64, L = 3, H = 4, ctx 64, 500 pretraining steps of 16 × 64 tokens on a synthetic Markov-plus-copies corpus; the copy proxy has n = {PROXY_LEN} (paper: 50) and detection uses one proxy setting (32 prompts) instead of the four (N, n) pairs of §4.2. Retrieval is measured zero-shot on `kv_recall` prompts (8 pairs, the query marker id 1 never seen in pretraining), a transfer test like the paper's MDQA."));
    Ok(())
}

/// `base` with each `(layer, head, τ)` written into `layers.{layer}.attn.gain`.
fn with_gains(base: &ParamStore, gains: &[(usize, usize, f64)]) -> ParamStore {
    let mut p = base.clone();
    for &(l, h, tau) in gains {
        let name = format!("layers.{l}.attn.gain");
        if let Some(t) = p.get(&name) {
            let mut v = t.to_f32_vec();
            v[h] = tau as f32;
            let shape = t.shape.clone();
            p.insert(name, Tensor::f32(&shape, v));
        }
    }
    p
}

/// Writes the pretraining corpus (see the module doc and the spec): `windows` windows of
/// `w` ids in `[2, VOCAB)`, each either a skip-bigram Markov window or a copy window
/// `s ⊕ s'` (s uniform, s' = s with a share NOISE of its tokens replaced by the Markov
/// continuation). The text source cuts training windows at multiples of `w`, so every training
/// row is one of these windows.
fn write_corpus(path: &Path, windows: usize, w: usize, seed: u64) -> Result<(), ReproError> {
    let mut rng = Rng::for_name(seed, "repro.pear.corpus");
    let span = u64::from(VOCAB - 2);
    let mut sigma: Vec<u8> = (2..VOCAB).collect();
    for i in (1..sigma.len()).rev() {
        sigma.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut out: Vec<u8> = Vec::with_capacity(windows * w);
    for _ in 0..windows {
        let mut win: Vec<u8> = (0..2).map(|_| 2 + rng.below(span) as u8).collect();
        let copy = rng.uniform() < COPY_SHARE;
        while win.len() < w {
            let i = win.len();
            let markov = sigma[usize::from(win[i - 2] - 2)];
            let next = if copy && i < w / 2 {
                2 + rng.below(span) as u8
            } else if copy {
                if rng.uniform() < NOISE {
                    markov
                } else {
                    win[i - w / 2]
                }
            } else if rng.uniform() < PRIOR {
                markov
            } else {
                2 + rng.below(span) as u8
            };
            win.push(next);
        }
        out.extend_from_slice(&win);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ReproError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    weft_runtime::tensor_file::write_atomic(path, &out).map_err(|source| ReproError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `p` made absolute (the data source resolves relative paths against the spec's folder).
fn absolute(p: &Path) -> Result<std::path::PathBuf, ReproError> {
    std::path::absolute(p).map_err(|source| ReproError::Io {
        path: p.to_path_buf(),
        source,
    })
}
