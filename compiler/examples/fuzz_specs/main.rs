//! The spec fuzzer: runs mutated and generated specs through parse → check → lower →
//! autodiff → passes and fails on any panic. Stable Rust, no fuzzing engine: a seeded
//! generator makes every case reproducible from `(seed, index)`.
//!
//! ```text
//! cargo run --release -p weft-compiler --example fuzz_specs -- [--cases N] [--seed S]
//!     [--corpus DIR] [--every N]
//! ```
//!
//! `--show N` prints N generated specs with their diagnostics; `--show-lower-errors N` prints
//! N specs that checked cleanly but did not lower (the checker's promise is that they do).
//! `--cases` defaults to `$WEFT_FUZZ_CASES` or 1 000 000; `--corpus` (default
//! `compiler/tests/fuzz-corpus`) receives every input that panicked as `crash-HASH.weft`
//! with the panic message in `crash-HASH.txt`; `compiler/tests/fuzz_corpus.rs` replays that
//! folder in the ordinary test suite. Progress goes to stderr every `--every` cases. Exit 1
//! when any case panicked. Runs on one thread.
//!
//! Last full run (issue 16, 2026-12-04): 1 000 000 cases, seed 0x5eed (400 550 byte-mutated,
//! 399 924 token-mutated, 199 526 generated), 4364 s on one core of a shared 2-core machine:
//! 0 panics. 658 054 stopped at a syntax error, 238 685 at diagnostics, 103 093 lowered; 168
//! checked cleanly but did not lower (an `IrError`, not a panic: two are kept in the corpus as
//! `lower-error-*`, open). That binary predates two bound fixes (the model's `layers` was
//! bounded at 2^24 instead of 2^14, hidden widths at 2^28 instead of 2^26); with the final
//! bounds, 100 000 cases (seed 0x4d) ran in 95 s and 1 000 000 (seed 0x5eed, commit 9b8d444)
//! in 908 s, both with 0 panics (167 checked but did not lower). The crashes it guards against
//! (`crash-*` in the corpus) were found before the checker's bounds, by the same mutations.

mod gen;
mod harness;

use gen::Rng;
use harness::Reached;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn examples(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "weft") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cases: u64 = arg(&args, "--cases")
        .or_else(|| std::env::var("WEFT_FUZZ_CASES").ok())
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = arg(&args, "--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let every: u64 = arg(&args, "--every")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    // Prints this many generated cases with their diagnostics (to tune the generator).
    let mut show: u64 = arg(&args, "--show")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // Prints this many specs that checked cleanly but did not lower, with the error.
    let mut show_lower: u64 = arg(&args, "--show-lower-errors")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = arg(&args, "--corpus")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("tests/fuzz-corpus"));
    let seeds = examples(&manifest.join("../examples"));
    assert!(!seeds.is_empty(), "no examples/*.weft found");
    let mut words: Vec<String> = seeds
        .iter()
        .flat_map(|s| gen::tokenize(s))
        .filter(|t| t.starts_with(|c: char| c.is_alphabetic()))
        .collect();
    words.sort();
    words.dedup();

    // Panics are expected to be caught here: keep their message, print nothing.
    let last_panic: Arc<Mutex<String>> = Arc::default();
    {
        let last = last_panic.clone();
        panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if let Ok(mut l) = last.lock() {
                *l = format!("{msg} at {at}");
            }
        }));
    }

    let start = Instant::now();
    let mut reached: BTreeMap<Reached, u64> = BTreeMap::new();
    let mut crashes: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut kinds = [0u64; 3];
    for i in 0..cases {
        let mut rng = Rng::new(seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407));
        let kind = rng.below(10);
        let src = match kind {
            0..=3 => {
                let a = rng.pick(&seeds).clone();
                let b = rng.pick(&seeds).clone();
                kinds[0] += 1;
                gen::mutate_bytes(&mut rng, &a, &b)
            }
            4..=7 => {
                let a = rng.pick(&seeds).clone();
                kinds[1] += 1;
                gen::mutate_tokens(&mut rng, &a, &words)
            }
            _ => {
                kinds[2] += 1;
                let g = gen::generate(&mut rng);
                if rng.chance(1, 3) {
                    gen::mutate_tokens(&mut rng, &g, &words)
                } else {
                    g
                }
            }
        };
        let seq = 1 + rng.below(16);
        if show > 0 && kind >= 8 {
            show -= 1;
            let why = weft_dsl::check_source(&src).err().map(|d| {
                d.iter()
                    .map(|d| d.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            eprintln!("---- case {i}\n{src}---- {why:?}");
        }
        match panic::catch_unwind(AssertUnwindSafe(|| harness::run(&src, seq))) {
            Ok((r, error)) => {
                *reached.entry(r).or_default() += 1;
                if let (Some(e), true) = (error, show_lower > 0) {
                    show_lower -= 1;
                    eprintln!("---- case {i}: checked cleanly, did not lower: {e}\n{src}----");
                }
            }
            Err(_) => {
                let msg = last_panic.lock().map(|m| m.clone()).unwrap_or_default();
                // One corpus file per panic site (message and location).
                let site = msg.clone();
                let entry = crashes.entry(site).or_insert((0, String::new()));
                entry.0 += 1;
                if entry.0 == 1 {
                    let name = format!("crash-{:016x}", fnv(&src));
                    let _ = std::fs::create_dir_all(&corpus);
                    let _ = std::fs::write(corpus.join(format!("{name}.weft")), &src);
                    let _ = std::fs::write(
                        corpus.join(format!("{name}.txt")),
                        format!("case {i} (seed {seed:#x}): {msg}\n"),
                    );
                    entry.1 = name;
                    eprintln!("case {i}: PANIC {msg}");
                }
            }
        }
        if (i + 1) % every == 0 || i + 1 == cases {
            eprintln!(
                "{} cases in {:.0} s: {:?}, {} panic sites",
                i + 1,
                start.elapsed().as_secs_f64(),
                reached,
                crashes.len()
            );
        }
    }
    let panics: u64 = crashes.values().map(|c| c.0).sum();
    println!(
        "fuzz_specs: {cases} cases (seed {seed:#x}; {} byte-mutated, {} token-mutated, {} generated) in {:.0} s",
        kinds[0],
        kinds[1],
        kinds[2],
        start.elapsed().as_secs_f64()
    );
    println!("reached: {reached:?}");
    println!("panics: {panics} in {} distinct sites", crashes.len());
    for (site, (n, file)) in &crashes {
        println!("  {n} × {site}  ({file}.weft)");
    }
    if panics > 0 {
        std::process::exit(1);
    }
}
