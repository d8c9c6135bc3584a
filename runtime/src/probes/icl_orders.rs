//! N-shot accuracy over every order of the demonstrations (the spread Batch-ICL is compared
//! against, METHODS §10.3): for each query, all N! orderings of its N demonstrations are run
//! as N-shot prompts.

use super::readout::argmax;
use super::{logits, Model, ProbeError};
use serde::Serialize;

/// Builds a prompt from demonstrations in a given order.
pub type PromptFn = Box<dyn Fn(&[(usize, usize)]) -> Vec<i32>>;

/// One query with its demonstrations, as prompt builders.
pub struct OrderQuery {
    /// The N demonstrations (opaque to this probe).
    pub demos: Vec<(usize, usize)>,
    /// Builds the prompt for demonstrations in a given order.
    pub prompt: PromptFn,
    pub answer: i32,
}

/// Accuracy statistics over orders.
#[derive(Clone, Debug, Serialize)]
pub struct IclOrders {
    pub demos: usize,
    pub orders: usize,
    pub queries: usize,
    /// Mean accuracy over queries and orders.
    pub mean_accuracy: f64,
    /// Accuracy of the best and the worst order per query (oracle bounds), averaged.
    pub best_order_accuracy: f64,
    pub worst_order_accuracy: f64,
    /// Accuracy of each order (in lexicographic permutation order) over the queries.
    pub by_order: Vec<f64>,
}

/// Every permutation of `0..n` in lexicographic order.
pub fn permutations(n: usize) -> Vec<Vec<usize>> {
    let mut p: Vec<usize> = (0..n).collect();
    let mut out = vec![p.clone()];
    loop {
        let Some(i) = (1..n).rev().find(|&i| p[i - 1] < p[i]) else {
            return out;
        };
        let j = (i..n)
            .rev()
            .find(|&j| p[j] > p[i - 1])
            .expect("a larger element exists");
        p.swap(i - 1, j);
        p[i..].reverse();
        out.push(p.clone());
    }
}

/// Runs every order of every query.
pub fn icl_orders(model: &Model, queries: &[OrderQuery]) -> Result<IclOrders, ProbeError> {
    let n = queries.first().map_or(0, |q| q.demos.len());
    if n == 0 || n > 6 {
        return Err(ProbeError::Config(format!(
            "icl_orders runs every order of 1 to 6 demonstrations, got {n}"
        )));
    }
    let perms = permutations(n);
    let mut by_order = vec![0.0; perms.len()];
    let (mut best, mut worst, mut total) = (0.0, 0.0, 0.0);
    for q in queries {
        let prompts: Vec<Vec<i32>> = perms
            .iter()
            .map(|p| (q.prompt)(&p.iter().map(|&i| q.demos[i]).collect::<Vec<_>>()))
            .collect();
        let t = prompts[0].len();
        if prompts.iter().any(|p| p.len() != t) {
            return Err(ProbeError::Config(
                "icl_orders: orders of one query must have equal lengths".into(),
            ));
        }
        let g = model.lower(prompts.len(), t, &[])?;
        let out = model.run(&g, &prompts.concat(), &[], &[])?;
        let lg = logits(&out)?;
        let v = lg.shape[2];
        let x = lg.to_f64_vec();
        let hits: Vec<f64> = (0..perms.len())
            .map(|b| {
                f64::from(u8::from(
                    argmax(&x[(b * t + t - 1) * v..(b * t + t) * v]) as i32 == q.answer,
                ))
            })
            .collect();
        by_order.iter_mut().zip(&hits).for_each(|(a, h)| *a += h);
        total += super::mean(&hits);
        best += hits.iter().cloned().fold(0.0, f64::max);
        worst += hits.iter().cloned().fold(1.0, f64::min);
    }
    let k = queries.len() as f64;
    Ok(IclOrders {
        demos: n,
        orders: perms.len(),
        queries: queries.len(),
        mean_accuracy: total / k,
        best_order_accuracy: best / k,
        worst_order_accuracy: worst / k,
        by_order: by_order.into_iter().map(|a| a / k).collect(),
    })
}
