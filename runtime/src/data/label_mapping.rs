//! Noisy many-shot in-context label mapping (DR-ICL's synthetic task, Batch-ICL's prompts).

use super::{content_rng, eval_in_batches, Batch, DataError, DataSource, Sample, EVAL_SEQUENCES};
use crate::init::Rng;

/// `label_mapping(tasks, inputs, labels, shots, noise, task_id)`: a fixed pool of `tasks`
/// mappings from `inputs` input tokens to `labels` label tokens (drawn once from the source's
/// seed). A sequence is a task-id token (turn 0; with `task_id: false` the `<bos>` token,
/// shared by all tasks) then `k` demonstration turns `(x, y)` of one task,
/// `k` uniform in `1..=shots` (capped by `seq`). Demonstration `j` is turn `j + 1` and its
/// label is answer segment `j`; with probability `noise` a label is flipped to a different,
/// uniformly chosen one.
///
/// Ids: task ids from 2, then the inputs, then the labels. Input and label tokens are shared by
/// all tasks, so only the context (or the task id) says which mapping applies.
#[derive(Clone, Debug)]
pub struct LabelMapping {
    pub tasks: usize,
    pub inputs: usize,
    pub labels: usize,
    pub shots: usize,
    pub noise: f64,
    pub vocab: usize,
    /// Whether turn 0 names the task; without it only the demonstrations do, so a model
    /// cannot answer from a memorised table alone (DR-ICL's setting without the shortcut).
    pub task_id: bool,
    seed: u64,
    /// `table[task][input]` = label index.
    table: Vec<Vec<usize>>,
}

impl LabelMapping {
    pub fn new(
        tasks: usize,
        inputs: usize,
        labels: usize,
        shots: usize,
        noise: f64,
        vocab: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        for (param, v) in [("tasks", tasks), ("inputs", inputs), ("shots", shots)] {
            if v == 0 {
                return Err(DataError::config(param, "must be at least 1"));
            }
        }
        if labels < 2 {
            return Err(DataError::config("labels", "must be at least 2"));
        }
        if !(0.0..=1.0).contains(&noise) {
            return Err(DataError::config(
                "noise",
                format!("= {noise} is not a probability"),
            ));
        }
        let need = 2 + tasks + inputs + labels;
        if need > vocab {
            return Err(DataError::config(
                "vocab",
                format!("= {vocab}, but {tasks} task ids + {inputs} inputs + {labels} labels + 2 reserved need {need}"),
            ));
        }
        let mut rng = content_rng(seed, "label_mapping.table");
        let table = (0..tasks)
            .map(|_| {
                (0..inputs)
                    .map(|_| rng.below(labels as u64) as usize)
                    .collect()
            })
            .collect();
        Ok(LabelMapping {
            tasks,
            inputs,
            labels,
            shots,
            noise,
            vocab,
            task_id: true,
            seed,
            table,
        })
    }

    /// The same task with turn 0 the task's id (`true`, the default) or a start token shared
    /// by all tasks (`false`).
    pub fn with_task_id(mut self, task_id: bool) -> Self {
        self.task_id = task_id;
        self
    }

    /// Turn 0 of a sequence of task `t`: its id, or `<bos>` when the task is hidden.
    pub fn start_token(&self, t: usize) -> i32 {
        if self.task_id {
            self.task_token(t)
        } else {
            1
        }
    }

    /// The id of task `t`.
    pub fn task_token(&self, t: usize) -> i32 {
        2 + t as i32
    }

    /// The id of input `x`.
    pub fn input_token(&self, x: usize) -> i32 {
        (2 + self.tasks + x) as i32
    }

    /// The id of label `y`.
    pub fn label_token(&self, y: usize) -> i32 {
        (2 + self.tasks + self.inputs + y) as i32
    }

    /// The label ids, in label order (for label-token scoring).
    pub fn label_tokens(&self) -> Vec<i32> {
        (0..self.labels).map(|y| self.label_token(y)).collect()
    }

    /// The true label index of input `x` under task `t`.
    pub fn label_of(&self, t: usize, x: usize) -> usize {
        self.table[t][x]
    }

    /// Most demonstrations that fit `seq` (a sample of k shots has 1 + 2k tokens).
    pub fn max_shots(&self, seq: usize) -> usize {
        self.shots.min(seq / 2)
    }

    /// A sample of task `task` with `k` demonstrations; labels are flipped with probability
    /// `noise`, except the last one when `clean_last` (the query of an accuracy evaluation).
    pub fn sample(&self, rng: &mut Rng, task: usize, k: usize, clean_last: bool) -> Sample {
        let mut s = Sample::new();
        s.push(self.start_token(task), -1, 0, 0);
        for j in 0..k {
            let x = rng.below(self.inputs as u64) as usize;
            let mut y = self.label_of(task, x);
            let noisy = !(clean_last && j + 1 == k);
            if noisy && self.noise > 0.0 && rng.uniform() < self.noise {
                y = (y + 1 + rng.below(self.labels as u64 - 1) as usize) % self.labels;
            }
            let turn = j as i32 + 1;
            s.push(self.input_token(x), -1, 0, turn);
            s.push(self.label_token(y), j as i32, 0, turn);
        }
        s
    }

    /// A batch in which every sequence has exactly `k` demonstrations, the last one clean
    /// (accuracy against the number of shots).
    pub fn batch_with_shots(
        &self,
        batch: usize,
        seq: usize,
        k: usize,
        rng: &mut Rng,
    ) -> Result<Batch, DataError> {
        let samples: Vec<Sample> = (0..batch)
            .map(|_| {
                let task = rng.below(self.tasks as u64) as usize;
                self.sample(rng, task, k, true)
            })
            .collect();
        Batch::from_samples(&samples, batch, seq)
    }

    /// A prompt `task, x_1, y_1, ..., x_n, y_n, query` ending at the query input, with the
    /// given `(input, label)` demonstrations (indices, not ids): Batch-ICL's N-shot, 1-shot
    /// (one demonstration) and zero-shot (none) prompts. Left-pad a set of them with
    /// [`Batch::left_padded`].
    pub fn prompt(&self, task: usize, demos: &[(usize, usize)], query: usize) -> Vec<i32> {
        let mut p = vec![self.start_token(task)];
        for &(x, y) in demos {
            p.push(self.input_token(x));
            p.push(self.label_token(y));
        }
        p.push(self.input_token(query));
        p
    }

    /// The task of each held-out sequence of [`DataSource::eval_batches`], in order (turn 0
    /// does not say it when the task id is hidden).
    pub fn eval_tasks(&self, seq: usize) -> Vec<usize> {
        let mut eval = self.eval_samples(seq);
        (0..EVAL_SEQUENCES).map(|_| eval().0).collect()
    }

    /// The held-out sequences, one per call, with their tasks.
    fn eval_samples(&self, seq: usize) -> impl FnMut() -> (usize, Sample) + '_ {
        let max = self.max_shots(seq).max(1) as u64;
        let mut rng = content_rng(self.seed, "label_mapping.eval");
        move || {
            let task = rng.below(self.tasks as u64) as usize;
            let k = 1 + rng.below(max) as usize;
            (task, self.sample(&mut rng, task, k, true))
        }
    }

    fn check_seq(&self, seq: usize) -> Result<(), DataError> {
        if seq < 2 {
            return Err(DataError::TooLong {
                what: self.describe(),
                need: 3,
                seq,
            });
        }
        Ok(())
    }
}

impl DataSource for LabelMapping {
    fn describe(&self) -> String {
        format!(
            "label_mapping(tasks: {}, inputs: {}, labels: {}, shots: {}, noise: {}{})",
            self.tasks,
            self.inputs,
            self.labels,
            self.shots,
            self.noise,
            if self.task_id { "" } else { ", task_id: false" }
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
        self.check_seq(seq)?;
        let max = self.max_shots(seq) as u64;
        let samples: Vec<Sample> = (0..batch)
            .map(|_| {
                let task = rng.below(self.tasks as u64) as usize;
                let k = 1 + rng.below(max) as usize;
                self.sample(rng, task, k, false)
            })
            .collect();
        Batch::from_samples(&samples, batch, seq)
    }

    /// Shot counts uniform as in training, noisy demonstrations, a clean last label.
    fn eval_batches(&self, batch: usize, seq: usize) -> Result<Vec<Batch>, DataError> {
        self.check_seq(seq)?;
        let mut eval = self.eval_samples(seq);
        eval_in_batches(EVAL_SEQUENCES, batch, seq, |_| Ok(eval().1))
    }

    fn token_text(&self, id: i32) -> String {
        let i = id as usize;
        let (t0, x0, y0) = (2, 2 + self.tasks, 2 + self.tasks + self.inputs);
        match id {
            0 => "<pad>".into(),
            1 => "<bos>".into(),
            _ if i < x0 => format!("T{}", i - t0),
            _ if i < y0 => format!("x{}", i - x0),
            _ if i < y0 + self.labels => format!("y{}", i - y0),
            _ => format!("<{id}>"),
        }
    }
}
