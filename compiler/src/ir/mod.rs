//! The IR: a graph of typed tensor ops with static shapes, stored naga-style in an arena
//! (`Vec<Node>`) addressed by typed handles ([`ValueId`]), with source spans and labels in
//! parallel tables.
//!
//! One file per idea: [`types`] (handles, dtypes), [`op`] (the closed op set), [`scalar`]
//! (per-element semantics shared by every backend), [`shape`] (shape rules), [`graph`]
//! (the arena and its tables), [`builder`] (construction with shape inference),
//! [`display`] (the canonical text form), [`verify`] (the validator) and [`rule_graph`]
//! (attention rules built from primitive ops).

pub mod builder;
mod display;
mod flops;
pub mod graph;
pub mod op;
pub mod rule;
pub mod rule_graph;
pub mod scalar;
pub mod shape;
pub mod types;
pub mod verify;

pub use builder::GraphBuilder;
pub use flops::flops;
pub use graph::{Graph, Init, InputInfo, Node, ParamInfo};
pub use op::{
    AttentionMask, AttentionRule, AttentionWeights, BinaryOp, CmpOp, ConstValue, Op, ReduceOp,
    RopeLayout, UnaryOp,
};
pub use rule::{Normaliser, RuleEnv, RuleExpr, RuleVar};
pub use scalar::Real;
pub use types::{numel, DType, Shape, ValueId};
pub use verify::verify;
