//! Shape rules: for every non-leaf op, the output shape and dtype as a function of the
//! input types. The builder calls [`infer`] when it creates a node and [`verify`](super::verify)
//! calls it again to re-check a graph. Errors are plain messages; the caller adds the op
//! name and span.

use super::op::AttentionRule;
use super::op::{Op, ReduceOp};
use super::types::{numel, DType, Shape};

/// The type of one input: its shape and dtype.
pub type TypeRef<'a> = (&'a [usize], DType);

/// Numpy broadcasting of two shapes (right-aligned; extents must match or be 1).
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Shape, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("cannot broadcast {a:?} with {b:?}")),
        };
    }
    Ok(out)
}

/// Whether `from` broadcasts to exactly `to`.
pub fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == t || f == 1)
}

fn want_dtype(what: &str, got: DType, want: DType) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what} must be {want}, got {got}"))
    }
}

fn want_arity(ins: &[TypeRef], n: usize) -> Result<(), String> {
    if ins.len() == n {
        Ok(())
    } else {
        Err(format!("expects {n} inputs, got {}", ins.len()))
    }
}

fn want_axis(axis: usize, shape: &[usize]) -> Result<(), String> {
    if axis < shape.len() {
        Ok(())
    } else {
        Err(format!("axis {axis} out of range for shape {shape:?}"))
    }
}

fn reduced(shape: &[usize], axis: usize, keepdim: bool) -> Shape {
    let mut s = shape.to_vec();
    if keepdim {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

/// Checks the q/k/v(/y/dy) + optional segment inputs + rule parameters `[H]` of the
/// attention ops; returns `[B,H,T,d]`.
fn attention_inputs(ins: &[TypeRef], n_same: usize, rule: &AttentionRule) -> Result<Shape, String> {
    if let Some(p) = rule.problem() {
        return Err(p);
    }
    let segments = rule.needs_segments();
    want_arity(ins, n_same + segments as usize + rule.params)?;
    let q = ins[0].0;
    if q.len() != 4 {
        return Err(format!("q must be [B,H,T,d], got {q:?}"));
    }
    for (i, (s, dt)) in ins[..n_same].iter().enumerate() {
        want_dtype(&format!("input {i}"), *dt, DType::F32)?;
        if *s != q {
            return Err(format!(
                "q, k, v (and y, dy) must have one shape; input 0 is {q:?}, input {i} is {s:?}"
            ));
        }
    }
    if segments {
        let (s, dt) = ins[n_same];
        want_dtype("segment ids", dt, DType::I32)?;
        if s != [q[0], q[2]] {
            return Err(format!(
                "segment ids must be [B,T] = [{}, {}], got {s:?}",
                q[0], q[2]
            ));
        }
    }
    for (k, (s, dt)) in ins[n_same + segments as usize..].iter().enumerate() {
        want_dtype(&format!("rule parameter {k}"), *dt, DType::F32)?;
        if *s != [q[1]] {
            return Err(format!(
                "rule parameter {k} must be [H] = [{}], got {s:?}",
                q[1]
            ));
        }
    }
    Ok(q.to_vec())
}

/// Output type of a non-leaf op applied to inputs of the given types.
pub fn infer(op: &Op, ins: &[TypeRef]) -> Result<(Shape, DType), String> {
    let f32_same = |ins: &[TypeRef]| -> Result<(Shape, DType), String> {
        want_arity(ins, 1)?;
        want_dtype("input", ins[0].1, DType::F32)?;
        Ok((ins[0].0.to_vec(), DType::F32))
    };
    match op {
        Op::Input { .. } | Op::Param { .. } | Op::Const { .. } | Op::Iota { .. } => {
            Err("leaves have no shape rule".into())
        }
        Op::Unary(_) | Op::PowConst { .. } | Op::Clamp { .. } | Op::StraightThrough => {
            f32_same(ins)
        }
        Op::Softmax { axis } | Op::TopKMask { axis, .. } => {
            let r = f32_same(ins)?;
            want_axis(*axis, ins[0].0)?;
            if let Op::TopKMask { k, axis } = op {
                if *k == 0 || *k > ins[0].0[*axis] {
                    return Err(format!("k = {k} must be in 1..={}", ins[0].0[*axis]));
                }
            }
            Ok(r)
        }
        Op::UnaryGrad(_) => {
            want_arity(ins, 2)?;
            want_dtype("x", ins[0].1, DType::F32)?;
            want_dtype("dy", ins[1].1, DType::F32)?;
            if ins[0].0 != ins[1].0 {
                return Err(format!(
                    "x {:?} and dy {:?} must have one shape",
                    ins[0].0, ins[1].0
                ));
            }
            Ok((ins[0].0.to_vec(), DType::F32))
        }
        Op::Binary(_) | Op::Compare(_) => {
            want_arity(ins, 2)?;
            if ins[0].1 != ins[1].1 {
                return Err(format!(
                    "operands must share a dtype, got {} and {}",
                    ins[0].1, ins[1].1
                ));
            }
            let s = broadcast_shapes(ins[0].0, ins[1].0)?;
            let dt = if matches!(op, Op::Compare(_)) {
                DType::F32
            } else {
                ins[0].1
            };
            Ok((s, dt))
        }
        Op::Where => {
            want_arity(ins, 3)?;
            if ins[1].1 != ins[2].1 {
                return Err(format!(
                    "branches must share a dtype, got {} and {}",
                    ins[1].1, ins[2].1
                ));
            }
            let s = broadcast_shapes(ins[0].0, ins[1].0)?;
            let s = broadcast_shapes(&s, ins[2].0)?;
            Ok((s, ins[1].1))
        }
        Op::Cast { to } => {
            want_arity(ins, 1)?;
            Ok((ins[0].0.to_vec(), *to))
        }
        Op::StopGradient => {
            want_arity(ins, 1)?;
            Ok((ins[0].0.to_vec(), ins[0].1))
        }
        Op::Reduce {
            op: r,
            axis,
            keepdim,
        } => {
            want_arity(ins, 1)?;
            want_axis(*axis, ins[0].0)?;
            if *r == ReduceOp::Mean {
                want_dtype("mean input", ins[0].1, DType::F32)?;
            }
            Ok((reduced(ins[0].0, *axis, *keepdim), ins[0].1))
        }
        Op::LogSumExp { axis, keepdim } => {
            f32_same(ins)?;
            want_axis(*axis, ins[0].0)?;
            Ok((reduced(ins[0].0, *axis, *keepdim), DType::F32))
        }
        Op::CumSum { axis, .. } => {
            want_arity(ins, 1)?;
            want_axis(*axis, ins[0].0)?;
            Ok((ins[0].0.to_vec(), ins[0].1))
        }
        Op::ArgMax { axis, keepdim } => {
            want_arity(ins, 1)?;
            want_axis(*axis, ins[0].0)?;
            Ok((reduced(ins[0].0, *axis, *keepdim), DType::I32))
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            want_arity(ins, 2)?;
            let (a, b) = (ins[0].0, ins[1].0);
            want_dtype("lhs", ins[0].1, DType::F32)?;
            want_dtype("rhs", ins[1].1, DType::F32)?;
            if a.len() < 2 || b.len() < 2 {
                return Err(format!("operands must have rank ≥ 2, got {a:?} and {b:?}"));
            }
            let (ra, rb) = (a.len(), b.len());
            let (m, ka) = if *transpose_a {
                (a[ra - 1], a[ra - 2])
            } else {
                (a[ra - 2], a[ra - 1])
            };
            let (kb, n) = if *transpose_b {
                (b[rb - 1], b[rb - 2])
            } else {
                (b[rb - 2], b[rb - 1])
            };
            if ka != kb {
                return Err(format!(
                    "contraction mismatch: lhs {a:?}{} has K = {ka}, rhs {b:?}{} has K = {kb}",
                    if *transpose_a { "ᵀ" } else { "" },
                    if *transpose_b { "ᵀ" } else { "" }
                ));
            }
            let mut s = broadcast_shapes(&a[..ra - 2], &b[..rb - 2])
                .map_err(|e| format!("batch dims: {e}"))?;
            s.extend([m, n]);
            Ok((s, DType::F32))
        }
        Op::Reshape { shape } => {
            want_arity(ins, 1)?;
            if numel(shape) != numel(ins[0].0) {
                return Err(format!(
                    "cannot reshape {:?} ({} elements) to {shape:?}",
                    ins[0].0,
                    numel(ins[0].0)
                ));
            }
            Ok((shape.clone(), ins[0].1))
        }
        Op::Permute { perm } => {
            want_arity(ins, 1)?;
            let x = ins[0].0;
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len()
                || perm
                    .iter()
                    .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!(
                    "{perm:?} is not a permutation of the axes of {x:?}"
                ));
            }
            Ok((perm.iter().map(|&p| x[p]).collect(), ins[0].1))
        }
        Op::BroadcastTo { shape } => {
            want_arity(ins, 1)?;
            if !broadcasts_to(ins[0].0, shape) {
                return Err(format!("cannot broadcast {:?} to {shape:?}", ins[0].0));
            }
            Ok((shape.clone(), ins[0].1))
        }
        Op::Slice { axis, start, end } => {
            want_arity(ins, 1)?;
            want_axis(*axis, ins[0].0)?;
            let n = ins[0].0[*axis];
            if start >= end || *end > n {
                return Err(format!(
                    "slice {start}..{end} out of range for axis {axis} of {:?}",
                    ins[0].0
                ));
            }
            let mut s = ins[0].0.to_vec();
            s[*axis] = end - start;
            Ok((s, ins[0].1))
        }
        Op::Concat { axis } => {
            if ins.is_empty() {
                return Err("needs at least one input".into());
            }
            let first = ins[0].0;
            want_axis(*axis, first)?;
            let mut total = 0;
            for (i, (s, dt)) in ins.iter().enumerate() {
                if *dt != ins[0].1 {
                    return Err(format!("input {i} is {dt}, input 0 is {}", ins[0].1));
                }
                let same = s.len() == first.len()
                    && s.iter()
                        .zip(first)
                        .enumerate()
                        .all(|(a, (x, y))| a == *axis || x == y);
                if !same {
                    return Err(format!(
                        "input {i} {s:?} does not match input 0 {first:?} off axis {axis}"
                    ));
                }
                total += s[*axis];
            }
            let mut s = first.to_vec();
            s[*axis] = total;
            Ok((s, ins[0].1))
        }
        Op::Gather => {
            want_arity(ins, 2)?;
            want_dtype("ids", ins[1].1, DType::I32)?;
            let table = ins[0].0;
            if table.is_empty() {
                return Err("table must have rank ≥ 1".into());
            }
            let mut s = ins[1].0.to_vec();
            s.extend_from_slice(&table[1..]);
            Ok((s, ins[0].1))
        }
        Op::ScatterAdd { rows } => {
            want_arity(ins, 2)?;
            want_dtype("src", ins[0].1, DType::F32)?;
            want_dtype("ids", ins[1].1, DType::I32)?;
            let (src, ids) = (ins[0].0, ins[1].0);
            if !src.starts_with(ids) {
                return Err(format!("src {src:?} must start with the ids shape {ids:?}"));
            }
            let mut s = vec![*rows];
            s.extend_from_slice(&src[ids.len()..]);
            Ok((s, DType::F32))
        }
        Op::OneHot { depth } => {
            want_arity(ins, 1)?;
            want_dtype("ids", ins[0].1, DType::I32)?;
            let mut s = ins[0].0.to_vec();
            s.push(*depth);
            Ok((s, DType::F32))
        }
        Op::CrossEntropy => {
            want_arity(ins, 2)?;
            want_dtype("logits", ins[0].1, DType::F32)?;
            want_dtype("targets", ins[1].1, DType::I32)?;
            let (l, t) = (ins[0].0, ins[1].0);
            if l.len() != 2 || t != [l[0]] {
                return Err(format!(
                    "want logits [N,V] and targets [N], got {l:?} and {t:?}"
                ));
            }
            Ok((vec![l[0]], DType::F32))
        }
        Op::Attention(rule) => Ok((attention_inputs(ins, 3, rule)?, DType::F32)),
        Op::AttentionPattern(rule) => {
            let q = attention_inputs(ins, 3, rule)?;
            Ok((vec![q[0], q[1], q[2], q[2]], DType::F32))
        }
        Op::AttentionBackward(rule) => {
            let mut s = attention_inputs(ins, 5, rule)?;
            s.insert(0, 3);
            Ok((s, DType::F32))
        }
        Op::AttentionRuleGrad(rule) => {
            let q = attention_inputs(ins, 5, rule)?;
            Ok((vec![q[0], q[1], q[2], rule.params], DType::F32))
        }
        Op::Rope { .. } => {
            want_arity(ins, 3)?;
            let (x, f, p) = (ins[0].0, ins[1].0, ins[2].0);
            want_dtype("x", ins[0].1, DType::F32)?;
            want_dtype("freqs", ins[1].1, DType::F32)?;
            want_dtype("positions", ins[2].1, DType::I32)?;
            if x.len() != 4 || x[3] % 2 != 0 {
                return Err(format!("x must be [B,H,T,d] with even d, got {x:?}"));
            }
            if f != [x[3] / 2] {
                return Err(format!("freqs must be [d/2] = [{}], got {f:?}", x[3] / 2));
            }
            if p != [x[2]] && p != [x[0], x[2]] {
                return Err(format!(
                    "positions must be [T] or [B,T] = [{}, {}], got {p:?}",
                    x[0], x[2]
                ));
            }
            Ok((x.to_vec(), DType::F32))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::op::BinaryOp;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shapes(&[2, 1, 4], &[3, 1]).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(broadcast_shapes(&[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shapes(&[2, 3], &[4, 3]).is_err());
        assert!(broadcasts_to(&[3, 1], &[2, 3, 4]));
        assert!(!broadcasts_to(&[3, 2], &[3, 4]));
    }

    #[test]
    fn matmul_broadcasts_batch_and_checks_k() {
        let ins: [TypeRef; 2] = [(&[2, 5, 3, 4], DType::F32), (&[4, 6], DType::F32)];
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        };
        assert_eq!(infer(&mm, &ins).unwrap().0, vec![2, 5, 3, 6]);
        let mmt = Op::MatMul {
            transpose_a: true,
            transpose_b: false,
        };
        let err = infer(&mmt, &ins).unwrap_err();
        assert!(err.contains("K = 3") && err.contains("K = 4"), "{err}");
    }

    #[test]
    fn binary_rejects_mixed_dtypes() {
        let ins: [TypeRef; 2] = [(&[2], DType::F32), (&[2], DType::I32)];
        assert!(infer(&Op::Binary(BinaryOp::Add), &ins).is_err());
    }
}
