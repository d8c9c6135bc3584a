//! One expression of a spec's attention rule (`ir::rule`), compiled for the fast path into a
//! short program over one query row's keys: a rule then costs a few loops per row, each
//! applying one op to every key, instead of a walk of the expression tree per score.
//!
//! Subexpressions that do not depend on the key (the query position, the head, rule
//! parameters, the key count, constants) are evaluated by `RuleExpr::eval` itself, once per
//! row, or once per head for those that do not read the query ([`Registers::next_head`]);
//! every per-key step applies `ir::scalar`'s op to each element. Compiled for
//! [`Arith::Exact`], both are the reference's f32 arithmetic, so a program's values are the
//! reference's to the bit; for [`Arith::Fast`], they are the reference's to float noise.

use super::exp;
use super::kernels::{each_binary, each_unary};
use super::simd::with_avx2;
use weft_compiler::ir::{BinaryOp, CmpOp, RuleEnv, RuleExpr, RuleVar, UnaryOp};

/// An operand: the value of a key-independent subexpression, a per-key register, one of
/// the row's per-key inputs (read in place), or (for [`Arith::Fast`]) a linear form of one.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Arg {
    Row(usize),
    Key(usize),
    Score,
    KeyPos,
    /// `x·k + c` with `k`, `c` values of the row: no step of its own, each step that reads
    /// it computes it inline, a fused multiply-add (ALiBi's `s − θ·(i − j)` is one step,
    /// not three).
    Lin {
        x: Src,
        k: usize,
        c: usize,
    },
}

/// The rows `k`, `c` of a linear form `x·k + c`.
type Form = (usize, usize);

/// The per-key value under a linear form.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    Key(usize),
    Score,
    KeyPos,
}

impl Src {
    fn of(a: Arg) -> Option<Src> {
        match a {
            Arg::Key(r) => Some(Src::Key(r)),
            Arg::Score => Some(Src::Score),
            Arg::KeyPos => Some(Src::KeyPos),
            Arg::Row(_) | Arg::Lin { .. } => None,
        }
    }

    fn arg(self) -> Arg {
        match self {
            Src::Key(r) => Arg::Key(r),
            Src::Score => Arg::Score,
            Src::KeyPos => Arg::KeyPos,
        }
    }
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
    /// The step's operands.
    fn args_mut(&mut self) -> Vec<&mut Arg> {
        match self {
            Step::KeySeg(_) => vec![],
            Step::Unary { a, .. } => vec![a],
            Step::Binary { a, b, .. } | Step::Compare { a, b, .. } => vec![a, b],
            Step::Where { c, x, y, .. } => vec![c, x, y],
        }
    }

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

/// The arithmetic a program computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    /// `ir::scalar`'s ops as the expression writes them, libm's transcendental functions:
    /// the reference's bits (masks, whose 0/1 decide visibility).
    Exact,
    /// The reference's values to float noise, cheaper: `exp`, `tanh` and `sigmoid`
    /// vectorised ([`exp`]), and sums, differences, products and quotients of a per-key
    /// value with values of the row folded into linear forms ([`Arg::Lin`]): soft-capping's
    /// `s/c` costs no division per key, and its `score' = c·(tanh'(s/c)·(1/c))` is
    /// `1 − t·t` (`c·(1/c)` rounds to 1).
    Fast,
}

/// A compiled rule expression, or several sharing their common subexpressions.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    arith: Arith,
    /// Key-independent subexpressions: the first `head_rows` read neither the query's
    /// position nor its segment (evaluated once per head, see [`Registers::next_head`]), the
    /// rest are evaluated per row.
    row: Vec<RuleExpr>,
    head_rows: usize,
    /// Unique to each compiled program (its clones share it: the same values), so that
    /// [`Registers`] know whose row values they hold.
    id: u64,
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
    /// The program whose head-constant row values `row` starts with (its `id`; 0 for
    /// none): rows of one head that run the same program evaluate them once. ALiBi's
    /// forward spent a sixth of its time above softmax's at T 128 evaluating row values
    /// (measured with `perf`).
    row_owner: u64,
    keys: Vec<Vec<f32>>,
    /// `0, 1, 2, …` as f32: the key positions.
    iota: Vec<f32>,
}

impl Registers {
    /// Forgets the head-constant row values: call it before the first row of each head (or
    /// of each call: parameters change between calls, possibly in place).
    pub(super) fn next_head(&mut self) {
        self.row_owner = 0;
    }
}

/// A fresh [`Program::id`] (never 0).
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A borrowed operand.
#[derive(Clone, Copy)]
enum Val<'a> {
    S(f32),
    V(&'a [f32]),
    /// `x·k + c`.
    L(&'a [f32], f32, f32),
}

impl Val<'_> {
    #[inline(always)]
    fn at(self, j: usize) -> f32 {
        match self {
            Val::S(x) => x,
            Val::V(v) => v[j],
            Val::L(v, k, c) => v[j].mul_add(k, c),
        }
    }
}

fn key_dependent(e: &RuleExpr) -> bool {
    e.reads(RuleVar::Score) || e.reads(RuleVar::KeyPos) || e.reads(RuleVar::KeySeg)
}

/// `e` as a constant when it reads no variable (nor parameter).
fn folded(e: RuleExpr) -> RuleExpr {
    fn constant(e: &RuleExpr) -> bool {
        match e {
            RuleExpr::Const(_) => true,
            RuleExpr::Var(_) | RuleExpr::Param(_) => false,
            RuleExpr::Unary(_, a) | RuleExpr::Deriv(_, a) => constant(a),
            RuleExpr::Binary(_, a, b) | RuleExpr::Compare(_, a, b) => constant(a) && constant(b),
            RuleExpr::Where(c, x, y) => constant(c) && constant(x) && constant(y),
        }
    }
    if !constant(&e) {
        return e;
    }
    let env = RuleEnv {
        score: 0.0,
        i: 0,
        j: 0,
        head: 0,
        kv_head: 0,
        keys: 0,
        seg_i: 0,
        seg_j: 0,
        params: &[],
    };
    RuleExpr::Const(e.eval(&env))
}

impl Program {
    /// Compiles `e` (a rule expression the IR accepted: no derivative of a derivative).
    pub fn new(e: &RuleExpr, arith: Arith) -> Program {
        Self::all(&[e], arith)
    }

    /// Compiles `es` into one program whose per-key steps are shared: a rule's score and its
    /// derivative compute `tanh(s/c)` once (`Deriv(tanh, x)` is `1 − tanh(x)²` over the
    /// same step; `ir::scalar`'s derivative is that arithmetic, so values keep their bits).
    pub fn all(es: &[&RuleExpr], arith: Arith) -> Program {
        let mut p = Program {
            arith,
            row: Vec::new(),
            head_rows: 0,
            id: next_id(),
            steps: Vec::new(),
            outs: Vec::new(),
            regs: 0,
        };
        let mut memo = Memo::new();
        for e in es {
            let out = p.compile(e, &mut memo);
            p.outs.push(out);
        }
        p.drop_unused_rows();
        p
    }

    /// Removes the row values nothing reads any more (what linear forms and folded
    /// products were made from): each one is evaluated per row or head, and ALiBi's
    /// forward spent a fifth of its cost above softmax's evaluating them (measured with
    /// `perf`). Puts the ones that are the same for every row of a head first (`head_rows`).
    fn drop_unused_rows(&mut self) {
        let mut outs = std::mem::take(&mut self.outs);
        let mut steps = std::mem::take(&mut self.steps);
        let mut args: Vec<&mut Arg> = outs.iter_mut().collect();
        args.extend(steps.iter_mut().flat_map(Step::args_mut));
        let mut rows: Vec<usize> = args
            .iter()
            .flat_map(|a| match **a {
                Arg::Row(k) => vec![k],
                Arg::Lin { k, c, .. } => vec![k, c],
                _ => vec![],
            })
            .collect();
        let per_query = |e: &RuleExpr| e.reads(RuleVar::QueryPos) || e.reads(RuleVar::QuerySeg);
        rows.sort_unstable_by_key(|&k| (per_query(&self.row[k]), k));
        rows.dedup();
        self.head_rows = rows.iter().filter(|&&k| !per_query(&self.row[k])).count();
        let at = |k: usize| rows.iter().position(|&r| r == k).expect("a used row");
        for a in args {
            match a {
                Arg::Row(k) => *k = at(*k),
                Arg::Lin { k, c, .. } => (*k, *c) = (at(*k), at(*c)),
                _ => {}
            }
        }
        self.row = rows.iter().map(|&k| self.row[k].clone()).collect();
        (self.outs, self.steps) = (outs, steps);
    }

    fn reg(&mut self) -> usize {
        self.regs += 1;
        self.regs - 1
    }

    fn compile(&mut self, e: &RuleExpr, memo: &mut Memo) -> Arg {
        if !key_dependent(e) {
            return Arg::Row(self.row_of(e.clone()));
        }
        if let Some((_, a)) = memo.iter().find(|(x, _)| x == e) {
            return *a;
        }
        let a = self.compile_new(e, memo);
        memo.push((e.clone(), a));
        a
    }

    /// The index of a row value `e` (folded to a constant where it is one: `eval`'s own
    /// arithmetic, so the value keeps its bits), shared with an equal one already there.
    fn row_of(&mut self, e: RuleExpr) -> usize {
        let e = folded(e);
        if let Some(k) = self.row.iter().position(|x| *x == e) {
            return k;
        }
        self.row.push(e);
        self.row.len() - 1
    }

    /// `a op b` as a linear form ([`Arg::Lin`]) where one side is a value of the row and
    /// the other a per-key value or a form already (`+`, `−`, `·`, and `/` by the row's
    /// value); `None` otherwise.
    fn linear(&mut self, op: BinaryOp, a: Arg, b: Arg) -> Option<Arg> {
        use RuleExpr as E;
        let form = |p: &Program, x: Arg| match x {
            Arg::Lin { x, k, c } => Some((x, p.row[k].clone(), p.row[c].clone())),
            x => Src::of(x).map(|x| (x, E::Const(1.0), E::Const(0.0))),
        };
        // The coefficients, evaluated per row: with their zero and one terms dropped.
        let bin = |op, a: E, b: E| match (op, a.constant(), b.constant()) {
            (BinaryOp::Add | BinaryOp::Sub, _, Some(0.0)) => a,
            (BinaryOp::Add, Some(0.0), _) => b,
            (BinaryOp::Mul | BinaryOp::Div, _, Some(1.0)) => a,
            (BinaryOp::Mul, Some(1.0), _) => b,
            _ => folded(E::binary(op, a, b)),
        };
        let ((x, k, c), r, row_first) = match (a, b) {
            (Arg::Row(r), b) => (form(self, b)?, self.row[r].clone(), true),
            (a, Arg::Row(r)) => (form(self, a)?, self.row[r].clone(), false),
            _ => return None,
        };
        let (k, c) = match (op, row_first) {
            (BinaryOp::Add, _) => (k, bin(BinaryOp::Add, c, r)),
            (BinaryOp::Sub, false) => (k, bin(BinaryOp::Sub, c, r)),
            (BinaryOp::Sub, true) => (folded(E::unary(UnaryOp::Neg, k)), bin(BinaryOp::Sub, r, c)),
            (BinaryOp::Mul, _) => (bin(BinaryOp::Mul, k, r.clone()), bin(BinaryOp::Mul, c, r)),
            (BinaryOp::Div, false) => (bin(BinaryOp::Div, k, r.clone()), bin(BinaryOp::Div, c, r)),
            _ => return None,
        };
        if k.constant() == Some(1.0) && c.constant() == Some(0.0) {
            return Some(x.arg());
        }
        let (k, c) = (self.row_of(k), self.row_of(c));
        Some(Arg::Lin { x, k, c })
    }

    /// `a op b`: a linear form where [`Program::linear`] makes one, else a step.
    fn binary(&mut self, op: BinaryOp, a: Arg, b: Arg) -> Arg {
        if self.arith == Arith::Fast {
            if let Some(lin) = self.linear(op, a, b) {
                return lin;
            }
        }
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
                let one = Arg::Row(self.row_of(RuleExpr::Const(1.0)));
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
                if let (UnaryOp::Neg, RuleExpr::Unary(..), Arith::Fast) = (op, e, self.arith) {
                    // `−x` is `0 − x`, a linear form.
                    let zero = self.row_of(RuleExpr::Const(0.0));
                    if let Some(lin) = self.linear(BinaryOp::Sub, Arg::Row(zero), a) {
                        return lin;
                    }
                }
                let (op, deriv, out) = (*op, matches!(e, RuleExpr::Deriv(..)), self.reg());
                self.steps.push(Step::Unary { op, deriv, a, out });
                Arg::Key(out)
            }
            RuleExpr::Binary(op, a, b) => {
                let (a, b) = (self.compile(a, memo), self.compile(b, memo));
                self.binary(*op, a, b)
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
    pub fn run(&self, place: &RowPlace, score: &[f32], regs: &mut Registers, out: &mut [f32]) {
        // The last step of a single expression writes the caller's buffer directly, a
        // vectorised function's step with the output's linear form applied (soft-capping's
        // `c·tanh(s/c)` in one loop).
        let last = self.steps.last();
        let direct = match self.outs[..] {
            [Arg::Key(w)] => last.is_some_and(|s| s.out() == w).then_some(None),
            [Arg::Lin {
                x: Src::Key(w),
                k,
                c,
            }] => last
                .is_some_and(|s| s.out() == w && self.fast_unary(s))
                .then_some(Some((k, c))),
            _ => None,
        };
        let n = out.len();
        match direct {
            Some(post) => self.steps(place, score, regs, n, Some((&mut *out, post))),
            None => {
                self.steps(place, score, regs, n, None);
                self.read(0, score, regs, out);
            }
        }
    }

    /// [`Program::run`] of every expression [`Program::all`] compiled at keys `0..n`, the
    /// `k`-th into `outs[k]` (made `n` long; `outs` may hold more buffers than that). An
    /// output a register holds is handed over by swapping buffers, not copied (the
    /// register's next run overwrites what it gets).
    pub fn run_all(
        &self,
        place: &RowPlace,
        score: &[f32],
        regs: &mut Registers,
        n: usize,
        outs: &mut [Vec<f32>],
    ) {
        self.steps(place, score, regs, n, None);
        for (k, out) in outs.iter_mut().enumerate().take(self.outs.len()) {
            match self.outs[k] {
                Arg::Key(r) if !self.outs[..k].contains(&Arg::Key(r)) => {
                    std::mem::swap(out, &mut regs.keys[r]);
                }
                _ => {
                    out.resize(n, 0.0);
                    self.read(k, score, regs, out);
                }
            }
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
            lin @ Arg::Lin { .. } => {
                let v = val(lin, score, regs, n);
                zip(v, v, out, |x, _| x);
            }
        }
    }

    /// Whether `step` runs one of [`fast_unary`]'s functions.
    fn fast_unary(&self, step: &Step) -> bool {
        self.arith == Arith::Fast
            && matches!(
                step,
                Step::Unary {
                    op: UnaryOp::Exp | UnaryOp::Tanh | UnaryOp::Sigmoid,
                    deriv: false,
                    ..
                }
            )
    }

    /// Every step at keys `0..n` into its register, or the last one into `direct` (with
    /// the linear form `x·k + c` of rows `k`, `c` applied, for a [`Program::fast_unary`]
    /// step). That is a `&mut [f32]` of the caller's own, so the compiler knows it aliases
    /// no register and vectorises the loops without checks (through a slice of output
    /// slices it did not, and an ALiBi forward cost a fifth more, measured with criterion).
    fn steps(
        &self,
        place: &RowPlace,
        score: &[f32],
        regs: &mut Registers,
        n: usize,
        mut direct: Option<(&mut [f32], Option<Form>)>,
    ) {
        let me = self.id;
        if regs.row_owner != me {
            regs.row.clear();
            let head = &self.row[..self.head_rows];
            regs.row.extend(head.iter().map(|e| e.eval(&place.env)));
            regs.row_owner = me;
        }
        regs.row.truncate(self.head_rows);
        let query = &self.row[self.head_rows..];
        regs.row.extend(query.iter().map(|e| e.eval(&place.env)));
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
            let (dst, post): (&mut [f32], _) = match &mut direct {
                Some((out, post)) if root => (out, post.map(|(k, c)| (regs.row[k], regs.row[c]))),
                _ => (&mut reg[..n], None),
            };
            let val = |a: &Arg| val(*a, score, regs, n);
            match step {
                Step::KeySeg(_) => {
                    for (j, x) in dst.iter_mut().enumerate() {
                        *x = place.seg.map_or(0, |s| s[j]) as f32;
                    }
                }
                Step::Unary { op, deriv, a, .. } => {
                    let a = val(a);
                    if self.fast_unary(step) {
                        fast_unary(*op, a, dst, post);
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

/// Operand `a` at keys `0..n`.
fn val<'a>(a: Arg, score: &'a [f32], regs: &'a Registers, n: usize) -> Val<'a> {
    let src = |x: Src| match x {
        Src::Key(r) => &regs.keys[r][..n],
        Src::Score => &score[..n],
        Src::KeyPos => &regs.iota[..n],
    };
    match a {
        Arg::Row(k) => Val::S(regs.row[k]),
        Arg::Lin { x, k, c } => Val::L(src(x), regs.row[k], regs.row[c]),
        a => Val::V(src(Src::of(a).expect("a per-key operand"))),
    }
}

/// `op` (`exp`, `tanh` or `sigmoid`) at every key with the vectorised [`exp`] functions,
/// for [`Arith::Fast`] (their derivatives are compiled through the function itself, see
/// [`Program::all`]), then `post`'s `·k + c` where given: eight or sixteen keys at a time
/// ([`exp::lanes`]) where the machine has AVX2, else [`portable_unary`]. All give the same
/// bits.
fn fast_unary(op: UnaryOp, a: Val, out: &mut [f32], post: Option<(f32, f32)>) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::avx2() {
        return vector::unary(op, a, out, post);
    }
    portable_unary(op, a, out, post);
}

/// [`fast_unary`] without AVX2: each arm's function inlined into a loop the compiler
/// vectorises for the build's baseline.
fn portable_unary(op: UnaryOp, a: Val, out: &mut [f32], post: Option<(f32, f32)>) {
    macro_rules! each {
        ($f:path) => {
            match post {
                None => zip(a, a, out, |x, _| $f(x)),
                Some((k, c)) => zip(a, a, out, move |x, _| $f(x).mul_add(k, c)),
            }
        };
    }
    match op {
        UnaryOp::Exp => each!(exp::exp),
        UnaryOp::Sigmoid => each!(exp::sigmoid),
        UnaryOp::Tanh => each!(exp::tanh),
        _ => unreachable!("Program::fast_unary picks these ops"),
    }
}

/// [`fast_unary`] in vectors ([`exp::lanes`]): whole vectors of keys, then one vector
/// ending at the row's last key, overlapping the one before it (its keys get the same values
/// again), so no key runs in a scalar tail; a row shorter than a vector runs in a padded
/// copy. Each (function, operand kind, post form) gets its own loop: with the choices made
/// inside one loop, its branches and constant broadcasts ran per vector, and a soft-capping
/// `tanh` step over 64 keys took a quarter longer (measured). The closures are forced
/// inline, as `with_avx2!`'s is: compiled on their own, they lack the features and called
/// the intrinsics out of line (seen in the disassembly).
#[cfg(target_arch = "x86_64")]
mod vector {
    use super::{exp, UnaryOp, Val};
    use exp::lanes::{self, Lanes};
    use std::arch::x86_64::{__m256, __m512};

    /// Sixteen lanes where [`super::super::simd::avx512`] holds and the row has sixteen
    /// keys, else eight (a shorter row in sixteen lanes ran in a padded copy).
    pub(super) fn unary(op: UnaryOp, a: Val, out: &mut [f32], post: Option<(f32, f32)>) {
        // SAFETY: each width runs only where the machine has its features.
        unsafe {
            if out.len() >= 16 && super::super::simd::avx512() {
                sixteen(op, a, out, post)
            } else {
                eight(op, a, out, post)
            }
        }
    }

    /// # Safety
    /// The machine has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn eight(op: UnaryOp, a: Val, out: &mut [f32], post: Option<(f32, f32)>) {
        run::<__m256>(op, a, out, post)
    }

    /// # Safety
    /// The machine has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sixteen(op: UnaryOp, a: Val, out: &mut [f32], post: Option<(f32, f32)>) {
        run::<__m512>(op, a, out, post)
    }

    /// `op` over the row, a row shorter than a vector in a padded copy.
    #[inline(always)]
    unsafe fn run<V: Lanes>(op: UnaryOp, a: Val, out: &mut [f32], post: Option<(f32, f32)>) {
        let n = out.len();
        if n >= V::N {
            return function::<V>(op, a, out, post);
        }
        let (mut x, mut o) = ([0.0f32; 16], [0.0f32; 16]);
        let a = match a {
            Val::S(v) => Val::S(v),
            Val::V(v) => {
                x[..n].copy_from_slice(&v[..n]);
                Val::V(&x[..V::N])
            }
            Val::L(v, k, c) => {
                x[..n].copy_from_slice(&v[..n]);
                Val::L(&x[..V::N], k, c)
            }
        };
        function::<V>(op, a, &mut o[..V::N], post);
        out.copy_from_slice(&o[..n]);
    }

    /// `op` over a row of at least one vector.
    #[inline(always)]
    unsafe fn function<V: Lanes>(op: UnaryOp, a: Val, out: &mut [f32], post: Option<(f32, f32)>) {
        match op {
            UnaryOp::Exp => operand(
                #[inline(always)]
                |x: V| lanes::exp(x),
                a,
                out,
                post,
            ),
            UnaryOp::Sigmoid => operand(
                #[inline(always)]
                |x: V| lanes::sigmoid(x),
                a,
                out,
                post,
            ),
            UnaryOp::Tanh => operand(
                #[inline(always)]
                |x: V| lanes::tanh(x),
                a,
                out,
                post,
            ),
            _ => unreachable!("Program::fast_unary picks these ops"),
        }
    }

    /// `f` of operand `a`, one loop per operand kind.
    #[inline(always)]
    unsafe fn operand<V: Lanes>(
        f: impl Fn(V) -> V,
        a: Val,
        out: &mut [f32],
        post: Option<(f32, f32)>,
    ) {
        match a {
            Val::S(v) => {
                let mut y = [0.0f32; 16];
                let x = f(V::splat(v));
                match post {
                    Some((k, c)) => x.fma(V::splat(k), V::splat(c)).store(&mut y),
                    None => x.store(&mut y),
                }
                out.fill(y[0]);
            }
            Val::V(v) => keys(
                #[inline(always)]
                |j| V::load(&v[j..]),
                f,
                out,
                post,
            ),
            Val::L(v, k, c) => {
                let (k, c) = (V::splat(k), V::splat(c));
                keys(
                    #[inline(always)]
                    |j| V::load(&v[j..]).fma(k, c),
                    f,
                    out,
                    post,
                )
            }
        }
    }

    /// `out[j..j + N] = f(x(j))` (then `post`) over the row's vectors, one loop per post form.
    #[inline(always)]
    unsafe fn keys<V: Lanes>(
        x: impl Fn(usize) -> V,
        f: impl Fn(V) -> V,
        out: &mut [f32],
        post: Option<(f32, f32)>,
    ) {
        let n = out.len();
        let whole = n - n % V::N;
        let last = (whole < n).then(|| n - V::N);
        let at = (0..whole).step_by(V::N).chain(last);
        match post {
            None => {
                for j in at {
                    f(x(j)).store(&mut out[j..]);
                }
            }
            Some((k, c)) => {
                let (k, c) = (V::splat(k), V::splat(c));
                for j in at {
                    f(x(j)).fma(k, c).store(&mut out[j..]);
                }
            }
        }
    }
}

/// `out[j] = f(a[j], b[j])` with either side possibly one value for the row or a linear
/// form, vectorised for AVX2 where the machine has it (one loop per kind of each side,
/// [`windows`]).
#[inline(always)]
fn zip(a: Val, b: Val, out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    with_avx2!(|| match (a, b) {
        (Val::S(x), Val::S(y)) => out.fill(f(x, y)),
        (Val::V(x), Val::V(y)) => windows(Keys(x), Keys(y), out, f),
        (Val::V(x), Val::S(y)) => windows(Keys(x), y, out, f),
        (Val::S(x), Val::V(y)) => windows(x, Keys(y), out, f),
        (Val::L(x, k, c), Val::L(y, ky, cy)) => windows(Linear(x, k, c), Linear(y, ky, cy), out, f),
        (Val::L(x, k, c), Val::V(y)) => windows(Linear(x, k, c), Keys(y), out, f),
        (Val::V(x), Val::L(y, k, c)) => windows(Keys(x), Linear(y, k, c), out, f),
        (Val::L(x, k, c), Val::S(y)) => windows(Linear(x, k, c), y, out, f),
        (Val::S(x), Val::L(y, k, c)) => windows(x, Linear(y, k, c), out, f),
    })
}

/// Keys a [`windows`] step takes at once: one AVX2 vector.
const W: usize = 8;

/// One side of [`zip`]: the row's value (`f32`), the keys' values ([`Keys`]), or a linear
/// form of them ([`Linear`]).
trait Side: Copy {
    /// The value at key `j`.
    fn at(self, j: usize) -> f32;
    /// The values at keys `j..j + W`.
    fn window(self, j: usize) -> [f32; W];
}

impl Side for f32 {
    #[inline(always)]
    fn at(self, _: usize) -> f32 {
        self
    }
    #[inline(always)]
    fn window(self, _: usize) -> [f32; W] {
        [self; W]
    }
}

#[derive(Clone, Copy)]
struct Keys<'a>(&'a [f32]);

impl Side for Keys<'_> {
    #[inline(always)]
    fn at(self, j: usize) -> f32 {
        self.0[j]
    }
    #[inline(always)]
    fn window(self, j: usize) -> [f32; W] {
        self.0[j..j + W].try_into().expect("W keys")
    }
}

/// `x·k + c`.
#[derive(Clone, Copy)]
struct Linear<'a>(&'a [f32], f32, f32);

impl Side for Linear<'_> {
    #[inline(always)]
    fn at(self, j: usize) -> f32 {
        self.0[j].mul_add(self.1, self.2)
    }
    #[inline(always)]
    fn window(self, j: usize) -> [f32; W] {
        Keys(self.0).window(j).map(|x| x.mul_add(self.1, self.2))
    }
}

/// `out[j] = f(a_j, b_j)`, [`W`] keys at a time, the last window ending at the row's last
/// key (overlapping the one before it: its keys get the same values again) so that no key
/// is left to a scalar remainder; a row under `W` keys one key at a time. (A plain loop is
/// vectorised 32 keys at a time and leaves up to 31 of a row to scalar code; a causal row
/// at T 128 has 64 keys on average.)
#[inline(always)]
fn windows(a: impl Side, b: impl Side, out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    let n = out.len();
    if n < W {
        for (j, o) in out.iter_mut().enumerate() {
            *o = f(a.at(j), b.at(j));
        }
        return;
    }
    let mut j = 0;
    loop {
        let at = j.min(n - W);
        let (x, y) = (a.window(at), b.window(at));
        let o: &mut [f32; W] = (&mut out[at..at + W]).try_into().expect("W keys");
        for k in 0..W {
            o[k] = f(x[k], y[k]);
        }
        if at == n - W {
            break;
        }
        j += W;
    }
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
            // Soft-capping, and a function's value under a linear form of the row: in fast
            // programs, one step with the form applied.
            bin(
                BinaryOp::Mul,
                c(30.0),
                E::unary(UnaryOp::Tanh, bin(BinaryOp::Div, s(), c(30.0))),
            ),
            bin(
                BinaryOp::Add,
                bin(
                    BinaryOp::Mul,
                    E::unary(UnaryOp::Exp, bin(BinaryOp::Mul, s(), c(0.1))),
                    E::Param(0),
                ),
                var(RuleVar::QueryPos),
            ),
        ];
        let score: Vec<f32> = (0..11).map(|j| (j as f32 * 0.7).sin() * 3.0).collect();
        let seg: Vec<i32> = (0..11).map(|j| j / 4).collect();
        let mut regs = Registers::default();
        for (e, arith) in exprs
            .iter()
            .flat_map(|e| [(e, Arith::Exact), (e, Arith::Fast)])
        {
            let p = Program::new(e, arith);
            for head in 0..3 {
                regs.next_head();
                for i in [0usize, 5, 10] {
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
                    p.run(&place, &score, &mut regs, &mut got);
                    for (j, &g) in got.iter().enumerate() {
                        let want = e.eval(&RuleEnv {
                            score: score[j],
                            j,
                            seg_j: seg[j],
                            ..env
                        });
                        if arith == Arith::Exact {
                            assert_eq!(g.to_bits(), want.to_bits(), "{e:?} at i {i} j {j}");
                        } else {
                            let tol = 1e-6 * want.abs().max(1.0);
                            assert!((g - want).abs() <= tol, "{e:?} at i {i} j {j}: {g} {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_score_and_its_derivative_share_their_tanh_and_fast_ones_fold_linear_forms() {
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
        let count = |p: &Program, f: fn(&Step) -> bool| p.steps.iter().filter(|s| f(s)).count();
        let tanh = |s: &Step| {
            matches!(
                s,
                Step::Unary {
                    op: UnaryOp::Tanh,
                    ..
                }
            )
        };
        let div = |s: &Step| {
            matches!(
                s,
                Step::Binary {
                    op: BinaryOp::Div,
                    ..
                }
            )
        };
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
        for arith in [Arith::Exact, Arith::Fast] {
            let both = Program::all(&[&score, &deriv], arith);
            assert_eq!(count(&both, tanh), 1);
            if arith == Arith::Fast {
                // Two steps: `t = tanh(s·(1/30))` (its argument a linear form), `t·t`; the
                // outputs `30·t` and `1 − t·t` are forms read out (`30·(1/30)` rounds to 1).
                assert_eq!(count(&both, div), 0);
                assert_eq!(both.steps.len(), 2, "{:?}", both.steps);
            }
            let mut outs = vec![vec![f32::NAN; 2], vec![f32::NAN; 50]];
            both.run_all(&place, &raw, &mut regs, 37, &mut outs);
            for (e, got) in [(&score, &outs[0]), (&deriv, &outs[1])] {
                let mut alone = vec![f32::NAN; 37];
                Program::new(e, arith).run(&place, &raw, &mut regs, &mut alone);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(&alone), "{e:?}, {arith:?}");
            }
        }
    }

    /// Rows of every length up to a few windows (the overlapping last one, rows shorter
    /// than one), each kind of each side: [`zip`] gives the plain loop's bits.
    #[test]
    fn zip_windows_equal_the_plain_loop_at_every_row_length() {
        let x: Vec<f32> = (0..40).map(|j| (j as f32 * 0.61).sin() * 9.0).collect();
        let y: Vec<f32> = (0..40).map(|j| (j as f32 * 0.23).cos() * 4.0).collect();
        let f = |a: f32, b: f32| a * b - 0.5 * a;
        for n in 1..=x.len() {
            let (xs, ys) = (&x[..n], &y[..n]);
            fn kinds(v: &[f32]) -> [Val<'_>; 3] {
                [Val::S(0.7), Val::V(v), Val::L(v, 0.3, -1.5)]
            }
            for a in kinds(xs) {
                for b in kinds(ys) {
                    let mut got = vec![f32::NAN; n];
                    zip(a, b, &mut got, f);
                    for (j, &g) in got.iter().enumerate() {
                        let want = f(a.at(j), b.at(j));
                        assert_eq!(g.to_bits(), want.to_bits(), "n {n} key {j}");
                    }
                }
            }
        }
    }

    /// Rows of every length up to a few vectors (the overlapping last vector and padded
    /// short rows), each operand kind, with and without a form applied: the vector loops at
    /// each width the machine has and the portable functions give the same bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vectorised_functions_equal_the_portable_loops_at_every_row_length() {
        use crate::cpu::fast::simd;
        type Width = unsafe fn(UnaryOp, Val, &mut [f32], Option<(f32, f32)>);
        let mut widths: Vec<(usize, Width)> = Vec::new();
        if simd::avx2() {
            widths.push((8, vector::eight));
        }
        if simd::avx512() {
            widths.push((16, vector::sixteen));
        }
        if widths.is_empty() {
            eprintln!("no AVX2 here: the portable path is the only one");
        }
        let x: Vec<f32> = (0..72).map(|j| (j as f32 * 0.61).sin() * 9.0).collect();
        for (lanes, run) in widths {
            for op in [UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Sigmoid] {
                for n in 1..=x.len() {
                    let vals = [Val::V(&x[..n]), Val::L(&x[..n], 0.3, -1.5), Val::S(0.7)];
                    for a in vals {
                        for post in [None, Some((50.0, 0.25))] {
                            let (mut got, mut want) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                            // SAFETY: the machine has the width's features (checked above).
                            unsafe { run(op, a, &mut got, post) };
                            portable_unary(op, a, &mut want, post);
                            let bits =
                                |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                            assert_eq!(
                                bits(&got),
                                bits(&want),
                                "{lanes} lanes: {op:?} n {n} post {post:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
