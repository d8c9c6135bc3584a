//! The construction API lowering and autodiff use. Every op method infers the output type on
//! the spot and returns `IrError::Shape` (op, shapes, current span) instead of panicking.

use super::graph::{Graph, Init, InputInfo, Node, ParamInfo};
use super::op::{AttentionRule, BinaryOp, CmpOp, ConstValue, Op, ReduceOp, RopeLayout, UnaryOp};
use super::shape::{infer, TypeRef};
use super::types::{numel, DType, Shape, ValueId};
use super::verify::verify;
use crate::error::{IrError, Result};
use weft_dsl::Span;

/// Builds a [`Graph`] node by node.
///
/// A *current span* and *current label* are recorded on every new node, so lowering sets
/// them once per spec construct (`g.set_span(Some(span))`) rather than per op.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: Graph,
    span: Option<Span>,
    label: Option<String>,
    /// Inconsistencies found by infallible methods (`input`, `param`, `hook`), reported by
    /// [`finish`](Self::finish).
    deferred: Vec<IrError>,
}

impl GraphBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Continues building on an existing graph (autodiff appends the backward this way).
    pub fn from_graph(graph: Graph) -> Self {
        GraphBuilder {
            graph,
            ..Self::default()
        }
    }

    /// Sets the span recorded on new nodes; returns the previous one.
    pub fn set_span(&mut self, span: Option<Span>) -> Option<Span> {
        std::mem::replace(&mut self.span, span)
    }

    /// The span new nodes get.
    pub fn span(&self) -> Option<Span> {
        self.span
    }

    /// Sets the label recorded on new nodes (e.g. `layers.0.attn`); returns the previous one.
    pub fn set_label(&mut self, label: Option<String>) -> Option<String> {
        std::mem::replace(&mut self.label, label)
    }

    /// Relabels one existing node (e.g. to name the result of a lowered construct).
    pub fn label(&mut self, v: ValueId, label: &str) {
        if let Some(l) = self.graph.labels.get_mut(v.index()) {
            *l = Some(label.to_string());
        }
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Shape of an existing value (empty for an invalid handle).
    pub fn shape(&self, v: ValueId) -> &[usize] {
        self.graph
            .nodes
            .get(v.index())
            .map(|n| n.shape.as_slice())
            .unwrap_or(&[])
    }

    /// Element type of an existing value (`F32` for an invalid handle).
    pub fn dtype(&self, v: ValueId) -> DType {
        self.graph
            .nodes
            .get(v.index())
            .map(|n| n.dtype)
            .unwrap_or(DType::F32)
    }

    /// Validates the graph and hands it over.
    pub fn finish(mut self) -> Result<Graph> {
        if !self.deferred.is_empty() {
            return Err(self.deferred.swap_remove(0));
        }
        verify(&self.graph)?;
        Ok(self.graph)
    }

    fn push(&mut self, op: Op, inputs: Vec<ValueId>, shape: Shape, dtype: DType) -> ValueId {
        let id = ValueId(self.graph.nodes.len() as u32);
        self.graph.nodes.push(Node {
            op,
            inputs,
            shape,
            dtype,
        });
        self.graph.spans.push(self.span);
        self.graph.labels.push(self.label.clone());
        id
    }

    fn shape_err(&self, op: &Op, msg: String) -> IrError {
        IrError::Shape {
            op: op.name().to_string(),
            msg,
            span: self.span,
        }
    }

    /// Applies any non-leaf op to existing values, inferring its type.
    pub fn apply(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
        if op.is_leaf() {
            return Err(self.shape_err(
                &op,
                "leaves are created with input/param/constant/iota".into(),
            ));
        }
        let mut types: Vec<TypeRef> = Vec::with_capacity(inputs.len());
        for &v in inputs {
            match self.graph.nodes.get(v.index()) {
                Some(n) => types.push((&n.shape, n.dtype)),
                None => return Err(self.shape_err(&op, format!("unknown value {v}"))),
            }
        }
        match infer(&op, &types) {
            Ok((shape, dtype)) => Ok(self.push(op, inputs.to_vec(), shape, dtype)),
            Err(msg) => {
                let shapes: Vec<String> = types.iter().map(|(s, d)| format!("{d}{s:?}")).collect();
                Err(self.shape_err(&op, format!("{msg} (inputs: {})", shapes.join(", "))))
            }
        }
    }

    // ---------------------------------------------------------------- leaves

    /// Declares (or reuses, if the name exists with the same type) a runtime input.
    pub fn input(&mut self, name: &str, shape: &[usize], dtype: DType) -> ValueId {
        if let Some(info) = self.graph.inputs.iter().find(|i| i.name == name) {
            if info.shape != shape || info.dtype != dtype {
                self.deferred.push(IrError::Builder(format!(
                    "input `{name}` declared as {}{:?} and again as {dtype}{shape:?}",
                    info.dtype, info.shape
                )));
            }
            let existing = self
                .graph
                .ids()
                .find(|&v| matches!(&self.graph.node(v).op, Op::Input { name: n } if n == name));
            if let Some(v) = existing {
                return v;
            }
        } else {
            self.graph.inputs.push(InputInfo {
                name: name.to_string(),
                shape: shape.to_vec(),
                dtype,
            });
        }
        self.push(
            Op::Input {
                name: name.to_string(),
            },
            vec![],
            shape.to_vec(),
            dtype,
        )
    }

    /// Declares (or reuses, if the name exists with the same shape) an f32 parameter.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init, trainable: bool) -> ValueId {
        let index = match self.graph.param_index(name) {
            Some(i) => {
                let info = &self.graph.params[i];
                if info.shape != shape {
                    self.deferred.push(IrError::Builder(format!(
                        "param `{name}` declared with shape {:?} and again with {shape:?}",
                        info.shape
                    )));
                }
                let existing = self
                    .graph
                    .ids()
                    .find(|&v| self.graph.node(v).op == Op::Param { index: i });
                if let Some(v) = existing {
                    return v;
                }
                i
            }
            None => {
                self.graph.params.push(ParamInfo {
                    name: name.to_string(),
                    shape: shape.to_vec(),
                    trainable,
                    init,
                });
                self.graph.params.len() - 1
            }
        };
        self.push(Op::Param { index }, vec![], shape.to_vec(), DType::F32)
    }

    /// An f32 scalar constant.
    pub fn scalar(&mut self, value: f32) -> ValueId {
        self.push(
            Op::Const {
                value: ConstValue::F32(vec![value]),
            },
            vec![],
            vec![],
            DType::F32,
        )
    }

    /// An i32 scalar constant.
    pub fn scalar_i32(&mut self, value: i32) -> ValueId {
        self.push(
            Op::Const {
                value: ConstValue::I32(vec![value]),
            },
            vec![],
            vec![],
            DType::I32,
        )
    }

    /// A constant tensor; `value` must hold `numel(shape)` elements.
    pub fn constant(&mut self, value: ConstValue, shape: &[usize]) -> Result<ValueId> {
        if value.len() != numel(shape) {
            let op = Op::Const {
                value: ConstValue::F32(vec![]),
            };
            return Err(self.shape_err(&op, format!("{} values for shape {shape:?}", value.len())));
        }
        let dt = value.dtype();
        Ok(self.push(Op::Const { value }, vec![], shape.to_vec(), dt))
    }

    /// `value` broadcast to `shape` (a scalar constant and a broadcast, not a big constant).
    pub fn full(&mut self, value: f32, shape: &[usize]) -> Result<ValueId> {
        let s = self.scalar(value);
        self.broadcast_to(s, shape)
    }

    /// Positions: the index along `axis` at every element of `shape`.
    pub fn iota(&mut self, shape: &[usize], axis: usize, dtype: DType) -> Result<ValueId> {
        if axis >= shape.len() {
            let op = Op::Iota { axis };
            return Err(self.shape_err(&op, format!("axis {axis} out of range for {shape:?}")));
        }
        Ok(self.push(Op::Iota { axis }, vec![], shape.to_vec(), dtype))
    }

    // ---------------------------------------------------------------- elementwise

    /// `f(x)` for a unary op.
    pub fn unary(&mut self, op: UnaryOp, x: ValueId) -> Result<ValueId> {
        self.apply(Op::Unary(op), &[x])
    }

    /// `a ∘ b` with broadcasting.
    pub fn binary(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.apply(Op::Binary(op), &[a, b])
    }

    /// `(a ⋈ b) as f32` with broadcasting.
    pub fn compare(&mut self, op: CmpOp, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.apply(Op::Compare(op), &[a, b])
    }

    /// `c ≠ 0 ? a : b` with broadcasting.
    pub fn where_(&mut self, c: ValueId, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.apply(Op::Where, &[c, a, b])
    }

    /// Converts between f32 and i32.
    pub fn cast(&mut self, x: ValueId, to: DType) -> Result<ValueId> {
        self.apply(Op::Cast { to }, &[x])
    }

    /// `x^exponent`.
    pub fn pow_const(&mut self, x: ValueId, exponent: f32) -> Result<ValueId> {
        self.apply(Op::PowConst { exponent }, &[x])
    }

    /// `clamp(x, min, max)`.
    pub fn clamp(&mut self, x: ValueId, min: f32, max: f32) -> Result<ValueId> {
        self.apply(Op::Clamp { min, max }, &[x])
    }

    // ---------------------------------------------------------------- reductions

    /// A reduction over one axis.
    pub fn reduce(
        &mut self,
        op: ReduceOp,
        x: ValueId,
        axis: usize,
        keepdim: bool,
    ) -> Result<ValueId> {
        self.apply(Op::Reduce { op, axis, keepdim }, &[x])
    }

    /// Sum over `axis`.
    pub fn sum(&mut self, x: ValueId, axis: usize, keepdim: bool) -> Result<ValueId> {
        self.reduce(ReduceOp::Sum, x, axis, keepdim)
    }

    /// Mean over `axis`.
    pub fn mean(&mut self, x: ValueId, axis: usize, keepdim: bool) -> Result<ValueId> {
        self.reduce(ReduceOp::Mean, x, axis, keepdim)
    }

    /// Max over `axis`.
    pub fn max(&mut self, x: ValueId, axis: usize, keepdim: bool) -> Result<ValueId> {
        self.reduce(ReduceOp::Max, x, axis, keepdim)
    }

    /// `log Σ exp x` over `axis`.
    pub fn logsumexp(&mut self, x: ValueId, axis: usize, keepdim: bool) -> Result<ValueId> {
        self.apply(Op::LogSumExp { axis, keepdim }, &[x])
    }

    /// Softmax over `axis`.
    pub fn softmax(&mut self, x: ValueId, axis: usize) -> Result<ValueId> {
        self.apply(Op::Softmax { axis }, &[x])
    }

    /// Inclusive prefix sum over `axis` (suffix sum if `reverse`).
    pub fn cumsum(&mut self, x: ValueId, axis: usize, reverse: bool) -> Result<ValueId> {
        self.apply(Op::CumSum { axis, reverse }, &[x])
    }

    /// Index of the maximum over `axis`.
    pub fn argmax(&mut self, x: ValueId, axis: usize, keepdim: bool) -> Result<ValueId> {
        self.apply(Op::ArgMax { axis, keepdim }, &[x])
    }

    /// 0/1 mask of the `k` largest entries over `axis`.
    pub fn topk_mask(&mut self, x: ValueId, k: usize, axis: usize) -> Result<ValueId> {
        self.apply(Op::TopKMask { k, axis }, &[x])
    }

    // ---------------------------------------------------------------- linear algebra

    /// Batched `a @ b`.
    pub fn matmul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        self.matmul_t(a, b, false, false)
    }

    /// Batched `op(a) @ op(b)` where `op` transposes the last two axes when its flag is set.
    pub fn matmul_t(
        &mut self,
        a: ValueId,
        b: ValueId,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<ValueId> {
        self.apply(
            Op::MatMul {
                transpose_a,
                transpose_b,
            },
            &[a, b],
        )
    }

    // ---------------------------------------------------------------- shape ops

    /// Same data, new shape.
    pub fn reshape(&mut self, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        self.apply(
            Op::Reshape {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }

    /// Reorders axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        self.apply(
            Op::Permute {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// Swaps two axes.
    pub fn transpose(&mut self, x: ValueId, a: usize, b: usize) -> Result<ValueId> {
        let mut perm: Vec<usize> = (0..self.shape(x).len()).collect();
        if a < perm.len() && b < perm.len() {
            perm.swap(a, b);
        } else {
            let op = Op::Permute { perm: perm.clone() };
            return Err(self.shape_err(
                &op,
                format!("axes {a}, {b} out of range for {:?}", self.shape(x)),
            ));
        }
        self.permute(x, &perm)
    }

    /// Broadcasts `x` to `shape`.
    pub fn broadcast_to(&mut self, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        self.apply(
            Op::BroadcastTo {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }

    /// `x[start..end]` along `axis`.
    pub fn slice(&mut self, x: ValueId, axis: usize, start: usize, end: usize) -> Result<ValueId> {
        self.apply(Op::Slice { axis, start, end }, &[x])
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[ValueId], axis: usize) -> Result<ValueId> {
        self.apply(Op::Concat { axis }, xs)
    }

    /// Sums `x` down to `shape` (the inverse of broadcasting; gradients of broadcast inputs).
    pub fn sum_to(&mut self, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        let xs = self.shape(x).to_vec();
        if xs == shape {
            return Ok(x);
        }
        if !super::shape::broadcasts_to(shape, &xs) {
            let op = Op::Reduce {
                op: ReduceOp::Sum,
                axis: 0,
                keepdim: false,
            };
            return Err(self.shape_err(&op, format!("cannot sum {xs:?} down to {shape:?}")));
        }
        let mut v = x;
        for _ in 0..xs.len() - shape.len() {
            v = self.sum(v, 0, false)?;
        }
        for (axis, &n) in shape.iter().enumerate() {
            if n == 1 && self.shape(v)[axis] != 1 {
                v = self.sum(v, axis, true)?;
            }
        }
        Ok(v)
    }

    // ---------------------------------------------------------------- indexing

    /// Rows of `table` selected by i32 `ids` (embedding lookup).
    pub fn gather(&mut self, table: ValueId, ids: ValueId) -> Result<ValueId> {
        self.apply(Op::Gather, &[table, ids])
    }

    /// Adds rows of `src` into a zero `[rows, ...]` tensor at `ids` (the VJP of gather).
    pub fn scatter_add(&mut self, src: ValueId, ids: ValueId, rows: usize) -> Result<ValueId> {
        self.apply(Op::ScatterAdd { rows }, &[src, ids])
    }

    /// One-hot f32 rows of width `depth`.
    pub fn one_hot(&mut self, ids: ValueId, depth: usize) -> Result<ValueId> {
        self.apply(Op::OneHot { depth }, &[ids])
    }

    // ---------------------------------------------------------------- autodiff control

    /// Identity with zero gradient.
    pub fn stop_gradient(&mut self, x: ValueId) -> Result<ValueId> {
        self.apply(Op::StopGradient, &[x])
    }

    /// `sign(x)` forward, `clamp(dy, -1, 1)` backward.
    pub fn straight_through(&mut self, x: ValueId) -> Result<ValueId> {
        self.apply(Op::StraightThrough, &[x])
    }

    // ---------------------------------------------------------------- composites

    /// Per-row cross-entropy of `logits [N,V]` against i32 `targets [N]` (negative = ignored).
    pub fn cross_entropy(&mut self, logits: ValueId, targets: ValueId) -> Result<ValueId> {
        self.apply(Op::CrossEntropy, &[logits, targets])
    }

    fn attention_inputs(
        q: ValueId,
        k: ValueId,
        v: ValueId,
        segments: Option<ValueId>,
    ) -> Vec<ValueId> {
        let mut ins = vec![q, k, v];
        ins.extend(segments);
        ins
    }

    /// Attention with `rule`; `segments` (i32 `[B,T]`) is required by document/turn masks.
    pub fn attention(
        &mut self,
        rule: AttentionRule,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        segments: Option<ValueId>,
    ) -> Result<ValueId> {
        self.apply(
            Op::Attention(rule),
            &Self::attention_inputs(q, k, v, segments),
        )
    }

    /// The weights `[B,H,T,T]` that `attention` applies (for `attn.pattern` hooks).
    pub fn attention_pattern(
        &mut self,
        rule: AttentionRule,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        segments: Option<ValueId>,
    ) -> Result<ValueId> {
        self.apply(
            Op::AttentionPattern(rule),
            &Self::attention_inputs(q, k, v, segments),
        )
    }

    /// Rotary embedding of `x [B,H,T,d]` with per-pair `freqs [d/2]` at i32 `positions`.
    pub fn rope(
        &mut self,
        x: ValueId,
        freqs: ValueId,
        positions: ValueId,
        layout: RopeLayout,
    ) -> Result<ValueId> {
        self.apply(
            Op::Rope {
                layout,
                inverse: false,
            },
            &[x, freqs, positions],
        )
    }

    /// `x · rsqrt(mean(x², last axis) + eps) · weight`, composed from primitives.
    pub fn rms_norm(&mut self, x: ValueId, weight: ValueId, eps: f32) -> Result<ValueId> {
        let last = self.shape(x).len().saturating_sub(1);
        let sq = self.unary(UnaryOp::Square, x)?;
        let ms = self.mean(sq, last, true)?;
        let e = self.scalar(eps);
        let ms = self.binary(BinaryOp::Add, ms, e)?;
        let r = self.unary(UnaryOp::Rsqrt, ms)?;
        let y = self.binary(BinaryOp::Mul, x, r)?;
        self.binary(BinaryOp::Mul, y, weight)
    }

    /// `(x − mean) · rsqrt(var + eps) · weight + bias` over the last axis, from primitives.
    pub fn layer_norm(
        &mut self,
        x: ValueId,
        weight: ValueId,
        bias: ValueId,
        eps: f32,
    ) -> Result<ValueId> {
        let last = self.shape(x).len().saturating_sub(1);
        let mu = self.mean(x, last, true)?;
        let xc = self.binary(BinaryOp::Sub, x, mu)?;
        let sq = self.unary(UnaryOp::Square, xc)?;
        let var = self.mean(sq, last, true)?;
        let e = self.scalar(eps);
        let var = self.binary(BinaryOp::Add, var, e)?;
        let r = self.unary(UnaryOp::Rsqrt, var)?;
        let y = self.binary(BinaryOp::Mul, xc, r)?;
        let y = self.binary(BinaryOp::Mul, y, weight)?;
        self.binary(BinaryOp::Add, y, bias)
    }

    // ---------------------------------------------------------------- named points

    /// Marks `v` as hook point `name` (capturable at run time).
    pub fn hook(&mut self, name: &str, v: ValueId) {
        self.name_point(name, v, true);
    }

    /// Marks `v` as output `name`.
    pub fn output(&mut self, name: &str, v: ValueId) {
        self.name_point(name, v, false);
    }

    fn name_point(&mut self, name: &str, v: ValueId, hook: bool) {
        let list = if hook {
            &mut self.graph.hooks
        } else {
            &mut self.graph.outputs
        };
        if list.iter().any(|(n, _)| n == name) {
            let kind = if hook { "hook" } else { "output" };
            self.deferred
                .push(IrError::Builder(format!("{kind} `{name}` defined twice")));
            return;
        }
        list.push((name.to_string(), v));
    }
}

macro_rules! unary_shortcuts {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl GraphBuilder {
            $(
                #[doc = concat!("Elementwise `", stringify!($name), "`.")]
                pub fn $name(&mut self, x: ValueId) -> Result<ValueId> {
                    self.unary(UnaryOp::$op, x)
                }
            )*
        }
    };
}
unary_shortcuts!(
    neg => Neg, abs => Abs, sign => Sign, exp => Exp, log => Log, sqrt => Sqrt, rsqrt => Rsqrt,
    recip => Recip, square => Square, tanh => Tanh, sigmoid => Sigmoid, silu => Silu,
    gelu => Gelu, relu => Relu, sin => Sin, cos => Cos,
);

macro_rules! binary_shortcuts {
    ($kind:ident, $method:ident: $($name:ident => $op:ident),* $(,)?) => {
        impl GraphBuilder {
            $(
                #[doc = concat!("Broadcasting `", stringify!($name), "`.")]
                pub fn $name(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
                    self.$method($kind::$op, a, b)
                }
            )*
        }
    };
}
binary_shortcuts!(BinaryOp, binary: add => Add, sub => Sub, mul => Mul, div => Div, maximum => Max, minimum => Min);
binary_shortcuts!(CmpOp, compare: lt => Lt, le => Le, gt => Gt, ge => Ge, eq => Eq, ne => Ne);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_op_shapes_and_span() {
        let mut g = GraphBuilder::new();
        let a = g.input("a", &[2, 3], DType::F32);
        let b = g.input("b", &[4, 5], DType::F32);
        g.set_span(Some(Span::new(10, 20)));
        let err = g.matmul(a, b).unwrap_err();
        match err {
            IrError::Shape { op, msg, span } => {
                assert_eq!(op, "matmul");
                assert!(msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
                assert_eq!(span, Some(Span::new(10, 20)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn records_span_and_label_and_reuses_leaves() {
        let mut g = GraphBuilder::new();
        g.set_span(Some(Span::new(1, 2)));
        g.set_label(Some("embed".into()));
        let ids = g.input("tokens", &[2, 4], DType::I32);
        let w = g.param("embed.weight", &[10, 8], Init::Normal { std: 0.02 }, true);
        assert_eq!(g.input("tokens", &[2, 4], DType::I32), ids);
        assert_eq!(g.param("embed.weight", &[10, 8], Init::Zeros, true), w);
        let h = g.gather(w, ids).unwrap();
        assert_eq!(g.shape(h), &[2, 4, 8]);
        g.output("h", h);
        let graph = g.finish().unwrap();
        assert_eq!(graph.spans[h.index()], Some(Span::new(1, 2)));
        assert_eq!(graph.labels[h.index()].as_deref(), Some("embed"));
        assert_eq!(graph.params.len(), 1);
    }

    #[test]
    fn conflicting_redeclaration_is_reported_at_finish() {
        let mut g = GraphBuilder::new();
        g.input("x", &[2], DType::F32);
        g.input("x", &[3], DType::F32);
        assert!(matches!(g.finish(), Err(IrError::Builder(_))));
    }

    #[test]
    fn sum_to_reduces_broadcast_axes() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[4, 2, 3], DType::F32);
        let s = g.sum_to(x, &[3, 1]).unwrap_err();
        assert!(matches!(s, IrError::Shape { .. }));
        let s = g.sum_to(x, &[1, 3]).unwrap();
        assert_eq!(g.shape(s), &[1, 3]);
    }
}
