//! Attention rules as data: expression trees over the score and the query/key/head indices
//! that the attention ops carry (a score modification, a mask, a normaliser). Every backend
//! evaluates them from here — the CPU reference through [`RuleExpr::eval`], WGSL codegen by
//! writing the same tree with `ir::scalar`'s semantics — and the backward passes use [`RuleExpr::derivative`], the symbolic
//! derivative in the score, so forward and gradient come from the same expressions.

use super::op::{BinaryOp, CmpOp, UnaryOp};
use super::scalar::Real;
use serde::{Deserialize, Serialize};

/// A variable of a rule expression, per (query `i`, key `j`, head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleVar {
    /// The score: raw `scale·q·k` in a score rule; the modified score in a normaliser.
    Score,
    /// Query position `i`.
    QueryPos,
    /// Key position `j`.
    KeyPos,
    /// Query head index.
    Head,
    /// The key/value head the query head reads.
    KvHead,
    /// Number of keys.
    Keys,
    /// The query's segment id.
    QuerySeg,
    /// The key's segment id.
    KeySeg,
}

/// A rule expression. Conditions are numbers 0/1 (as `Compare` gives); `Where` picks on
/// non-zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RuleExpr {
    Const(f32),
    Var(RuleVar),
    /// Rule parameter `k` (the attention op's `k`-th parameter input, `[H]`), read at the
    /// query head.
    Param(usize),
    Unary(UnaryOp, Box<RuleExpr>),
    /// `f'(x)` of a unary op (what derivatives are made of).
    Deriv(UnaryOp, Box<RuleExpr>),
    Binary(BinaryOp, Box<RuleExpr>, Box<RuleExpr>),
    Compare(CmpOp, Box<RuleExpr>, Box<RuleExpr>),
    Where(Box<RuleExpr>, Box<RuleExpr>, Box<RuleExpr>),
}

/// The values of the variables at one (query, key, head).
#[derive(Clone, Copy, Debug)]
pub struct RuleEnv<'a, T> {
    pub score: T,
    pub i: usize,
    pub j: usize,
    pub head: usize,
    pub kv_head: usize,
    pub keys: usize,
    pub seg_i: i32,
    pub seg_j: i32,
    /// The rule's parameters, `[k][head]`.
    pub params: &'a [Vec<T>],
}

/// What a derivative is taken with respect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrt {
    Score,
    Param(usize),
}

impl<T: Real> RuleEnv<'_, T> {
    /// The same place with another score.
    pub fn with_score(self, score: T) -> Self {
        RuleEnv { score, ..self }
    }
}

fn b(e: RuleExpr) -> Box<RuleExpr> {
    Box::new(e)
}

impl RuleExpr {
    /// The score variable.
    pub fn s() -> RuleExpr {
        RuleExpr::Var(RuleVar::Score)
    }

    /// `op(a)`.
    pub fn unary(op: UnaryOp, a: RuleExpr) -> RuleExpr {
        RuleExpr::Unary(op, b(a))
    }

    /// `a op b`.
    pub fn binary(op: BinaryOp, a: RuleExpr, c: RuleExpr) -> RuleExpr {
        RuleExpr::Binary(op, b(a), b(c))
    }

    /// Evaluates the expression (conditions as 0/1) with the reference's scalar semantics.
    pub fn eval<T: Real>(&self, env: &RuleEnv<T>) -> T {
        match self {
            RuleExpr::Const(c) => T::from_f64(*c as f64),
            RuleExpr::Var(v) => match v {
                RuleVar::Score => env.score,
                RuleVar::QueryPos => T::from_f64(env.i as f64),
                RuleVar::KeyPos => T::from_f64(env.j as f64),
                RuleVar::Head => T::from_f64(env.head as f64),
                RuleVar::KvHead => T::from_f64(env.kv_head as f64),
                RuleVar::Keys => T::from_f64(env.keys as f64),
                RuleVar::QuerySeg => T::from_f64(env.seg_i as f64),
                RuleVar::KeySeg => T::from_f64(env.seg_j as f64),
            },
            RuleExpr::Param(k) => env
                .params
                .get(*k)
                .and_then(|p| p.get(env.head))
                .copied()
                .unwrap_or_else(T::zero),
            RuleExpr::Unary(op, a) => op.eval(a.eval(env)),
            RuleExpr::Deriv(op, a) => op.derivative(a.eval(env)),
            RuleExpr::Binary(op, a, c) => op.eval(a.eval(env), c.eval(env)),
            RuleExpr::Compare(op, a, c) => {
                if op.eval(a.eval(env), c.eval(env)) {
                    T::from_f64(1.0)
                } else {
                    T::zero()
                }
            }
            RuleExpr::Where(c, x, y) => {
                if c.eval(env) != T::zero() {
                    x.eval(env)
                } else {
                    y.eval(env)
                }
            }
        }
    }

    /// Whether the expression reads `v`.
    pub fn reads(&self, v: RuleVar) -> bool {
        match self {
            RuleExpr::Var(x) => *x == v,
            RuleExpr::Const(_) => false,
            RuleExpr::Param(_) => v == RuleVar::Head,
            RuleExpr::Unary(_, a) | RuleExpr::Deriv(_, a) => a.reads(v),
            RuleExpr::Binary(_, a, c) | RuleExpr::Compare(_, a, c) => a.reads(v) || c.reads(v),
            RuleExpr::Where(c, x, y) => c.reads(v) || x.reads(v) || y.reads(v),
        }
    }

    fn zero(&self) -> bool {
        matches!(self, RuleExpr::Const(c) if *c == 0.0)
    }

    fn one(&self) -> bool {
        matches!(self, RuleExpr::Const(c) if *c == 1.0)
    }

    /// `a + c`, `a − c`, `a · c` with the zero and one terms a derivative makes folded away.
    fn add(a: RuleExpr, c: RuleExpr) -> RuleExpr {
        match (a.zero(), c.zero()) {
            (true, _) => c,
            (_, true) => a,
            _ => RuleExpr::binary(BinaryOp::Add, a, c),
        }
    }

    fn sub(a: RuleExpr, c: RuleExpr) -> RuleExpr {
        match (a.zero(), c.zero()) {
            (_, true) => a,
            (true, _) => RuleExpr::unary(UnaryOp::Neg, c),
            _ => RuleExpr::binary(BinaryOp::Sub, a, c),
        }
    }

    fn mul(a: RuleExpr, c: RuleExpr) -> RuleExpr {
        if a.zero() || c.zero() {
            return RuleExpr::Const(0.0);
        }
        match (a.one(), c.one()) {
            (true, _) => c,
            (_, true) => a,
            _ => RuleExpr::binary(BinaryOp::Mul, a, c),
        }
    }

    /// Why the expression is not a rule the backends accept: a `Deriv` node (rules are
    /// differentiated once, so none may hold a derivative) or a parameter index past `params`.
    pub fn problem(&self, params: usize) -> Option<String> {
        match self {
            RuleExpr::Deriv(..) => Some("a rule expression holds a derivative".into()),
            RuleExpr::Param(k) if *k >= params => {
                Some(format!("rule parameter {k} of {params} read"))
            }
            RuleExpr::Const(_) | RuleExpr::Var(_) | RuleExpr::Param(_) => None,
            RuleExpr::Unary(_, a) => a.problem(params),
            RuleExpr::Binary(_, a, c) | RuleExpr::Compare(_, a, c) => {
                a.problem(params).or_else(|| c.problem(params))
            }
            RuleExpr::Where(c, x, y) => c
                .problem(params)
                .or_else(|| x.problem(params))
                .or_else(|| y.problem(params)),
        }
    }

    /// Whether the expression reads rule parameter `k`.
    pub fn reads_param(&self, k: usize) -> bool {
        match self {
            RuleExpr::Param(x) => *x == k,
            RuleExpr::Const(_) | RuleExpr::Var(_) => false,
            RuleExpr::Unary(_, a) | RuleExpr::Deriv(_, a) => a.reads_param(k),
            RuleExpr::Binary(_, a, c) | RuleExpr::Compare(_, a, c) => {
                a.reads_param(k) || c.reads_param(k)
            }
            RuleExpr::Where(c, x, y) => c.reads_param(k) || x.reads_param(k) || y.reads_param(k),
        }
    }

    /// The symbolic derivative in the score `s`. `None` for a derivative of a derivative
    /// (rules are differentiated once).
    pub fn derivative(&self) -> Option<RuleExpr> {
        self.derivative_wrt(Wrt::Score)
    }

    /// The symbolic derivative in the score or in a rule parameter.
    pub fn derivative_wrt(&self, x: Wrt) -> Option<RuleExpr> {
        Some(match self {
            RuleExpr::Var(RuleVar::Score) if x == Wrt::Score => RuleExpr::Const(1.0),
            RuleExpr::Param(k) if x == Wrt::Param(*k) => RuleExpr::Const(1.0),
            RuleExpr::Const(_) | RuleExpr::Var(_) | RuleExpr::Param(_) => RuleExpr::Const(0.0),
            // Comparisons are piecewise constant.
            RuleExpr::Compare(..) => RuleExpr::Const(0.0),
            RuleExpr::Unary(op, a) => {
                let da = a.derivative_wrt(x)?;
                if da.zero() {
                    return Some(RuleExpr::Const(0.0));
                }
                RuleExpr::mul(RuleExpr::Deriv(*op, a.clone()), da)
            }
            RuleExpr::Deriv(..) => return None,
            RuleExpr::Binary(op, a, c) => {
                let (da, dc) = (a.derivative_wrt(x)?, c.derivative_wrt(x)?);
                match op {
                    BinaryOp::Add => RuleExpr::add(da, dc),
                    BinaryOp::Sub => RuleExpr::sub(da, dc),
                    BinaryOp::Mul => RuleExpr::add(
                        RuleExpr::mul(da, (**c).clone()),
                        RuleExpr::mul((**a).clone(), dc),
                    ),
                    // (a/c)' = a'/c − a·c'/c².
                    BinaryOp::Div => {
                        let first = if da.zero() {
                            RuleExpr::Const(0.0)
                        } else {
                            RuleExpr::binary(BinaryOp::Div, da, (**c).clone())
                        };
                        let second = if dc.zero() {
                            RuleExpr::Const(0.0)
                        } else {
                            RuleExpr::binary(
                                BinaryOp::Div,
                                RuleExpr::mul((**a).clone(), dc),
                                RuleExpr::mul((**c).clone(), (**c).clone()),
                            )
                        };
                        RuleExpr::sub(first, second)
                    }
                    // Ties take `a`'s branch, as `BinaryOp::eval` keeps `a`.
                    BinaryOp::Max | BinaryOp::Min => {
                        let cmp = if *op == BinaryOp::Max {
                            CmpOp::Ge
                        } else {
                            CmpOp::Le
                        };
                        if da.zero() && dc.zero() {
                            RuleExpr::Const(0.0)
                        } else {
                            RuleExpr::Where(
                                b(RuleExpr::Compare(cmp, a.clone(), c.clone())),
                                b(da),
                                b(dc),
                            )
                        }
                    }
                }
            }
            RuleExpr::Where(cnd, p, q) => {
                let (dp, dq) = (p.derivative_wrt(x)?, q.derivative_wrt(x)?);
                if dp.zero() && dq.zero() {
                    RuleExpr::Const(0.0)
                } else {
                    RuleExpr::Where(cnd.clone(), b(dp), b(dq))
                }
            }
        })
    }

    /// The constant value, when the expression is one.
    pub fn constant(&self) -> Option<f32> {
        match self {
            RuleExpr::Const(c) => Some(*c),
            _ => None,
        }
    }
}

/// How an attention's (modified) scores become weights, generalising softmax and Cog's
/// signed rule: `w_j = h(s_j)·exp(f(s_j) − m) / (c·exp(−m) + Σ_k exp(f(s_k) − m))` with
/// the running maximum `m` of `f` (and of `log c`), or `w_j = φ(s_j)` with no normaliser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Normaliser {
    Normalised {
        /// `h`.
        factor: RuleExpr,
        /// `f`.
        exponent: RuleExpr,
        /// `c ≥ 0`.
        sink: f32,
    },
    /// `φ`.
    Direct(RuleExpr),
}

/// The derivative of a rule expression in the score. The IR's rules come from the
/// checker's expressions, which hold no `Deriv` nodes, so the derivative exists; shape
/// inference (the builder and [`super::verify`]) refuses a rule that holds one
/// ([`RuleExpr::problem`]), so the NaN below never stands in.
pub fn d_ds(e: &RuleExpr) -> RuleExpr {
    d_wrt(e, Wrt::Score)
}

/// [`d_ds`] with respect to `x`.
pub fn d_wrt(e: &RuleExpr, x: Wrt) -> RuleExpr {
    e.derivative_wrt(x).unwrap_or(RuleExpr::Const(f32::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(score: f64, params: &[Vec<f64>]) -> RuleEnv<'_, f64> {
        RuleEnv {
            score,
            i: 5,
            j: 2,
            head: 1,
            kv_head: 0,
            keys: 7,
            seg_i: 0,
            seg_j: 0,
            params,
        }
    }

    /// `c·tanh(s/c) − θ·(i − j)` and `where(s > 0, s², −s) / max(s, 0.5)`.
    fn samples() -> Vec<RuleExpr> {
        use RuleExpr as E;
        let s = E::s;
        let softcap = E::binary(
            BinaryOp::Mul,
            E::Const(3.0),
            E::unary(UnaryOp::Tanh, E::binary(BinaryOp::Div, s(), E::Const(3.0))),
        );
        let alibi = E::binary(
            BinaryOp::Sub,
            softcap.clone(),
            E::binary(
                BinaryOp::Mul,
                E::Param(0),
                E::binary(
                    BinaryOp::Sub,
                    E::Var(RuleVar::QueryPos),
                    E::Var(RuleVar::KeyPos),
                ),
            ),
        );
        let piecewise = E::binary(
            BinaryOp::Div,
            E::Where(
                Box::new(E::Compare(
                    CmpOp::Gt,
                    Box::new(s()),
                    Box::new(E::Const(0.0)),
                )),
                Box::new(E::unary(UnaryOp::Square, s())),
                Box::new(E::unary(UnaryOp::Neg, s())),
            ),
            E::binary(BinaryOp::Max, s(), E::Const(0.5)),
        );
        vec![softcap, alibi, piecewise]
    }

    #[test]
    fn symbolic_derivatives_match_central_differences() {
        let params = vec![vec![0.3, 0.7, 0.2]];
        let h = 1e-6;
        for e in samples() {
            for s in [-1.3, -0.2, 0.4, 0.9, 2.5] {
                let num = (e.eval(&env(s + h, &params)) - e.eval(&env(s - h, &params))) / (2.0 * h);
                let an = d_ds(&e).eval(&env(s, &params));
                assert!((an - num).abs() < 1e-6, "{e:?} at {s}: {an} vs {num}");
                // In the parameter (read at head 1).
                let mut up = params.clone();
                up[0][1] += h;
                let mut down = params.clone();
                down[0][1] -= h;
                let num = (e.eval(&env(s, &up)) - e.eval(&env(s, &down))) / (2.0 * h);
                let an = d_wrt(&e, Wrt::Param(0)).eval(&env(s, &params));
                assert!((an - num).abs() < 1e-6, "{e:?} in θ at {s}: {an} vs {num}");
            }
        }
    }

    #[test]
    fn rules_holding_derivatives_or_unknown_parameters_are_refused() {
        let e = samples()[1].clone();
        assert!(e.problem(1).is_none());
        assert!(e.problem(0).is_some());
        assert!(d_ds(&e).problem(1).is_some());
    }
}
