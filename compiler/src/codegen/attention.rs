//! Attention kernels: the forward (online softmax, no T×T buffer), the pattern (only when
//! asked for) and the backward as two kernels sharing a small per-row stats buffer. The rule
//! is filled into the templates' slots: the built-in weights (softmax, signed) and masks as
//! written here, a spec's rule as WGSL written from its expression trees (score
//! modification, mask, normaliser `h(s)·exp(f(s)) / (c + Σ exp f)` or direct weights `φ(s)`),
//! with the backward's `dp` from their symbolic derivatives.

use super::expr;
use super::shader::{dispatch_for, f32_lit, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, Kernel};
use crate::ir::rule::{d_ds, d_wrt, Wrt};
use crate::ir::{
    AttentionMask, AttentionRule, AttentionWeights, DType, Normaliser, Op, RuleExpr, RuleVar,
    ValueId,
};

const FWD: &str = include_str!("templates/attention_fwd.wgsl");
const PATTERN: &str = include_str!("templates/attention_pattern.wgsl");
const BWD_Q: &str = include_str!("templates/attention_bwd_q.wgsl");
const BWD_KV: &str = include_str!("templates/attention_bwd_kv.wgsl");
const RULE_GRAD: &str = include_str!("templates/attention_rule_grad.wgsl");

/// Buffers a rule expression reads besides the scores: segment ids and rule parameters.
#[derive(Default)]
struct Names {
    seg: Option<String>,
    params: Vec<String>,
}

impl Names {
    /// Declares the reads of an attention op's inputs after its first `n_same`.
    fn read(s: &mut Shader, rule: &AttentionRule, ins: &[ValueId], n_same: usize) -> Names {
        let n_seg = usize::from(rule.needs_segments());
        let seg = ins.get(n_same).filter(|_| n_seg == 1).map(|&x| s.read(x));
        let params = ins[(n_same + n_seg).min(ins.len())..]
            .iter()
            .map(|&x| s.read(x))
            .collect();
        Names { seg, params }
    }
}

/// Visibility of key `j` from query `t` in batch `b` (the WGSL form of
/// `AttentionMask::visible`), reading segment ids from `seg` when the mask uses them.
fn visible(mask: &AttentionMask, n: &Names) -> String {
    let seg = n.seg.as_deref();
    match (mask, seg) {
        (AttentionMask::Rule(e), _) => format!("{} != 0.0", wgsl(e, "p", n)),
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
fn key_range(mask: &AttentionMask) -> (&'static str, &'static str) {
    match mask {
        AttentionMask::Bidirectional | AttentionMask::Rule(_) => ("0u", "T"),
        AttentionMask::SelfOnly => ("t", "t + 1u"),
        // Every segment mask is causal within its segments.
        AttentionMask::Causal
        | AttentionMask::Document
        | AttentionMask::Turns
        | AttentionMask::TurnsKeepFirst => ("0u", "t + 1u"),
    }
}

/// The query range that can see key `j`.
fn query_range(mask: &AttentionMask) -> (&'static str, &'static str) {
    match mask {
        AttentionMask::Bidirectional | AttentionMask::Rule(_) => ("0u", "T"),
        AttentionMask::SelfOnly => ("j", "j + 1u"),
        AttentionMask::Causal
        | AttentionMask::Document
        | AttentionMask::Turns
        | AttentionMask::TurnsKeepFirst => ("j", "T"),
    }
}

/// A rule expression as a WGSL `f32` expression: the score is `score` (`p_raw` inside a
/// score modification, `p` after it), positions `t` (query) and `j` (key), head `hh`,
/// segment ids and rule parameters (read at the head) from the buffers in `n`.
fn wgsl(e: &RuleExpr, score: &str, n: &Names) -> String {
    let go = |x: &RuleExpr| wgsl(x, score, n);
    let seg = n.seg.as_deref();
    match e {
        RuleExpr::Const(c) => f32_lit(*c),
        RuleExpr::Var(v) => match v {
            RuleVar::Score => score.to_string(),
            RuleVar::QueryPos => "f32(t)".into(),
            RuleVar::KeyPos => "f32(j)".into(),
            RuleVar::Head => "f32(hh)".into(),
            RuleVar::KvHead => "f32(hh / GROUP)".into(),
            RuleVar::Keys => "f32(T)".into(),
            RuleVar::QuerySeg => seg.map_or("0.0".into(), |s| format!("f32({s}[b * T + t])")),
            RuleVar::KeySeg => seg.map_or("0.0".into(), |s| format!("f32({s}[b * T + j])")),
        },
        RuleExpr::Param(k) => n
            .params
            .get(*k)
            .map_or("0.0".into(), |p| format!("{p}[hh]")),
        RuleExpr::Unary(op, a) => format!("({})", expr::unary(*op, &go(a))),
        RuleExpr::Deriv(op, a) => format!("({})", expr::derivative(*op, &go(a))),
        RuleExpr::Binary(op, a, c) => {
            format!("({})", expr::binary(*op, DType::F32, &go(a), &go(c)))
        }
        RuleExpr::Compare(op, a, c) => format!(
            "select(0.0, 1.0, {} {} {})",
            go(a),
            expr::compare(*op),
            go(c)
        ),
        RuleExpr::Where(c, x, y) => format!("select({}, {}, {} != 0.0)", go(y), go(x), go(c)),
    }
}

/// The rule's WGSL pieces, filled into the templates' slots.
struct RuleCode {
    /// The modified score from `p_raw`.
    score: String,
    /// `f(p)`: what the running maximum is over.
    magnitude: String,
    /// `h(p)` (or `φ(p)` for direct weights).
    sign: String,
    /// The normalised probability `exp(f(p) − m) / z` (1 for direct weights).
    prob: String,
    /// The output's row factor from the running sum `l`.
    inv: String,
    /// `dL/dp_raw` from `s` (the probability), `g = dy·v`, `delta = dy·y`.
    dp: String,
    /// `dL/ds` (before the score modification's chain factor).
    ds: String,
    /// Initial running maximum and whether it counts as seen (a sink's `log c`).
    m_init: String,
    seen_init: &'static str,
    /// The denominator's constant term at maximum `m`.
    z_init: String,
}

fn rule_code(rule: &AttentionRule, seg: &Names) -> RuleCode {
    let (score, dscore) = match &rule.score {
        Some(e) => (wgsl(e, "p_raw", seg), wgsl(&d_ds(e), "p_raw", seg)),
        None => ("p_raw".to_string(), "1.0".to_string()),
    };
    let chain = |dp: String| {
        if dscore == "1.0" {
            dp
        } else {
            format!("({dp}) * {dscore}")
        }
    };
    let normalised = |magnitude: String, sign: String, dp: String, sink: f32| {
        let (m_init, seen_init, z_init) = if sink > 0.0 {
            (
                f32_lit(sink.ln()),
                "true",
                format!("{} * exp(-m)", f32_lit(sink)),
            )
        } else {
            ("0.0".to_string(), "false", "0.0".to_string())
        };
        RuleCode {
            score: score.clone(),
            magnitude,
            sign,
            prob: "(exp(a - m) / z)".into(),
            inv: "select(0.0, 1.0 / l, l > 0.0)".into(),
            ds: dp.clone(),
            dp: chain(dp),
            m_init,
            seen_init,
            z_init,
        }
    };
    match &rule.weights {
        AttentionWeights::Softmax => {
            normalised("p".into(), "1.0".into(), "s * (g - delta)".into(), 0.0)
        }
        // |w| = |sign(p)|·s: zero at p = 0, as the reference's |w|·(g − sign(w)·δ) gives.
        AttentionWeights::Signed => normalised(
            "abs(p)".into(),
            "sign0(p)".into(),
            "abs(sign0(p)) * s * (g - sign0(p) * delta)".into(),
            0.0,
        ),
        AttentionWeights::Rule(Normaliser::Normalised {
            factor,
            exponent,
            sink,
        }) => {
            // dL/ds_j = a_j·(g_j·(h' + h·f') − f'·δ) with a_j = exp(f(s_j) − m)/z.
            let (h, dh) = (wgsl(factor, "p", seg), wgsl(&d_ds(factor), "p", seg));
            let (f, df) = (wgsl(exponent, "p", seg), wgsl(&d_ds(exponent), "p", seg));
            let dp = format!("s * (g * ({dh} + {h} * {df}) - {df} * delta)");
            normalised(f, h, dp, *sink)
        }
        AttentionWeights::Rule(Normaliser::Direct(phi)) => {
            let dphi = wgsl(&d_ds(phi), "p", seg);
            RuleCode {
                score: score.clone(),
                magnitude: "0.0".into(),
                sign: wgsl(phi, "p", seg),
                prob: "1.0".into(),
                inv: "1.0".into(),
                ds: format!("g * {dphi}"),
                dp: chain(format!("g * {dphi}")),
                m_init: "0.0".into(),
                seen_init: "false",
                z_init: "0.0".into(),
            }
        }
    }
}

/// Fills the rule's slots every template has.
fn with_rule(t: Template, c: &RuleCode, rule: &AttentionRule, n: &Names) -> Template {
    t.set("VISIBLE", visible(&rule.mask, n))
        .set("SCORE", c.score.clone())
        .set("MAGNITUDE", c.magnitude.clone())
}

/// The running maximum's and denominator's starting values (templates that compute them).
fn with_init(t: Template, c: &RuleCode) -> Template {
    t.set("M_INIT", c.m_init.clone())
        .set("SEEN_INIT", c.seen_init)
        .set("Z_INIT", c.z_init.clone())
}

fn declare_dims(s: &mut Shader, q: ValueId, rule: &AttentionRule) {
    let sh = s.g.shape(q).to_vec();
    s.const_u32("B", sh[0]);
    s.const_u32("H", sh[1]);
    s.const_u32("T", sh[2]);
    s.const_u32("D", sh[3]);
    s.const_f32("SCALE", rule.scale);
    s.const_u32("GROUP", rule.group.max(1));
}

fn rule_of(op: &Op) -> Result<AttentionRule, CodegenError> {
    match op {
        Op::Attention(r)
        | Op::AttentionPattern(r)
        | Op::AttentionBackward(r)
        | Op::AttentionRuleGrad(r) => Ok(r.clone()),
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
    let names = Names::read(&mut s, &rule, &ins, 3);
    let out = s.write(root);
    declare_dims(&mut s, ins[0], &rule);
    let code = rule_code(&rule, &names);
    let rows = {
        let sh = s.g.shape(ins[0]);
        sh[0] * sh[1] * sh[2]
    };
    let t = if pattern {
        Template::new("attention_pattern", PATTERN).set("PROB", code.prob.clone())
    } else {
        let (jb, je) = key_range(&rule.mask);
        Template::new("attention_fwd", FWD)
            .set("V", v.unwrap_or_default())
            .set("J_BEGIN", jb)
            .set("J_END", je)
            .set("INV", code.inv.clone())
    };
    let main = with_init(with_rule(t, &code, &rule, &names), &code)
        .set("SIGN", code.sign.clone())
        .set("WG", WORKGROUP.to_string())
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

    let mut s = Shader::new(g, plan, format!("attention_bwd_q_{}", root.0));
    let (q, k, v, y, dy) = (
        s.read(ins[0]),
        s.read(ins[1]),
        s.read(ins[2]),
        s.read(ins[3]),
        s.read(ins[4]),
    );
    let names = Names::read(&mut s, &rule, ins, 5);
    let out = s.write(root);
    let st = s.scratch(stats.clone(), rows * 3, true);
    declare_dims(&mut s, ins[0], &rule);
    let code = rule_code(&rule, &names);
    let (jb, je) = key_range(&rule.mask);
    let t = Template::new("attention_bwd_q", BWD_Q);
    let main = with_init(with_rule(t, &code, &rule, &names), &code)
        .set("WG", WORKGROUP.to_string())
        .set("PROB", code.prob.clone())
        .set("DP", code.dp.clone())
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
    let names = Names::read(&mut s, &rule, ins, 5);
    let st = s.scratch(stats, rows * 3, false);
    let out = s.write(root);
    declare_dims(&mut s, ins[0], &rule);
    let code = rule_code(&rule, &names);
    let (tb, te) = query_range(&rule.mask);
    let t = Template::new("attention_bwd_kv", BWD_KV);
    let main = with_rule(t, &code, &rule, &names)
        .set("WG", WORKGROUP.to_string())
        .set("SIGN", code.sign.clone())
        .set("PROB", code.prob.clone())
        .set("DP", code.dp.clone())
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

/// The rule-parameter gradient kernel of `root` (`[B,H,T,P]`, one invocation per query row).
pub(super) fn rule_grad(mut s: Shader, root: ValueId) -> Result<Kernel, CodegenError> {
    let node = s.g.node(root);
    let rule = rule_of(&node.op)?;
    let ins = node.inputs.clone();
    let (q, k, v, y, dy) = (
        s.read(ins[0]),
        s.read(ins[1]),
        s.read(ins[2]),
        s.read(ins[3]),
        s.read(ins[4]),
    );
    let names = Names::read(&mut s, &rule, &ins, 5);
    let out = s.write(root);
    declare_dims(&mut s, ins[0], &rule);
    s.const_u32("P", rule.params.max(1));
    let rows = {
        let sh = s.g.shape(ins[0]);
        sh[0] * sh[1] * sh[2]
    };
    let code = rule_code(&rule, &names);
    let score = rule.score.clone().unwrap_or(RuleExpr::s());
    let accumulate: Vec<String> = (0..rule.params)
        .map(|k| {
            let d = wgsl(&d_wrt(&score, Wrt::Param(k)), "p_raw", &names);
            format!("        acc[{k}] = acc[{k}] + ds * {d};")
        })
        .collect();
    let t = Template::new("attention_rule_grad", RULE_GRAD);
    let main = with_init(with_rule(t, &code, &rule, &names), &code)
        .set("WG", WORKGROUP.to_string())
        .set("PROB", code.prob.clone())
        .set("DS", code.ds.clone())
        .set("ACCUMULATE", accumulate.join("\n"))
        .set("Q", q)
        .set("K", k)
        .set("V", v)
        .set("Y", y)
        .set("DY", dy)
        .set("OUT", out)
        .render()?;
    Ok(s.finish(main, WORKGROUP, dispatch_for(rows), &[root]))
}
