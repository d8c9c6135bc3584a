//! The table of built-in constructs: every call a spec can make, what it returns, its
//! arguments with their types and defaults, and a one-line description.
//!
//! The grammar only knows "a call with named arguments"; this table gives calls meaning.
//! The checker validates against it, the formatter and docs/language.md follow it, and a
//! test keeps the docs and the table in step. Defaults are written as weft source and
//! evaluated in the model's scope, so `hidden = "4 * dim"` means what it says.

use crate::typed;

/// What a builtin produces, i.e. where it may appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A tensor computation inside a block or pool (`attention`, `swiglu`, `rms_norm`...).
    Tensor,
    /// A rotary/positional rule for `attention(position: ...)`.
    Position,
    /// A router for `route(router: ...)` (MoM).
    Router,
    Optimizer,
    Schedule,
    Data,
    Transform,
    Loss,
    /// A per-demonstration reweighting rule for `segment_nll(reweight: ...)` (DR-ICL).
    Reweight,
    /// A probe or procedure run over a model: `program NAME = ...` or `train { eval = [...] }`.
    Probe,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Tensor => "a tensor expression",
            Kind::Position => "a position rule (rope, hope, freqs, nope)",
            Kind::Router => "a router (mlp, gru)",
            Kind::Optimizer => "an optimizer (adamw, sgd)",
            Kind::Schedule => "a schedule (constant, linear, cosine, cosine_tail)",
            Kind::Data => "a data source",
            Kind::Transform => "a data transform",
            Kind::Loss => "a loss",
            Kind::Reweight => "a reweighting rule (advantage)",
            Kind::Probe => "a probe or program",
        }
    }
}

/// The type of an argument or setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Int,
    /// A number; integers are accepted.
    Float,
    Bool,
    Str,
    /// A bare name from a closed set, e.g. `mask: causal`.
    Choice(&'static [&'static str]),
    /// A call to a builtin of this kind; a bare name stands for a call with no arguments.
    Of(Kind),
    /// The name of a `pool` in the model.
    Pool,
    /// The name of an attention rule (`rule NAME { ... }` or the prelude's).
    Rule,
    IntList,
    FloatList,
    StrList,
    /// A list of builtin calls of this kind.
    ListOf(Kind),
}

impl Ty {
    pub fn describe(self) -> String {
        match self {
            Ty::Int => "an integer".into(),
            Ty::Float => "a number".into(),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Str => "a string".into(),
            Ty::Choice(c) => format!("one of {}", quoted(c)),
            Ty::Of(k) => k.describe().into(),
            Ty::Pool => "the name of a pool".into(),
            Ty::Rule => "the name of an attention rule".into(),
            Ty::IntList => "a list of integers".into(),
            Ty::FloatList => "a list of numbers".into(),
            Ty::StrList => "a list of strings".into(),
            Ty::ListOf(k) => format!(
                "a list of {}",
                k.describe()
                    .trim_start_matches("a ")
                    .trim_start_matches("an ")
            ),
        }
    }
}

pub(crate) fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An argument of a builtin, or a setting of a `model`/`train` section.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    /// `None`: required. `Some("")`: optional with no value. Otherwise weft source.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// One built-in construct.
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    pub name: &'static str,
    pub kind: Kind,
    pub params: &'static [Param],
    pub doc: &'static str,
}

impl Builtin {
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Param {
    Param {
        name,
        ty,
        default: None,
        doc,
    }
}

const fn opt(name: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Param {
    Param {
        name,
        ty,
        default: Some(default),
        doc,
    }
}

// The closed sets of names are the typed choices' own lists, so the table and the types
// (`crate::typed`) cannot drift apart.
pub const WEIGHT_RULES: &[&str] = typed::WeightRule::NAMES;
pub const MASK_RULES: &[&str] = typed::MaskRule::NAMES;
pub const LAYOUTS: &[&str] = typed::Layout::NAMES;
pub const GAINS: &[&str] = typed::Gain::NAMES;

const T: Ty = Ty::Of(Kind::Tensor);

/// Every builtin, grouped by kind.
pub const BUILTINS: &[Builtin] = &[
    // ---- tensor constructs (blocks and pools) ----
    Builtin {
        name: "attention",
        kind: Kind::Tensor,
        doc: "Multi-head attention with a weight rule, a mask rule, a position rule and optional per-head output gains.",
        params: &[
            req("input", T, "the normalised residual stream"),
            opt("heads", Ty::Int, "heads", "query heads"),
            opt("kv_heads", Ty::Int, "kv_heads", "key/value heads (grouped-query attention when fewer than `heads`)"),
            opt("weights", Ty::Choice(WEIGHT_RULES), "softmax", "`softmax`, or `signed` = sign(p)·softmax(|p|) (Cog attention)"),
            opt("mask", Ty::Choice(MASK_RULES), "causal", "which keys each query sees"),
            opt("position", Ty::Of(Kind::Position), "rope()", "rotary rule applied to q and k"),
            opt("gain", Ty::Choice(GAINS), "none", "per-head output gains folded into W_O at export (PEAR)"),
            opt("bias", Ty::Bool, "false", "bias on the q/k/v/o projections"),
            opt("qkv_bias", Ty::Bool, "false", "bias on the q/k/v projections only, not o (Qwen2); implied by `bias`"),
            opt("dropout", Ty::Float, "0.0", "attention-weight dropout while training"),
            opt("rule", Ty::Rule, "", "an attention rule (`rule NAME { ... }`): its score, and its mask and weights where it defines them (they replace `mask` and `weights`)"),
        ],
    },
    Builtin {
        name: "mlp",
        kind: Kind::Tensor,
        doc: "Two-layer feed-forward network `W2 act(W1 x + b1) + b2`.",
        params: &[
            req("input", T, "the normalised residual stream"),
            opt("hidden", Ty::Int, "4 * dim", "hidden width"),
            opt("activation", Ty::Choice(typed::Activation::NAMES), "gelu", "activation (gelu is the tanh approximation, GPT-2's gelu_new)"),
            opt("bias", Ty::Bool, "true", "biases on both projections"),
        ],
    },
    Builtin {
        name: "swiglu",
        kind: Kind::Tensor,
        doc: "Gated feed-forward network `W_down (silu(W_gate x) ⊙ W_up x)` (Llama).",
        params: &[
            req("input", T, "the normalised residual stream"),
            opt("hidden", Ty::Int, "4 * dim", "hidden width"),
        ],
    },
    Builtin {
        name: "rms_norm",
        kind: Kind::Tensor,
        doc: "RMSNorm with a learned scale.",
        params: &[req("input", T, "tensor to normalise"), opt("eps", Ty::Float, "1e-6", "added to the mean square")],
    },
    Builtin {
        name: "layer_norm",
        kind: Kind::Tensor,
        doc: "LayerNorm with learned scale and bias.",
        params: &[req("input", T, "tensor to normalise"), opt("eps", Ty::Float, "1e-5", "added to the variance")],
    },
    Builtin {
        name: "dropout",
        kind: Kind::Tensor,
        doc: "Residual dropout while training; identity at evaluation.",
        params: &[req("input", T, "tensor"), opt("p", Ty::Float, "0.1", "drop probability")],
    },
    Builtin {
        name: "route",
        kind: Kind::Tensor,
        doc: "Mixture-of-Modules step: a router picks `top_k` modules of a pool (or SKIP) per token; the chosen modules' outputs, weighted by router probability, are returned. Inside `repeat`, the router and its state are shared across iterations.",
        params: &[
            req("pool", Ty::Pool, "the pool to route over"),
            req("router", Ty::Of(Kind::Router), "the router (`mlp` or `gru`)"),
            opt("top_k", Ty::Int, "1", "modules chosen per token"),
            opt("skip", Ty::Bool, "true", "add a SKIP choice that leaves the token unchanged"),
            opt("temperature", Ty::Float, "1.0", "router softmax temperature τ_r"),
            opt("balance", Ty::Float, "0.01", "weight of the Switch load-balancing loss"),
            opt("straight_through", Ty::Bool, "false", "straight-through estimator on the routing weights"),
            opt("execution", Ty::Choice(typed::Execution::NAMES), "dense", "dense-masked (all modules run) or sparse (tokens grouped by module)"),
        ],
    },
    // ---- position rules ----
    Builtin {
        name: "rope",
        kind: Kind::Position,
        doc: "Rotary position encoding θ_i = base^(-2i/d); with `bases`, a routed mixture of rotary bases per token and head (MoICE).",
        params: &[
            opt("base", Ty::Float, "10000", "rotary base b"),
            opt("layout", Ty::Choice(LAYOUTS), "half", "`half`: pairs (i, i+d/2) (HF Llama); `interleaved`: pairs (2i, 2i+1)"),
            opt("bases", Ty::FloatList, "", "several bases = in-context experts (MoICE)"),
            opt("router", Ty::Choice(typed::MoiceRouter::NAMES), "", "router over `bases` on the query rotated by the first base"),
            opt("top_k", Ty::Int, "", "bases mixed per token and head (default: all)"),
            opt("balance", Ty::Float, "0.0", "weight of the router's load-balancing loss"),
        ],
    },
    Builtin {
        name: "hope",
        kind: Kind::Position,
        doc: "HoPE: RoPE keeping only high-frequency pairs; the rest get θ = 0 (position-independent).",
        params: &[
            opt("base", Ty::Float, "10000", "rotary base b"),
            opt("layout", Ty::Choice(LAYOUTS), "half", "pair layout"),
            opt("keep", Ty::Int, "", "number of highest-frequency pairs kept (overrides `train_len`)"),
            opt("train_len", Ty::Int, "ctx", "keep pair i iff θ_i · train_len ≥ 2π"),
        ],
    },
    Builtin {
        name: "freqs",
        kind: Kind::Position,
        doc: "Rotary encoding with an explicit per-pair frequency table (zeros allowed).",
        params: &[
            req("table", Ty::FloatList, "one frequency per rotary pair (head_dim / 2 entries)"),
            opt("layout", Ty::Choice(LAYOUTS), "half", "pair layout"),
        ],
    },
    Builtin { name: "nope", kind: Kind::Position, doc: "No position encoding in attention.", params: &[] },
    // ---- routers ----
    Builtin {
        name: "mlp",
        kind: Kind::Router,
        doc: "Two-layer ReLU MLP router on the raw residual stream.",
        params: &[opt("hidden", Ty::Int, "256", "router width")],
    },
    Builtin {
        name: "gru",
        kind: Kind::Router,
        doc: "GRU-cell router whose state is carried across `repeat` iterations.",
        params: &[opt("hidden", Ty::Int, "256", "state width")],
    },
    // ---- optimizers ----
    Builtin {
        name: "adamw",
        kind: Kind::Optimizer,
        doc: "AdamW with decoupled weight decay.",
        params: &[
            opt("lr", Ty::Float, "1e-3", "peak learning rate"),
            opt("betas", Ty::FloatList, "[0.9, 0.999]", "β1, β2"),
            opt("eps", Ty::Float, "1e-8", "ε"),
            opt("weight_decay", Ty::Float, "0.0", "decoupled weight decay (matrices and embeddings; gains and biases are not decayed)"),
        ],
    },
    Builtin {
        name: "sgd",
        kind: Kind::Optimizer,
        doc: "SGD with momentum.",
        params: &[
            opt("lr", Ty::Float, "1e-2", "learning rate"),
            opt("momentum", Ty::Float, "0.0", "momentum"),
            opt("weight_decay", Ty::Float, "0.0", "L2 weight decay (matrices and embeddings; gains and biases are not decayed)"),
        ],
    },
    // ---- schedules ----
    Builtin {
        name: "constant",
        kind: Kind::Schedule,
        doc: "Constant learning rate after a linear warm-up.",
        params: &[opt("warmup", Ty::Int, "0", "warm-up steps")],
    },
    Builtin {
        name: "linear",
        kind: Kind::Schedule,
        doc: "Linear decay to `final`·lr after warm-up.",
        params: &[opt("warmup", Ty::Int, "0", "warm-up steps"), opt("final", Ty::Float, "0.0", "final fraction of lr")],
    },
    Builtin {
        name: "cosine",
        kind: Kind::Schedule,
        doc: "Cosine decay to `floor`·lr after warm-up.",
        params: &[opt("warmup", Ty::Int, "0", "warm-up steps"), opt("floor", Ty::Float, "0.0", "final fraction of lr")],
    },
    Builtin {
        name: "cosine_tail",
        kind: Kind::Schedule,
        doc: "Cosine to `floor`·lr at fraction `at` of training, then linear to 0 (MetaMath/Masked Thought).",
        params: &[
            opt("warmup", Ty::Int, "0", "warm-up steps"),
            opt("floor", Ty::Float, "0.05", "fraction of lr reached at `at`"),
            opt("at", Ty::Float, "0.6", "fraction of training where the linear tail starts"),
        ],
    },
    // ---- data ----
    Builtin {
        name: "text",
        kind: Kind::Data,
        doc: "A text corpus (plain text, or JSONL with `field`), tokenized and packed into sequences.",
        params: &[
            req("path", Ty::Str, "file path, relative to the spec"),
            opt("tokenizer", Ty::Str, "\"bytes\"", "`\"bytes\"` or a path to a HF tokenizer.json"),
            opt("field", Ty::Str, "", "JSONL field holding the text"),
            opt("valid", Ty::Float, "0.05", "fraction held out for evaluation"),
        ],
    },
    Builtin {
        name: "copy_task",
        kind: Kind::Data,
        doc: "Repeated random tokens `s ⊕ s`; loss on the second half.",
        params: &[opt("len", Ty::Int, "32", "length n of one copy"), opt("vocab", Ty::Int, "vocab", "token ids drawn from [2, vocab)")],
    },
    Builtin {
        name: "markov",
        kind: Kind::Data,
        doc: "A random bigram chain over [2, vocab) with occasionally repeated spans: a language whose later drop in loss needs copying (grok-to-copy).",
        params: &[
            opt("branching", Ty::Int, "4", "successors per token (probabilities ∝ 1/rank)"),
            opt("repeat_p", Ty::Float, "0.5", "probability that a sequence repeats one earlier span"),
            opt("span", Ty::Int, "16", "length of the repeated span"),
        ],
    },
    Builtin {
        name: "kv_recall",
        kind: Kind::Data,
        doc: "Key–value pairs followed by a query key; predict its value (associative recall / needle retrieval).",
        params: &[
            opt("pairs", Ty::Int, "8", "pairs per sequence"),
            opt("len", Ty::Int, "ctx", "sequence length (filler between pairs)"),
        ],
    },
    Builtin {
        name: "label_mapping",
        kind: Kind::Data,
        doc: "Noisy many-shot label mapping: task id (or a shared start token), then (x, y) demonstration turns with turn and segment ids.",
        params: &[
            opt("tasks", Ty::Int, "16", "number of fixed mappings"),
            opt("inputs", Ty::Int, "8", "input tokens per mapping"),
            opt("labels", Ty::Int, "4", "label tokens"),
            opt("shots", Ty::Int, "64", "maximum demonstrations per sequence"),
            opt("noise", Ty::Float, "0.0", "fraction of flipped demonstration labels"),
            opt("task_id", Ty::Bool, "true", "start each sequence with its task id; `false`: one shared start token, so the mapping must be recognised from the demonstrations"),
        ],
    },
    Builtin {
        name: "arithmetic",
        kind: Kind::Data,
        doc: "Multi-step modular sums with chain of thought (`a+b+c+d` mod m with intermediate sums).",
        params: &[
            opt("terms", Ty::Int, "4", "operands per problem"),
            opt("modulus", Ty::Int, "100", "modulus"),
            opt("problems", Ty::Int, "2000", "training problems"),
        ],
    },
    Builtin {
        name: "facts",
        kind: Kind::Data,
        doc: "Templated facts (\"... the capital of C is K\") with corrupted twins for patching.",
        params: &[opt("pairs", Ty::Int, "50", "subject–answer pairs"), opt("templates", Ty::Int, "10", "templates")],
    },
    // ---- transforms ----
    Builtin {
        name: "masked_thought",
        kind: Kind::Transform,
        doc: "Masked Thought: replace answer tokens in the input with probability p(t) (warm-up), labels unchanged.",
        params: &[
            opt("p", Ty::Float, "0.4", "final mask rate p_max"),
            opt("warmup", Ty::Float, "0.66", "fraction of training over which p rises linearly from 0"),
            opt("replace", Ty::Choice(typed::Replace::NAMES), "random", "`mask`: the `<mask>` token of `extend_vocab` (the pad id without it); `random`: a uniform random token"),
        ],
    },
    Builtin {
        name: "extend_vocab",
        kind: Kind::Transform,
        doc: "Add tokens to the vocabulary; their embedding rows start at the mean of existing rows.",
        params: &[req("tokens", Ty::StrList, "the new tokens")],
    },
    // ---- losses ----
    Builtin {
        name: "nll",
        kind: Kind::Loss,
        doc: "Mean next-token cross-entropy over the selected tokens.",
        params: &[
            opt("mask", Ty::Choice(typed::LossMask::NAMES), "all", "which label positions count"),
            opt("attention", Ty::Choice(typed::LossView::NAMES), "same", "a second view: override every attention mask (DR-ICL's zero-shot view)"),
        ],
    },
    Builtin {
        name: "segment_nll",
        kind: Kind::Loss,
        doc: "Mean over answer segments of each segment's mean cross-entropy, optionally reweighted per segment.",
        params: &[
            opt("reweight", Ty::Of(Kind::Reweight), "", "per-segment weights (detached)"),
            opt("attention", Ty::Choice(typed::LossView::NAMES), "same", "attention-mask view"),
        ],
    },
    Builtin {
        name: "advantage",
        kind: Kind::Reweight,
        doc: "DR-ICL advantage reweighting: w_k = exp((ℓ_k − β_k)/γ), baseline β_k the largest loss among the previous `window` segments; no gradient through w_k.",
        params: &[opt("gamma", Ty::Float, "11.0", "temperature γ"), opt("window", Ty::Int, "10", "baseline window W")],
    },
    // ---- probes and programs ----
    Builtin {
        name: "copy_accuracy",
        kind: Kind::Probe,
        doc: "Greedy next-token accuracy on the second half of repeated random tokens.",
        params: &[opt("len", Ty::Int, "32", "length of one copy"), opt("samples", Ty::Int, "64", "sequences")],
    },
    Builtin {
        name: "induction_score",
        kind: Kind::Probe,
        doc: "Per-head attention from a second-copy token to the token after its first occurrence (L×H table).",
        params: &[opt("len", Ty::Int, "32", "length of one copy"), opt("samples", Ty::Int, "16", "sequences")],
    },
    Builtin {
        name: "ov_copy_score",
        kind: Kind::Probe,
        doc: "Per-head OV copying score: eigenvalue positivity, or top-k token copying.",
        params: &[opt("form", Ty::Choice(typed::OvForm::NAMES), "eigen", "score form"), opt("k", Ty::Int, "10", "top-k for `topk`")],
    },
    Builtin { name: "logit_lens", kind: Kind::Probe, doc: "Unembed every layer's residual stream.", params: &[opt("len", Ty::Int, "32", "probe length")] },
    Builtin { name: "head_attribution", kind: Kind::Probe, doc: "Direct logit attribution of each head and MLP.", params: &[opt("len", Ty::Int, "32", "probe length")] },
    Builtin {
        name: "attention_distance",
        kind: Kind::Probe,
        doc: "Mean attention weight against relative distance, per head (HoPE's U-shape diagnostic).",
        params: &[opt("len", Ty::Int, "ctx", "probe length")],
    },
    Builtin {
        name: "rope_components",
        kind: Kind::Probe,
        doc: "Per-rotary-pair score contribution against relative distance for one head.",
        params: &[req("layer", Ty::Int, "layer index"), req("head", Ty::Int, "head index")],
    },
    Builtin { name: "negative_mass", kind: Kind::Probe, doc: "Fraction of negative attention mass per head (Cog).", params: &[opt("len", Ty::Int, "ctx", "probe length")] },
    Builtin {
        name: "collapse_probe",
        kind: Kind::Probe,
        doc: "Representation-collapse probe Δ(n): final-state difference of two inputs differing in one early token (Cog).",
        params: &[
            opt("task", Ty::Choice(typed::CollapseTaskName::NAMES), "count_ones", "prompt pair"),
            opt("lengths", Ty::IntList, "[16, 32, 64]", "values of n"),
        ],
    },
    Builtin {
        name: "path_patching",
        kind: Kind::Probe,
        doc: "For every head, replace its result at the query position (batch mean or corrupted run), q/k/v frozen; L×H table of the metric change.",
        params: &[
            opt("task", Ty::Choice(typed::PatchTask::NAMES), "copy", "prompts and metric"),
            opt("corruption", Ty::Choice(typed::PatchCorruption::NAMES), "mean", "what replaces the head's result"),
            opt("samples", Ty::Int, "32", "prompts"),
        ],
    },
    Builtin {
        name: "pear",
        kind: Kind::Probe,
        doc: "PEAR: detect suppression heads, learn their gains on the copy proxy with everything else frozen, fold into W_O.",
        params: &[
            opt("heads", Ty::Int, "4", "heads re-weighted (K)"),
            opt("steps", Ty::Int, "60", "gain-training steps"),
            opt("lr", Ty::Float, "5e-3", "gain learning rate"),
            opt("len", Ty::Int, "50", "copy proxy length n"),
        ],
    },
    Builtin {
        name: "mlp_decomposition",
        kind: Kind::Probe,
        doc: "Fit an MLP's output as shared scalar weights over the layer's head results and residual plus an intercept.",
        params: &[req("layer", Ty::Int, "layer index")],
    },
    Builtin {
        name: "final_layer",
        kind: Kind::Probe,
        doc: "Final-layer anti-overconfidence analysis and intervention.",
        params: &[opt("intervention", Ty::Choice(typed::FinalIntervention::NAMES), "self_only", "the intervention")],
    },
    Builtin {
        name: "batch_icl",
        kind: Kind::Probe,
        doc: "Batch-ICL: N one-shot passes, mean post-attention residual at the last positions injected at layer k of the zero-shot pass.",
        params: &[
            opt("demos", Ty::Int, "4", "demonstrations N"),
            opt("layer", Ty::Int, "", "injection layer k (default: sweep all)"),
            opt("positions", Ty::Int, "2", "last positions aggregated"),
            opt("alpha", Ty::Float, "0.0", "extrapolation α"),
            opt("epochs", Ty::Int, "1", "multi-epoch aggregation"),
        ],
    },
    Builtin {
        name: "icl_orders",
        kind: Kind::Probe,
        doc: "N-shot accuracy over every order of the demonstrations.",
        params: &[opt("demos", Ty::Int, "4", "demonstrations N")],
    },
    Builtin {
        name: "shots_sweep",
        kind: Kind::Probe,
        doc: "Accuracy against the number of in-context demonstrations.",
        params: &[opt("shots", Ty::IntList, "[1, 4, 16, 64]", "demonstration counts")],
    },
    Builtin {
        name: "needle_sweep",
        kind: Kind::Probe,
        doc: "Retrieval accuracy against the needle's position in the context.",
        params: &[opt("positions", Ty::Int, "8", "positions tested")],
    },
    Builtin {
        name: "length_sweep",
        kind: Kind::Probe,
        doc: "Accuracy and loss against sequence length (extrapolation).",
        params: &[opt("lengths", Ty::IntList, "[128, 256, 512, 1024]", "lengths tested")],
    },
];

/// Settings of a `model { ... }` section. Names not listed are user constants.
pub const MODEL_SETTINGS: &[Param] = &[
    req("vocab", Ty::Int, "vocabulary size"),
    req("dim", Ty::Int, "model width D"),
    req(
        "heads",
        Ty::Int,
        "attention heads H (D must be divisible by H)",
    ),
    req("layers", Ty::Int, "number of layers"),
    req("ctx", Ty::Int, "maximum sequence length"),
    opt(
        "kv_heads",
        Ty::Int,
        "heads",
        "key/value heads (must divide `heads`)",
    ),
    opt("head_dim", Ty::Int, "dim / heads", "per-head width d"),
    opt(
        "position",
        Ty::Choice(typed::AbsPosition::NAMES),
        "none",
        "absolute position embedding added to the token embedding",
    ),
    opt(
        "tie_embeddings",
        Ty::Bool,
        "false",
        "unembedding shares the token embedding",
    ),
    opt(
        "final_norm",
        Ty::Choice(typed::NormKind::NAMES),
        "rms_norm",
        "norm before the unembedding",
    ),
    opt(
        "final_norm_eps",
        Ty::Float,
        "",
        "eps of the final norm (default: the norm's own, 1e-6 for rms_norm, 1e-5 for layer_norm)",
    ),
    opt(
        "init_std",
        Ty::Float,
        "0.02",
        "std of the normal initialisation",
    ),
];

/// Settings of a `train { ... }` section.
pub const TRAIN_SETTINGS: &[Param] = &[
    req("data", Ty::Of(Kind::Data), "training data"),
    req("steps", Ty::Int, "optimizer steps"),
    opt("batch", Ty::Int, "16", "sequences per step"),
    opt("seq", Ty::Int, "ctx", "tokens per sequence"),
    opt(
        "seed",
        Ty::Int,
        "0",
        "seed for initialisation, data and dropout",
    ),
    opt("optimizer", Ty::Of(Kind::Optimizer), "adamw()", "optimizer"),
    opt(
        "schedule",
        Ty::Of(Kind::Schedule),
        "constant()",
        "learning-rate schedule",
    ),
    opt(
        "clip",
        Ty::Float,
        "1.0",
        "global gradient-norm clip (0 = off)",
    ),
    opt("accumulate", Ty::Int, "1", "micro-batches per step"),
    opt(
        "trainable",
        Ty::StrList,
        "[\"*\"]",
        "globs over parameter names; others are frozen",
    ),
    opt(
        "transforms",
        Ty::ListOf(Kind::Transform),
        "[]",
        "data transforms applied per step",
    ),
    opt(
        "loss",
        Ty::Of(Kind::Loss),
        "nll()",
        "objective; losses combine with `+` and scalar `*`",
    ),
    opt(
        "eval",
        Ty::ListOf(Kind::Probe),
        "[]",
        "probes run every `eval_every` steps",
    ),
    opt("eval_every", Ty::Int, "100", "steps between evaluations"),
    opt("log_every", Ty::Int, "10", "steps between metric lines"),
    opt(
        "checkpoint_every",
        Ty::Int,
        "0",
        "steps between checkpoints (0 = every 10% of `steps`); there is always one at the end",
    ),
    opt(
        "checkpoint_minutes",
        Ty::Float,
        "10.0",
        "also checkpoint when this many minutes of wall time passed since the last one (0 = off)",
    ),
    opt(
        "keep_checkpoints",
        Ty::Int,
        "3",
        "newest checkpoints kept, besides `best` (0 = keep all)",
    ),
];

/// The builtin of this kind with this name (names are unique within a kind: `mlp` is both a
/// feed-forward block and a router).
pub fn lookup(name: &str, kind: Kind) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name && b.kind == kind)
}

/// Any builtin with this name, whatever its kind.
pub fn lookup_any(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn names_of(kind: Kind) -> impl Iterator<Item = &'static str> {
    BUILTINS
        .iter()
        .filter(move |b| b.kind == kind)
        .map(|b| b.name)
}
