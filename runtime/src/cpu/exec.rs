//! The interpreter loop: checks the feeds, then evaluates nodes in arena (topological)
//! order, dropping each value after its last reader unless it is an output or a
//! requested hook. A replaced hook point is overwritten right after it is computed, so its
//! readers see the replacement.

use super::attention::{self, Dims};
use super::elementwise as ew;
use super::index;
use super::matmul::matmul;
use super::real::CpuReal;
use super::reduce;
use super::rope::rope;
use super::shape_ops;
use super::value::{map_value, Value};
use crate::backend::{HookSelection, Outputs, ParamStore};
use crate::error::RunError;
use crate::replace::{resolve_all, splice, Intervention, Region};
use crate::tensor::{Tensor, TensorData};
use std::collections::HashMap;
use weft_compiler::ir::{verify, ConstValue, DType, Graph, Op, ValueId};

pub(crate) fn hook_ids(
    g: &Graph,
    hooks: &HookSelection,
) -> Result<Vec<(String, ValueId)>, RunError> {
    match hooks {
        HookSelection::None => Ok(Vec::new()),
        HookSelection::All => Ok(g.hooks.clone()),
        HookSelection::Names(names) => names
            .iter()
            .map(|n| {
                g.hook(n)
                    .map(|v| (n.clone(), v))
                    .ok_or_else(|| RunError::UnknownHook { name: n.clone() })
            })
            .collect(),
    }
}

fn feed_input<T: CpuReal>(
    g: &Graph,
    name: &str,
    inputs: &HashMap<String, Tensor>,
) -> Result<Value<T>, RunError> {
    let info = g
        .inputs
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| RunError::MissingInput { name: name.into() })?;
    let t = inputs
        .get(name)
        .ok_or_else(|| RunError::MissingInput { name: name.into() })?;
    let value = match (info.dtype, &t.data) {
        (DType::I32, TensorData::I32(v)) => Some(Value::I(v.clone())),
        (DType::F32, d) => T::from_data(d).map(Value::F),
        _ => None,
    };
    match value {
        Some(v) if t.shape == info.shape => Ok(v),
        _ => Err(RunError::InputType {
            name: name.into(),
            expected: info.dtype.to_string(),
            want: info.shape.clone(),
            got: t.dtype_name(),
            got_shape: t.shape.clone(),
        }),
    }
}

fn feed_param<T: CpuReal>(
    g: &Graph,
    index: usize,
    params: &ParamStore,
) -> Result<Value<T>, RunError> {
    let info = &g.params[index];
    let t = params
        .get(&info.name)
        .ok_or_else(|| RunError::MissingParam {
            name: info.name.clone(),
        })?;
    match T::from_data(&t.data) {
        Some(v) if t.shape == info.shape => Ok(Value::F(v)),
        _ => Err(RunError::ParamType {
            name: info.name.clone(),
            want: info.shape.clone(),
            got: t.dtype_name(),
            got_shape: t.shape.clone(),
        }),
    }
}

fn to_tensor<T: CpuReal>(v: &Value<T>, shape: &[usize]) -> Tensor {
    let data = match v {
        Value::F(x) => T::into_data(x.clone()),
        Value::I(x) => TensorData::I32(x.clone()),
    };
    Tensor {
        shape: shape.to_vec(),
        data,
    }
}

/// One resolved replacement: where it goes and its values in the run's precision.
pub(crate) struct Patch<T> {
    region: Region,
    with: Vec<T>,
    with_shape: Vec<usize>,
}

impl<T: Copy> Patch<T> {
    /// Overwrites this patch's region of `data`, a value of `shape`.
    pub(crate) fn apply(&self, data: &mut [T], shape: &[usize]) {
        splice(data, shape, &self.region, &self.with, &self.with_shape);
    }
}

/// Resolves every replacement against the graph ([`resolve_all`]), grouped by the node it
/// overwrites (in the order given), so errors surface before any work is done.
pub(crate) fn patches<T: CpuReal>(
    g: &Graph,
    replace: &[Intervention],
) -> Result<HashMap<usize, Vec<Patch<T>>>, RunError> {
    let mut out: HashMap<usize, Vec<Patch<T>>> = HashMap::new();
    for r in resolve_all(g, replace)? {
        let with = r.intervention.with();
        let values = T::from_data(&with.data).ok_or_else(|| RunError::Replacement {
            name: r.intervention.name().into(),
            msg: format!("replacement is {}, expected f32", with.dtype_name()),
        })?;
        out.entry(r.value.index()).or_default().push(Patch {
            region: r.region,
            with: values,
            with_shape: with.shape.clone(),
        });
    }
    Ok(out)
}

/// Runs `g` in precision `T`, overwriting the hook points in `replace`.
pub(crate) fn run<T: CpuReal>(
    g: &Graph,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
    hooks: &HookSelection,
    replace: &[Intervention],
) -> Result<Outputs, RunError> {
    verify(g)?;
    let hooks = hook_ids(g, hooks)?;
    let mut patches = patches::<T>(g, replace)?;
    // Captured hooks report the value computed before their own replacement.
    let mut computed: HashMap<usize, Value<T>> = HashMap::new();
    // Check every declared input up front so a missing one is reported even if unused.
    for info in &g.inputs {
        if !inputs.contains_key(&info.name) {
            return Err(RunError::MissingInput {
                name: info.name.clone(),
            });
        }
    }
    let mut last = g.last_uses();
    for &(_, v) in g.outputs.iter().chain(&hooks) {
        last[v.index()] = Some(usize::MAX);
    }
    let mut vals: Vec<Option<Value<T>>> = vec![None; g.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        let value = {
            let ins: Vec<&Value<T>> = node
                .inputs
                .iter()
                .map(|v| {
                    vals[v.index()]
                        .as_ref()
                        .expect("interpreter bug: value freed early")
                })
                .collect();
            eval(g, i, &ins, inputs, params)?
        };
        let value = match patches.remove(&i) {
            None => value,
            Some(list) => {
                if hooks.iter().any(|(_, v)| v.index() == i) {
                    computed.insert(i, value.clone());
                }
                let mut data = match value {
                    Value::F(x) => x,
                    Value::I(_) => unreachable!("patches() only accepts f32 hook points"),
                };
                for p in &list {
                    p.apply(&mut data, &node.shape);
                }
                Value::F(data)
            }
        };
        vals[i] = Some(value);
        for v in &node.inputs {
            if last[v.index()] == Some(i) {
                vals[v.index()] = None;
            }
        }
    }
    let collect = |list: &[(String, ValueId)], before_replacement: bool| {
        list.iter()
            .map(|(n, v)| {
                let value = before_replacement
                    .then(|| computed.get(&v.index()))
                    .flatten()
                    .or(vals[v.index()].as_ref())
                    .expect("root kept");
                (n.clone(), to_tensor(value, g.shape(*v)))
            })
            .collect()
    };
    Ok(Outputs {
        outputs: collect(&g.outputs, false),
        hooks: collect(&hooks, true),
    })
}

/// Evaluates node `i` given its input values.
pub(crate) fn eval<T: CpuReal>(
    g: &Graph,
    i: usize,
    ins: &[&Value<T>],
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
) -> Result<Value<T>, RunError> {
    let node = &g.nodes[i];
    let shape = node.shape.as_slice();
    let s = |k: usize| g.shape(node.inputs[k]);
    let id = i as u32;
    Ok(match &node.op {
        Op::Input { name } => feed_input(g, name, inputs)?,
        Op::Param { index } => feed_param(g, *index, params)?,
        Op::Const { value } => match value {
            ConstValue::F32(v) => Value::F(v.iter().map(|&x| T::from_f64(x as f64)).collect()),
            ConstValue::I32(v) => Value::I(v.clone()),
        },
        Op::Iota { axis } => {
            let idx = shape_ops::iota(shape, *axis);
            match node.dtype {
                DType::I32 => Value::I(idx.into_iter().map(|x| x as i32).collect()),
                _ => Value::F(idx.into_iter().map(|x| T::from_f64(x as f64)).collect()),
            }
        }
        Op::Unary(u) => Value::F(ew::unary(*u, ins[0].f())),
        Op::UnaryGrad(u) => Value::F(ew::unary_grad(*u, ins[0].f(), ins[1].f())),
        Op::Binary(b) => ew::binary(*b, ins[0], s(0), ins[1], s(1), shape),
        Op::Compare(c) => Value::F(ew::compare(*c, ins[0], s(0), ins[1], s(1), shape)),
        Op::Where => ew::where_(ins[0], s(0), ins[1], s(1), ins[2], s(2), shape),
        Op::Cast { to } => ew::cast(ins[0], *to),
        Op::PowConst { exponent } => {
            let e = T::from_f64(*exponent as f64);
            Value::F(ew::map(ins[0].f(), |x| x.powf(e)))
        }
        Op::Clamp { min, max } => Value::F(ew::clamp(ins[0].f(), *min, *max)),
        Op::StraightThrough => Value::F(ew::unary(weft_compiler::ir::UnaryOp::Sign, ins[0].f())),
        Op::StopGradient | Op::Reshape { .. } => ins[0].clone(),
        Op::Reduce { op, axis, .. } => reduce::reduce(*op, ins[0], s(0), *axis),
        Op::LogSumExp { axis, .. } => Value::F(reduce::logsumexp(ins[0].f(), s(0), *axis)),
        Op::Softmax { axis } => Value::F(reduce::softmax(ins[0].f(), s(0), *axis)),
        Op::CumSum { axis, reverse } => reduce::cumsum(ins[0], s(0), *axis, *reverse),
        Op::ArgMax { axis, .. } => Value::I(reduce::argmax(ins[0], s(0), *axis)),
        Op::TopKMask { k, axis } => Value::F(reduce::topk_mask(ins[0].f(), s(0), *axis, *k)),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => Value::F(matmul(
            ins[0].f(),
            s(0),
            ins[1].f(),
            s(1),
            shape,
            *transpose_a,
            *transpose_b,
        )),
        Op::Permute { perm } => map_value!(ins[0], |x| shape_ops::permute(x, s(0), perm)),
        Op::BroadcastTo { .. } => map_value!(ins[0], |x| shape_ops::broadcast(x, s(0), shape)),
        Op::Slice { axis, start, end } => {
            map_value!(ins[0], |x| shape_ops::slice(x, s(0), *axis, *start, *end))
        }
        Op::Concat { axis } => match ins[0] {
            Value::F(_) => {
                let parts: Vec<(&[T], &[usize])> =
                    ins.iter().enumerate().map(|(k, v)| (v.f(), s(k))).collect();
                Value::F(shape_ops::concat(&parts, *axis))
            }
            Value::I(_) => {
                let parts: Vec<(&[i32], &[usize])> =
                    ins.iter().enumerate().map(|(k, v)| (v.i(), s(k))).collect();
                Value::I(shape_ops::concat(&parts, *axis))
            }
        },
        Op::Gather => {
            let rows = s(0)[0];
            match ins[0] {
                Value::F(t) => Value::F(index::gather(t, rows, ins[1].i(), id)?),
                Value::I(t) => Value::I(index::gather(t, rows, ins[1].i(), id)?),
            }
        }
        Op::ScatterAdd { rows } => Value::F(index::scatter_add(ins[0].f(), ins[1].i(), *rows, id)?),
        Op::OneHot { depth } => Value::F(index::one_hot(ins[0].i(), *depth)),
        Op::CrossEntropy => Value::F(index::cross_entropy(ins[0].f(), s(0)[1], ins[1].i(), id)?),
        Op::Attention(rule) => {
            let (seg, params) = attention::extras(rule, &ins[3..]);
            Value::F(attention::forward(
                rule,
                ins[0].f(),
                ins[1].f(),
                ins[2].f(),
                seg,
                &params,
                Dims::from_shape(s(0)),
            ))
        }
        Op::AttentionPattern(rule) => {
            let (seg, params) = attention::extras(rule, &ins[3..]);
            Value::F(attention::pattern(
                rule,
                ins[0].f(),
                ins[1].f(),
                seg,
                &params,
                Dims::from_shape(s(0)),
            ))
        }
        Op::AttentionBackward(rule) | Op::AttentionRuleGrad(rule) => {
            let (seg, params) = attention::extras(rule, &ins[5..]);
            let dm = Dims::from_shape(s(0));
            let ops = attention::Operands {
                q: ins[0].f(),
                k: ins[1].f(),
                v: ins[2].f(),
                y: ins[3].f(),
                dy: ins[4].f(),
                seg,
                params: &params,
            };
            Value::F(if matches!(node.op, Op::AttentionBackward(_)) {
                attention::backward(rule, &ops, dm)
            } else {
                attention::rule_grad(rule, &ops, dm)
            })
        }
        Op::Rope { layout, inverse } => Value::F(rope(
            ins[0].f(),
            ins[1].f(),
            ins[2].i(),
            Dims::from_shape(s(0)),
            *layout,
            *inverse,
        )),
    })
}
