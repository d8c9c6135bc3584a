//! The canonical text form: tables first, then one line per node in arena (topological)
//! order, then outputs and hooks. Deterministic, so two dumps `diff` cleanly:
//!
//! ```text
//! %12: f32[2,16,128] = matmul %10, %11  # layers.0.attn.q
//! ```

use super::graph::{Graph, Init};
use super::op::{AttentionRule, ConstValue, Op};
use std::fmt::{self, Display, Formatter, Write};

fn shape_str(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn lower(d: impl fmt::Debug) -> String {
    let s = format!("{d:?}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn rule_str(r: &AttentionRule) -> String {
    let mut out = format!(
        "{} {} scale={:?}",
        lower(&r.weights),
        lower(&r.mask),
        r.scale
    );
    if let Some(s) = &r.score {
        let _ = write!(out, " score={}", lower(s));
    }
    if r.group != 1 {
        let _ = write!(out, " group={}", r.group);
    }
    if r.params != 0 {
        let _ = write!(out, " params={}", r.params);
    }
    out
}

impl Display for Op {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Op::Input { name } => write!(f, "input {name}"),
            Op::Param { index } => write!(f, "param #{index}"),
            Op::Const { value } => match value {
                ConstValue::F32(v) if v.len() == 1 => write!(f, "const {:?}", v[0]),
                ConstValue::I32(v) if v.len() == 1 => write!(f, "const {}i", v[0]),
                ConstValue::F32(v) => write!(f, "const {v:?}"),
                ConstValue::I32(v) => write!(f, "const {v:?}i"),
            },
            Op::Iota { axis } => write!(f, "iota axis={axis}"),
            Op::Unary(u) => write!(f, "{}", lower(u)),
            Op::UnaryGrad(u) => write!(f, "{}_grad", lower(u)),
            Op::Binary(b) => write!(f, "{}", lower(b)),
            Op::Compare(c) => write!(f, "{}", lower(c)),
            Op::Where => write!(f, "where"),
            Op::Cast { to } => write!(f, "cast {to}"),
            Op::PowConst { exponent } => write!(f, "pow {exponent:?}"),
            Op::Clamp { min, max } => write!(f, "clamp {min:?} {max:?}"),
            Op::Reduce { op, axis, keepdim } => {
                write!(
                    f,
                    "{} axis={axis}{}",
                    lower(op),
                    if *keepdim { " keepdim" } else { "" }
                )
            }
            Op::LogSumExp { axis, keepdim } => {
                write!(
                    f,
                    "logsumexp axis={axis}{}",
                    if *keepdim { " keepdim" } else { "" }
                )
            }
            Op::Softmax { axis } => write!(f, "softmax axis={axis}"),
            Op::CumSum { axis, reverse } => write!(
                f,
                "cumsum axis={axis}{}",
                if *reverse { " reverse" } else { "" }
            ),
            Op::ArgMax { axis, keepdim } => write!(
                f,
                "argmax axis={axis}{}",
                if *keepdim { " keepdim" } else { "" }
            ),
            Op::TopKMask { k, axis } => write!(f, "topk_mask k={k} axis={axis}"),
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => {
                write!(
                    f,
                    "matmul{}{}",
                    if *transpose_a { " ta" } else { "" },
                    if *transpose_b { " tb" } else { "" }
                )
            }
            Op::Reshape { shape } => write!(f, "reshape {}", shape_str(shape)),
            Op::Permute { perm } => write!(f, "permute {}", shape_str(perm)),
            Op::BroadcastTo { shape } => write!(f, "broadcast_to {}", shape_str(shape)),
            Op::Slice { axis, start, end } => write!(f, "slice axis={axis} {start}..{end}"),
            Op::Concat { axis } => write!(f, "concat axis={axis}"),
            Op::Gather => write!(f, "gather"),
            Op::ScatterAdd { rows } => write!(f, "scatter_add rows={rows}"),
            Op::OneHot { depth } => write!(f, "one_hot depth={depth}"),
            Op::StopGradient => write!(f, "stop_gradient"),
            Op::StraightThrough => write!(f, "straight_through"),
            Op::CrossEntropy => write!(f, "cross_entropy"),
            Op::Attention(r) => write!(f, "attention {}", rule_str(r)),
            Op::AttentionPattern(r) => write!(f, "attention_pattern {}", rule_str(r)),
            Op::AttentionBackward(r) => write!(f, "attention_backward {}", rule_str(r)),
            Op::AttentionRuleGrad(r) => write!(f, "attention_rule_grad {}", rule_str(r)),
            Op::Rope { layout, inverse } => {
                write!(
                    f,
                    "rope {}{}",
                    lower(layout),
                    if *inverse { " inverse" } else { "" }
                )
            }
        }
    }
}

fn init_str(i: &Init) -> String {
    match i {
        Init::Zeros => "zeros".into(),
        Init::Ones => "ones".into(),
        Init::Constant { value } => format!("constant({value:?})"),
        Init::Normal { std } => format!("normal(std={std:?})"),
        Init::Uniform { low, high } => format!("uniform({low:?}, {high:?})"),
        Init::Values { values } => format!("values({values:?})"),
    }
}

impl Display for Graph {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for i in &self.inputs {
            writeln!(f, "input {}: {}{}", i.name, i.dtype, shape_str(&i.shape))?;
        }
        for p in &self.params {
            let t = if p.trainable { "trainable" } else { "frozen" };
            writeln!(
                f,
                "param {}: f32{} {t} {}",
                p.name,
                shape_str(&p.shape),
                init_str(&p.init)
            )?;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let mut line = String::new();
            write!(line, "%{i}: {}{} = ", n.dtype, shape_str(&n.shape))?;
            match &n.op {
                Op::Param { index } => match self.params.get(*index) {
                    Some(p) => write!(line, "param {}", p.name)?,
                    None => write!(line, "{}", n.op)?,
                },
                op => write!(line, "{op}")?,
            }
            let ins: Vec<String> = n.inputs.iter().map(|v| v.to_string()).collect();
            if !ins.is_empty() {
                write!(line, " {}", ins.join(", "))?;
            }
            if let Some(Some(l)) = self.labels.get(i) {
                write!(line, "  # {l}")?;
            }
            writeln!(f, "{line}")?;
        }
        for (name, v) in &self.outputs {
            writeln!(f, "output {name} = {v}")?;
        }
        for (name, v) in &self.hooks {
            writeln!(f, "hook {name} = {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::{AttentionMask, AttentionRule, AttentionWeights, DType, GraphBuilder, Init};

    #[test]
    fn text_form_is_canonical() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[2, 4, 8], DType::F32);
        let w = g.param("wq", &[8, 8], Init::Normal { std: 0.02 }, true);
        g.set_label(Some("layers.0.attn.q".into()));
        let q = g.matmul(x, w).unwrap();
        g.set_label(None);
        let q4 = g.reshape(q, &[2, 1, 4, 8]).unwrap();
        let rule = AttentionRule {
            score: None,
            group: 1,
            params: 0,
            weights: AttentionWeights::Signed,
            mask: AttentionMask::Causal,
            scale: 0.5,
        };
        let y = g.attention(rule, q4, q4, q4, None).unwrap();
        g.output("y", y);
        g.hook("layers.0.attn.q", q);
        let text = g.finish().unwrap().to_string();
        let want = "\
input x: f32[2,4,8]
param wq: f32[8,8] trainable normal(std=0.02)
%0: f32[2,4,8] = input x
%1: f32[8,8] = param wq
%2: f32[2,4,8] = matmul %0, %1  # layers.0.attn.q
%3: f32[2,1,4,8] = reshape [2,1,4,8] %2
%4: f32[2,1,4,8] = attention signed causal scale=0.5 %3, %3, %3
output y = %4
hook layers.0.attn.q = %2
";
        assert_eq!(text, want);
    }
}
