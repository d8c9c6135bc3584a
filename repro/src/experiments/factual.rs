//! Factual recall (METHODS §8, §11.12 #8) on a pretrained LM, as the paper does it:
//! SmolLM2-135M-Instruct, imported from its GGUF file, taken apart on capital-city prompts
//! ("The capital of France is" → " Paris"). Only the facts the model gets right are used
//! (greedy next token at the last prompt position, measured first). Corrupted prompts swap the
//! country for another one. Path patching (corrupted-country batch mean, q/k/v frozen) finds
//! the heads whose removal lowers the answer logit; their attention from the last position to
//! the country and their direct logit attribution say whether they move the subject. Every
//! layer's MLP output is decomposed into shared weights over the layer's head results and
//! `resid_pre` plus an intercept (the regression view). A logit lens tracks p(answer) and
//! p(country) over the layers. The headline is §8.6's final-layer effect: p(answer) of the
//! model as it is against p(answer) with the last layer's attention restricted to each
//! position itself (the paper's mitigation; intercept removal is reported beside it), with the
//! spread over prompts deciding.

use super::copy_recipe::spread;
use crate::lab::Pretrained;
use crate::{Lab, Report, ReproError, Table};
use serde_json::json;
use std::collections::BTreeMap;
use weft_runtime::probes::final_layer::{
    final_layer, last_layer_run, FinalIntervention, FinalLayerConfig, LastLayerChange,
};
use weft_runtime::probes::linalg::dot;
use weft_runtime::probes::mlp_decomposition::{mlp_decomposition, DecompositionData};
use weft_runtime::probes::path_patching::{path_patching, PatchingData};
use weft_runtime::probes::readout::{argmax, prob, Readout};
use weft_runtime::probes::{hook, logits, Model, ProbeError};
use weft_runtime::rundir::{trace_kind, RunFiles, Trace};
use weft_runtime::{Rng, Tensor};

/// The criterion, fixed before the final run (its commit is named in the report).
const CRITERION: &str = include_str!("../../criteria/factual.txt");

/// Countries and their capitals. Only countries that are one token (with the leading space)
/// are used, so a corrupted prompt has the clean prompt's length; the answer token is the
/// first token of " capital".
const CAPITALS: &[(&str, &str)] = &[
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Russia", "Moscow"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Hungary", "Budapest"),
    ("Thailand", "Bangkok"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Cuba", "Havana"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Syria", "Damascus"),
    ("Lebanon", "Beirut"),
    ("Argentina", "Buenos Aires"),
    ("Chile", "Santiago"),
    ("Colombia", "Bogotá"),
    ("Venezuela", "Caracas"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("India", "New Delhi"),
    ("Pakistan", "Islamabad"),
    ("Indonesia", "Jakarta"),
    ("Vietnam", "Hanoi"),
    ("Turkey", "Ankara"),
    ("Ukraine", "Kyiv"),
    ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"),
    ("Switzerland", "Bern"),
    ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"),
    ("Morocco", "Rabat"),
    ("Nigeria", "Abuja"),
    ("Ethiopia", "Addis Ababa"),
    ("Ghana", "Accra"),
    ("Philippines", "Manila"),
    ("Malaysia", "Kuala Lumpur"),
    ("Brazil", "Brasília"),
    ("Qatar", "Doha"),
    ("Nepal", "Kathmandu"),
    ("Iceland", "Reykjavik"),
    ("Scotland", "Edinburgh"),
    ("England", "London"),
    ("Jamaica", "Kingston"),
    ("Afghanistan", "Kabul"),
    ("Bangladesh", "Dhaka"),
    ("Algeria", "Algiers"),
    ("Tunisia", "Tunis"),
    ("Libya", "Tripoli"),
    ("Sudan", "Khartoum"),
    ("Uganda", "Kampala"),
    ("Zimbabwe", "Harare"),
    ("Senegal", "Dakar"),
    ("Estonia", "Tallinn"),
    ("Latvia", "Riga"),
    ("Lithuania", "Vilnius"),
    ("Georgia", "Tbilisi"),
    ("Armenia", "Yerevan"),
    ("Jordan", "Amman"),
    ("Oman", "Muscat"),
    ("Mongolia", "Ulaanbaatar"),
];

/// Prompt templates (METHODS §8.2: "… the capital of [N] is" with prefixes): text before the
/// country and after it.
const TEMPLATES: &[(&str, &str)] = &[
    ("The capital of", " is"),
    ("Keep in mind, the capital of", " is"),
    ("As everyone knows, the capital of", " is"),
    ("Fun fact: the capital of", " is"),
    ("Remember that the capital of", " is"),
    ("In geography class we learned that the capital of", " is"),
];

/// One prompt: its ids, where the country sits, the country and answer ids.
#[derive(Clone)]
struct Fact {
    tokens: Vec<i32>,
    subject_at: usize,
    subject: i32,
    answer: i32,
    template: usize,
}

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let lm = lab.smollm2()?;
    let run = lab.probe_run("smollm2", &lm.spec.source)?;
    let model = lab.model(&lm.spec, &lm.params);
    let (layers, heads) = (model.layers(), model.heads());
    let (countries, templates) = (lab.pick(CAPITALS.len(), 12), lab.pick(TEMPLATES.len(), 2));
    let cands = candidates(&lm, countries, templates)?;
    let judged = lab.probe("which facts SmolLM2 knows", || known(&model, &cands))?;

    let mut known_t = Table::new(
        "Which facts the model knows (greedy next token = the capital's first token)",
        &["template", "prompt tokens", "prompts", "answered correctly"],
    );
    for (i, (pre, post)) in TEMPLATES.iter().enumerate().take(templates) {
        let of: Vec<&(Fact, bool)> = judged.iter().filter(|(f, _)| f.template == i).collect();
        known_t.row(vec![
            json!(format!("{pre} [country]{post}")),
            json!(of.first().map_or(0, |(f, _)| f.tokens.len())),
            json!(of.len()),
            json!(of.iter().filter(|(_, ok)| *ok).count()),
        ]);
    }
    r.table(known_t);

    // The prompts: known facts of the most common length (clean and corrupted prompts must
    // share one length), in a seeded order.
    let samples = lab.pick(32, 4);
    let mut by_len: BTreeMap<usize, Vec<Fact>> = BTreeMap::new();
    for (f, ok) in &judged {
        if *ok {
            by_len.entry(f.tokens.len()).or_default().push(f.clone());
        }
    }
    let (t, mut chosen) = by_len
        .into_iter()
        .max_by_key(|(len, v)| (v.len(), usize::MAX - len))
        .ok_or_else(|| ReproError::Other("SmolLM2 answered none of the facts".into()))?;
    let mut rng = Rng::for_name(lab.seed(), "repro.factual.prompts");
    for i in (1..chosen.len()).rev() {
        chosen.swap(i, rng.below(i as u64 + 1) as usize);
    }
    chosen.truncate(samples);
    let n = chosen.len();
    let mut pool: Vec<i32> = cands.iter().map(|f| f.subject).collect();
    pool.sort_unstable();
    pool.dedup();
    let clean: Vec<i32> = chosen.iter().flat_map(|f| f.tokens.clone()).collect();
    let corrupted: Vec<i32> = chosen
        .iter()
        .flat_map(|f| {
            let mut c = f.tokens.clone();
            let others: Vec<i32> = pool.iter().copied().filter(|&s| s != f.subject).collect();
            c[f.subject_at] = others[rng.below(others.len() as u64) as usize];
            c
        })
        .collect();
    let answers: Vec<i32> = chosen.iter().map(|f| f.answer).collect();
    let prompts = DecompositionData {
        tokens: clean.clone(),
        seq: t,
        query: -1,
        answers: answers.clone(),
        subjects: chosen.iter().map(|f| f.subject).collect(),
    };
    let patch = PatchingData {
        clean,
        corrupted: Some(corrupted),
        seq: t,
        query: -1,
        answers,
    };

    // A. Path patching: Δπ per head (negative: the head carries the answer).
    let pp = lab.probe("path patching (facts, corrupted)", || {
        path_patching(&model, &patch)
    })?;
    let (att, dla_ans, dla_sub, patterns) = lab.probe("heads at the last position", || {
        per_head(&model, &prompts, &chosen)
    })?;

    let mut order: Vec<(usize, usize)> = (0..layers)
        .flat_map(|l| (0..heads).map(move |h| (l, h)))
        .collect();
    order.sort_by(|a, b| pp.heads[a.0][a.1].total_cmp(&pp.heads[b.0][b.1]));
    let mut heads_t = Table::new(
        &format!(
            "Heads at the last prompt position, the 12 lowest and the 4 highest Δπ of {} ({n} clean/corrupted fact prompts of {t} tokens)",
            layers * heads
        ),
        &[
            "head",
            "Δπ (corrupted-mean patch)",
            "attention to the country",
            "DLA to answer",
            "DLA to country",
        ],
    );
    let shown = order
        .iter()
        .take(12)
        .chain(order.iter().skip(order.len().saturating_sub(4).max(12)));
    for &(l, h) in shown {
        heads_t.row(vec![
            json!(format!("{l}.{h}")),
            json!(pp.heads[l][h]),
            json!(att[l][h]),
            json!(dla_ans[l][h]),
            json!(dla_sub[l][h]),
        ]);
    }
    r.table(heads_t);
    let mut mlp_pp = Table::new(
        "Path patching of MLP outputs at the last position (Δπ)",
        &["layer", "Δπ"],
    );
    for (l, d) in pp.mlp.iter().enumerate() {
        mlp_pp.row(vec![json!(l), json!(d)]);
    }
    r.table(mlp_pp);

    // B. MLP decomposition: every layer (quick mode: the strongest head's layer and the last
    // two).
    let (ml, mh) = order[0];
    let (late, last) = (layers.saturating_sub(2), layers - 1);
    let fit_layers: Vec<usize> = if lab.quick() {
        let mut v = vec![ml, late, last];
        v.sort_unstable();
        v.dedup();
        v
    } else {
        (0..layers).collect()
    };
    let mut cols: Vec<String> = vec!["layer".into()];
    cols.extend((0..heads).map(|h| format!("w head {h}")));
    cols.extend(
        [
            "w resid_pre",
            "relative error",
            "‖b‖",
            "cos(P b, u_answer − u_country)",
            "cos(P' b, ū − u_answer)",
        ]
        .map(String::from),
    );
    let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut decomp = Table::new(
        "MLP output ≈ Σ w_i · (head result i) + w · resid_pre + b at the last position",
        &col_refs,
    );
    let mut fits = BTreeMap::new();
    for &l in &fit_layers {
        let f = lab.probe("mlp decomposition", || {
            mlp_decomposition(&model, l, &prompts)
        })?;
        let mut row = vec![json!(l)];
        row.extend(f.fit.weights.iter().enumerate().map(|(i, w)| {
            if f.fit.constant.contains(&i) {
                json!("constant (in b)")
            } else {
                json!(w)
            }
        }));
        row.extend([
            json!(f.fit.relative_error),
            json!(f.intercept_norm),
            json!(f.intercept_toward_answer),
            json!(f.intercept_toward_generic),
        ]);
        decomp.row(row);
        fits.insert(l, f);
    }
    r.table(decomp);

    // Logit lens over the layers.
    let lens = lab.probe("logit lens on facts", || logit_lens(&model, &prompts))?;
    let mut lens_t = Table::new(
        "Logit lens at the last position (final norm + unembedding of each point)",
        &["point", "p(answer)", "p(country)"],
    );
    for (name, pa, ps) in &lens {
        lens_t.row(vec![json!(name), json!(pa), json!(ps)]);
    }
    r.table(lens_t);

    // D. The final layer: both interventions, and per prompt for the spread.
    let mut finals = Vec::new();
    for iv in [
        FinalIntervention::SelfOnly,
        FinalIntervention::RemoveIntercept,
    ] {
        finals.push(lab.probe("final layer", || {
            final_layer(
                &model,
                &FinalLayerConfig {
                    intervention: iv,
                    prompts: prompts.clone(),
                },
            )
        })?);
    }
    let per_prompt = |change: &LastLayerChange| {
        lab.probe("final layer, per prompt", || {
            let run = last_layer_run(&model, &prompts, change)?;
            Ok(run
                .logits
                .iter()
                .zip(&prompts.answers)
                .map(|(lg, &a)| prob(lg, a as usize))
                .collect::<Vec<f64>>())
        })
    };
    let before = per_prompt(&LastLayerChange::None)?;
    let after = per_prompt(&LastLayerChange::SelfOnly)?;
    let diff: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let (md, sd, se) = spread(&diff);
    let opt = |x: Option<f64>| x.map_or(json!("n/a"), |v| json!(v));
    let mut fin = Table::new(
        &format!("Final layer (layer {last}): before vs after the intervention"),
        &[
            "intervention",
            "p(answer) before",
            "p(answer) after",
            "accuracy before",
            "accuracy after",
            "rank before",
            "rank after",
            "entropy before",
            "entropy after",
            "p(answer) at resid_mid",
            "cos(P b, ū)",
            "cos(P b, ū − u_answer)",
        ],
    );
    for f in &finals {
        fin.row(vec![
            json!(match f.intervention {
                FinalIntervention::SelfOnly => "self_only attention",
                FinalIntervention::RemoveIntercept => "remove MLP intercept",
            }),
            json!(f.p_answer_before),
            json!(f.p_answer_after),
            json!(f.accuracy_before),
            json!(f.accuracy_after),
            json!(f.rank_before),
            json!(f.rank_after),
            json!(f.entropy_before),
            json!(f.entropy_after),
            json!(f.p_answer_mid_before),
            opt(f.intercept_toward_mean),
            opt(f.intercept_toward_generic),
        ]);
    }
    r.table(fin);
    let mut spread_t = Table::new(
        &format!("Self-only final layer, per prompt ({n} prompts)"),
        &[
            "mean p(answer) as is",
            "mean p(answer) self-only",
            "mean difference",
            "sd",
            "SE",
            "prompts where it rises",
        ],
    );
    spread_t.row(vec![
        json!(crate::experiments::mean(&before)),
        json!(crate::experiments::mean(&after)),
        json!(md),
        json!(sd),
        json!(se),
        json!(diff.iter().filter(|d| **d > 0.0).count()),
    ]);
    r.table(spread_t);

    let so = &finals[0];
    let w = fits.get(&ml).map_or(f64::NAN, |f| f.fit.weights[mh]);
    let p_before_last = lens
        .iter()
        .find(|x| x.0 == format!("layers.{late}.resid_post"))
        .map_or(f64::NAN, |x| x.1);
    let seen = |b: bool| json!(if b { "seen" } else { "not seen" });
    let mut check = Table::new(
        "§11.12 #8 expectations",
        &["expectation", "measured", "value", "seen"],
    );
    check.row(vec![
        json!("mover heads at the last position attend to the subject"),
        json!(format!(
            "attention to the country of head {ml}.{mh}, the largest Δπ < 0 (> 0.3 counts)"
        )),
        json!(att[ml][mh]),
        seen(pp.heads[ml][mh] < 0.0 && att[ml][mh] > 0.3),
    ]);
    check.row(vec![
        json!("regression weight w > 0 for mover heads"),
        json!(format!(
            "w of head {ml}.{mh} in layer {ml}'s MLP decomposition"
        )),
        json!(w),
        seen(w > 0.0),
    ]);
    let toward_late = fits
        .get(&late)
        .map_or(f64::NAN, |f| f.intercept_toward_answer);
    check.row(vec![
        json!("a late MLP's intercept is aligned with u_answer − u_subject"),
        json!(format!(
            "cos(P b, u_answer − u_country) of layer {late} (the last but one)"
        )),
        json!(toward_late),
        seen(toward_late > 0.0),
    ]);
    check.row(vec![
        json!("the final layer's intercept points to generic tokens, away from the answer"),
        json!("cos(P b, ū − u_answer) of the last layer"),
        opt(so.intercept_toward_generic),
        seen(so.intercept_toward_generic.is_some_and(|c| c > 0.0)),
    ]);
    check.row(vec![
        json!("the final layer lowers p(answer)"),
        json!(format!(
            "p(answer) after layer {late} vs after the last layer (logit lens)"
        )),
        json!(format!("{p_before_last:.4} → {:.4}", so.p_answer_before)),
        seen(so.p_answer_before < p_before_last),
    ]);
    r.table(check);

    r.headline(
        "p(answer) at the last prompt position (SmolLM2-135M-Instruct, facts it knows)",
        "model as it is",
        crate::experiments::mean(&before),
        "last layer self-only",
        crate::experiments::mean(&after),
        md > 2.0 * se && md > 0.0,
        CRITERION.trim(),
    );

    let ri = &finals[1];
    let (p_mid, p_out) = (so.p_answer_mid_before, so.p_answer_before);
    r.note(format!(
        "The final layer in two parts: after its attention (resid_mid) p(answer) is {p_mid:.4}, after its MLP {p_out:.4}; the MLP {} the answer, and the attention's share is what self-only attention removes ({md:+.4}).",
        if p_out > p_mid { "raises" } else { "lowers" }
    ));
    let constant: Vec<String> = fits
        .iter()
        .filter(|(_, f)| !f.fit.constant.is_empty())
        .map(|(l, f)| format!("layer {l}: {:?}", f.fit.constant))
        .collect();
    if !constant.is_empty() {
        r.note(format!(
            "Components that do not vary over the prompts get weight 0 in the MLP decomposition and are held by its intercept (index {heads} is resid_pre): {}.",
            constant.join("; ")
        ));
    }
    r.note(format!(
        "Final layer: self-only attention changes p(answer) by {md:+.4} on average (2·SE = {:.4}, rises on {} of {n} prompts); removing the fitted intercept of its MLP gives {:.4} (from {:.4}); p(answer) at its resid_mid is {:.4}.",
        2.0 * se,
        diff.iter().filter(|d| **d > 0.0).count(),
        ri.p_answer_after,
        ri.p_answer_before,
        so.p_answer_mid_before
    ));
    r.note(format!(
        "Strongest head by path patching: {ml}.{mh} (Δπ {:+.3}, attention to the country {:.3}, DLA to answer {:+.3}, to the country {:+.3}).",
        pp.heads[ml][mh], att[ml][mh], dla_ans[ml][mh], dla_sub[ml][mh]
    ));
    let movers: Vec<String> = order
        .iter()
        .filter(|&&(l, h)| pp.heads[l][h] < 0.0 && att[l][h] > 0.3)
        .map(|(l, h)| format!("{l}.{h}"))
        .collect();
    r.note(format!(
        "Heads with Δπ < 0 that put > 0.3 of their attention on the country (mover heads): {}.",
        if movers.is_empty() {
            "none".to_string()
        } else {
            movers.join(", ")
        }
    ));
    let suppressors: Vec<String> = (0..heads)
        .filter(|&h| pp.heads[last][h] > 0.0 && dla_ans[last][h] < 0.0)
        .map(|h| {
            format!(
                "{last}.{h} (Δπ {:+.3}, DLA {:+.3})",
                pp.heads[last][h], dla_ans[last][h]
            )
        })
        .collect();
    r.note(format!(
        "Final-layer heads that push against the answer (Δπ > 0 and negative DLA to the answer): {}.",
        if suppressors.is_empty() {
            "none".to_string()
        } else {
            suppressors.join(", ")
        }
    ));
    r.note(format!(
        "Model: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to f32; {layers} layers, {heads} query heads). Prompts: {n} of the capital-city facts it answers correctly, all {t} tokens long (the most common length among them; corrupted prompts swap the country for another single-token country). ū is the uniform mean unembedding row (weft has no corpus token counts). OV copy scores are not reported."
    ));

    // A run directory the viewer opens: the patching scores and the attention of the
    // strongest head's layer and of the last layer on the prompts.
    let text: Vec<String> = chosen[0]
        .tokens
        .iter()
        .map(|&id| lm.tokenizer.decode(&[id as u32]).unwrap_or_default())
        .collect();
    write_traces(&run, &pp.heads, &patterns, &prompts, &text, &[ml, last])?;
    Ok(())
}

/// Prompts for `countries × templates` facts whose country is one token; the whole prompt
/// must tokenize to the concatenation of its parts (so the country's position is known).
fn candidates(
    lm: &Pretrained,
    countries: usize,
    templates: usize,
) -> Result<Vec<Fact>, ReproError> {
    let enc = |s: &str| lm.encode(s);
    let mut out = Vec::new();
    for (ti, (pre, post)) in TEMPLATES.iter().enumerate().take(templates) {
        let (a, b) = (enc(pre)?, enc(post)?);
        for (country, capital) in CAPITALS.iter().take(countries) {
            let c = enc(&format!(" {country}"))?;
            let ans = enc(&format!(" {capital}"))?;
            if c.len() != 1 || ans.is_empty() {
                continue;
            }
            let tokens: Vec<i32> = a.iter().chain(&c).chain(&b).copied().collect();
            if enc(&format!("{pre} {country}{post}"))? != tokens {
                continue;
            }
            out.push(Fact {
                subject_at: a.len(),
                subject: c[0],
                answer: ans[0],
                tokens,
                template: ti,
            });
        }
    }
    if out.is_empty() {
        return Err(ReproError::Other(
            "no country of the facts list is a single token for this tokenizer".into(),
        ));
    }
    Ok(out)
}

/// Each candidate with whether the model's greedy next token is the answer.
fn known(model: &Model, cands: &[Fact]) -> Result<Vec<(Fact, bool)>, ProbeError> {
    let mut by_len: BTreeMap<usize, Vec<&Fact>> = BTreeMap::new();
    for f in cands {
        by_len.entry(f.tokens.len()).or_default().push(f);
    }
    let mut out = Vec::new();
    for (t, facts) in by_len {
        let tokens: Vec<i32> = facts.iter().flat_map(|f| f.tokens.clone()).collect();
        model.run_in_batches(&tokens, t, 32, &[], |start, o| {
            let lg = logits(o)?;
            let v = *lg.shape.last().unwrap_or(&0);
            let x = lg.to_f64_vec();
            for b in 0..lg.shape[0] {
                let f = facts[start + b];
                let row = &x[(b * t + t - 1) * v..(b * t + t) * v];
                out.push((f.clone(), argmax(row) == f.answer as usize));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

type PerHead = (
    Vec<Vec<f64>>,
    Vec<Vec<f64>>,
    Vec<Vec<f64>>,
    BTreeMap<usize, Tensor>,
);

/// Per head at the last position: attention to the country, and the head's direct logit
/// attribution to the answer and to the country (through the final norm frozen at the
/// output); also every layer's attention pattern.
fn per_head(model: &Model, p: &DecompositionData, facts: &[Fact]) -> Result<PerHead, ProbeError> {
    let (layers, heads) = (model.layers(), model.heads());
    let (n, t) = (p.answers.len(), p.seq);
    let g = model.lower(n, t, &["layers.*.attn.pattern", "layers.*.attn.result"])?;
    let last = format!("layers.{}.resid_post", layers - 1);
    let out = model.run(
        &g,
        &p.tokens,
        &[
            "layers.*.attn.pattern",
            "layers.*.attn.result",
            last.as_str(),
        ],
        &[],
    )?;
    let ro = Readout::of(model)?;
    let d = ro.dim;
    let fin = hook(&out, &last)?.to_f64_vec();
    let mut att = vec![vec![0.0; heads]; layers];
    let mut dla_ans = vec![vec![0.0; heads]; layers];
    let mut dla_sub = vec![vec![0.0; heads]; layers];
    let mut patterns = BTreeMap::new();
    let (ua, us): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (0..n)
        .map(|b| {
            (
                ro.contrast(p.answers[b] as usize),
                ro.contrast(p.subjects[b] as usize),
            )
        })
        .unzip();
    for l in 0..layers {
        let pat_t = hook(&out, &format!("layers.{l}.attn.pattern"))?;
        let pat = pat_t.to_f64_vec();
        let res = hook(&out, &format!("layers.{l}.attn.result"))?.to_f64_vec();
        for (b, f) in facts.iter().enumerate().take(n) {
            let x = &fin[(b * t + t - 1) * d..(b * t + t) * d];
            for h in 0..heads {
                att[l][h] += pat[((b * heads + h) * t + t - 1) * t + f.subject_at] / n as f64;
                let at = ((b * t + t - 1) * heads + h) * d;
                let c = ro.through_frozen_norm(&res[at..at + d], x);
                dla_ans[l][h] += dot(&c, &ua[b]) / n as f64;
                dla_sub[l][h] += dot(&c, &us[b]) / n as f64;
            }
        }
        patterns.insert(l, pat_t.clone());
    }
    Ok((att, dla_ans, dla_sub, patterns))
}

/// `(point, p(answer), p(country))` at the last position after the embedding and after every
/// layer, and at the last layer's `resid_mid`.
fn logit_lens(model: &Model, p: &DecompositionData) -> Result<Vec<(String, f64, f64)>, ProbeError> {
    let (n, t, layers) = (p.answers.len(), p.seq, model.layers());
    let g = model.lower(n, t, &[])?;
    let mut names = vec!["embed".to_string()];
    names.extend((0..layers).map(|l| format!("layers.{l}.resid_post")));
    names.insert(layers, format!("layers.{}.resid_mid", layers - 1));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = model.run(&g, &p.tokens, &refs, &[])?;
    let ro = Readout::of(model)?;
    let d = ro.dim;
    let mut rows = Vec::new();
    for name in &names {
        let v = hook(&out, name)?.to_f64_vec();
        let (mut pa, mut ps) = (0.0, 0.0);
        for b in 0..n {
            let lg = ro.logits(&v[(b * t + t - 1) * d..(b * t + t) * d]);
            pa += prob(&lg, p.answers[b] as usize) / n as f64;
            ps += prob(&lg, p.subjects[b] as usize) / n as f64;
        }
        rows.push((name.clone(), pa, ps));
    }
    Ok(rows)
}

/// Writes the path-patching head scores and the attention patterns of `layers` to `run`.
fn write_traces(
    run: &RunFiles,
    scores: &[Vec<f64>],
    patterns: &BTreeMap<usize, Tensor>,
    p: &DecompositionData,
    text: &[String],
    layers: &[usize],
) -> Result<(), ReproError> {
    let io = |source| ReproError::Io {
        path: run.root().to_path_buf(),
        source,
    };
    let axes = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (l, h) = (scores.len(), scores.first().map_or(0, Vec::len));
    let flat: Vec<f32> = scores.iter().flatten().map(|&x| x as f32).collect();
    let mut attrs = serde_json::Map::new();
    attrs.insert("score".into(), "path patching Δπ".into());
    run.write_trace(&Trace {
        name: "path_patching".into(),
        kind: trace_kind::HEAD_SCORES.into(),
        step: 0,
        tensors: BTreeMap::from([("scores".into(), Tensor::f32(&[l, h], flat))]),
        axes: BTreeMap::from([("scores".into(), axes(&["layer", "head"]))]),
        attrs,
    })
    .map_err(io)?;
    let tokens = Tensor::i32(&[p.answers.len(), p.seq], p.tokens.clone());
    let mut seen = Vec::new();
    for &layer in layers {
        let Some(pat) = patterns.get(&layer).filter(|_| !seen.contains(&layer)) else {
            continue;
        };
        seen.push(layer);
        let mut attrs = serde_json::Map::new();
        attrs.insert("layer".into(), layer.into());
        attrs.insert("token_text".into(), text.into());
        run.write_trace(&Trace {
            name: format!("layers.{layer}.attn.pattern"),
            kind: trace_kind::ATTENTION.into(),
            step: 0,
            tensors: BTreeMap::from([
                ("pattern".into(), pat.clone()),
                ("tokens".into(), tokens.clone()),
            ]),
            axes: BTreeMap::from([("pattern".into(), axes(&["batch", "head", "query", "key"]))]),
            attrs,
        })
        .map_err(io)?;
    }
    Ok(())
}
