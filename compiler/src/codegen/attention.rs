//! Attention kernels: the forward (online softmax, no T×T buffer), the pattern (only when
//! asked for) and the backward as two kernels sharing a small per-row stats buffer. The rule
//! is filled into the templates' slots: the built-in weights (softmax, signed) and masks as
//! written here, a spec's rule as WGSL written from its expression trees (score
//! modification, mask, normaliser `h(s)·exp(f(s)) / (c + Σ exp f)` or direct weights `φ(s)`),
//! with the backward's `dp` from their symbolic derivatives.

use super::expr;
use super::shader::{dispatch_for, dispatch_groups, f32_lit, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, CodegenOptions, Kernel};
use crate::ir::rule::{d_ds, d_wrt, Wrt};
use crate::ir::{
    AttentionMask, AttentionRule, AttentionWeights, DType, Normaliser, Op, RuleExpr, RuleVar,
    ValueId,
};

const FWD: &str = include_str!("templates/attention_fwd.wgsl");
const FWD_TILED: &str = include_str!("templates/attention_fwd_tiled.wgsl");
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

/// The key range worth scanning for query `t` (everything outside is masked), as WGSL
/// expressions in the query index named `t`. Both ends grow with the query.
fn key_range(mask: &AttentionMask, t: &str) -> (String, String) {
    match mask {
        AttentionMask::Bidirectional | AttentionMask::Rule(_) => ("0u".into(), "T".into()),
        AttentionMask::SelfOnly => (t.into(), format!("{t} + 1u")),
        // Every segment mask is causal within its segments.
        AttentionMask::Causal
        | AttentionMask::Document
        | AttentionMask::Turns
        | AttentionMask::TurnsKeepFirst => ("0u".into(), format!("{t} + 1u")),
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

/// Declares reads of the op's first `N` inputs (q, k, v, …) and returns their names.
fn reads<const N: usize>(s: &mut Shader, ins: &[ValueId]) -> [String; N] {
    std::array::from_fn(|i| s.read(ins[i]))
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

/// Query rows per workgroup of the tiled forward.
const TILE_QUERIES: u32 = 64;
/// The most keys the tiled forward stages per block (a multiple of 4).
const TILE_KEYS: u32 = 32;

/// `(queries, keys)` per block of the tiled forward for head size `d` under `opts`' limits,
/// or `None` when it is off or the adapter cannot hold one key and value.
fn forward_tile(opts: &CodegenOptions, d: usize) -> Option<(u32, u32)> {
    if !opts.tiled_attention {
        return None;
    }
    // Keys and values as vec4s: 2 · 16 bytes per 4 elements of a row.
    let row_bytes = 32 * d.div_ceil(4) as u64;
    // Keys go four at a time (see the template).
    let keys = (u64::from(opts.max_workgroup_storage_bytes) / row_bytes.max(1))
        .min(u64::from(TILE_KEYS)) as u32
        / 4
        * 4;
    let queries = TILE_QUERIES.min(opts.max_invocations_per_workgroup);
    (keys > 0 && queries > 0).then_some((queries, keys))
}

/// The forward or pattern kernel of `root`: the tiled forward when `opts` asks for it (see
/// [`CodegenOptions::tiled_attention`]), else one invocation per query row.
pub(super) fn forward(
    mut s: Shader,
    root: ValueId,
    opts: &CodegenOptions,
) -> Result<Kernel, CodegenError> {
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
    let sh = s.g.shape(ins[0]).to_vec();
    let rows = sh[0] * sh[1] * sh[2];
    let (jb, je) = key_range(&rule.mask, "t");
    if let (Some(v), Some((queries, keys))) = (&v, forward_tile(opts, sh[3])) {
        s.const_u32("BQ", queries as usize);
        s.const_u32("BKV", keys as usize);
        s.const_u32("DV", sh[3].div_ceil(4));
        // The block's key range: from its first query's first key to its last's last.
        let (first, _) = key_range(&rule.mask, "t0");
        let (_, last) = key_range(&rule.mask, "t_last");
        let main = with_init(Template::new("attention_fwd_tiled", FWD_TILED), &code)
            .set("VISIBLE", visible(&rule.mask, &names))
            .set("J_BEGIN", jb)
            .set("J_END", je)
            .set("KEYS_BEGIN", first)
            .set("KEYS_END", last)
            .set("Q_LOAD", tiled_query(sh[3], &q))
            .set("KEYS", tiled_keys(sh[3], &code))
            .set("STORE", tiled_store(sh[3], &out))
            .set("INV", code.inv.clone())
            .set("K", k)
            .set("V", v.clone())
            .render()?;
        let blocks = sh[0] * sh[1] * sh[2].div_ceil(queries as usize);
        return Ok(s.finish(main, queries, dispatch_groups(blocks), &[root]));
    }
    let t = match v {
        None => Template::new("attention_pattern", PATTERN).set("PROB", code.prob.clone()),
        Some(v) => Template::new("attention_fwd", FWD)
            .set("J_BEGIN", jb)
            .set("J_END", je)
            .set("V", v)
            .set("INV", code.inv.clone()),
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

/// The tiled forward's query `q0..` (read through `q`, pre-scaled, zero-padded past `d`)
/// and accumulator `acc0..`, one vec4 per 4 elements of the head.
fn tiled_query(d: usize, q: &str) -> String {
    let lines: Vec<String> = (0..d.div_ceil(4))
        .map(|c| {
            let q4 = vec4_of(d, c, &|x| format!("{q}(head + t * D + {x}u)"));
            format!("    let q{c} = {q4} * SCALE;\n    var acc{c} = vec4<f32>(0.0);")
        })
        .collect();
    lines.join("\n")
}

/// The tiled forward's work on keys `j0 + jg .. j0 + jg + 4` of the staged block: each one's
/// visibility, score `p{i}` and magnitude `a{i}` (−3e38 when hidden), then one rescale for
/// the four's maximum, then each visible one's value into the accumulator.
fn tiled_keys(d: usize, c: &RuleCode) -> String {
    let dv = d.div_ceil(4);
    let ind = "            ";
    let mut out = Vec::new();
    for i in 0..4 {
        let dot: Vec<String> = (0..dv)
            .map(|v| format!("dot(q{v}, ks[kb{i} + {v}u])"))
            .collect();
        out.push(format!(
            "{ind}let key{i} = j0 + jg + {i}u;
{ind}let kb{i} = (jg + {i}u) * DV;
{ind}let ok{i} = key{i} >= mine_begin && key{i} < mine_end && visible(t, key{i}, b, hh);
{ind}var p{i} = 0.0;
{ind}var a{i} = -3.0e38;
{ind}if (ok{i}) {{
{ind}    let j = key{i};
{ind}    let p_raw = {};
{ind}    let p = {};
{ind}    p{i} = p;
{ind}    a{i} = {};
{ind}}}",
            dot.join(" + "),
            c.score,
            c.magnitude
        ));
    }
    let rescale: Vec<String> = (0..dv)
        .map(|v| format!("{ind}        acc{v} = acc{v} * corr;"))
        .collect();
    out.push(format!(
        "{ind}if (ok0 || ok1 || ok2 || ok3) {{
{ind}    let gm = max(max(a0, a1), max(a2, a3));
{ind}    if (!seen) {{
{ind}        m = gm;
{ind}        seen = true;
{ind}    }} else if (gm > m) {{
{ind}        let corr = exp(m - gm);
{ind}        l = l * corr;
{}
{ind}        m = gm;
{ind}    }}",
        rescale.join("\n")
    ));
    for i in 0..4 {
        let acc: Vec<String> = (0..dv)
            .map(|v| format!("{ind}        acc{v} = acc{v} + w * vs[kb{i} + {v}u];"))
            .collect();
        out.push(format!(
            "{ind}    if (ok{i}) {{
{ind}        let j = key{i};
{ind}        let p = p{i};
{ind}        let e = exp(a{i} - m);
{ind}        l = l + e;
{ind}        let w = {} * e;
{}
{ind}    }}",
            c.sign,
            acc.join("\n")
        ));
    }
    out.push(format!("{ind}}}"));
    out.join("\n")
}

/// The tiled forward's store of row `o` (= `head + t·D`) from the accumulator.
fn tiled_store(d: usize, out: &str) -> String {
    lanes_of(d, &|x, c, l| {
        format!("        {out}[o + {x}u] = acc{c}.{l} * inv;")
    })
}

/// The two backward kernels of `root` (`[3,B,H,T,d]` = dq, dk, dv): part 1 writes dq and the
/// per-row stats, part 2 reads them and writes dk, dv. Each invocation keeps its row's
/// vectors in registers as written-out vec4s (see the templates).
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
    let d = sh[3];
    let dv = d.div_ceil(4);
    let stats = format!("attention_backward_stats_{}", root.0);
    let lines = |f: &dyn Fn(usize) -> String| (0..dv).map(f).collect::<Vec<_>>().join("\n");
    let dot = |f: &dyn Fn(usize) -> String| (0..dv).map(f).collect::<Vec<_>>().join(" + ");

    let mut s = Shader::new(g, plan, format!("attention_bwd_q_{}", root.0));
    let [q, k, v, y, dy] = reads(&mut s, ins);
    let names = Names::read(&mut s, &rule, ins, 5);
    let out = s.write(root);
    let st = s.scratch(stats.clone(), rows * 3, true);
    declare_dims(&mut s, ins[0], &rule);
    let code = rule_code(&rule, &names);
    let (jb, je) = key_range(&rule.mask, "t");
    let load = format!(
        "{}\n    let delta = {};",
        lines(&|c| format!(
            "    let q{c} = {};\n    let dy{c} = {};\n    var dq{c} = vec4<f32>(0.0);",
            row4(&q, "at_t", d, c),
            row4(&dy, "at_t", d, c)
        )),
        dot(&|c| format!("dot(dy{c}, {})", row4(&y, "at_t", d, c)))
    );
    let t = Template::new("attention_bwd_q", BWD_Q);
    let main = with_init(with_rule(t, &code, &rule, &names), &code)
        .set("WG", WORKGROUP.to_string())
        .set("PROB", code.prob.clone())
        .set("DP", code.dp.clone())
        .set("J_BEGIN", jb)
        .set("J_END", je)
        .set("LOAD", load)
        .set(
            "QK",
            dot(&|c| format!("dot(q{c}, {})", row4(&k, "at_j", d, c))),
        )
        .set(
            "GV",
            dot(&|c| format!("dot(dy{c}, {})", row4(&v, "at_j", d, c))),
        )
        .set(
            "ACCUMULATE",
            lines(&|c| format!("        dq{c} = dq{c} + dp * {};", row4(&k, "at_j", d, c))),
        )
        .set(
            "STORE",
            lanes_of(d, &|x, c, l| {
                format!("    {out}[at_t + {x}u] = SCALE * dq{c}.{l};")
            }),
        )
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
    let load = lines(&|c| {
        format!(
            "    let k{c} = {};\n    let v{c} = {};\n    var dk{c} = vec4<f32>(0.0);\n    var dv{c} = vec4<f32>(0.0);",
            row4(&k, "at_j", d, c),
            row4(&v, "at_j", d, c)
        )
    });
    let main = with_rule(t, &code, &rule, &names)
        .set("WG", WORKGROUP.to_string())
        .set("SIGN", code.sign.clone())
        .set("PROB", code.prob.clone())
        .set("DP", code.dp.clone())
        .set("T_BEGIN", tb)
        .set("T_END", te)
        .set("LOAD", load)
        .set("QK", dot(&|c| format!("dot({}, k{c})", row4(&q, "at_t", d, c))))
        .set("GV", dot(&|c| format!("dot({}, v{c})", row4(&dy, "at_t", d, c))))
        .set(
            "ACCUMULATE",
            lines(&|c| {
                format!(
                    "        dk{c} = dk{c} + dp * {};\n        dv{c} = dv{c} + w * {};",
                    row4(&q, "at_t", d, c),
                    row4(&dy, "at_t", d, c)
                )
            }),
        )
        .set(
            "STORE",
            lanes_of(d, &|x, c, l| {
                format!(
                    "    {out}[n + at_j + {x}u] = SCALE * dk{c}.{l};\n    {out}[2u * n + at_j + {x}u] = dv{c}.{l};"
                )
            }),
        )
        .set("STATS", st)
        .render()?;
    let part2 = s.finish(main, WORKGROUP, dispatch_for(rows), &[root]);
    Ok([part1, part2])
}

/// Elements `4c .. 4c + 4` of the `d`-element row of buffer `buf` at offset `at`, as a vec4
/// zero-padded past `d`.
fn row4(buf: &str, at: &str, d: usize, c: usize) -> String {
    vec4_of(d, c, &|x| format!("{buf}[{at} + {x}u]"))
}

/// `vec4<f32>(read(4c), …, read(4c + 3))`, with 0 for elements past `d`.
fn vec4_of(d: usize, c: usize, read: &dyn Fn(usize) -> String) -> String {
    let lane = |x: usize| if x < d { read(x) } else { "0.0".into() };
    let lanes: Vec<String> = (4 * c..4 * c + 4).map(lane).collect();
    format!("vec4<f32>({})", lanes.join(", "))
}

/// One line per element `x < d` of a row held as vec4s: `f(x, vec4 index, lane name)`.
fn lanes_of(d: usize, f: &dyn Fn(usize, usize, &str) -> String) -> String {
    let lanes = ["x", "y", "z", "w"];
    (0..d)
        .map(|x| f(x, x / 4, lanes[x % 4]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rule-parameter gradient kernel of `root` (`[B,H,T,P]`, one invocation per query row).
pub(super) fn rule_grad(mut s: Shader, root: ValueId) -> Result<Kernel, CodegenError> {
    let node = s.g.node(root);
    let rule = rule_of(&node.op)?;
    let ins = node.inputs.clone();
    let [q, k, v, y, dy] = reads(&mut s, &ins);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::compile;
    use crate::ir::GraphBuilder;

    /// The forward of every built-in rule and mask compiles (naga validates it) to the tiled
    /// kernel when asked, with one workgroup per block of queries, and to the per-row
    /// kernel otherwise; a head too big for workgroup memory falls back to the per-row one.
    #[test]
    fn the_tiled_forward_validates_for_every_rule_and_mask_and_falls_back_when_too_big() {
        let masks = [
            AttentionMask::Causal,
            AttentionMask::Bidirectional,
            AttentionMask::SelfOnly,
            AttentionMask::Document,
            AttentionMask::Turns,
            AttentionMask::TurnsKeepFirst,
        ];
        let forward = |weights: &AttentionWeights, mask: &AttentionMask, d: usize, tiled| {
            let mut b = GraphBuilder::new();
            let shape = [2, 3, 70, d];
            let q = b.input("q", &shape, DType::F32);
            let k = b.input("k", &shape, DType::F32);
            let v = b.input("v", &shape, DType::F32);
            let seg = mask
                .needs_segments()
                .then(|| b.input("seg", &[2, 70], DType::I32));
            let rule = AttentionRule::builtin(weights.clone(), mask.clone(), 0.5);
            let y = b.attention(rule, q, k, v, seg).unwrap();
            b.output("y", y);
            let g = b.finish().unwrap();
            let opts = CodegenOptions {
                tiled_attention: tiled,
                ..CodegenOptions::default()
            };
            let p = compile(&g, &[], &opts).unwrap_or_else(|e| panic!("{mask:?}: {e}"));
            p.kernels
                .into_iter()
                .find(|k| k.name.starts_with("attention"))
                .unwrap()
        };
        for weights in [AttentionWeights::Softmax, AttentionWeights::Signed] {
            for mask in &masks {
                let k = forward(&weights, mask, 5, true);
                assert!(k.wgsl.contains("workgroupBarrier()"), "{mask:?}");
                assert_eq!(k.workgroup_size, TILE_QUERIES);
                // 2 batches × 3 heads × ⌈70 / 64⌉ query blocks.
                assert_eq!(k.dispatch, [12, 1, 1], "{mask:?}");
                let k = forward(&weights, mask, 5, false);
                assert!(!k.wgsl.contains("workgroupBarrier()"), "{mask:?}");
            }
        }
        // Four keys and values of 520 floats exceed 16 KiB of workgroup memory.
        let k = forward(
            &AttentionWeights::Softmax,
            &AttentionMask::Causal,
            520,
            true,
        );
        assert!(!k.wgsl.contains("workgroupBarrier()"));
    }
}
