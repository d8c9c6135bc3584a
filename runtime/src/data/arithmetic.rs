//! Multi-step modular sums with a chain of thought (Masked Thought's synthetic task).

use super::{content_rng, eval_in_batches, Batch, DataError, DataSource, Sample};
use crate::init::Rng;
use std::collections::HashSet;

/// How problems are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithmeticLevel {
    /// ASCII characters as ids: `17+45+92+8=` then `17+45=62,62+92=54,54+8=62;62` and `\n`.
    /// Needs `vocab > '='` (62).
    Chars,
    /// One token per number and per symbol: `0` pad, `1` BOS, `2` `+`, `3` `=`, `4` `,`,
    /// `5` `;`, `6` end, numbers from `7`. Needs `vocab ≥ 7 + modulus`.
    Tokens,
}

/// `arithmetic(terms, modulus, problems)`: `a+b+c+d=` (prompt, turn 0) then the chain of
/// thought of running sums mod `modulus`, `;`, the result and an end token (the answer: segment
/// 0, turn 1). A fixed training set of `problems` distinct problems and a disjoint held-out
/// set of `eval_problems`, both drawn from the source's seed; one problem per row.
#[derive(Clone, Debug)]
pub struct Arithmetic {
    pub terms: usize,
    pub modulus: u32,
    pub level: ArithmeticLevel,
    pub vocab: usize,
    train: Vec<Vec<u32>>,
    eval: Vec<Vec<u32>>,
}

const T_PLUS: i32 = 2;
const T_EQ: i32 = 3;
const T_COMMA: i32 = 4;
const T_SEMI: i32 = 5;
const T_END: i32 = 6;
const T_NUM: i32 = 7;

impl Arithmetic {
    /// Held-out problems unless [`Arithmetic::with_eval_problems`] says otherwise.
    pub const EVAL_PROBLEMS: usize = 500;

    pub fn new(
        terms: usize,
        modulus: u32,
        problems: usize,
        level: ArithmeticLevel,
        vocab: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        Self::with_eval_problems(
            terms,
            modulus,
            problems,
            Self::EVAL_PROBLEMS,
            level,
            vocab,
            seed,
        )
    }

    pub fn with_eval_problems(
        terms: usize,
        modulus: u32,
        problems: usize,
        eval_problems: usize,
        level: ArithmeticLevel,
        vocab: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if terms < 2 {
            return Err(DataError::config("terms", "must be at least 2"));
        }
        if modulus < 2 {
            return Err(DataError::config("modulus", "must be at least 2"));
        }
        let need = match level {
            ArithmeticLevel::Chars => b'=' as usize + 1,
            ArithmeticLevel::Tokens => T_NUM as usize + modulus as usize,
        };
        if vocab < need {
            return Err(DataError::config(
                "vocab",
                format!(
                    "= {vocab}; {level:?}-level problems use ids up to {}",
                    need - 1
                ),
            ));
        }
        let space = (modulus as f64).powi(terms as i32);
        if ((problems + eval_problems) as f64) > space / 2.0 {
            return Err(DataError::config(
                "problems",
                format!("= {problems} (+ {eval_problems} held out) is more than half of the {space} possible problems"),
            ));
        }
        let mut rng = content_rng(seed, "arithmetic.problems");
        let mut seen = HashSet::new();
        let mut draw = |n: usize| {
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let p: Vec<u32> = (0..terms)
                    .map(|_| rng.below(modulus as u64) as u32)
                    .collect();
                if seen.insert(p.clone()) {
                    out.push(p);
                }
            }
            out
        };
        let train = draw(problems);
        let eval = draw(eval_problems);
        Ok(Arithmetic {
            terms,
            modulus,
            level,
            vocab,
            train,
            eval,
        })
    }

    /// The training problems (operand lists).
    pub fn train_problems(&self) -> &[Vec<u32>] {
        &self.train
    }

    /// The held-out problems, disjoint from the training set.
    pub fn eval_problems(&self) -> &[Vec<u32>] {
        &self.eval
    }

    /// The correct result of `problem`.
    pub fn result(&self, problem: &[u32]) -> u32 {
        problem.iter().fold(0, |s, &x| (s + x) % self.modulus)
    }

    /// `(prompt, answer)` ids of `problem`; the answer's last token is the end token.
    pub fn render(&self, problem: &[u32]) -> (Vec<i32>, Vec<i32>) {
        let mut prompt = Vec::new();
        for (i, &x) in problem.iter().enumerate() {
            if i > 0 {
                self.sym(&mut prompt, '+');
            }
            self.num(&mut prompt, x);
        }
        self.sym(&mut prompt, '=');
        let mut answer = Vec::new();
        let mut acc = problem[0];
        for (i, &x) in problem.iter().enumerate().skip(1) {
            if i > 1 {
                self.sym(&mut answer, ',');
            }
            self.num(&mut answer, acc);
            self.sym(&mut answer, '+');
            self.num(&mut answer, x);
            self.sym(&mut answer, '=');
            acc = (acc + x) % self.modulus;
            self.num(&mut answer, acc);
        }
        self.sym(&mut answer, ';');
        self.num(&mut answer, acc);
        self.sym(&mut answer, '\n');
        (prompt, answer)
    }

    /// The final-result ids inside an answer from [`Arithmetic::render`] (between the last
    /// `;` and the end token): what an exact-match evaluation compares.
    pub fn result_ids(&self, answer: &[i32]) -> Vec<i32> {
        let semi = match self.level {
            ArithmeticLevel::Chars => b';' as i32,
            ArithmeticLevel::Tokens => T_SEMI,
        };
        let start = answer.iter().rposition(|&t| t == semi).map_or(0, |i| i + 1);
        // A generated answer may end in `;` (nothing after the last step): no result then.
        let end = answer.len().saturating_sub(1).max(start);
        answer[start..end].to_vec()
    }

    /// The sample of `problem`: prompt (turn 0) then answer (segment 0, turn 1).
    pub fn sample(&self, problem: &[u32]) -> Sample {
        let (prompt, answer) = self.render(problem);
        let mut s = Sample::new();
        s.extend_prompt(&prompt, 0, 0);
        s.extend_answer(&answer, 0, 0, 1);
        s
    }

    fn num(&self, out: &mut Vec<i32>, x: u32) {
        match self.level {
            ArithmeticLevel::Chars => out.extend(x.to_string().bytes().map(i32::from)),
            ArithmeticLevel::Tokens => out.push(T_NUM + x as i32),
        }
    }

    fn sym(&self, out: &mut Vec<i32>, c: char) {
        out.push(match self.level {
            ArithmeticLevel::Chars => c as i32,
            ArithmeticLevel::Tokens => match c {
                '+' => T_PLUS,
                '=' => T_EQ,
                ',' => T_COMMA,
                ';' => T_SEMI,
                _ => T_END,
            },
        });
    }
}

impl DataSource for Arithmetic {
    fn describe(&self) -> String {
        format!(
            "arithmetic(terms: {}, modulus: {}, problems: {})",
            self.terms,
            self.modulus,
            self.train.len()
        )
    }

    fn vocab(&self) -> usize {
        self.vocab
    }

    /// Problems drawn uniformly (with replacement) from the fixed training set.
    fn next_batch(
        &self,
        batch: usize,
        seq: usize,
        _step: u64,
        rng: &mut Rng,
    ) -> Result<Batch, DataError> {
        let samples: Vec<Sample> = (0..batch)
            .map(|_| self.sample(&self.train[rng.below(self.train.len() as u64) as usize]))
            .collect();
        Batch::from_samples(&samples, batch, seq)
    }

    /// Every held-out problem once, in order.
    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError> {
        eval_in_batches(self.eval.len(), batch, seq, |i| {
            Ok(self.sample(&self.eval[i]))
        })
    }

    fn token_text(&self, id: i32) -> String {
        match (self.level, id) {
            (_, 0) => "<pad>".into(),
            (ArithmeticLevel::Chars, 10) => "\\n".into(),
            (ArithmeticLevel::Chars, 32..=126) => char::from(id as u8).to_string(),
            (ArithmeticLevel::Tokens, T_PLUS) => "+".into(),
            (ArithmeticLevel::Tokens, T_EQ) => "=".into(),
            (ArithmeticLevel::Tokens, T_COMMA) => ",".into(),
            (ArithmeticLevel::Tokens, T_SEMI) => ";".into(),
            (ArithmeticLevel::Tokens, T_END) => "\\n".into(),
            (ArithmeticLevel::Tokens, n) if n >= T_NUM => (n - T_NUM).to_string(),
            _ => format!("<{id}>"),
        }
    }
}
