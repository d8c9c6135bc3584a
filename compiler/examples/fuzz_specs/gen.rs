//! Inputs for the spec fuzzer: byte and token mutations of the shipped examples, and specs
//! generated from the language's shape (settings, pools, blocks, schedules, train sections,
//! programs) with numbers drawn towards the edges (0, −1, powers of two, 2^24 ± 1, i64::MAX,
//! literals past 64 bits, float overflow).

/// splitmix64: a tiny seeded generator, so a case is reproducible from `(seed, index)`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Numbers at the edges of every bound and type.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "64",
    "65535",
    "65536",
    "16384",
    "16385",
    "1048576",
    "16777216",
    "16777217",
    "268435457",
    "4294967296",
    "1099511627777",
    "9223372036854775807",
    "99999999999999999999999999",
    "0.0",
    "0.5",
    "1.0",
    "-0.5",
    "1e-3",
    "1e308",
    "1e999",
    "-1e999",
    "1e-999",
];

/// Small values a working model uses.
const SMALL_NUMBERS: &[&str] = &["1", "2", "4", "8", "16", "32", "3", "6", "12"];

/// Tokens a mutation may insert.
const TOKENS: &[&str] = &[
    "model",
    "block",
    "pool",
    "repeat",
    "train",
    "program",
    "layers",
    "x",
    "=",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "..",
    "=>",
    "+",
    "-",
    "*",
    "/",
    "\"s\"",
    "true",
    "false",
    "dim",
    "vocab",
    "heads",
    "kv_heads",
    "head_dim",
    "ctx",
    "hidden",
    "top_k",
    "steps",
    "batch",
    "seq",
    "attention",
    "route",
    "gru",
    "rope",
    "hope",
    "freqs",
    "nope",
    "swiglu",
    "mlp",
    "rms_norm",
    "layer_norm",
    "dropout",
    "signed",
    "causal",
    "bases",
    "router",
    "table",
    "keep",
    "#c\n",
    "\n",
    " ",
    ";",
    "é",
    "\u{0}",
];

/// Splits source text into tokens (identifiers, numbers, strings, comments, punctuation,
/// whitespace) so mutations replace whole words and numbers.
pub fn tokenize(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let mut end = i + c.len_utf8();
        let same = |a: char, b: char| {
            (a.is_alphanumeric() || a == '_' || a == '.')
                == (b.is_alphanumeric() || b == '_' || b == '.')
                && a.is_whitespace() == b.is_whitespace()
        };
        if c == '"' {
            for (j, d) in chars.by_ref() {
                end = j + d.len_utf8();
                if d == '"' {
                    break;
                }
            }
        } else if c == '#' {
            while let Some(&(j, d)) = chars.peek() {
                if d == '\n' {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
        } else if c.is_alphanumeric() || c == '_' || c.is_whitespace() {
            while let Some(&(j, d)) = chars.peek() {
                if !same(c, d) || d == '"' || d == '#' {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
        }
        out.push(src[i..end].to_string());
    }
    out
}

/// 1 to 8 byte edits: overwrite, delete, insert, duplicate a run, splice from another example.
pub fn mutate_bytes(rng: &mut Rng, src: &str, other: &str) -> String {
    let mut b = src.as_bytes().to_vec();
    for _ in 0..1 + rng.below(8) {
        if b.is_empty() {
            b.extend_from_slice(other.as_bytes());
            continue;
        }
        let i = rng.below(b.len());
        match rng.below(5) {
            0 => b[i] = rng.next() as u8,
            1 => {
                let n = (1 + rng.below(8)).min(b.len() - i);
                b.drain(i..i + n);
            }
            2 => b.insert(i, *rng.pick(b"0123456789{}()[]=,:.-+*/\n \"#x")),
            3 => {
                let n = (1 + rng.below(32)).min(b.len() - i);
                let run: Vec<u8> = b[i..i + n].to_vec();
                let at = rng.below(b.len());
                b.splice(at..at, run);
            }
            _ => {
                let o = other.as_bytes();
                if !o.is_empty() {
                    let s = rng.below(o.len());
                    let n = (1 + rng.below(64)).min(o.len() - s);
                    b.splice(i..i, o[s..s + n].iter().copied());
                }
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// 1 to 6 token edits: a number becomes an edge number, a word another word, tokens are
/// deleted, duplicated, swapped or inserted.
pub fn mutate_tokens(rng: &mut Rng, src: &str, words: &[String]) -> String {
    let mut t = tokenize(src);
    for _ in 0..1 + rng.below(6) {
        if t.is_empty() {
            t.push(rng.pick(TOKENS).to_string());
            continue;
        }
        let numbers: Vec<usize> = (0..t.len())
            .filter(|&i| t[i].starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        let i = rng.below(t.len());
        match rng.below(8) {
            0..=2 if !numbers.is_empty() => {
                let n = *rng.pick(&numbers);
                t[n] = if rng.chance(1, 2) {
                    rng.pick(EDGE_NUMBERS).to_string()
                } else {
                    rng.pick(SMALL_NUMBERS).to_string()
                };
            }
            3 if !words.is_empty() => {
                if t[i].starts_with(|c: char| c.is_alphabetic()) {
                    t[i] = rng.pick(words).clone();
                }
            }
            4 => {
                t.remove(i);
            }
            5 => {
                let dup = t[i].clone();
                t.insert(i, dup);
            }
            6 => {
                let j = rng.below(t.len());
                t.swap(i, j);
            }
            _ => t.insert(i, rng.pick(TOKENS).to_string()),
        }
    }
    t.concat()
}

fn num(rng: &mut Rng) -> String {
    if rng.chance(1, 6) {
        rng.pick(EDGE_NUMBERS).to_string()
    } else {
        rng.pick(SMALL_NUMBERS).to_string()
    }
}

/// A probability, now and then out of range.
fn prob(rng: &mut Rng) -> String {
    if rng.chance(1, 8) {
        rng.pick(EDGE_NUMBERS).to_string()
    } else {
        rng.pick(&["0.0", "0.1", "0.5"]).to_string()
    }
}

/// A random tensor expression over `x` for a block body.
fn module(rng: &mut Rng, pools: &[String], depth: usize) -> String {
    let norm = |rng: &mut Rng| {
        if rng.chance(1, 2) {
            "rms_norm(x)".to_string()
        } else {
            format!("layer_norm(x, eps: {})", num(rng))
        }
    };
    let inner = if depth > 0 && rng.chance(1, 3) {
        module(rng, pools, depth - 1)
    } else {
        norm(rng)
    };
    match rng.below(7) {
        0 | 1 => {
            let mut args = vec![inner];
            if rng.chance(1, 2) {
                args.push(format!(
                    "mask: {}",
                    rng.pick(weft_dsl::builtins::MASK_RULES)
                ));
            }
            if rng.chance(1, 3) {
                args.push(format!("heads: {}", num(rng)));
            }
            if rng.chance(1, 4) {
                args.push(format!("kv_heads: {}", num(rng)));
            }
            if rng.chance(1, 4) {
                args.push(format!("weights: {}", rng.pick(&["softmax", "signed"])));
            }
            if rng.chance(1, 2) {
                args.push(format!(
                    "position: {}",
                    match rng.below(6) {
                        0 => format!("rope(base: {})", num(rng)),
                        1 => format!("hope(keep: {})", num(rng)),
                        2 => format!("freqs(table: [{}, {}])", num(rng), num(rng)),
                        3 => format!(
                            "rope(bases: [10000, {}], router: swiglu, top_k: {})",
                            num(rng),
                            num(rng)
                        ),
                        4 => "nope".to_string(),
                        _ => "rope".to_string(),
                    }
                ));
            }
            if rng.chance(1, 6) {
                args.push(format!("dropout: {}", prob(rng)));
            }
            format!("attention({})", args.join(", "))
        }
        2 => format!("swiglu({inner}, hidden: {})", num(rng)),
        3 => format!(
            "mlp({inner}, activation: {})",
            rng.pick(&["gelu", "relu", "silu"])
        ),
        4 => format!("dropout({inner}, p: {})", prob(rng)),
        5 if !pools.is_empty() => format!(
            "route({}, router: {}, top_k: {}, skip: {})",
            rng.pick(pools),
            rng.pick(&["mlp(hidden: 8)", "gru(hidden: 8)", "mlp"]),
            num(rng),
            rng.pick(&["true", "false"])
        ),
        _ => inner,
    }
}

/// A whole spec from the language's shape, valid more often than not.
pub fn generate(rng: &mut Rng) -> String {
    let mut s = String::from("model g {\n");
    let dim = rng.pick(&["8", "16", "32", "12"]).to_string();
    let heads = rng.pick(&["1", "2", "4"]).to_string();
    let layers = rng.pick(&["1", "2", "3"]).to_string();
    for (k, v) in [
        ("vocab", rng.pick(&["16", "32", "64"]).to_string()),
        ("dim", dim),
        ("heads", heads),
        ("layers", layers),
        ("ctx", rng.pick(&["4", "8", "16"]).to_string()),
    ] {
        let v = if rng.chance(1, 8) { num(rng) } else { v };
        s += &format!("  {k} = {v}\n");
    }
    if rng.chance(1, 5) {
        let kv = if rng.chance(1, 4) {
            num(rng)
        } else {
            "1".into()
        };
        s += &format!("  kv_heads = {kv}\n");
    }
    if rng.chance(1, 6) {
        s += &format!("  head_dim = {}\n", num(rng));
    }
    if rng.chance(1, 4) {
        s += &format!(
            "  c = {} {} {}\n",
            num(rng),
            rng.pick(&["*", "+", "-", "/"]),
            num(rng)
        );
    }
    let mut pools = Vec::new();
    for p in 0..rng.below(3) {
        let name = format!("p{p}");
        let body = if rng.chance(1, 2) {
            "attention(rms_norm(x))".to_string()
        } else {
            "swiglu(rms_norm(x), hidden: 16)".to_string()
        };
        s += &format!("  pool {name}[{}] {{ {body} }}\n", num(rng));
        pools.push(name);
    }
    let blocks = 1 + rng.below(2);
    for b in 0..blocks {
        s += &format!("  block b{b} {{\n");
        let stmts = 1 + rng.below(3);
        for _ in 0..stmts {
            let line = format!("x = x + {}", module(rng, &pools, 2));
            if rng.chance(1, 8) {
                s += &format!("    repeat {} {{ {line} }}\n", num(rng));
            } else {
                s += &format!("    {line}\n");
            }
        }
        s += "  }\n";
    }
    s += "  layers {\n";
    if rng.chance(3, 4) {
        s += &format!("    0 .. layers => b{}\n", rng.below(blocks));
    } else {
        s += &format!(
            "    0 => b0\n    {} .. layers => b{}\n",
            num(rng),
            rng.below(blocks)
        );
    }
    s += "  }\n}\n";
    if rng.chance(3, 4) {
        s += "train {\n";
        s += &format!(
            "  data = {}\n",
            match rng.below(5) {
                0 => format!("copy_task(len: {})", rng.pick(&["2", "3", "4"])),
                1 => format!("markov(branching: {})", num(rng)),
                2 => format!("kv_recall(pairs: {}, len: {})", num(rng), num(rng)),
                3 => format!("arithmetic(terms: {}, modulus: {})", num(rng), num(rng)),
                _ => format!("facts(pairs: {})", num(rng)),
            }
        );
        s += &format!("  steps = {}\n", num(rng));
        for k in [
            "batch",
            "seq",
            "accumulate",
            "seed",
            "eval_every",
            "checkpoint_every",
        ] {
            if rng.chance(1, 3) {
                s += &format!("  {k} = {}\n", num(rng));
            }
        }
        if rng.chance(1, 3) {
            s += &format!(
                "  loss = {} * nll() + segment_nll(reweight: advantage(window: {}))\n",
                num(rng),
                num(rng)
            );
        }
        if rng.chance(1, 3) {
            s += &format!(
                "  schedule = {}(warmup: {})\n",
                rng.pick(&["constant", "cosine", "linear"]),
                num(rng)
            );
        }
        if rng.chance(1, 4) {
            s += "  trainable = [\"*.attn.*\"]\n";
        }
        s += "}\n";
    }
    if rng.chance(1, 4) {
        s += &format!(
            "program p = {}\n",
            match rng.below(3) {
                0 => format!("path_patching(samples: {})", num(rng)),
                1 => format!("batch_icl(demos: {}, layer: {})", num(rng), num(rng)),
                _ => format!("length_sweep(lengths: [{}, {}])", num(rng), num(rng)),
            }
        );
    }
    s
}
