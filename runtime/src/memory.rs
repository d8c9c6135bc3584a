//! Memory budgets: before weft allocates anything the size of a model, estimate what it
//! needs and refuse with the numbers and the setting to lower when that exceeds the memory
//! available (`MemAvailable` in `/proc/meminfo`, or `$WEFT_MEMORY_LIMIT`). Without this a
//! model too large for the machine dies in the allocator (`memory allocation of
//! 4398046511104 bytes failed`) with a backtrace. This module holds the measure and the
//! verdict shared by every command — evaluation and generation ([`check_inference`]), GGUF
//! import ([`check_import`]) — and `train::budget` adds training's parts (gradients,
//! optimizer state).
//!
//! Sizes are counted in `u128`: a spec's numbers are bounded one by one (`weft_dsl::check::
//! bounds`), but their products and sums are not, and a count must never wrap.

// `MemoryError` carries every number its message reports; it is returned once per command,
// before anything large is allocated, so its size costs nothing.
#![allow(clippy::result_large_err)]

use std::fmt;
use weft_compiler::ir::{Graph, Op};
use weft_compiler::passes::plan_memory;

/// Environment variable that caps the memory weft assumes it may use (bytes, or with a `K`,
/// `M`, `G` or `T` suffix, powers of 1024): for shared machines, containers whose limits
/// `/proc/meminfo` does not show, and tests.
pub const LIMIT_ENV: &str = "WEFT_MEMORY_LIMIT";

/// Elements of one activation tensor past which a graph is not even built: about 2.8·10^14,
/// far past any machine, and far enough below 2^64 that no shape product can wrap.
pub(crate) const MAX_ACTIVATION_ELEMENTS: u128 = 1 << 48;

/// A run that does not fit.
#[derive(Debug, thiserror::Error)]
pub struct MemoryError {
    /// What was being sized (`training`, `evaluation`, `generation`).
    pub what: String,
    pub needed: u128,
    pub available: u64,
    /// Where `available` came from.
    pub available_from: String,
    /// The parts of `needed`, largest first.
    pub parts: Vec<(String, u128)>,
    /// The settings to lower.
    pub advice: String,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} needs about {} of memory, but {} is available ({}): ",
            self.what,
            bytes(self.needed),
            bytes(self.available as u128),
            self.available_from
        )?;
        let parts: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {}", bytes(*n)))
            .collect();
        write!(f, "{}. {}", parts.join(", "), self.advice)
    }
}

/// A byte count for people: `1.5 GiB`.
pub fn bytes(n: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Memory this process may use, and where the number came from: `$WEFT_MEMORY_LIMIT` if set,
/// else `MemAvailable` of `/proc/meminfo`; `None` where neither exists (then nothing is
/// refused).
pub fn available() -> Option<(u64, String)> {
    if let Ok(v) = std::env::var(LIMIT_ENV) {
        if let Some(n) = parse_size(&v) {
            return Some((n, format!("${LIMIT_ENV}")));
        }
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    mem_available(&text).map(|n| (n, "MemAvailable in /proc/meminfo".into()))
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// `123`, `64M`, `1.5G`, `2T` (powers of 1024; a trailing `B`/`iB` is allowed).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as u64)
}

/// Parameter counts of a model (all, trainable), from its graph at batch 1 × 1 token.
pub fn param_counts(g: &Graph) -> (u128, u128) {
    g.params.iter().fold((0, 0), |(all, tr), p| {
        let n = elements(&p.shape);
        (all + n, if p.trainable { tr + n } else { tr })
    })
}

/// Elements of a shape, without wrapping.
pub fn elements(shape: &[usize]) -> u128 {
    shape.iter().map(|&d| d as u128).product()
}

/// Advice when parameters alone, or activations, are what does not fit.
pub(crate) fn advice(model_fits: bool, training: bool) -> String {
    if !model_fits {
        "The model itself is too large: lower the model's `dim`, `layers`, `vocab` or hidden widths.".into()
    } else if training {
        "Lower `batch` (or raise `accumulate`, which splits each batch into micro-batches) or `seq` in the train section, or the model's size.".into()
    } else {
        "Use fewer or shorter sequences, or a smaller model.".into()
    }
}

/// Refuses `parts` when their sum exceeds `available`.
pub(crate) fn judge(
    what: &str,
    mut parts: Vec<(String, u128)>,
    available: Option<(u64, String)>,
    training: bool,
) -> Result<(), MemoryError> {
    let Some((avail, from)) = available else {
        return Ok(());
    };
    let needed: u128 = parts.iter().map(|(_, n)| *n).sum();
    if needed <= avail as u128 {
        return Ok(());
    }
    let model: u128 = parts
        .iter()
        .filter(|(k, _)| k == "parameters" || k == "gradients" || k == "optimizer state")
        .map(|(_, n)| *n)
        .sum();
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    Err(MemoryError {
        what: what.into(),
        needed,
        available: avail,
        available_from: from,
        parts,
        advice: advice(model <= avail as u128, training),
    })
}

/// The planned peak of computed values, and the inputs and constants a graph reads.
pub(crate) fn graph_parts(g: &Graph) -> Vec<(String, u128)> {
    let peak = plan_memory(g, true).peak_bytes as u128;
    let inputs: u128 = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Input { .. } | Op::Const { .. }))
        .map(|n| elements(&n.shape) * n.dtype.size_bytes() as u128)
        .sum();
    vec![
        ("activations (planned peak)".into(), peak),
        ("inputs".into(), inputs),
    ]
}

/// A forward pass (`weft eval`, `weft generate`): parameters, inputs and the planned peak.
/// `what` names the command for the message.
pub fn check_inference(g: &Graph, what: &str) -> Result<(), MemoryError> {
    check_inference_with(g, what, available())
}

/// [`check_inference`] against a given amount of memory.
pub fn check_inference_with(
    g: &Graph,
    what: &str,
    available: Option<(u64, String)>,
) -> Result<(), MemoryError> {
    let (all, _) = param_counts(g);
    let mut parts = vec![("parameters".into(), 4 * all)];
    parts.extend(graph_parts(g));
    judge(what, parts, available, false)
}

/// An import (`weft import`): `elements` weights become f32 (4 bytes each), and the mapping
/// holds about one more copy while it transposes or un-permutes them and writes the file.
pub fn check_import(elements: u128) -> Result<(), MemoryError> {
    check_import_with(elements, available())
}

/// [`check_import`] against a given amount of memory.
pub fn check_import_with(
    elements: u128,
    available: Option<(u64, String)>,
) -> Result<(), MemoryError> {
    let parts = vec![
        ("parameters".into(), 4 * elements),
        ("mapped copies".into(), 4 * elements),
    ];
    judge("import", parts, available, false)
}

/// A small trainable spec and a fixed memory limit, shared with the trainer's budget tests.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use weft_compiler::lower::{lower, LowerOptions};

    pub(crate) const SPEC: &str = "model tiny {
  vocab = 64
  dim = 32
  heads = 4
  layers = 2
  ctx = 64
  block b {
    x = x + attention(rms_norm(x))
    x = x + swiglu(rms_norm(x), hidden: 64)
  }
  layers { 0 .. layers => b }
}
train {
  data = copy_task(len: 4)
  seq = 64
  batch = 64
  steps = 3
}
";

    pub(crate) fn limit(n: u128) -> Option<(u64, String)> {
        Some((n as u64, "the test".into()))
    }

    #[test]
    fn import_is_refused_when_two_f32_copies_do_not_fit() {
        // 1000 weights: 4000 bytes as f32, 8000 with the mapping's copy.
        assert!(check_import_with(1000, limit(8000)).is_ok());
        let e = check_import_with(1000, limit(7999)).unwrap_err();
        assert_eq!(e.needed, 8000);
        assert!(
            e.to_string().starts_with("import needs about 7.8 KiB"),
            "{e}"
        );
        assert!(check_import_with(u64::MAX as u128, None).is_ok());
    }

    #[test]
    fn inference_is_sized_the_same_way() {
        let spec = weft_dsl::check_source(SPEC).unwrap();
        let g = lower(&spec, &LowerOptions::new(4, 64)).unwrap();
        check_inference_with(&g, "evaluation", limit(1 << 40)).unwrap();
        let m = check_inference_with(&g, "evaluation", limit(4096)).unwrap_err();
        assert!(m.to_string().starts_with("evaluation needs about"), "{m}");
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        let info = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(info), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }
}
