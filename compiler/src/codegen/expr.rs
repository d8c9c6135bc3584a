//! Inlined values: the body of `fn v{id}(i: u32) -> T` for every index-map op, written
//! against the per-element semantics in `ir::scalar` (the CPU reference uses the same ones).
//!
//! `i` is a flat row-major index into the value's own shape; an input is read by calling its
//! function at the index this op maps `i` to (broadcast, permuted, sliced, gathered, ...).

use super::shader::{f32_lit, i32_lit, u, wgsl_type, Shader};
use crate::ir::{numel, BinaryOp, CmpOp, ConstValue, DType, Op, RopeLayout, UnaryOp, ValueId};

/// Row-major strides.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// Coordinate `k` of flat index `i` in `shape` (with row-major strides `st`).
fn coord(i: &str, shape: &[usize], st: &[usize], k: usize) -> String {
    match (k == 0, st[k] == 1) {
        (true, true) => i.to_string(),
        (true, false) => format!("({i} / {})", u(st[k])),
        (false, true) => format!("({i} % {})", u(shape[k])),
        (false, false) => format!("(({i} / {}) % {})", u(st[k]), u(shape[k])),
    }
}

/// Index into an `inp`-shaped value broadcast (numpy rules) to `out`, for flat index `i`.
pub(super) fn broadcast_index(i: &str, out: &[usize], inp: &[usize]) -> String {
    if out == inp {
        return i.to_string();
    }
    if numel(inp) == 1 {
        return "0u".into();
    }
    let trimmed: Vec<usize> = inp.iter().copied().skip_while(|&d| d == 1).collect();
    if out.ends_with(&trimmed) {
        // A trailing block repeated over the leading axes.
        return format!("({i} % {})", u(numel(&trimmed)));
    }
    let off = out.len() - inp.len();
    let (ost, ist) = (strides(out), strides(inp));
    let terms: Vec<String> = (0..inp.len())
        .filter(|&k| inp[k] != 1)
        .map(|k| format!("{} * {}", coord(i, out, &ost, off + k), u(ist[k])))
        .collect();
    format!("({})", terms.join(" + "))
}

pub(super) fn unary(op: UnaryOp, x: &str) -> String {
    match op {
        UnaryOp::Neg => format!("-{x}"),
        UnaryOp::Abs => format!("abs({x})"),
        UnaryOp::Sign => format!("sign0({x})"),
        UnaryOp::Exp => format!("exp({x})"),
        UnaryOp::Log => format!("log({x})"),
        UnaryOp::Sqrt => format!("sqrt({x})"),
        // 1/sqrt, as the reference computes it (inverseSqrt may be an approximation).
        UnaryOp::Rsqrt => format!("(1.0 / sqrt({x}))"),
        UnaryOp::Recip => format!("(1.0 / {x})"),
        UnaryOp::Square => format!("({x} * {x})"),
        UnaryOp::Tanh => format!("tanh_({x})"),
        UnaryOp::Sigmoid => format!("sigmoid_({x})"),
        UnaryOp::Silu => format!("({x} * sigmoid_({x}))"),
        UnaryOp::Gelu => format!("gelu_({x})"),
        UnaryOp::Relu => format!("select(0.0, {x}, {x} > 0.0)"),
        UnaryOp::Sin => format!("sin({x})"),
        UnaryOp::Cos => format!("cos({x})"),
    }
}

/// `f'(x)`, matching `UnaryOp::derivative`.
pub(super) fn derivative(op: UnaryOp, x: &str) -> String {
    match op {
        UnaryOp::Neg => "-1.0".into(),
        UnaryOp::Abs => format!("sign0({x})"),
        UnaryOp::Sign => "0.0".into(),
        UnaryOp::Exp => format!("exp({x})"),
        UnaryOp::Log => format!("(1.0 / {x})"),
        UnaryOp::Sqrt => format!("(0.5 / sqrt({x}))"),
        UnaryOp::Rsqrt => format!("(-0.5 / ({x} * sqrt({x})))"),
        UnaryOp::Recip => format!("(-1.0 / ({x} * {x}))"),
        UnaryOp::Square => format!("(2.0 * {x})"),
        UnaryOp::Tanh => format!("d_tanh({x})"),
        UnaryOp::Sigmoid => format!("d_sigmoid({x})"),
        UnaryOp::Silu => format!("d_silu({x})"),
        UnaryOp::Gelu => format!("d_gelu({x})"),
        UnaryOp::Relu => format!("select(0.0, 1.0, {x} > 0.0)"),
        UnaryOp::Sin => format!("cos({x})"),
        UnaryOp::Cos => format!("-sin({x})"),
    }
}

pub(super) fn binary(op: BinaryOp, dt: DType, a: &str, b: &str) -> String {
    match (op, dt) {
        (BinaryOp::Add, _) => format!("{a} + {b}"),
        (BinaryOp::Sub, _) => format!("{a} - {b}"),
        (BinaryOp::Mul, _) => format!("{a} * {b}"),
        (BinaryOp::Div, DType::I32) => format!("div_i32({a}, {b})"),
        (BinaryOp::Div, _) => format!("{a} / {b}"),
        (BinaryOp::Max, DType::I32) => format!("max({a}, {b})"),
        (BinaryOp::Min, DType::I32) => format!("min({a}, {b})"),
        // Ties keep `a`, as the reference does.
        (BinaryOp::Max, _) => format!("select({b}, {a}, {a} >= {b})"),
        (BinaryOp::Min, _) => format!("select({b}, {a}, {a} <= {b})"),
    }
}

pub(super) fn compare(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
    }
}

/// `x^e` as the reference's `powf`: exact small integer powers, a sign fix for other integer
/// exponents (WGSL's `pow` is undefined for negative bases).
fn pow(x: &str, e: f32) -> String {
    match e {
        0.0 => "1.0".into(),
        1.0 => x.into(),
        2.0 => format!("({x} * {x})"),
        3.0 => format!("({x} * {x} * {x})"),
        -1.0 => format!("(1.0 / {x})"),
        0.5 => format!("sqrt({x})"),
        _ if e.fract() == 0.0 => {
            let odd = (e.abs() % 2.0) == 1.0;
            let mag = format!("pow(abs({x}), {})", f32_lit(e));
            if odd {
                format!("(select(1.0, -1.0, {x} < 0.0) * {mag})")
            } else {
                mag
            }
        }
        _ => format!("pow({x}, {})", f32_lit(e)),
    }
}

fn zero(dt: DType) -> &'static str {
    match dt {
        DType::I32 => "0i",
        _ => "0.0",
    }
}

/// The body of the function of inlined value `v`.
pub(super) fn inline_body(s: &mut Shader, v: ValueId) -> String {
    let g = s.g;
    let node = g.node(v);
    let shape = node.shape.as_slice();
    let ins = &node.inputs;
    let ish = |k: usize| g.shape(ins[k]);
    // Reads input `k` at index expression `idx` into `let x{k}`.
    let load = |s: &mut Shader, k: usize, idx: &str| {
        let f = s.value_fn(ins[k]);
        format!("    let x{k} = {f}({idx});\n")
    };
    let bcast = |s: &mut Shader, k: usize| {
        let idx = broadcast_index("i", shape, g.shape(ins[k]));
        load(s, k, &idx)
    };
    match &node.op {
        Op::Const { value } => match value {
            ConstValue::F32(x) => format!("    return {};", f32_lit(x[0])),
            ConstValue::I32(x) => format!("    return {};", i32_lit(x[0])),
        },
        Op::Iota { axis } => {
            let inner = numel(&shape[axis + 1..]);
            format!(
                "    return {}((i / {}) % {});",
                wgsl_type(node.dtype),
                u(inner),
                u(shape[*axis])
            )
        }
        Op::Unary(op) => format!("{}    return {};", bcast(s, 0), unary(*op, "x0")),
        Op::UnaryGrad(op) => format!(
            "{}{}    return x1 * {};",
            bcast(s, 0),
            bcast(s, 1),
            derivative(*op, "x0")
        ),
        Op::Binary(op) => format!(
            "{}{}    return {};",
            bcast(s, 0),
            bcast(s, 1),
            binary(*op, node.dtype, "x0", "x1")
        ),
        Op::Compare(op) => format!(
            "{}{}    return select(0.0, 1.0, x0 {} x1);",
            bcast(s, 0),
            bcast(s, 1),
            compare(*op)
        ),
        Op::Where => {
            let c = zero(g.dtype(ins[0]));
            format!(
                "{}{}{}    return select(x2, x1, x0 != {c});",
                bcast(s, 0),
                bcast(s, 1),
                bcast(s, 2)
            )
        }
        Op::Cast { to } => {
            let from = g.dtype(ins[0]);
            let conv = if from == *to {
                "x0".to_string()
            } else {
                format!("{}(x0)", wgsl_type(*to))
            };
            format!("{}    return {conv};", bcast(s, 0))
        }
        Op::PowConst { exponent } => format!("{}    return {};", bcast(s, 0), pow("x0", *exponent)),
        Op::Clamp { min, max } => format!(
            "{}    return select(select(x0, {hi}, x0 > {hi}), {lo}, x0 < {lo});",
            bcast(s, 0),
            lo = f32_lit(*min),
            hi = f32_lit(*max)
        ),
        Op::StopGradient | Op::Reshape { .. } => format!("{}    return x0;", load(s, 0, "i")),
        Op::StraightThrough => format!("{}    return sign0(x0);", load(s, 0, "i")),
        Op::BroadcastTo { .. } => format!("{}    return x0;", bcast(s, 0)),
        Op::Permute { perm } => {
            let (ost, ist) = (strides(shape), strides(ish(0)));
            let terms: Vec<String> = perm
                .iter()
                .enumerate()
                .filter(|&(k, _)| shape[k] != 1)
                .map(|(k, &p)| format!("{} * {}", coord("i", shape, &ost, k), u(ist[p])))
                .collect();
            let idx = if terms.is_empty() {
                "0u".to_string()
            } else {
                terms.join(" + ")
            };
            format!("{}    return x0;", load(s, 0, &idx))
        }
        Op::Slice { axis, start, .. } => {
            let inner = numel(&shape[axis + 1..]);
            let (n_out, n_in) = (shape[*axis], ish(0)[*axis]);
            let idx = format!(
                "((i / {}) * {} + {} + (i / {}) % {}) * {} + i % {}",
                u(n_out * inner),
                u(n_in),
                u(*start),
                u(inner),
                u(n_out),
                u(inner),
                u(inner)
            );
            format!("{}    return x0;", load(s, 0, &idx))
        }
        Op::Concat { axis } => {
            let inner = numel(&shape[axis + 1..]);
            let total = shape[*axis];
            let mut body = format!(
                "    let o = i / {};\n    let j = (i / {}) % {};\n    let r = i % {};\n",
                u(total * inner),
                u(inner),
                u(total),
                u(inner)
            );
            let mut at = 0;
            for k in 0..ins.len() {
                let n = ish(k)[*axis];
                let f = s.value_fn(ins[k]);
                let read = format!(
                    "return {f}((o * {} + j - {}) * {} + r);",
                    u(n),
                    u(at),
                    u(inner)
                );
                if k + 1 == ins.len() {
                    body.push_str(&format!("    {read}"));
                } else {
                    body.push_str(&format!("    if (j < {}) {{ {read} }}\n", u(at + n)));
                }
                at += n;
            }
            body
        }
        Op::Gather => {
            let table = ish(0);
            let row = numel(&table[1..]);
            let tf = s.value_fn(ins[0]);
            let idf = s.value_fn(ins[1]);
            format!(
                "    let id = {idf}(i / {row});\n    \
                 if (id < 0i || id >= {rows}) {{ return {z}; }}\n    \
                 return {tf}(u32(id) * {row} + i % {row});",
                row = u(row),
                rows = i32_lit(table[0] as i32),
                z = zero(node.dtype)
            )
        }
        Op::OneHot { depth } => {
            let idf = s.value_fn(ins[0]);
            format!(
                "    let id = {idf}(i / {d});\n    return select(0.0, 1.0, id == i32(i % {d}));",
                d = u(*depth)
            )
        }
        Op::Rope { layout, inverse } => {
            let [_, h, t, d] = [shape[0], shape[1], shape[2], shape[3]];
            let (xf, ff, pf) = (s.value_fn(ins[0]), s.value_fn(ins[1]), s.value_fn(ins[2]));
            let pair = match layout {
                RopeLayout::Interleaved => "    let pair = c / 2u;\n    \
                     let first = c % 2u == 0u;\n    let ia = 2u * pair;\n    let ib = ia + 1u;\n"
                    .to_string(),
                RopeLayout::Half => format!(
                    "    let pair = c % {hd};\n    let first = c < {hd};\n    \
                     let ia = pair;\n    let ib = pair + {hd};\n",
                    hd = u(d / 2)
                ),
            };
            let pos_index = if ish(2).len() == 2 {
                format!("(row / {}) * {} + t", u(h * t), u(t))
            } else {
                "t".to_string()
            };
            let angle = if *inverse { "-(pos * f)" } else { "pos * f" };
            format!(
                "    let c = i % {d};\n    let row = i / {d};\n    let t = row % {t};\n{pair}    \
                 let a = {xf}(row * {d} + ia);\n    let b = {xf}(row * {d} + ib);\n    \
                 let pos = f32({pf}({pos_index}));\n    let f = {ff}(pair);\n    \
                 let ang = {angle};\n    let co = cos(ang);\n    let si = sin(ang);\n    \
                 if (first) {{ return a * co - b * si; }}\n    return a * si + b * co;",
                d = u(d),
                t = u(t)
            )
        }
        // Only index maps are inlined (see fusion); anything else is loaded from its buffer.
        _ => {
            let var = s.read(v);
            format!("    return {var}[i];")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_indices() {
        assert_eq!(broadcast_index("i", &[2, 3], &[2, 3]), "i");
        assert_eq!(broadcast_index("i", &[2, 3], &[3]), "(i % 3u)");
        assert_eq!(broadcast_index("i", &[2, 3], &[1]), "0u");
        assert_eq!(broadcast_index("i", &[2, 3], &[2, 1]), "((i / 3u) * 1u)");
    }
}
