//! One expression of a spec's attention rule (`ir::rule`), compiled for the fast path into a
//! short program over one query row's keys: a rule then costs a few loops per row, each
//! applying one op to every key, instead of a walk of the expression tree per score.
//!
//! Subexpressions that do not depend on the key (the query position, the head, rule
//! parameters, the key count, constants) are evaluated once per row by `RuleExpr::eval`
//! itself; every per-key step applies `ir::scalar`'s op to each element. Both are the
//! reference's f32 arithmetic, so a program's values are the reference's to the bit.

use super::exp;
use super::kernels::{each_binary, each_unary};
use super::simd::with_avx2;
use weft_compiler::ir::{BinaryOp, CmpOp, RuleEnv, RuleExpr, RuleVar, UnaryOp};

/// An operand: the value of a key-independent subexpression, a per-key register, or one of
/// the row's per-key inputs (read in place).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Arg {
    Row(usize),
    Key(usize),
    Score,
    KeyPos,
}

/// One per-key step, writing register `out` (every register is written once; the last
/// step writes the caller's buffer instead).
#[derive(Clone, Debug)]
enum Step {
    /// The keys' segment ids as numbers.
    KeySeg(usize),
    Unary {
        op: UnaryOp,
        deriv: bool,
        a: Arg,
        out: usize,
    },
    Binary {
        op: BinaryOp,
        a: Arg,
        b: Arg,
        out: usize,
    },
    Compare {
        op: CmpOp,
        a: Arg,
        b: Arg,
        out: usize,
    },
    Where {
        c: Arg,
        x: Arg,
        y: Arg,
        out: usize,
    },
}

impl Step {
    /// The register the step writes.
    fn out(&self) -> usize {
        match self {
            Step::KeySeg(w)
            | Step::Unary { out: w, .. }
            | Step::Binary { out: w, .. }
            | Step::Compare { out: w, .. }
            | Step::Where { out: w, .. } => *w,
        }
    }
}

/// A compiled rule expression, or several sharing their common subexpressions.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    /// Key-independent subexpressions, evaluated once per row.
    row: Vec<RuleExpr>,
    steps: Vec<Step>,
    /// One value per compiled expression; the first is [`Program::run`]'s.
    outs: Vec<Arg>,
    regs: usize,
}

/// Per-key subexpressions compiled so far and where their values are, so that each is
/// computed once.
type Memo = Vec<(RuleExpr, Arg)>;

/// What a program reads for one query row besides the score: the place (query position,
/// head, key count, rule parameters; `score` and `j` are ignored) and the keys' segment ids.
#[derive(Clone, Copy)]
pub(super) struct RowPlace<'a> {
    pub env: RuleEnv<'a, f32>,
    pub seg: Option<&'a [i32]>,
}

/// Registers a program runs in; kept by the caller across rows so a row allocates nothing.
#[derive(Default)]
pub(super) struct Registers {
    row: Vec<f32>,
    keys: Vec<Vec<f32>>,
    /// `0, 1, 2, …` as f32: the key positions.
    iota: Vec<f32>,
}

/// A borrowed operand.
#[derive(Clone, Copy)]
enum Val<'a> {
    S(f32),
    V(&'a [f32]),
}

impl Val<'_> {
    #[inline(always)]
    fn at(self, j: usize) -> f32 {
        match self {
            Val::S(x) => x,
            Val::V(v) => v[j],
        }
    }
}

fn key_dependent(e: &RuleExpr) -> bool {
    e.reads(RuleVar::Score) || e.reads(RuleVar::KeyPos) || e.reads(RuleVar::KeySeg)
}

impl Program {
    /// Compiles `e` (a rule expression the IR accepted: no derivative of a derivative).
    pub fn new(e: &RuleExpr) -> Program {
        Self::all(&[e])
    }

    /// Compiles `es` into one program whose per-key steps are shared: a rule's score and its
    /// derivative compute `tanh(s/c)` once (`Deriv(tanh, x)` is `1 − tanh(x)²` over the
    /// same step; `ir::scalar`'s derivative is that arithmetic, so values keep their bits).
    pub fn all(es: &[&RuleExpr]) -> Program {
        let mut p = Program {
            row: Vec::new(),
            steps: Vec::new(),
            outs: Vec::new(),
            regs: 0,
        };
        let mut memo = Memo::new();
        for e in es {
            let out = p.compile(e, &mut memo);
            p.outs.push(out);
        }
        p
    }

    fn reg(&mut self) -> usize {
        self.regs += 1;
        self.regs - 1
    }

    fn compile(&mut self, e: &RuleExpr, memo: &mut Memo) -> Arg {
        if !key_dependent(e) {
            self.row.push(e.clone());
            return Arg::Row(self.row.len() - 1);
        }
        if let Some((_, a)) = memo.iter().find(|(x, _)| x == e) {
            return *a;
        }
        let a = self.compile_new(e, memo);
        memo.push((e.clone(), a));
        a
    }

    fn binary(&mut self, op: BinaryOp, a: Arg, b: Arg) -> Arg {
        let out = self.reg();
        self.steps.push(Step::Binary { op, a, b, out });
        Arg::Key(out)
    }

    fn compile_new(&mut self, e: &RuleExpr, memo: &mut Memo) -> Arg {
        match e {
            // Derivatives written through their function's value, which the program may
            // compute anyway (the score beside its derivative): `ir::scalar`'s arithmetic.
            RuleExpr::Deriv(UnaryOp::Exp, a) => {
                self.compile(&RuleExpr::Unary(UnaryOp::Exp, a.clone()), memo)
            }
            RuleExpr::Deriv(op @ (UnaryOp::Tanh | UnaryOp::Sigmoid), a) => {
                let f = self.compile(&RuleExpr::Unary(*op, a.clone()), memo);
                self.row.push(RuleExpr::Const(1.0));
                let one = Arg::Row(self.row.len() - 1);
                match op {
                    // 1 − t·t
                    UnaryOp::Tanh => {
                        let tt = self.binary(BinaryOp::Mul, f, f);
                        self.binary(BinaryOp::Sub, one, tt)
                    }
                    // s·(1 − s)
                    _ => {
                        let rest = self.binary(BinaryOp::Sub, one, f);
                        self.binary(BinaryOp::Mul, f, rest)
                    }
                }
            }
            _ => self.compile_steps(e, memo),
        }
    }

    fn compile_steps(&mut self, e: &RuleExpr, memo: &mut Memo) -> Arg {
        match e {
            RuleExpr::Var(RuleVar::Score) => Arg::Score,
            RuleExpr::Var(RuleVar::KeyPos) => Arg::KeyPos,
            RuleExpr::Var(RuleVar::KeySeg) => {
                let r = self.reg();
                self.steps.push(Step::KeySeg(r));
                Arg::Key(r)
            }
            RuleExpr::Unary(op, a) | RuleExpr::Deriv(op, a) => {
                let a = self.compile(a, memo);
                let (op, deriv, out) = (*op, matches!(e, RuleExpr::Deriv(..)), self.reg());
                self.steps.push(Step::Unary { op, deriv, a, out });
                Arg::Key(out)
            }
            RuleExpr::Binary(op, a, b) => {
                let (a, b) = (self.compile(a, memo), self.compile(b, memo));
                let (op, out) = (*op, self.reg());
                self.steps.push(Step::Binary { op, a, b, out });
                Arg::Key(out)
            }
            RuleExpr::Compare(op, a, b) => {
                let (a, b) = (self.compile(a, memo), self.compile(b, memo));
                let (op, out) = (*op, self.reg());
                self.steps.push(Step::Compare { op, a, b, out });
                Arg::Key(out)
            }
            RuleExpr::Where(c, x, y) => {
                let (c, x, y) = (
                    self.compile(c, memo),
                    self.compile(x, memo),
                    self.compile(y, memo),
                );
                let out = self.reg();
                self.steps.push(Step::Where { c, x, y, out });
                Arg::Key(out)
            }
            // Constants, parameters and the other variables are key-independent.
            RuleExpr::Const(_) | RuleExpr::Param(_) | RuleExpr::Var(_) => {
                unreachable!("key-independent expressions return above")
            }
        }
    }

    /// The expression itself when it is the score (`s`): callers read the scores instead.
    pub fn is_score(&self) -> bool {
        self.outs[0] == Arg::Score
    }

    /// The expression's value when it is a constant (`1` for softmax's factor).
    pub fn constant(&self) -> Option<f32> {
        match self.outs[0] {
            Arg::Row(k) => self.row[k].constant(),
            _ => None,
        }
    }

    /// The expression at keys `0..n` of the row at `place` with scores `score`, into `out`.
    /// `fast` evaluates `exp`, `tanh` and `sigmoid` (and their derivatives) with the
    /// vectorised [`exp::exp`] instead of libm, for values that need not be the reference's
    /// bits (the backward's).
    pub fn run(
        &self,
        place: &RowPlace,
        score: &[f32],
        regs: &mut Registers,
        out: &mut [f32],
        fast: bool,
    ) {
        // The last step of a single expression writes the caller's buffer directly.
        let direct = match self.outs[..] {
            [Arg::Key(w)] => self.steps.last().is_some_and(|s| s.out() == w),
            _ => false,
        };
        let n = out.len();
        self.steps(place, score, regs, n, direct.then_some(&mut *out), fast);
        if !direct {
            self.read(0, score, regs, out);
        }
    }

    /// [`Program::run`] of every expression [`Program::all`] compiled, the `k`-th into
    /// `outs[k]` (all of one length).
    pub fn run_all(
        &self,
        place: &RowPlace,
        score: &[f32],
        regs: &mut Registers,
        outs: &mut [&mut [f32]],
        fast: bool,
    ) {
        self.steps(place, score, regs, outs[0].len(), None, fast);
        for (k, out) in outs.iter_mut().enumerate() {
            self.read(k, score, regs, out);
        }
    }

    /// Output `k`'s value after [`Program::steps`], into `out`.
    fn read(&self, k: usize, score: &[f32], regs: &Registers, out: &mut [f32]) {
        let n = out.len();
        match self.outs[k] {
            Arg::Row(r) => out.fill(regs.row[r]),
            Arg::Key(r) => out.copy_from_slice(&regs.keys[r][..n]),
            Arg::Score => out.copy_from_slice(&score[..n]),
            Arg::KeyPos => out.copy_from_slice(&regs.iota[..n]),
        }
    }

    /// Every step at keys `0..n` into its register, or the last one into `direct`. That is
    /// a `&mut [f32]` of the caller's own, so the compiler knows it aliases no register and
    /// vectorises the loops without checks (through a slice of output slices it did not,
    /// and an ALiBi forward cost a fifth more, measured with criterion).
    fn steps(
        &self,
        place: &RowPlace,
        score: &[f32],
        regs: &mut Registers,
        n: usize,
        mut direct: Option<&mut [f32]>,
        fast: bool,
    ) {
        regs.row.clear();
        regs.row.extend(self.row.iter().map(|e| e.eval(&place.env)));
        if regs.keys.len() < self.regs {
            regs.keys.resize_with(self.regs, Vec::new);
        }
        if regs.iota.len() < n {
            regs.iota = (0..n).map(|j| j as f32).collect();
        }
        let last = self.steps.len().wrapping_sub(1);
        for (at, step) in self.steps.iter().enumerate() {
            let w = step.out();
            let root = at == last && direct.is_some();
            let mut reg = if root {
                Vec::new()
            } else {
                let mut r = std::mem::take(&mut regs.keys[w]);
                r.resize(n, 0.0);
                r
            };
            let dst: &mut [f32] = match &mut direct {
                Some(out) if root => out,
                _ => &mut reg[..n],
            };
            let val = |a: &Arg| match *a {
                Arg::Row(k) => Val::S(regs.row[k]),
                Arg::Key(r) => Val::V(&regs.keys[r][..n]),
                Arg::Score => Val::V(&score[..n]),
                Arg::KeyPos => Val::V(&regs.iota[..n]),
            };
            match step {
                Step::KeySeg(_) => {
                    for (j, x) in dst.iter_mut().enumerate() {
                        *x = place.seg.map_or(0, |s| s[j]) as f32;
                    }
                }
                Step::Unary { op, deriv, a, .. } => {
                    let a = val(a);
                    if fast && !*deriv && fast_unary(*op, a, dst) {
                    } else if *deriv {
                        each_unary!(*op, U => zip(a, a, dst, |x, _| U.derivative(x)))
                    } else {
                        each_unary!(*op, U => zip(a, a, dst, |x, _| U.eval(x)))
                    }
                }
                Step::Binary { op, a, b, .. } => {
                    let (a, b) = (val(a), val(b));
                    each_binary!(*op, B => zip(a, b, dst, |x, y| B.eval(x, y)))
                }
                Step::Compare { op, a, b, .. } => {
                    let (a, b) = (val(a), val(b));
                    let f = |t: bool| if t { 1.0 } else { 0.0 };
                    match op {
                        CmpOp::Lt => zip(a, b, dst, |x, y| f(x < y)),
                        CmpOp::Le => zip(a, b, dst, |x, y| f(x <= y)),
                        CmpOp::Gt => zip(a, b, dst, |x, y| f(x > y)),
                        CmpOp::Ge => zip(a, b, dst, |x, y| f(x >= y)),
                        CmpOp::Eq => zip(a, b, dst, |x, y| f(x == y)),
                        CmpOp::Ne => zip(a, b, dst, |x, y| f(x != y)),
                    }
                }
                Step::Where { c, x, y, .. } => {
                    let (c, x, y) = (val(c), val(x), val(y));
                    for (j, o) in dst.iter_mut().enumerate() {
                        *o = if c.at(j) != 0.0 { x.at(j) } else { y.at(j) };
                    }
                }
            }
            if !root {
                regs.keys[w] = reg;
            }
        }
    }
}

/// `op` at every key with the vectorised [`exp`] functions, for [`Program::run`]'s fast
/// mode; `false` (nothing written) for ops that have none (their derivatives are compiled
/// through the function itself, see [`Program::all`]). Each arm inlines its function into
/// the loop, so the loop vectorises.
fn fast_unary(op: UnaryOp, a: Val, out: &mut [f32]) -> bool {
    match op {
        UnaryOp::Exp => zip(a, a, out, |x, _| exp::exp(x)),
        UnaryOp::Sigmoid => zip(a, a, out, |x, _| exp::sigmoid(x)),
        UnaryOp::Tanh => zip(a, a, out, |x, _| exp::tanh(x)),
        _ => return false,
    }
    true
}

/// `out[j] = f(a[j], b[j])` with either side possibly one value for the row, vectorised
/// for AVX2 where the machine has it.
#[inline(always)]
fn zip(a: Val, b: Val, out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    with_avx2!(|| match (a, b) {
        (Val::V(a), Val::V(b)) => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        }
        (Val::V(a), Val::S(y)) => {
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x, y);
            }
        }
        (Val::S(x), Val::V(b)) => {
            for (o, &y) in out.iter_mut().zip(b) {
                *o = f(x, y);
            }
        }
        (Val::S(x), Val::S(y)) => out.fill(f(x, y)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_equal_the_tree_walk_at_every_key() {
        use RuleExpr as E;
        let s = E::s;
        let var = E::Var;
        let c = E::Const;
        let bin = |op, a, b| E::binary(op, a, b);
        let cmp = |op, a, b| E::Compare(op, Box::new(a), Box::new(b));
        let params = vec![vec![0.5f32, -0.25, 2.0]];
        let exprs = [
            // ALiBi with a per-head slope, its derivative in the score and the slope.
            bin(
                BinaryOp::Sub,
                s(),
                bin(
                    BinaryOp::Mul,
                    E::Param(0),
                    bin(BinaryOp::Sub, var(RuleVar::QueryPos), var(RuleVar::KeyPos)),
                ),
            ),
            E::Deriv(UnaryOp::Tanh, Box::new(bin(BinaryOp::Div, s(), c(2.0)))),
            // A window mask and a segment bias.
            bin(
                BinaryOp::Mul,
                cmp(CmpOp::Le, var(RuleVar::KeyPos), var(RuleVar::QueryPos)),
                cmp(
                    CmpOp::Lt,
                    bin(BinaryOp::Sub, var(RuleVar::QueryPos), var(RuleVar::KeyPos)),
                    c(3.0),
                ),
            ),
            E::Where(
                Box::new(cmp(CmpOp::Eq, var(RuleVar::QuerySeg), var(RuleVar::KeySeg))),
                Box::new(s()),
                Box::new(bin(BinaryOp::Sub, s(), c(1.0))),
            ),
            // Key-independent throughout: one value for the row.
            bin(BinaryOp::Add, E::Param(0), var(RuleVar::Keys)),
            E::unary(UnaryOp::Sigmoid, bin(BinaryOp::Max, s(), c(-0.5))),
            E::Deriv(UnaryOp::Sigmoid, Box::new(bin(BinaryOp::Mul, s(), c(0.5)))),
            E::Deriv(UnaryOp::Exp, Box::new(bin(BinaryOp::Sub, s(), c(1.0)))),
        ];
        let score: Vec<f32> = (0..11).map(|j| (j as f32 * 0.7).sin() * 3.0).collect();
        let seg: Vec<i32> = (0..11).map(|j| j / 4).collect();
        let mut regs = Registers::default();
        for e in &exprs {
            let p = Program::new(e);
            for i in [0usize, 5, 10] {
                for head in 0..3 {
                    let env = RuleEnv {
                        score: 0.0,
                        i,
                        j: 0,
                        head,
                        kv_head: 0,
                        keys: 11,
                        seg_i: seg[i],
                        seg_j: 0,
                        params: &params,
                    };
                    let place = RowPlace {
                        env,
                        seg: Some(&seg),
                    };
                    let mut got = vec![f32::NAN; 11];
                    p.run(&place, &score, &mut regs, &mut got, false);
                    for (j, g) in got.iter().enumerate() {
                        let want = e.eval(&RuleEnv {
                            score: score[j],
                            j,
                            seg_j: seg[j],
                            ..env
                        });
                        assert_eq!(g.to_bits(), want.to_bits(), "{e:?} at i {i} j {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_score_and_its_derivative_share_their_tanh_and_keep_their_values() {
        use RuleExpr as E;
        // Soft-capping, 30·tanh(s/30), and its derivative.
        let scaled = E::binary(BinaryOp::Div, E::s(), E::Const(30.0));
        let score = E::binary(
            BinaryOp::Mul,
            E::Const(30.0),
            E::unary(UnaryOp::Tanh, scaled.clone()),
        );
        let deriv = E::binary(
            BinaryOp::Mul,
            E::Const(30.0),
            E::binary(
                BinaryOp::Mul,
                E::Deriv(UnaryOp::Tanh, Box::new(scaled)),
                E::binary(BinaryOp::Div, E::Const(1.0), E::Const(30.0)),
            ),
        );
        let both = Program::all(&[&score, &deriv]);
        let tanhs = |p: &Program| {
            p.steps
                .iter()
                .filter(|s| {
                    matches!(
                        s,
                        Step::Unary {
                            op: UnaryOp::Tanh,
                            ..
                        }
                    )
                })
                .count()
        };
        assert_eq!(tanhs(&both), 1);
        let raw: Vec<f32> = (0..37).map(|j| (j as f32 * 1.3).sin() * 90.0).collect();
        let params: Vec<Vec<f32>> = Vec::new();
        let place = RowPlace {
            env: RuleEnv {
                score: 0.0,
                i: 3,
                j: 0,
                head: 0,
                kv_head: 0,
                keys: 37,
                seg_i: 0,
                seg_j: 0,
                params: &params,
            },
            seg: None,
        };
        let mut regs = Registers::default();
        for fast in [false, true] {
            let (mut s, mut d) = (vec![f32::NAN; 37], vec![f32::NAN; 37]);
            both.run_all(&place, &raw, &mut regs, &mut [&mut s, &mut d], fast);
            for (e, got) in [(&score, &s), (&deriv, &d)] {
                let mut alone = vec![f32::NAN; 37];
                Program::new(e).run(&place, &raw, &mut regs, &mut alone, fast);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(&alone), "{e:?}, fast {fast}");
            }
        }
    }
}
