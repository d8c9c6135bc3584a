//! Batch-ICL (METHODS §10, §11.12 #10): a small model trained on in-context label mapping,
//! queried with N = 4 demonstrations. The pretraining corpus (written by the experiment,
//! `examples/repro/batch_icl/icl.weft`) is windows of 8 `(input, label)` demonstrations of one
//! of 8 fixed random mappings (8 inputs → 4 labels) with no task id, so the mapping must be
//! recognised from the demonstrations in context, as with the paper's symbol labels.
//! Queries use 4 demonstrations of inputs other than the query's, so the answer is only
//! knowable by recognising the task.
//!
//! Baseline: the N-shot prompt in every one of the 24 orders (`icl_orders`). Method:
//! Batch-ICL (`batch_icl`): the 4 one-shot prompts run as one batch, their mean `resid_mid`
//! at the last position (the query input, the prompts' shared suffix) injected at layer k of
//! the zero-shot pass, swept over k = 0..L (k = L: zero-shot), and the two-epoch variant. k is
//! chosen on separate validation queries and reported on the test queries, as
//! `Batch-ICL.py` does.

use crate::{Lab, Report, ReproError, Table};
use serde_json::json;
use std::path::Path;
use weft_dsl::typed::DataSource;
use weft_runtime::probes::batch_icl::{batch_icl, BatchIcl, BatchIclConfig, IclQuery};
use weft_runtime::probes::icl_orders::{icl_orders, OrderQuery};
use weft_runtime::Rng;

/// Demonstrations per query.
const N: usize = 4;
/// Pretraining steps (full mode).
const STEPS: i64 = 1500;
/// Mappings, inputs, labels, demonstrations per pretraining window.
const TASKS: usize = 8;
const INPUTS: usize = 8;
const LABELS: usize = 4;
const WINDOW_DEMOS: usize = 8;
/// Token ids: a start marker, then the inputs, then the labels (0 and 1 stay reserved).
const START: i32 = 2;
const X0: i32 = 3;
const Y0: i32 = X0 + INPUTS as i32;

/// The fixed mappings `table[task][input]` = label.
struct Mappings {
    table: Vec<Vec<usize>>,
}

impl Mappings {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::for_name(seed, "repro.batch_icl.table");
        Mappings {
            table: (0..TASKS)
                .map(|_| {
                    (0..INPUTS)
                        .map(|_| rng.below(LABELS as u64) as usize)
                        .collect()
                })
                .collect(),
        }
    }

    fn label(&self, task: usize, x: usize) -> usize {
        self.table[task][x]
    }

    /// `START x_1 y_1 … x_n y_n x_query` for `(input, label)` demonstrations.
    fn prompt(demos: &[(usize, usize)], query: usize) -> Vec<i32> {
        let mut p = vec![START];
        for &(x, y) in demos {
            p.push(X0 + x as i32);
            p.push(Y0 + y as i32);
        }
        p.push(X0 + query as i32);
        p
    }

    /// The pretraining corpus: `windows` windows `START (x, y) × WINDOW_DEMOS` of a uniformly
    /// chosen task, inputs uniform (repeats allowed).
    fn corpus(&self, windows: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::for_name(seed, "repro.batch_icl.corpus");
        let mut out = Vec::with_capacity(windows * (1 + 2 * WINDOW_DEMOS));
        for _ in 0..windows {
            let t = rng.below(TASKS as u64) as usize;
            out.push(START as u8);
            for _ in 0..WINDOW_DEMOS {
                let x = rng.below(INPUTS as u64) as usize;
                out.push((X0 + x as i32) as u8);
                out.push((Y0 + self.label(t, x) as i32) as u8);
            }
        }
        out
    }
}

/// One query: its task, demonstrations `(input, label)` in the base order, query input.
struct Case {
    task: usize,
    demos: Vec<(usize, usize)>,
    input: usize,
}

impl Case {
    fn answer(&self, m: &Mappings) -> i32 {
        Y0 + m.label(self.task, self.input) as i32
    }
}

/// `count` queries: a task, a query input and N distinct other inputs in a random order.
fn cases(m: &Mappings, count: usize, seed: u64, name: &str) -> Vec<Case> {
    let mut rng = Rng::for_name(seed, name);
    let shuffle = |v: &mut Vec<usize>, rng: &mut Rng| {
        for i in (1..v.len()).rev() {
            v.swap(i, rng.below(i as u64 + 1) as usize);
        }
    };
    (0..count)
        .map(|_| {
            let task = rng.below(TASKS as u64) as usize;
            let input = rng.below(INPUTS as u64) as usize;
            let mut others: Vec<usize> = (0..INPUTS).filter(|&x| x != input).collect();
            shuffle(&mut others, &mut rng);
            Case {
                task,
                demos: others[..N].iter().map(|&x| (x, m.label(task, x))).collect(),
                input,
            }
        })
        .collect()
}

fn icl_query(m: &Mappings, c: &Case, reversed: bool) -> IclQuery {
    let mut one_shot: Vec<Vec<i32>> = c
        .demos
        .iter()
        .map(|&d| Mappings::prompt(&[d], c.input))
        .collect();
    if reversed {
        one_shot.reverse();
    }
    IclQuery {
        zero_shot: Mappings::prompt(&[], c.input),
        one_shot,
        answer: Some(c.answer(m)),
    }
}

/// Points the spec's `text(...)` data source at `path`.
fn set_text_path(spec: &mut crate::Spec, path: &Path) {
    if let Some(DataSource::Text { path: p, .. }) = spec.checked.train.as_mut().map(|t| &mut t.data)
    {
        *p = path.display().to_string();
    }
}

pub fn run(lab: &mut Lab, r: &mut Report) -> Result<(), ReproError> {
    let maps = Mappings::new(lab.seed());
    let corpus = absolute(&lab.dir().join("data").join("icl.txt"))?;
    write(&corpus, &maps.corpus(lab.pick(40_000, 400), lab.seed()))?;
    let mut spec = lab.spec("icl.weft")?;
    set_text_path(&mut spec, &corpus);
    spec.set("steps", lab.pick(STEPS, 12));
    spec.set("batch", lab.pick(32, 4));
    spec.set("eval_every", lab.pick(250, 12));
    let trained = lab.train(&spec, "icl", None)?;
    let model = lab.model(&spec, &trained.params);
    let big_l = model.layers();
    let test = cases(&maps, lab.pick(128, 8), lab.seed(), "repro.batch_icl.test");
    let val = cases(&maps, lab.pick(64, 4), lab.seed(), "repro.batch_icl.val");
    let queries = |cs: &[Case], reversed: bool| -> Vec<IclQuery> {
        cs.iter().map(|c| icl_query(&maps, c, reversed)).collect()
    };
    let sweep = |qs: &[IclQuery], positions: usize, epochs: usize, layer: Option<usize>| {
        lab.probe("batch_icl", || {
            batch_icl(
                &model,
                qs,
                &BatchIclConfig {
                    positions,
                    layer,
                    alpha: 0.0,
                    epochs,
                },
            )
        })
    };
    let order_query = |c: &Case, demos: Vec<(usize, usize)>| {
        let input = c.input;
        OrderQuery {
            demos,
            prompt: Box::new(move |d: &[(usize, usize)]| Mappings::prompt(d, input)),
            answer: c.answer(&maps),
        }
    };

    // Baseline: every order of the N-shot prompt; and each one-shot prompt alone.
    let order_queries: Vec<OrderQuery> = test
        .iter()
        .map(|c| order_query(c, c.demos.clone()))
        .collect();
    let orders = lab.probe("icl_orders", || icl_orders(&model, &order_queries))?;
    let one_queries: Vec<OrderQuery> = test
        .iter()
        .flat_map(|c| c.demos.iter().map(|&d| order_query(c, vec![d])))
        .collect();
    let one_shot = lab.probe("one-shot accuracy", || icl_orders(&model, &one_queries))?;

    // Method: choose k on validation queries, report on test queries.
    let val_sweep = sweep(&queries(&val, false), 1, 1, None)?;
    let k = val_sweep.best_layer;
    let test_qs = queries(&test, false);
    let e1 = sweep(&test_qs, 1, 1, None)?;
    let e2 = sweep(&test_qs, 1, 2, None)?;
    let p2 = sweep(&test_qs, 2, 1, None)?;
    let reversed = sweep(&queries(&test, true), 1, 1, Some(k))?;
    let at = |s: &BatchIcl, k: usize| {
        s.layers
            .iter()
            .position(|&x| x == k)
            .map_or(0.0, |i| s.accuracy[i])
    };
    let ki = e1.layers.iter().position(|&x| x == k).unwrap_or(0);
    let changed = e1.predictions[ki]
        .iter()
        .zip(&reversed.predictions[0])
        .filter(|(a, b)| a != b)
        .count();

    let mut by_k = Table::new(
        &format!(
            "Batch-ICL accuracy by injection layer k ({} test queries; k = {big_l} is zero-shot)",
            test.len()
        ),
        &[
            "k",
            "validation (E = 1, P = 1)",
            "test E = 1, P = 1",
            "test E = 2, P = 1",
            "test E = 1, P = 2",
        ],
    );
    for kk in 0..=big_l {
        by_k.row(vec![
            json!(if kk == big_l {
                format!("{kk} (zero-shot)")
            } else {
                kk.to_string()
            }),
            json!(at(&val_sweep, kk)),
            json!(at(&e1, kk)),
            json!(at(&e2, kk)),
            json!(at(&p2, kk)),
        ]);
    }
    r.table(by_k);

    let spread = |x: &[f64]| {
        let m = crate::experiments::mean(x);
        (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    };
    let min = orders
        .by_order
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let max = orders
        .by_order
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    let mut summary = Table::new(
        &format!("N = {N} demonstrations, {} test queries", test.len()),
        &["setting", "accuracy", "notes"],
    );
    summary.row(vec![
        json!("zero-shot"),
        json!(e1.zero_shot_accuracy),
        json!("no demonstrations"),
    ]);
    summary.row(vec![
        json!("one-shot, mean over the 4 demonstrations"),
        json!(one_shot.mean_accuracy),
        json!("each one-shot prompt of the Batch-ICL batch on its own"),
    ]);
    summary.row(vec![
        json!("N-shot, mean over 24 orders"),
        json!(orders.mean_accuracy),
        json!(format!("std over orders {:.4}", spread(&orders.by_order))),
    ]);
    summary.row(vec![
        json!("N-shot, worst order"),
        json!(min),
        json!("one fixed order for all queries"),
    ]);
    summary.row(vec![
        json!("N-shot, best order"),
        json!(max),
        json!("one fixed order for all queries"),
    ]);
    summary.row(vec![
        json!("N-shot, per-query oracle best / worst order"),
        json!(orders.best_order_accuracy),
        json!(format!("worst {:.4}", orders.worst_order_accuracy)),
    ]);
    summary.row(vec![
        json!(format!("Batch-ICL at k = {k} (chosen on validation)")),
        json!(at(&e1, k)),
        json!(format!(
            "E = 1, P = 1; demonstrations reversed: {changed} of {} predictions change",
            test.len()
        )),
    ]);
    summary.row(vec![
        json!(format!("Batch-ICL at k = {k}, E = 2")),
        json!(at(&e2, k)),
        json!("two aggregation epochs"),
    ]);
    summary.row(vec![
        json!("Batch-ICL, best k on test (oracle)"),
        json!(e1.best_accuracy),
        json!(format!("k = {}", e1.best_layer)),
    ]);
    r.table(summary);

    let mut per_order = Table::new(
        "N-shot accuracy of each demonstration order (lexicographic permutations of the base order)",
        &["order", "accuracy"],
    );
    for (i, a) in orders.by_order.iter().enumerate() {
        per_order.row(vec![json!(i), json!(a)]);
    }
    r.table(per_order);

    let batch = at(&e1, k);
    r.headline(
        "accuracy with N = 4 demonstrations",
        "N-shot, mean over 24 orders",
        orders.mean_accuracy,
        &format!("Batch-ICL, k = {k} chosen on validation"),
        batch,
        batch >= orders.mean_accuracy - 0.02,
        "Batch-ICL's test accuracy at the k chosen on separate validation queries is at least the mean N-shot accuracy over all 24 orders minus 0.02 (\"matches or beats\")",
    );
    r.note(format!(
        "Order sensitivity of N-shot: accuracy per order ranges {min:.4}–{max:.4}; {:.1}% of queries are answered correctly in some orders and wrongly in others. Batch-ICL averages the one-shot batch, so it is order-invariant by construction: reversing the demonstrations changed {changed} of {} predictions.",
        100.0 * (orders.best_order_accuracy - orders.worst_order_accuracy),
        test.len()
    ));
    r.note(format!(
        "k = {k} was picked on {} validation queries ({}); the paper expects a middle k to work and early/late k to be worse. Two epochs at k = {k}: {:.4} vs {:.4} with one (the paper expects a small gain).",
        val.len(),
        if k > 0 && k < big_l { "a middle layer" } else { "not a middle layer" },
        at(&e2, k),
        batch
    ));
    r.note("P = 1 aggregated position is the main setting: the shared suffix of the prompts is the query input alone (the paper's P = 2 covers its two shared tokens \"Answer:\"); P = 2 also replaces the position before it (the last demonstration label; the start marker in the zero-shot prompt) and is shown for comparison.");
    r.note(format!("The corpus is built here rather than with `label_mapping`, whose task-id token lets a model look the mapping up instead of learning it in context (a trial with 1024 mappings reached 67% zero-shot accuracy by memorising them, and N-shot added 2 points). Scaled down from §11.12 #10: D = 64, L = 4, H = 4, {TASKS} mappings of {INPUTS} inputs to {LABELS} labels, {STEPS} steps of 32 windows of {} tokens.", 1 + 2 * WINDOW_DEMOS));
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ReproError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ReproError::Io { path: p, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    weft_runtime::tensor_file::write_atomic(path, bytes).map_err(io(path))
}

/// `p` made absolute (the data source resolves relative paths against the spec's folder).
fn absolute(p: &Path) -> Result<std::path::PathBuf, ReproError> {
    std::path::absolute(p).map_err(|source| ReproError::Io {
        path: p.to_path_buf(),
        source,
    })
}
