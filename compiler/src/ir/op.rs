//! The closed op set. Primitives (elementwise, reductions, matmul, indexing, shape ops) plus
//! a few composites that get hand-written kernels (attention, rope, cross-entropy).
//!
//! Op parameters that fix the output (reshape target, cast dtype) are stored in the op, not
//! only in the node's shape, so the text form and CSE see them.

use super::rule::{Normaliser, RuleEnv, RuleExpr, RuleVar};
use super::types::{DType, Shape};
use serde::{Deserialize, Serialize};

/// Elementwise `f32 → f32` functions. Semantics in [`super::scalar`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    Neg,
    Abs,
    Sign,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Recip,
    Square,
    Tanh,
    Sigmoid,
    Silu,
    /// Tanh approximation ("gelu_new").
    Gelu,
    Relu,
    Sin,
    Cos,
}

impl UnaryOp {
    /// Every unary op, for tests and tables that must cover them all.
    pub const ALL: [UnaryOp; 16] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Recip,
        UnaryOp::Square,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::Relu,
        UnaryOp::Sin,
        UnaryOp::Cos,
    ];
}

/// Elementwise binary ops with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

/// Comparisons with numpy broadcasting; they produce `f32` 0/1 masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// Reductions over one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

/// How attention turns scores into weights. `Softmax` and `Signed` are the prelude's rules
/// (`Normaliser::Normalised` with `h = 1, f = s` and `h = sign(s), f = |s|`), kept as their
/// own variants so every backend runs its specialised kernels for them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttentionWeights {
    /// `w = softmax(p)` over visible keys.
    Softmax,
    /// Cog attention (METHODS §2.2): `w = sign(p) · softmax(|p|)`; rows have `Σ|w| = 1`.
    Signed,
    /// A rule written in the spec.
    Rule(Normaliser),
}

impl AttentionWeights {
    /// The rule as a normaliser (the built-in variants' definitions).
    pub fn normaliser(&self) -> Normaliser {
        match self {
            AttentionWeights::Softmax => Normaliser::Normalised {
                factor: RuleExpr::Const(1.0),
                exponent: RuleExpr::s(),
                sink: 0.0,
            },
            AttentionWeights::Signed => Normaliser::Normalised {
                factor: RuleExpr::unary(UnaryOp::Sign, RuleExpr::s()),
                exponent: RuleExpr::unary(UnaryOp::Abs, RuleExpr::s()),
                sink: 0.0,
            },
            AttentionWeights::Rule(n) => n.clone(),
        }
    }

    /// The variant for a normaliser: the built-in ones when it is theirs.
    pub fn of(n: Normaliser) -> AttentionWeights {
        if n == AttentionWeights::Softmax.normaliser() {
            AttentionWeights::Softmax
        } else if n == AttentionWeights::Signed.normaliser() {
            AttentionWeights::Signed
        } else {
            AttentionWeights::Rule(n)
        }
    }
}

/// Which keys a query may see.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttentionMask {
    /// `j ≤ t`.
    Causal,
    /// Every key.
    Bidirectional,
    /// `j ≤ t` and same document id (an i32 `[B,T]` segment input, e.g. cumsum of BOS flags).
    Document,
    /// `j ≤ t` and same turn id (DR-ICL's turn-isolating view, as the released code does).
    Turns,
    /// `Turns`, plus turn 0 (the instruction / task id) visible to every later turn: the
    /// variant METHODS §1.7 recommends.
    TurnsKeepFirst,
    /// `j = t` only (factual-recall final-layer intervention).
    SelfOnly,
    /// A condition written in the spec (non-zero: visible); it may read positions, heads,
    /// the key count and segment ids.
    Rule(RuleExpr),
}

impl AttentionMask {
    /// Whether the op takes the extra i32 `[B,T]` segment-id input.
    pub fn needs_segments(&self) -> bool {
        match self {
            AttentionMask::Document | AttentionMask::Turns | AttentionMask::TurnsKeepFirst => true,
            AttentionMask::Causal | AttentionMask::Bidirectional | AttentionMask::SelfOnly => false,
            AttentionMask::Rule(e) => e.reads(RuleVar::QuerySeg) || e.reads(RuleVar::KeySeg),
        }
    }

    /// Whether key `j` is visible from query `t` with segment ids `seg_t`, `seg_j`
    /// (ignored by the rules that do not use them). Every backend uses this definition.
    /// A spec's mask rule reads the place through [`AttentionMask::visible_at`].
    pub fn visible(&self, t: usize, j: usize, seg_t: i32, seg_j: i32) -> bool {
        self.visible_at(&RuleEnv::<f32> {
            score: 0.0,
            i: t,
            j,
            head: 0,
            kv_head: 0,
            keys: 0,
            seg_i: seg_t,
            seg_j,
            params: &[],
        })
    }

    /// Whether the key at `env` is visible.
    pub fn visible_at<T: super::Real>(&self, env: &RuleEnv<T>) -> bool {
        let (t, j, seg_t, seg_j) = (env.i, env.j, env.seg_i, env.seg_j);
        match self {
            AttentionMask::Causal => j <= t,
            AttentionMask::Bidirectional => true,
            AttentionMask::Document | AttentionMask::Turns => j <= t && seg_t == seg_j,
            AttentionMask::TurnsKeepFirst => j <= t && (seg_t == seg_j || seg_j == 0),
            AttentionMask::SelfOnly => j == t,
            AttentionMask::Rule(e) => e.eval(env) != T::zero(),
        }
    }

    /// The mask as a rule expression (1: visible), the definition [`Self::visible_at`]
    /// computes: what rules evaluated as graph ops ([`super::rule_graph`]) read.
    pub fn expr(&self) -> RuleExpr {
        use RuleExpr as E;
        let var = |v| Box::new(E::Var(v));
        let cmp = |op, a, c| E::Compare(op, var(a), var(c));
        let causal = || cmp(CmpOp::Le, RuleVar::KeyPos, RuleVar::QueryPos);
        let same_seg = || cmp(CmpOp::Eq, RuleVar::QuerySeg, RuleVar::KeySeg);
        match self {
            AttentionMask::Causal => causal(),
            AttentionMask::Bidirectional => E::Const(1.0),
            AttentionMask::Document | AttentionMask::Turns => {
                E::binary(BinaryOp::Mul, causal(), same_seg())
            }
            AttentionMask::TurnsKeepFirst => {
                let first = E::Compare(CmpOp::Eq, var(RuleVar::KeySeg), Box::new(E::Const(0.0)));
                E::binary(
                    BinaryOp::Mul,
                    causal(),
                    E::binary(BinaryOp::Max, same_seg(), first),
                )
            }
            AttentionMask::SelfOnly => cmp(CmpOp::Eq, RuleVar::KeyPos, RuleVar::QueryPos),
            AttentionMask::Rule(e) => {
                E::Compare(CmpOp::Ne, Box::new(e.clone()), Box::new(E::Const(0.0)))
            }
        }
    }

    /// Whether visibility depends on more than `(t, j)` and segment ids (a rule reading
    /// heads or the key count).
    pub fn reads_place(&self) -> bool {
        match self {
            AttentionMask::Rule(e) => {
                e.reads(RuleVar::Head) || e.reads(RuleVar::KvHead) || e.reads(RuleVar::Keys)
            }
            AttentionMask::Causal
            | AttentionMask::Bidirectional
            | AttentionMask::Document
            | AttentionMask::Turns
            | AttentionMask::TurnsKeepFirst
            | AttentionMask::SelfOnly => false,
        }
    }
}

/// The attention rule of one attention op: raw scores `p = scale · q·kᵀ`, an optional score
/// modification `s = score(p, i, j, head, ...)`, a mask and a normaliser of `s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionRule {
    pub weights: AttentionWeights,
    pub mask: AttentionMask,
    pub scale: f32,
    /// The score modification (`None`: `s = p`).
    #[serde(default)]
    pub score: Option<RuleExpr>,
    /// Query heads per kv head of the attention (for `kv_head` in rule expressions).
    #[serde(default = "one")]
    pub group: usize,
    /// Rule parameters: the op's last `params` inputs, each `[H]` (`RuleExpr::Param`).
    #[serde(default)]
    pub params: usize,
}

fn one() -> usize {
    1
}

impl AttentionRule {
    /// A built-in rule (no score modification).
    pub fn builtin(weights: AttentionWeights, mask: AttentionMask, scale: f32) -> Self {
        AttentionRule {
            weights,
            mask,
            scale,
            score: None,
            group: 1,
            params: 0,
        }
    }

    /// Whether the op takes the i32 `[B,T]` segment-id input.
    pub fn needs_segments(&self) -> bool {
        self.mask.needs_segments()
            || self
                .score
                .as_ref()
                .is_some_and(|e| e.reads(RuleVar::QuerySeg) || e.reads(RuleVar::KeySeg))
    }

    /// Whether any of the rule's expressions (score, mask, normaliser) reads `v`.
    pub fn reads(&self, v: RuleVar) -> bool {
        let n = self.weights.normaliser();
        let weights: Vec<&RuleExpr> = match &n {
            Normaliser::Normalised {
                factor, exponent, ..
            } => vec![factor, exponent],
            Normaliser::Direct(phi) => vec![phi],
        };
        let mask = match &self.mask {
            AttentionMask::Rule(e) => Some(e),
            _ => None,
        };
        self.score
            .iter()
            .chain(mask)
            .chain(weights)
            .any(|e| e.reads(v))
    }

    /// Why the rule's expressions are not ones every backend evaluates (see
    /// [`RuleExpr::problem`]); `None` when they are.
    pub fn problem(&self) -> Option<String> {
        let mut exprs: Vec<&RuleExpr> = self.score.iter().collect();
        if let AttentionMask::Rule(e) = &self.mask {
            exprs.push(e);
        }
        let n = self.weights.normaliser();
        let (a, b) = match &n {
            Normaliser::Normalised {
                factor, exponent, ..
            } => (factor, Some(exponent)),
            Normaliser::Direct(phi) => (phi, None),
        };
        exprs.push(a);
        exprs.extend(b);
        // The normaliser and mask never read parameters; the score reads up to `params`.
        let limit = |e: &RuleExpr| {
            if self.score.as_ref() == Some(e) {
                self.params
            } else {
                0
            }
        };
        exprs.iter().find_map(|e| e.problem(limit(e)))
    }

    /// Whether this is a built-in rule (softmax or signed weights, a named mask, no score
    /// modification): the one the specialised kernels run.
    pub fn is_builtin(&self) -> bool {
        self.score.is_none()
            && matches!(
                self.weights,
                AttentionWeights::Softmax | AttentionWeights::Signed
            )
            && !matches!(self.mask, AttentionMask::Rule(_))
    }
}

/// Where the two coordinates of rotary pair `i` live in a head vector of width `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RopeLayout {
    /// Pair i = dims `(2i, 2i+1)` (Meta / fairseq; Cog attention code).
    Interleaved,
    /// Pair i = dims `(i, i + d/2)` (Hugging Face "rotate_half").
    Half,
}

impl RopeLayout {
    /// Indices of the two coordinates of pair `i` in a vector of width `d`.
    pub fn pair(self, i: usize, d: usize) -> (usize, usize) {
        match self {
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
            RopeLayout::Half => (i, i + d / 2),
        }
    }
}

/// Data of a constant (its shape is the node's shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ConstValue {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl ConstValue {
    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            ConstValue::F32(v) => v.len(),
            ConstValue::I32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            ConstValue::F32(_) => DType::F32,
            ConstValue::I32(_) => DType::I32,
        }
    }
}

/// One IR operation. Input order for each op is documented on its variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    // ---- leaves ----
    /// A named runtime input (`Graph::inputs` holds its declared shape and dtype).
    Input { name: String },
    /// Parameter `Graph::params[index]`.
    Param { index: usize },
    /// A small constant (scalar or tensor).
    Const { value: ConstValue },
    /// The index along `axis`, broadcast over the node's shape (positions), as f32 or i32.
    Iota { axis: usize },

    // ---- elementwise ----
    /// `(x) → f(x)`.
    Unary(UnaryOp),
    /// `(x, dy) → dy · f'(x)`: the VJP of `Unary(f)`, one op so the backward stays fusable.
    UnaryGrad(UnaryOp),
    /// `(a, b) → a ∘ b`, broadcasting.
    Binary(BinaryOp),
    /// `(a, b) → (a ⋈ b) as f32`, broadcasting.
    Compare(CmpOp),
    /// `(c, a, b) → c ≠ 0 ? a : b`, broadcasting.
    Where,
    /// `(x) → x as to` (f32 → i32 truncates toward zero, saturating).
    Cast { to: DType },
    /// `(x) → x^exponent`.
    PowConst { exponent: f32 },
    /// `(x) → clamp(x, min, max)`.
    Clamp { min: f32, max: f32 },

    // ---- reductions and scans over one axis ----
    /// `(x) → reduce(x, axis)`.
    Reduce {
        op: ReduceOp,
        axis: usize,
        keepdim: bool,
    },
    /// `(x) → log Σ exp x` along `axis`, max-shifted.
    LogSumExp { axis: usize, keepdim: bool },
    /// `(x) → softmax(x)` along `axis`, max-shifted.
    Softmax { axis: usize },
    /// `(x) → inclusive prefix sum` along `axis` (suffix sum when `reverse`).
    CumSum { axis: usize, reverse: bool },
    /// `(x) → i32 index of the first maximum` along `axis`.
    ArgMax { axis: usize, keepdim: bool },
    /// `(x) → f32 0/1 mask of the k largest entries` along `axis` (ties: lower index wins).
    TopKMask { k: usize, axis: usize },

    // ---- linear algebra ----
    /// `(a [..., M, K], b [..., K, N]) → [..., M, N]`, batch dims broadcast; the flags
    /// transpose the last two axes of an operand first (free for a strided GEMM).
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },

    // ---- shape ops ----
    /// `(x) → x` viewed with a new shape of the same size.
    Reshape { shape: Shape },
    /// `(x) → x` with axes reordered: output axis `i` is input axis `perm[i]`.
    Permute { perm: Vec<usize> },
    /// `(x) → x` broadcast (numpy rules) to `shape`.
    BroadcastTo { shape: Shape },
    /// `(x) → x[start..end]` along `axis`.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// `(x0, x1, ...) → concatenation` along `axis`.
    Concat { axis: usize },

    // ---- indexing ----
    /// `(table [R, ...], ids i32 [I...]) → [I..., ...]`: rows of `table` (embedding lookup).
    Gather,
    /// `(src [I..., ...], ids i32 [I...]) → [rows, ...]`: adds each src row into row `ids`.
    ScatterAdd { rows: usize },
    /// `(ids i32 [...]) → f32 [..., depth]`; ids outside `0..depth` give a zero row.
    OneHot { depth: usize },

    // ---- autodiff control ----
    /// `(x) → x`, with zero gradient.
    StopGradient,
    /// `(x) → sign(x)`; backward passes `clamp(dy, -1, 1)` (MoM's straight-through estimator).
    StraightThrough,

    // ---- composites with their own kernels ----
    /// `(logits f32 [N, V], targets i32 [N]) → f32 [N]`: `logsumexp(l) − l[t]`, 0 where `t < 0`.
    CrossEntropy,
    /// `(q, k, v [B,H,T,d] [, segments i32 [B,T]], params f32 [H]...) → y [B,H,T,d]`.
    Attention(AttentionRule),
    /// Same inputs as `Attention` → the applied weights `[B,H,T,T]` (signed for Cog).
    AttentionPattern(AttentionRule),
    /// `(q, k, v, y, dy [, segments], params...) → [3,B,H,T,d]` = (dq, dk, dv) stacked, for a
    /// fused kernel.
    AttentionBackward(AttentionRule),
    /// `(q, k, v, y, dy [, segments], params...) → [B,H,T,P]`: each query row's contribution
    /// to the gradients of the rule's `P` parameters (summed over batch and rows by the VJP).
    AttentionRuleGrad(AttentionRule),
    /// `(x [B,H,T,d], freqs f32 [d/2], positions i32 [T] or [B,T]) → x` with pair i rotated by
    /// `pos · freqs[i]` (by the negative angle when `inverse`, which is the VJP).
    Rope { layout: RopeLayout, inverse: bool },
}

impl Op {
    /// Short lowercase name used in the text form and in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Const { .. } => "const",
            Op::Iota { .. } => "iota",
            Op::Unary(_) => "unary",
            Op::UnaryGrad(_) => "unary_grad",
            Op::Binary(_) => "binary",
            Op::Compare(_) => "compare",
            Op::Where => "where",
            Op::Cast { .. } => "cast",
            Op::PowConst { .. } => "pow",
            Op::Clamp { .. } => "clamp",
            Op::Reduce { .. } => "reduce",
            Op::LogSumExp { .. } => "logsumexp",
            Op::Softmax { .. } => "softmax",
            Op::CumSum { .. } => "cumsum",
            Op::ArgMax { .. } => "argmax",
            Op::TopKMask { .. } => "topk_mask",
            Op::MatMul { .. } => "matmul",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::BroadcastTo { .. } => "broadcast_to",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Gather => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::OneHot { .. } => "one_hot",
            Op::StopGradient => "stop_gradient",
            Op::StraightThrough => "straight_through",
            Op::CrossEntropy => "cross_entropy",
            Op::Attention(_) => "attention",
            Op::AttentionPattern(_) => "attention_pattern",
            Op::AttentionBackward(_) => "attention_backward",
            Op::AttentionRuleGrad(_) => "attention_rule_grad",
            Op::Rope { .. } => "rope",
        }
    }

    /// Leaves take no inputs and get their type from the graph tables or their data.
    pub fn is_leaf(&self) -> bool {
        matches!(
            self,
            Op::Input { .. } | Op::Param { .. } | Op::Const { .. } | Op::Iota { .. }
        )
    }
}
