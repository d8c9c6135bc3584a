//! Retrieval prompts in words a pretrained LM reads: lists of "object: colour" lines and a
//! question about one of them, with the queried line at a chosen depth — the lost-in-the-middle
//! measurement the SmolLM2 experiments of MoICE and PEAR share.
//!
//! ```text
//! Each object has a color.
//! apple: red
//! lamp: blue
//! ...
//! Question: what color is the lamp?
//! Answer: lamp: → " blue"
//! ```

use super::mean;
use crate::lab::Pretrained;
use crate::{ReproError, Table};
use serde_json::json;
use weft_runtime::probes::readout::{argmax, prob};
use weft_runtime::probes::{logits, Model, ProbeError};
use weft_runtime::Rng;

/// Objects (keys): kept when one token at the start of a line and one after a space.
const OBJECTS: &[&str] = &[
    "apple", "river", "chair", "window", "garden", "bottle", "pencil", "mirror", "candle",
    "basket", "ladder", "blanket", "hammer", "violin", "rocket", "tunnel", "anchor", "helmet",
    "wallet", "carpet", "button", "saddle", "kettle", "lantern", "marble", "needle", "parrot",
    "pillow", "ribbon", "table", "door", "house", "horse", "train", "bridge", "flower", "tree",
    "phone", "clock", "shirt", "glass", "plate", "spoon", "knife", "shoe", "ball", "book", "cup",
    "lamp", "ring", "box", "car", "boat", "bird", "fish", "key", "coin", "hat", "bag", "bed",
];
/// Colours (values): kept when one token after a space.
const COLOURS: &[&str] = &[
    "red", "blue", "green", "black", "white", "brown", "pink", "gray", "gold", "silver", "orange",
    "purple", "yellow",
];

/// One retrieval prompt and its answer.
pub(super) struct Prompt {
    pub tokens: Vec<i32>,
    pub answer: i32,
}

/// The token pieces prompts are made of, checked against the tokenizer.
pub(super) struct Words {
    header: Vec<i32>,
    /// (at the start of a line, after a space).
    pub objects: Vec<(i32, i32)>,
    /// After a space.
    pub colours: Vec<i32>,
    colon: i32,
    newline: i32,
    question: Vec<i32>,
    answer: Vec<i32>,
}

impl Words {
    pub fn new(lm: &Pretrained) -> Result<Self, ReproError> {
        let enc = |s: &str| lm.encode(s);
        let one = |s: &str| -> Result<Option<i32>, ReproError> {
            let v = enc(s)?;
            Ok((v.len() == 1).then(|| v[0]))
        };
        // A line `apple: red\n` must be exactly [object, ':', ' red', '\n'].
        let line = enc("apple: red\n")?;
        let [_, colon, _, newline] = line[..] else {
            return Err(ReproError::Other(format!(
                "`apple: red\\n` is {} tokens for this tokenizer, not 4",
                line.len()
            )));
        };
        let mut objects = Vec::new();
        for o in OBJECTS {
            if let (Some(a), Some(b)) = (one(o)?, one(&format!(" {o}"))?) {
                if enc(&format!("{o}: red\n"))? == [a, colon, line[2], newline] {
                    objects.push((a, b));
                }
            }
        }
        let mut colours = Vec::new();
        for c in COLOURS {
            if let Some(v) = one(&format!(" {c}"))? {
                if enc(&format!("apple: {c}\n"))? == [line[0], colon, v, newline] {
                    colours.push(v);
                }
            }
        }
        if objects.len() < 8 || colours.len() < 4 {
            return Err(ReproError::Other(format!(
                "only {} objects and {} colours are single tokens for this tokenizer",
                objects.len(),
                colours.len()
            )));
        }
        Ok(Words {
            header: enc("Each object has a color.\n")?,
            objects,
            colours,
            colon,
            newline,
            question: enc("Question: what color is the")?,
            answer: enc("?\nAnswer:")?,
        })
    }

    /// `pairs` lines of distinct objects with uniform colours, then the question about the
    /// line at `depth` (0 = first, 1 = last; uniform when `None`). Every prompt of one
    /// `pairs` has the same length.
    pub fn prompt(&self, rng: &mut Rng, pairs: usize, depth: Option<f64>) -> Prompt {
        let mut objs: Vec<usize> = (0..self.objects.len()).collect();
        for i in (1..objs.len()).rev() {
            objs.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let colours: Vec<i32> = (0..pairs)
            .map(|_| self.colours[rng.below(self.colours.len() as u64) as usize])
            .collect();
        let q = match depth {
            Some(d) => (d * (pairs - 1) as f64).round() as usize,
            None => rng.below(pairs as u64) as usize,
        };
        let mut tokens = self.header.clone();
        for (o, c) in objs.iter().zip(&colours) {
            tokens.extend([self.objects[*o].0, self.colon, *c, self.newline]);
        }
        let asked = self.objects[objs[q]].1;
        tokens.extend(&self.question);
        tokens.push(asked);
        tokens.extend(&self.answer);
        tokens.extend([asked, self.colon]);
        Prompt {
            tokens,
            answer: colours[q],
        }
    }
}

/// Per depth and prompt: correct among the colours (1 or 0) and p(answer).
pub(super) struct Retrieval {
    pub correct: Vec<Vec<f64>>,
    pub p: Vec<Vec<f64>>,
}

pub(super) fn retrieval(
    model: &Model,
    eval: &[Vec<Prompt>],
    words: &Words,
) -> Result<Retrieval, ProbeError> {
    let mut out = Retrieval {
        correct: Vec::new(),
        p: Vec::new(),
    };
    for prompts in eval {
        let t = prompts[0].tokens.len();
        let tokens: Vec<i32> = prompts.iter().flat_map(|p| p.tokens.clone()).collect();
        let (mut correct, mut p) = (Vec::new(), Vec::new());
        model.run_in_batches(&tokens, t, 8, &[], |start, o| {
            let lg = logits(o)?;
            let v = *lg.shape.last().unwrap_or(&0);
            let x = lg.to_f64_vec();
            for b in 0..lg.shape[0] {
                let row = &x[(b * t + t - 1) * v..(b * t + t) * v];
                let answer = prompts[start + b].answer;
                let among: Vec<f64> = words.colours.iter().map(|&c| row[c as usize]).collect();
                correct.push(f64::from(u8::from(words.colours[argmax(&among)] == answer)));
                p.push(prob(row, answer as usize));
            }
            Ok(())
        })?;
        out.correct.push(correct);
        out.p.push(p);
    }
    Ok(out)
}

/// The held-out prompts every model of an experiment is measured on: `per_depth` prompts of
/// `pairs` lines at each depth, drawn from streams named by the depth (so MoICE's and PEAR's
/// are the same prompts, and their base models' numbers agree).
pub(super) fn eval_prompts(
    words: &Words,
    seed: u64,
    pairs: usize,
    depths: &[f64],
    per_depth: usize,
) -> Vec<Vec<Prompt>> {
    depths
        .iter()
        .map(|&d| {
            let mut rng = Rng::for_name(seed, &format!("repro.moice.eval.{d}"));
            (0..per_depth)
                .map(|_| words.prompt(&mut rng, pairs, Some(d)))
                .collect()
        })
        .collect()
}

/// Mean of every entry of `rows`.
pub(super) fn mean_of(rows: &[Vec<f64>]) -> f64 {
    let all: Vec<f64> = rows.iter().flatten().copied().collect();
    mean(&all)
}

/// Accuracy and p(answer) against the queried line's depth: the model as it is, each seed of
/// `method` (`runs`: seed and its retrieval), and the method's means over the seeds.
pub(super) fn depth_table(
    method: &str,
    depths: &[f64],
    base: &Retrieval,
    runs: &[(u64, &Retrieval)],
    (per_depth, pairs, t): (usize, usize, usize),
) -> Table {
    let mut cols = vec![
        "depth".to_string(),
        "base acc".into(),
        "base p(answer)".into(),
    ];
    cols.extend(
        runs.iter()
            .map(|(seed, _)| format!("{method} seed {seed} acc")),
    );
    cols.push(format!("{method} acc (mean)"));
    cols.push(format!("{method} p(answer) (mean)"));
    let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut tab = Table::new(
        &format!(
            "Retrieval against the queried line's depth ({per_depth} prompts per depth, {pairs} \
             lines, {t} tokens; 0 = first line, 1 = last; accuracy among the colour tokens)"
        ),
        &refs,
    );
    let seeds_mean = |f: &dyn Fn(&Retrieval) -> f64| {
        runs.iter().map(|(_, r)| f(r)).sum::<f64>() / runs.len() as f64
    };
    for (d, &depth) in depths.iter().enumerate() {
        let mut row = vec![
            json!(depth),
            json!(mean(&base.correct[d])),
            json!(mean(&base.p[d])),
        ];
        row.extend(runs.iter().map(|(_, r)| json!(mean(&r.correct[d]))));
        row.push(json!(seeds_mean(&|r| mean(&r.correct[d]))));
        row.push(json!(seeds_mean(&|r| mean(&r.p[d]))));
        tab.row(row);
    }
    tab
}
