//! Attention kernels: the forward (online softmax, no T×T buffer), the pattern (only when
//! asked for) and the backward as two kernels sharing a small per-row stats buffer. The rule
//! (softmax or signed weights, one of five masks) is filled into the templates' slots.

use super::shader::{dispatch_for, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, Kernel};
use crate::ir::{AttentionMask, AttentionRule, AttentionWeights, Op, ValueId};

const FWD: &str = include_str!("templates/attention_fwd.wgsl");
const PATTERN: &str = include_str!("templates/attention_pattern.wgsl");
const BWD_Q: &str = include_str!("templates/attention_bwd_q.wgsl");
const BWD_KV: &str = include_str!("templates/attention_bwd_kv.wgsl");

/// Visibility of key `j` from query `t` in batch `b` (the WGSL form of
/// `AttentionMask::visible`), reading segment ids from `seg` when the mask uses them.
fn visible(mask: AttentionMask, seg: Option<&str>) -> String {
    match (mask, seg) {
        (AttentionMask::Causal, _) => "j <= t".into(),
        (AttentionMask::Bidirectional, _) => "true".into(),
        (AttentionMask::SelfOnly, _) => "j == t".into(),
        (AttentionMask::Document | AttentionMask::Turns, Some(s)) => {
            format!("j <= t && {s}[b * T + t] == {s}[b * T + j]")
        }
        (AttentionMask::TurnsKeepFirst, Some(s)) => {
            format!("j <= t && ({s}[b * T + t] == {s}[b * T + j] || {s}[b * T + j] == 0)")
        }
        (AttentionMask::Document | AttentionMask::Turns | AttentionMask::TurnsKeepFirst, None) => {
            "j <= t".into()
        }
    }
}

/// The key range worth scanning for query `t` (everything outside is masked).
fn key_range(mask: AttentionMask) -> (&'static str, &'static str) {
    match mask {
        AttentionMask::Bidirectional => ("0u", "T"),
        AttentionMask::SelfOnly => ("t", "t + 1u"),
        _ => ("0u", "t + 1u"),
    }
}

/// The query range that can see key `j`.
fn query_range(mask: AttentionMask) -> (&'static str, &'static str) {
    match mask {
        AttentionMask::Bidirectional => ("0u", "T"),
        AttentionMask::SelfOnly => ("j", "j + 1u"),
        _ => ("j", "T"),
    }
}

/// `(magnitude, sign, dp)` expressions of the weight rule, in terms of `p`, `s`, `g`, `delta`.
fn rule_exprs(w: AttentionWeights) -> (&'static str, &'static str, &'static str) {
    match w {
        AttentionWeights::Softmax => ("p", "1.0", "s * (g - delta)"),
        // |w| = |sign(p)|·s: zero at p = 0, as the reference's |w|·(g − sign(w)·δ) gives.
        AttentionWeights::Signed => (
            "abs(p)",
            "sign0(p)",
            "abs(sign0(p)) * s * (g - sign0(p) * delta)",
        ),
    }
}

fn declare_dims(s: &mut Shader, q: ValueId, rule: &AttentionRule) {
    let sh = s.g.shape(q).to_vec();
    s.const_u32("B", sh[0]);
    s.const_u32("H", sh[1]);
    s.const_u32("T", sh[2]);
    s.const_u32("D", sh[3]);
    s.const_f32("SCALE", rule.scale);
}

fn rule_of(op: &Op) -> Result<AttentionRule, CodegenError> {
    match op {
        Op::Attention(r) | Op::AttentionPattern(r) | Op::AttentionBackward(r) => Ok(*r),
        other => Err(CodegenError::Template {
            template: "attention".into(),
            message: format!("`{}` is not attention", other.name()),
        }),
    }
}

/// The forward or pattern kernel of `root`.
pub(super) fn forward(mut s: Shader, root: ValueId) -> Result<Kernel, CodegenError> {
    let node = s.g.node(root);
    let rule = rule_of(&node.op)?;
    let ins = node.inputs.clone();
    let pattern = matches!(node.op, Op::AttentionPattern(_));
    // The forward reads queries through a function (a prologue may rotate them), the
    // pattern kernel from their buffer.
    let q = if pattern {
        s.read(ins[0])
    } else {
        s.value_fn(ins[0])
    };
    let k = s.read(ins[1]);
    let v = if pattern { None } else { Some(s.read(ins[2])) };
    let seg = ins.get(3).map(|&x| s.read(x));
    let out = s.write(root);
    declare_dims(&mut s, ins[0], &rule);
    let (mag, sign, _) = rule_exprs(rule.weights);
    let rows = {
        let sh = s.g.shape(ins[0]);
        sh[0] * sh[1] * sh[2]
    };
    let t = if pattern {
        Template::new("attention_pattern", PATTERN)
    } else {
        let (jb, je) = key_range(rule.mask);
        Template::new("attention_fwd", FWD)
            .set("V", v.unwrap_or_default())
            .set("J_BEGIN", jb)
            .set("J_END", je)
    };
    let main = t
        .set("WG", WORKGROUP.to_string())
        .set("VISIBLE", visible(rule.mask, seg.as_deref()))
        .set("MAGNITUDE", mag)
        .set("SIGN", sign)
        .set("Q", q)
        .set("K", k)
        .set("OUT", out)
        .render()?;
    Ok(s.finish(main, WORKGROUP, dispatch_for(rows), &[root]))
}

/// The two backward kernels of `root` (`[3,B,H,T,d]` = dq, dk, dv): part 1 writes dq and the
/// per-row stats, part 2 reads them and writes dk, dv.
pub(super) fn backward(
    g: &crate::ir::Graph,
    plan: &super::fusion::FusionPlan,
    root: ValueId,
) -> Result<[Kernel; 2], CodegenError> {
    let node = g.node(root);
    let rule = rule_of(&node.op)?;
    let ins = &node.inputs;
    let sh = g.shape(ins[0]);
    let rows = sh[0] * sh[1] * sh[2];
    let stats = format!("attention_backward_stats_{}", root.0);
    let (mag, sign, dp) = rule_exprs(rule.weights);

    let mut s = Shader::new(g, plan, format!("attention_bwd_q_{}", root.0));
    let (q, k, v, y, dy) = (
        s.read(ins[0]),
        s.read(ins[1]),
        s.read(ins[2]),
        s.read(ins[3]),
        s.read(ins[4]),
    );
    let seg = ins.get(5).map(|&x| s.read(x));
    let out = s.write(root);
    let st = s.scratch(stats.clone(), rows * 3, true);
    declare_dims(&mut s, ins[0], &rule);
    let (jb, je) = key_range(rule.mask);
    let main = Template::new("attention_bwd_q", BWD_Q)
        .set("WG", WORKGROUP.to_string())
        .set("VISIBLE", visible(rule.mask, seg.as_deref()))
        .set("MAGNITUDE", mag)
        .set("DP", dp)
        .set("J_BEGIN", jb)
        .set("J_END", je)
        .set("Q", q)
        .set("K", k)
        .set("V", v)
        .set("Y", y)
        .set("DY", dy)
        .set("OUT", out)
        .set("STATS", st)
        .render()?;
    let part1 = s.finish(main, WORKGROUP, dispatch_for(rows), &[root]);

    let mut s = Shader::new(g, plan, format!("attention_bwd_kv_{}", root.0));
    let (q, k, v, dy) = (
        s.read(ins[0]),
        s.read(ins[1]),
        s.read(ins[2]),
        s.read(ins[4]),
    );
    let seg = ins.get(5).map(|&x| s.read(x));
    let st = s.scratch(stats, rows * 3, false);
    let out = s.write(root);
    declare_dims(&mut s, ins[0], &rule);
    let (tb, te) = query_range(rule.mask);
    let main = Template::new("attention_bwd_kv", BWD_KV)
        .set("WG", WORKGROUP.to_string())
        .set("VISIBLE", visible(rule.mask, seg.as_deref()))
        .set("MAGNITUDE", mag)
        .set("SIGN", sign)
        .set("DP", dp)
        .set("T_BEGIN", tb)
        .set("T_END", te)
        .set("Q", q)
        .set("K", k)
        .set("V", v)
        .set("DY", dy)
        .set("OUT", out)
        .set("STATS", st)
        .render()?;
    let part2 = s.finish(main, WORKGROUP, dispatch_for(rows), &[root]);
    Ok([part1, part2])
}
