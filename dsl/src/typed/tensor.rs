//! Tensor constructs of block bodies and pools (`attention`, `mlp`, `route`...) and routers.

use super::attention::{Gain, MaskRule, PositionRule, WeightRule};
use super::{choice, Args, ResolveError, Resolved};
use crate::builtins::Kind;
use crate::check::value::CallValue;
use serde::{Deserialize, Serialize};

choice! {
    /// The activation of `mlp`.
    Activation {
        /// The tanh approximation (GPT-2's gelu_new).
        Gelu = "gelu",
        Relu = "relu",
        Silu = "silu",
    }
}

choice! {
    /// How a routed pool runs its modules.
    Execution {
        /// Every module on every token, masked.
        Dense = "dense",
        /// Each token's chosen modules only (FFN pools).
        Sparse = "sparse",
    }
}

choice! {
    /// A normalisation (`rms_norm`, `layer_norm`, and the model's `final_norm`).
    NormKind {
        RmsNorm = "rms_norm",
        LayerNorm = "layer_norm",
    }
}

/// `attention(...)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    pub heads: usize,
    pub kv_heads: usize,
    pub weights: WeightRule,
    pub mask: MaskRule,
    pub position: PositionRule,
    pub gain: Gain,
    /// Bias on all four projections.
    pub bias: bool,
    /// Bias on q, k and v only.
    pub qkv_bias: bool,
    /// Attention-weight dropout while training.
    pub dropout: f64,
    /// The attention rule named by `rule:` (`ModelInfo::rule` holds its definition).
    pub rule: Option<String>,
}

impl Attention {
    /// Whether q, k and v get biases: `bias` (all four projections) or `qkv_bias` (not o).
    pub fn qkv_biased(&self) -> bool {
        self.bias || self.qkv_bias
    }
}

/// `mlp(...)`: `W2 act(W1 x + b1) + b2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub hidden: usize,
    pub activation: Activation,
    pub bias: bool,
}

/// `swiglu(...)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Swiglu {
    pub hidden: usize,
}

/// `rms_norm(...)` / `layer_norm(...)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Norm {
    pub kind: NormKind,
    pub eps: f64,
}

/// `route(...)` (Mixture-of-Modules).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub pool: String,
    pub router: Router,
    pub top_k: usize,
    pub skip: bool,
    pub temperature: f64,
    pub balance: f64,
    pub straight_through: bool,
    pub execution: Execution,
}

/// A tensor construct with its arguments (the tensor input itself stays an expression of
/// the block body, which lowering evaluates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorCall {
    Attention(Attention),
    Mlp(Mlp),
    Swiglu(Swiglu),
    Norm(Norm),
    /// Residual dropout with drop probability `p`.
    Dropout {
        p: f64,
    },
    Route(Route),
}

impl Resolved for TensorCall {
    const KIND: Kind = Kind::Tensor;
    const NAMES: &'static [&'static str] = &[
        "attention",
        "mlp",
        "swiglu",
        "rms_norm",
        "layer_norm",
        "dropout",
        "route",
    ];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        let norm = |kind| -> Result<Self, ResolveError> {
            Ok(TensorCall::Norm(Norm {
                kind,
                eps: a.float("eps")?,
            }))
        };
        Ok(match c.name.as_str() {
            "attention" => TensorCall::Attention(Attention {
                heads: a.count("heads")?.max(1),
                kv_heads: a.count("kv_heads")?.max(1),
                weights: a.choice("weights")?,
                mask: a.choice("mask")?,
                position: a.nested("position")?,
                gain: a.choice("gain")?,
                bias: a.bool("bias")?,
                qkv_bias: a.bool("qkv_bias")?,
                dropout: a.float("dropout")?,
                rule: a.opt("rule", Args::text)?,
            }),
            "mlp" => TensorCall::Mlp(Mlp {
                hidden: a.count("hidden")?.max(1),
                activation: a.choice("activation")?,
                bias: a.bool("bias")?,
            }),
            "swiglu" => TensorCall::Swiglu(Swiglu {
                hidden: a.count("hidden")?.max(1),
            }),
            "rms_norm" => norm(NormKind::RmsNorm)?,
            "layer_norm" => norm(NormKind::LayerNorm)?,
            "dropout" => TensorCall::Dropout { p: a.float("p")? },
            "route" => TensorCall::Route(Route {
                pool: a.text("pool")?,
                router: a.nested("router")?,
                top_k: a.count("top_k")?,
                skip: a.bool("skip")?,
                temperature: a.float("temperature")?,
                balance: a.float("balance")?,
                straight_through: a.bool("straight_through")?,
                execution: a.choice("execution")?,
            }),
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            TensorCall::Attention(_) => "attention",
            TensorCall::Mlp(_) => "mlp",
            TensorCall::Swiglu(_) => "swiglu",
            TensorCall::Norm(n) => n.kind.name(),
            TensorCall::Dropout { .. } => "dropout",
            TensorCall::Route(_) => "route",
        }
    }
}

/// The router of a `route` (`router: mlp(...)` or `gru(...)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Router {
    /// Two-layer ReLU MLP on the raw residual stream.
    Mlp { hidden: usize },
    /// GRU cell whose state is carried across `repeat` iterations.
    Gru { hidden: usize },
}

impl Router {
    pub fn hidden(self) -> usize {
        match self {
            Router::Mlp { hidden } | Router::Gru { hidden } => hidden,
        }
    }
}

impl Resolved for Router {
    const KIND: Kind = Kind::Router;
    const NAMES: &'static [&'static str] = &["mlp", "gru"];

    fn from_call(c: &CallValue) -> Result<Self, ResolveError> {
        let a = Args::new(c, Self::KIND);
        Ok(match c.name.as_str() {
            "mlp" => Router::Mlp {
                hidden: a.count("hidden")?.max(1),
            },
            "gru" => Router::Gru {
                hidden: a.count("hidden")?.max(1),
            },
            _ => return Err(a.unknown()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Router::Mlp { .. } => "mlp",
            Router::Gru { .. } => "gru",
        }
    }
}
