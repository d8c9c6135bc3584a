//! What the spec-written attention rules cost against the built-in softmax of the same shape
//! on the fast CPU path (issue 18's 10% bar), measured so that the ratio survives a shared
//! machine: the rules' workloads (`weft bench`'s, B1 H2 d64 causal) take turns, round after
//! round; each round times every rule 15 times and keeps its minimum; each rule's ratio is
//! the median over rounds of its minimum over softmax's in the same round. `weft bench`
//! times each row's runs back to back, and a drift of the machine between two rows moves
//! their ratio by a tenth or more.
//!
//! ```text
//! cargo run --release -p weft-runtime --example rule_cost -- [T ROUNDS]
//! ```

use std::time::Instant;
use weft_runtime::bench::{self, BenchRule};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (t, rounds) = (num(0, 512), num(1, 8).max(1));
    let cpu = bench::backends("cpu")?.remove(0);
    let rules = [BenchRule::Softmax, BenchRule::Alibi, BenchRule::Softcap];
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for backward in [false, true] {
        let works: Vec<_> = rules
            .iter()
            .map(|&r| bench::attention(r, 1, 2, t, 64, backward))
            .collect();
        for w in &works {
            for _ in 0..5 {
                bench::run_once(cpu.backend(), w).map_err(|e| e.to_string())?;
            }
        }
        // minima[rule][round], in milliseconds.
        let mut minima = vec![Vec::new(); rules.len()];
        for _ in 0..rounds {
            for (w, m) in works.iter().zip(&mut minima) {
                let mut best = f64::MAX;
                for _ in 0..15 {
                    let start = Instant::now();
                    bench::run_once(cpu.backend(), w).map_err(|e| e.to_string())?;
                    best = best.min(start.elapsed().as_secs_f64() * 1e3);
                }
                m.push(best);
            }
        }
        let what = if backward {
            "forward + backward"
        } else {
            "forward"
        };
        for (rule, m) in rules.iter().zip(&minima) {
            let ratios = m.iter().zip(&minima[0]).map(|(a, s)| a / s).collect();
            println!(
                "{what} T{t} {}: {:.3} ms (median of {rounds} round minima), {:.3}× softmax",
                rule.name(),
                median(m.clone()),
                median(ratios),
            );
        }
    }
    Ok(())
}
