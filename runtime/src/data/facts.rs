//! Templated facts ("the capital of C_i is K_i") with filler and corrupted twins.

use super::{
    content_rng, eval_in_batches, Batch, DataError, DataSource, Sample, BOS, EVAL_SEQUENCES,
};
use crate::init::Rng;

/// Fact templates; `S` is the subject slot. Every template ends at its answer, so the answer is
/// predicted at the template's last position (the factual-recall probes read that position).
const TEMPLATES: &[&str] = &[
    "the capital of S is",
    "S has its capital in",
    "in S the capital city is",
    "the capital city of S is",
    "people of S call their capital",
    "S is governed from",
    "the seat of government of S is",
    "if you visit S you should see its capital",
    "the main city of S is",
    "the government of S sits in",
    "travellers to S arrive in its capital",
    "the largest city of S is",
];

/// Filler sentences put between facts.
const FILLER: &[&str] = &[
    "the weather was fine today .",
    "a small dog ran across the road .",
    "we talked for a long time .",
    "the river is wide and slow .",
    "some people like to read books .",
    "it rained all night .",
    "the old man sat near the window .",
    "children play in the park .",
    "the market opens early .",
    "she wrote a long letter .",
];

/// `facts(pairs, templates)`: `pairs` subject tokens `C_i` each with an answer token `K_i`,
/// stated with the first `templates` templates. A training row is BOS then facts (each
/// `template(C_i) K_i .`, the answer token being answer segment j for the row's j-th fact),
/// each after 0–2 filler sentences, as many as fit. Word-level ids: words from 2, then
/// subjects, then answers.
#[derive(Clone, Debug)]
pub struct Facts {
    pub pairs: usize,
    pub templates: usize,
    pub vocab: usize,
    seed: u64,
    words: Vec<&'static str>,
}

/// A prompt and its corrupted twin: the same template and filler with another subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactPrompt {
    /// `BOS filler… template(C_i)`, ending where `K_i` is predicted.
    pub clean: Vec<i32>,
    /// The same with subject `C_j`, `j ≠ i`.
    pub corrupted: Vec<i32>,
    /// Index of the subject token in both prompts.
    pub subject_pos: usize,
    pub template: usize,
    /// Subject indices `i` and `j`.
    pub subject: usize,
    pub corrupted_subject: usize,
    /// Answer ids `K_i` and `K_j`.
    pub answer: i32,
    pub corrupted_answer: i32,
}

impl FactPrompt {
    /// The clean prompt followed by its answer, as a sample (answer segment 0).
    pub fn sample(&self) -> Sample {
        let mut s = Sample::new();
        s.extend_prompt(&self.clean, 0, 0);
        s.extend_answer(&[self.answer], 0, 0, 0);
        s
    }
}

impl Facts {
    pub fn new(pairs: usize, templates: usize, vocab: usize, seed: u64) -> Result<Self, DataError> {
        if pairs < 2 {
            return Err(DataError::config(
                "pairs",
                "must be at least 2 (corrupted twins need another subject)",
            ));
        }
        if templates == 0 || templates > TEMPLATES.len() {
            return Err(DataError::config(
                "templates",
                format!(
                    "= {templates}; between 1 and {} are built in",
                    TEMPLATES.len()
                ),
            ));
        }
        let mut words: Vec<&'static str> = TEMPLATES
            .iter()
            .chain(FILLER)
            .flat_map(|s| s.split(' '))
            .filter(|w| *w != "S")
            .collect();
        words.sort_unstable();
        words.dedup();
        let need = 2 + words.len() + 2 * pairs;
        if need > vocab {
            return Err(DataError::config(
                "vocab",
                format!("= {vocab}; {} words + {pairs} subjects + {pairs} answers + 2 reserved need {need}", words.len()),
            ));
        }
        Ok(Facts {
            pairs,
            templates,
            vocab,
            seed,
            words,
        })
    }

    fn word(&self, w: &str) -> i32 {
        2 + self
            .words
            .binary_search(&w)
            .expect("template words are in the vocabulary") as i32
    }

    /// The id of subject `C_i`.
    pub fn subject_token(&self, i: usize) -> i32 {
        (2 + self.words.len() + i) as i32
    }

    /// The id of answer `K_i`.
    pub fn answer_token(&self, i: usize) -> i32 {
        (2 + self.words.len() + self.pairs + i) as i32
    }

    fn filler(&self, rng: &mut Rng, out: &mut Vec<i32>) {
        for _ in 0..rng.below(3) {
            let s = FILLER[rng.below(FILLER.len() as u64) as usize];
            out.extend(s.split(' ').map(|w| self.word(w)));
        }
    }

    /// `template(subject)` ids and the subject's offset in them.
    fn statement(&self, template: usize, subject: usize) -> (Vec<i32>, usize) {
        let mut ids = Vec::new();
        let mut at = 0;
        for w in TEMPLATES[template].split(' ') {
            if w == "S" {
                at = ids.len();
                ids.push(self.subject_token(subject));
            } else {
                ids.push(self.word(w));
            }
        }
        (ids, at)
    }

    /// A clean / corrupted prompt pair for patching.
    pub fn prompt_pair(&self, rng: &mut Rng) -> FactPrompt {
        let template = rng.below(self.templates as u64) as usize;
        let subject = rng.below(self.pairs as u64) as usize;
        let other = (subject + 1 + rng.below(self.pairs as u64 - 1) as usize) % self.pairs;
        let mut clean = vec![BOS];
        self.filler(rng, &mut clean);
        let (stmt, at) = self.statement(template, subject);
        let subject_pos = clean.len() + at;
        clean.extend(stmt);
        let mut corrupted = clean.clone();
        corrupted[subject_pos] = self.subject_token(other);
        FactPrompt {
            clean,
            corrupted,
            subject_pos,
            template,
            subject,
            corrupted_subject: other,
            answer: self.answer_token(subject),
            corrupted_answer: self.answer_token(other),
        }
    }

    /// A training row of up to `cap` tokens (at least one fact, even if it overflows: then
    /// [`Batch::from_samples`] reports that `seq` is too short).
    pub fn sample(&self, rng: &mut Rng, cap: usize) -> Sample {
        let mut s = Sample::new();
        s.push(BOS, -1, 0, 0);
        for k in 0.. {
            let mut prompt = Vec::new();
            self.filler(rng, &mut prompt);
            let template = rng.below(self.templates as u64) as usize;
            let subject = rng.below(self.pairs as u64) as usize;
            prompt.extend(self.statement(template, subject).0);
            if k > 0 && s.len() + prompt.len() + 2 > cap {
                break;
            }
            s.extend_prompt(&prompt, 0, 0);
            s.extend_answer(&[self.answer_token(subject)], k, 0, 0);
            s.push(self.word("."), -1, 0, 0);
        }
        s
    }
}

impl DataSource for Facts {
    fn describe(&self) -> String {
        format!(
            "facts(pairs: {}, templates: {})",
            self.pairs, self.templates
        )
    }

    fn vocab(&self) -> usize {
        self.vocab
    }

    fn next_batch(
        &self,
        batch: usize,
        seq: usize,
        _step: u64,
        rng: &mut Rng,
    ) -> Result<Batch, DataError> {
        let samples: Vec<Sample> = (0..batch).map(|_| self.sample(rng, seq + 1)).collect();
        Batch::from_samples(&samples, batch, seq)
    }

    /// Single-fact prompts (as from [`Facts::prompt_pair`]) with the answer as the only
    /// answer target.
    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError> {
        let mut rng = content_rng(self.seed, "facts.eval");
        eval_in_batches(EVAL_SEQUENCES, batch, seq, |_| {
            Ok(self.prompt_pair(&mut rng).sample())
        })
    }

    fn token_text(&self, id: i32) -> String {
        let i = id as usize;
        let s0 = 2 + self.words.len();
        match id {
            0 => "<pad>".into(),
            1 => "<bos>".into(),
            _ if i < s0 => self.words[i - 2].to_string(),
            _ if i < s0 + self.pairs => format!("C{}", i - s0),
            _ if i < s0 + 2 * self.pairs => format!("K{}", i - s0 - self.pairs),
            _ => format!("<{id}>"),
        }
    }
}
